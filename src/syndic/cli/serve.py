"""``syndic serve``: run one member, configured exactly as etcd is.

Every etcd flag syndic understands is accepted under etcd's name, so a
script or unit file written for etcd starts syndic unchanged; the same
settings are read from ``ETCD_*``/``SYNDIC_*`` variables and from a YAML
``--config-file``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from syndic.server.config import (
    BOOL_FIELDS,
    FIELD_FOR_FLAG,
    ConfigError,
    ServerConfig,
    load_config,
)


def _etcd_flag_options(command: Any) -> Any:
    # Defaults are None so only the flags actually given override the file and
    # the environment (precedence: defaults < file < environment < flags).
    for flag in sorted(FIELD_FOR_FLAG, reverse=True):
        # etcd's boolean flags may stand alone (--client-cert-auth) or take a value.
        boolean = FIELD_FOR_FLAG[flag] in BOOL_FIELDS
        command = click.option(
            f"--{flag}",
            flag.replace("-", "_"),
            default=None,
            is_flag=False,
            flag_value="true" if boolean else None,
            metavar="BOOL" if boolean else "VALUE",
            help=f"as etcd's --{flag}",
        )(command)
    return command


def build_config(config_file: str | None, given: dict[str, Any]) -> ServerConfig:
    flags = {key.replace("_", "-"): value for key, value in given.items() if value is not None}
    try:
        return load_config(flags, os.environ, Path(config_file) if config_file else None)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command()
@click.option(
    "--config-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of settings, keyed by etcd's flag names.",
)
@_etcd_flag_options
def serve(config_file: str | None, **given: Any) -> None:
    """Run one syndic member (etcd-compatible flags, variables and config file)."""
    from syndic.server.app import run

    config = build_config(config_file, given)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    click.echo(
        f"syndic member {config.name!r}: client {','.join(config.advertise_client_urls)}, "
        f"peer {','.join(config.initial_advertise_peer_urls)}, data {config.data_path}"
    )
    from syndic.server.bootstrap import MemberIdentityError
    from syndic.server.tls import TlsConfigError

    try:
        run(config)
    except (MemberIdentityError, TlsConfigError) as exc:
        # Refused before serving, with nothing changed: say why, as etcd does.
        raise click.ClickException(str(exc)) from exc


DEV_CLIENT_URL = "http://127.0.0.1:2379"
DEV_PEER_URL = "http://127.0.0.1:2380"
DEV_ADMIN_URL = "http://127.0.0.1:2381"


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep data here (default: a fresh temporary directory).",
)
@click.option(
    "--client-url",
    default=DEV_CLIENT_URL,
    show_default=True,
    help="Where etcd clients connect (gRPC).",
)
@click.option("--peer-url", default=DEV_PEER_URL, show_default=True)
@click.option(
    "--admin-url",
    default=DEV_ADMIN_URL,
    show_default=True,
    help="HTTP admin API: /health, /metrics, /version, /debug/status.",
)
def dev(data_dir: str | None, client_url: str, peer_url: str, admin_url: str) -> None:
    """Run a single-member syndic with everything on, for trying things out."""
    import tempfile

    from syndic.server.app import run

    directory = data_dir or tempfile.mkdtemp(prefix="syndic-dev-")
    config = build_config(
        None,
        {
            "name": "dev",
            "data_dir": directory,
            "listen_client_urls": client_url,
            "listen_peer_urls": peer_url,
            "listen_metrics_urls": admin_url,
            "initial_cluster": f"dev={peer_url}",
        },
    )
    endpoint = client_url.split("://", 1)[1]

    def ready(_server: object) -> None:
        click.echo(
            "syndic dev: a single-member cluster is ready\n"
            f"  etcd v3 gRPC API  {client_url}\n"
            f"  HTTP admin        {admin_url}/health  {admin_url}/metrics  "
            f"{admin_url}/debug/status\n"
            f"  data directory    {directory}\n"
            "try:\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} put greeting hello\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} get greeting\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} watch --prefix ''\n"
            f"  curl {admin_url}/health\n"
            "Ctrl-C stops it."
        )

    logging.basicConfig(level=logging.WARNING)
    try:
        run(config, ready)
    except (OSError, RuntimeError) as exc:  # grpc reports a busy port as RuntimeError
        raise click.ClickException(
            f"cannot listen: {exc} (is another etcd or syndic running? "
            "pick other ports with --client-url/--peer-url/--admin-url)"
        ) from exc
