"""The ``syndic`` command group.

Each verb lives in its own module under ``syndic.cli`` and is registered
here, so ``syndic --help`` lists every verb and each verb has its own
``--help``.
"""

from __future__ import annotations

import platform

import click

from syndic import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syndic")
def cli() -> None:
    """syndic: a replicated coordination store, service governance and
    distributed-systems toolkit, in one command."""


@cli.command()
def version() -> None:
    """Print syndic's version and the Python it runs on."""
    click.echo(f"syndic {__version__} (Python {platform.python_version()})")


def _register_verbs() -> None:
    # Imported here so ``syndic version`` does not pay for every verb's imports.
    from syndic.cli.agent import agent
    from syndic.cli.cluster import cluster
    from syndic.cli.config_cmd import config
    from syndic.cli.demo import demo
    from syndic.cli.serve import dev, serve
    from syndic.cli.sim import sim
    from syndic.cli.snapshot import snapshot

    for verb in (serve, dev, agent, sim, demo, cluster, snapshot, config):
        cli.add_command(verb)


_register_verbs()


def main() -> None:
    """Console-script entry point."""
    cli()
