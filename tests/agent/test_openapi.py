"""schemathesis against the live API: every documented operation, a bounded run.

The agent serves from a background thread's event loop so that
schemathesis's synchronous requests can reach it. Each operation gets a few
generated examples (positive: valid per the document); answers must match
the documented statuses, content types and schemas, and never be a 5xx
(the agent's documented 500s, such as ``check/pass`` on a non-TTL check, are
the exception schemathesis allows for).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from syndic.agent.agent import Agent
from syndic.agent.config import AgentConfig
from syndic.agent.http import build_http_app, start_http
from syndic.agent.openapi import build_openapi
from syndic.client import Client
from tests.server.cluster_util import free_port
from tests.stores import Store

#: Examples per operation: enough to cover each parameter's enum and bounds
#: once or twice, small enough to keep the file's run under ~20 s here.
EXAMPLES_PER_OPERATION = 3


class AgentThread:
    def __init__(self, endpoints: list[str], prefix: str) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(self._main(endpoints, prefix),),
            daemon=True,
        )

    async def _main(self, endpoints: list[str], prefix: str) -> None:
        self._stop = asyncio.Event()
        try:
            async with Client(endpoints, timeout_s=10.0) as client:
                agent = Agent(client, AgentConfig(node_name="node-1", key_prefix=prefix))
                await agent.start()
                runner = await start_http(build_http_app(agent), "127.0.0.1", self.port)
                self.ready.set()
                await self._stop.wait()
                await runner.cleanup()
                await agent.stop()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(60), "agent did not start"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def agent_url(store: Store) -> Iterator[str]:
    thread = AgentThread(store.endpoints, "t/openapi/registry/")
    thread.start()
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.stop()


# The document is the same over either store: one run, on syndic.
@pytest.mark.parametrize("store", ["syndic"], indirect=True)
def test_api_conforms_to_its_document(agent_url: str) -> None:
    doc = requests.get(f"{agent_url}/v1/openapi.json", timeout=10).json()
    assert doc == build_openapi()
    schema = schemathesis.openapi.from_url(f"{agent_url}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    session = requests.Session()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            if case.query and "index" in case.query:
                # A blocking query without ?wait waits Consul's default 5 minutes.
                case.query.setdefault("wait", "10ms")
            case.call_and_validate(session=session)

        check()
