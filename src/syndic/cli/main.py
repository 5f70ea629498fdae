"""The ``syndic`` command group.

Each verb lives in its own module under ``syndic.cli`` and is listed in
``VERBS``, so ``syndic --help`` lists every verb and each verb has its own
``--help``. A verb's module is imported only when that verb runs (see
``syndic.cli.lazy``): ``syndic serve`` does not pay for the simulator, the
agent or the configuration centre.
"""

from __future__ import annotations

import platform
from typing import Final

import click

from syndic import __version__
from syndic.cli.lazy import LazyGroup, Verb

# name -> where the command lives and its one-line help (the first sentence
# of its docstring; tests/cli/test_lazy_verbs.py fails if the two differ).
VERBS: Final[dict[str, Verb]] = {
    "serve": Verb(
        "syndic.cli.serve",
        "serve",
        "Run one syndic member (etcd-compatible flags, variables and config file).",
    ),
    "dev": Verb(
        "syndic.cli.serve",
        "dev",
        "Run a single-member syndic with everything on, for trying things out.",
    ),
    "agent": Verb(
        "syndic.cli.agent",
        "agent",
        "Run the registry agent: health checks and the Consul-compatible HTTP API.",
    ),
    "sim": Verb(
        "syndic.cli.sim",
        "sim",
        "Run the deterministic cluster simulator and check every run.",
    ),
    "demo": Verb(
        "syndic.cli.demo",
        "demo",
        "Watch a simulated cluster elect leaders and commit writes under faults.",
    ),
    "cluster": Verb(
        "syndic.cli.cluster",
        "cluster",
        "Run a local multi-member cluster for development and tests.",
    ),
    "snapshot": Verb(
        "syndic.cli.snapshot",
        "snapshot",
        "Save, inspect and restore snapshots (etcdctl snapshot, same file format).",
    ),
    "config": Verb(
        "syndic.cli.config_cmd",
        "config",
        "Configuration centre: versions, history, rollback, gray release.",
    ),
}


@click.group(cls=LazyGroup, verbs=VERBS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syndic")
def cli() -> None:
    """syndic: a replicated coordination store, service governance and
    distributed-systems toolkit, in one command."""


@cli.command()
def version() -> None:
    """Print syndic's version and the Python it runs on."""
    click.echo(f"syndic {__version__} (Python {platform.python_version()})")


def main() -> None:
    """Console-script entry point."""
    cli()
