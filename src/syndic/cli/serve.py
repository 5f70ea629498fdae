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
    SYNDIC_FLAG_HELP,
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
        # Only a boolean's value is optional: click reads a dash-led value of
        # an option with an optional value as another option, and
        # ``--snapshot-count=-3`` would fail as "No such option '-3'" instead
        # of with the setting's own error.
        help_text = SYNDIC_FLAG_HELP.get(flag, f"as etcd's --{flag}")
        name = flag.replace("-", "_")
        if boolean:
            option = click.option(
                f"--{flag}",
                name,
                default=None,
                is_flag=False,
                flag_value="true",
                metavar="BOOL",
                help=help_text,
            )
        else:
            option = click.option(f"--{flag}", name, default=None, metavar="VALUE", help=help_text)
        command = option(command)
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
@click.option(
    "--agent",
    "with_agent",
    is_flag=True,
    default=False,
    help="Also run the registry agent (Consul-compatible HTTP API) in this member.",
)
@click.option(
    "--agent-http-addr",
    default="127.0.0.1:8500",
    show_default=True,
    help="Where the embedded agent's HTTP API listens (with --agent).",
)
@_etcd_flag_options
def serve(config_file: str | None, with_agent: bool, agent_http_addr: str, **given: Any) -> None:
    """Run one syndic member (etcd-compatible flags, variables and config file)."""
    from syndic.server.app import run

    config = build_config(config_file, given)
    on_ready = _agent_hook(config, agent_http_addr) if with_agent else None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _observability_setup("INFO")
    click.echo(
        f"syndic member {config.name!r}: client {','.join(config.advertise_client_urls)}, "
        f"peer {','.join(config.initial_advertise_peer_urls)}, data {config.data_path}"
    )
    from syndic.server.bootstrap import MemberIdentityError
    from syndic.server.tls import TlsConfigError

    try:
        run(config, on_ready)
    except (MemberIdentityError, TlsConfigError) as exc:
        # Refused before serving, with nothing changed: say why, as etcd does.
        raise click.ClickException(str(exc)) from exc


def _observability_setup(level: str) -> None:
    """JSON log lines with SYNDIC_LOG_FORMAT=json; OTLP trace export when OTEL_* asks."""
    import os

    from syndic.observability.logs import install_json_logging
    from syndic.observability.tracing import configure_tracing

    if os.environ.get("SYNDIC_LOG_FORMAT", "").lower() == "json":
        install_json_logging(level)
    configure_tracing("syndic")


DEV_CLIENT_URL = "http://127.0.0.1:2379"
DEV_PEER_URL = "http://127.0.0.1:2380"
DEV_ADMIN_URL = "http://127.0.0.1:2381"
DEV_AGENT_ADDR = "127.0.0.1:8500"


def _agent_hook(config: ServerConfig, http_addr: str) -> Any:
    """Start the registry agent in the member's loop once the member serves."""
    from syndic.agent.config import AgentConfig
    from syndic.cli.agent import embed_agent
    from syndic.registry.model import ModelError

    try:
        agent_config = AgentConfig(node_name=config.name, http_addr=http_addr)
    except ModelError as exc:
        raise click.UsageError(f"--agent: {exc}") from exc
    host, port = parse_client_endpoint(config.listen_client_urls[0])
    return embed_agent(f"{host}:{port}", agent_config)


def parse_client_endpoint(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), parts.port or 2379


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
@click.option(
    "--agent-http-addr",
    default=DEV_AGENT_ADDR,
    show_default=True,
    help="The registry agent's Consul-compatible HTTP API.",
)
def dev(
    data_dir: str | None, client_url: str, peer_url: str, admin_url: str, agent_http_addr: str
) -> None:
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

    start_agent = _agent_hook(config, agent_http_addr)

    def ready(server: object) -> None:
        start_agent(server)
        click.echo(
            "syndic dev: a single-member cluster is ready\n"
            f"  etcd v3 gRPC API  {client_url}\n"
            f"  HTTP admin        {admin_url}/health  {admin_url}/metrics  "
            f"{admin_url}/debug/status\n"
            f"  console           {admin_url}/ui\n"
            f"  Consul HTTP API   http://{agent_http_addr}/v1/catalog/services  "
            f"/v1/openapi.json\n"
            f"  data directory    {directory}\n"
            "try:\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} put greeting hello\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} get greeting\n"
            f"  ETCDCTL_API=3 etcdctl --endpoints={endpoint} watch --prefix ''\n"
            f"  curl {admin_url}/health\n"
            f'  curl -X PUT -d \'{{"Name": "web", "Port": 80}}\' '
            f"http://{agent_http_addr}/v1/agent/service/register\n"
            f"  curl http://{agent_http_addr}/v1/health/service/web\n"
            "Ctrl-C stops it."
        )

    logging.basicConfig(level=logging.WARNING)
    _observability_setup("WARNING")
    try:
        run(config, ready)
    except (OSError, RuntimeError) as exc:  # grpc reports a busy port as RuntimeError
        raise click.ClickException(
            f"cannot listen: {exc} (is another etcd or syndic running? "
            "pick other ports with --client-url/--peer-url/--admin-url)"
        ) from exc
