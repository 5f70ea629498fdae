"""schemathesis against the config routes, mounted in the agent's app: every
documented config operation gets generated requests; answers must match the
documented statuses, content types and schemas, and never be a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from syndic.agent.agent import Agent
from syndic.agent.config import AgentConfig
from syndic.agent.http import build_http_app, start_http
from syndic.client import Client
from syndic.config import crypto
from syndic.config.http_api import ConfigHttpApi
from syndic.config.store import ConfigStore
from tests.server.cluster_util import free_port
from tests.stores import Store

# Enough to hit each parameter's bounds once or twice in a few seconds.
EXAMPLES_PER_OPERATION = 4


class _AppThread:
    """The agent's app with the config API, on its own loop (schemathesis calls are sync)."""

    def __init__(self, endpoints: list[str], prefix: str) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._main(endpoints, prefix),), daemon=True
        )

    async def _main(self, endpoints: list[str], prefix: str) -> None:
        self.stop_event = asyncio.Event()
        async with Client(endpoints, timeout_s=10.0) as client:
            agent = Agent(client, AgentConfig(node_name="n1", key_prefix=prefix + "registry/"))
            await agent.start()
            masters = crypto.MasterKeys([crypto.MasterKey.generate()])
            api = ConfigHttpApi(ConfigStore(client, prefix=prefix + "config/", masters=masters))
            runner = await start_http(
                build_http_app(agent, extra_apis=[api]), "127.0.0.1", self.port
            )
            self.ready.set()
            await self.stop_event.wait()
            await runner.cleanup()
            await agent.stop()


@pytest.fixture(scope="module")
def app_url(store: Store) -> Iterator[str]:
    app = _AppThread(store.endpoints, "t/config-openapi/")
    app.thread.start()
    assert app.ready.wait(60), "app did not start"
    try:
        yield f"http://127.0.0.1:{app.port}"
    finally:
        assert app.stop_event is not None
        app.loop.call_soon_threadsafe(app.stop_event.set)
        app.thread.join(30)


# The document and its handlers are the same over either store: one run, on syndic.
@pytest.mark.parametrize("store", ["syndic"], indirect=True)
def test_config_routes_conform_to_the_document(app_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{app_url}/v1/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    mine = [op for op in operations if op.path.startswith("/v1/config/")]
    assert len(mine) == 10
    session = requests.Session()
    for operation in mine:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            # A schema cannot say "content must parse as its format" or "the
            # version must be the current one": a 400 or 409 for such a valid-looking
            # body is the API working, so only that check is left out.
            case.call_and_validate(session=session, excluded_checks=[positive_data_acceptance])

        check()
