"""``syndic agent``: the registry agent and its Consul-compatible HTTP API.

It connects to a syndic cluster or any etcd through ``--endpoints`` and
serves Consul's HTTP API on ``--http-addr`` (Consul's default
``127.0.0.1:8500``). ``syndic dev`` embeds one on that address, and
``syndic serve --agent`` embeds one in a member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from syndic.agent.config import DEFAULT_HTTP_ADDR, AgentConfig
from syndic.registry.keys import DEFAULT_PREFIX
from syndic.registry.model import ModelError

if TYPE_CHECKING:
    from syndic.client import Client
    from syndic.config.http_api import ConfigHttpApi

log = logging.getLogger(__name__)


async def run_agent(
    endpoints: list[str],
    config: AgentConfig,
    *,
    client_options: dict[str, Any] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run an agent and its HTTP API until cancelled."""
    from syndic.agent.agent import Agent
    from syndic.agent.auth import TokenAuth
    from syndic.agent.http import build_http_app, split_addr, start_http
    from syndic.client import Client

    host, port = split_addr(config.http_addr)
    options = client_options or {}
    client = Client(endpoints, **options)
    agent = Agent(client, config)
    # With store credentials, auth is on: every request needs a user's token.
    token_auth = TokenAuth(endpoints) if options.get("username") else None
    runner = None
    try:
        await agent.start()
        app = build_http_app(agent, extra_apis=[config_http_api(client)], token_auth=token_auth)
        runner = await start_http(app, host, port)
        log.info("agent %s: Consul HTTP API on http://%s:%d", config.node_name, host, port)
        if on_ready is not None:
            on_ready()
        await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await agent.stop()
        await client.close()


def config_http_api(client: Client) -> ConfigHttpApi:
    """The configuration centre's routes, served by the agent (``/v1/config/...``)."""
    from syndic.config import crypto
    from syndic.config.http_api import ConfigHttpApi
    from syndic.config.store import ConfigStore

    return ConfigHttpApi(ConfigStore(client, masters=crypto.masters_from()))


def embed_agent(endpoint: str, config: AgentConfig) -> Callable[[object], None]:
    """An ``on_ready`` hook for a member: starts an agent in the member's event loop."""
    tasks: list[asyncio.Task[None]] = []

    def start(_server: object) -> None:
        task = asyncio.get_running_loop().create_task(run_agent([endpoint], config))
        tasks.append(task)  # keep a reference: the loop only holds tasks weakly

        def report(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("embedded agent stopped: %s", t.exception())

        task.add_done_callback(report)

    return start


@click.command()
@click.option(
    "--endpoints",
    default="127.0.0.1:2379",
    show_default=True,
    help="etcd v3 endpoints of the store (syndic or etcd), comma-separated.",
)
@click.option(
    "--http-addr",
    default=DEFAULT_HTTP_ADDR,
    show_default=True,
    help="Where the Consul-compatible HTTP API listens.",
)
@click.option("--node", "node_name", default=None, help="Node name (default: the host name).")
@click.option("--datacenter", default="dc1", show_default=True)
@click.option("--advertise-address", default="127.0.0.1", show_default=True)
@click.option(
    "--key-prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Where the registry lives in the store.",
)
@click.option(
    "--enable-script-checks",
    is_flag=True,
    default=False,
    help="Allow script checks (they run commands on this host).",
)
@click.option(
    "--user",
    default=None,
    help="The agent's store credentials as user:password; with them every HTTP request "
    "needs X-Consul-Token: user:password of a syndic user.",
)
def agent(
    endpoints: str,
    http_addr: str,
    node_name: str | None,
    datacenter: str,
    advertise_address: str,
    key_prefix: str,
    enable_script_checks: bool,
    user: str | None,
) -> None:
    """Run the registry agent: health checks and the Consul-compatible HTTP API."""
    from syndic.agent.http import split_addr

    try:
        split_addr(http_addr)
        options: dict[str, Any] = {
            "datacenter": datacenter,
            "advertise_address": advertise_address,
            "key_prefix": key_prefix,
            "http_addr": http_addr,
            "enable_script_checks": enable_script_checks,
        }
        if node_name:
            options["node_name"] = node_name
        config = AgentConfig(**options)
    except (ModelError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    client_options: dict[str, Any] = {}
    if user:
        name, _, password = user.partition(":")
        client_options = {"username": name, "password": password}
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        task = asyncio.ensure_future(
            run_agent(
                [e for e in endpoints.split(",") if e],
                config,
                client_options=client_options,
                on_ready=lambda: click.echo(
                    f"syndic agent {config.node_name!r}: Consul HTTP API on http://{http_addr} "
                    f"(store {endpoints})"
                ),
            )
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        # uvloop, as the member runs (syndic.server.app.run).
        import uvloop

        uvloop.run(main())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {http_addr}: {exc}") from exc
