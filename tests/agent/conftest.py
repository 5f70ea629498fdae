"""An agent with its HTTP API on a free loopback port, over the shared stores.

Each test gets its own agent and its own registry key prefix, so tests share
one store member per session without seeing each other's services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syndic.agent.agent import Agent
from syndic.agent.config import AgentConfig
from syndic.agent.http import build_http_app, start_http
from syndic.client import Client
from tests.server.cluster_util import free_port
from tests.stores import Store, key_prefix, store, store_kind  # noqa: F401


@dataclass
class AgentHandle:
    agent: Agent
    client: Client
    url: str
    port: int
    prefix: bytes


@pytest.fixture
async def agent_http(store: Store, key_prefix: bytes) -> AsyncIterator[AgentHandle]:  # noqa: F811
    client = Client(store.endpoints, timeout_s=10.0)
    config = AgentConfig(
        node_name="node-1",
        key_prefix=key_prefix.decode() + "registry/",
        ttl_tick_ms=50.0,
        anti_entropy_interval_ms=500.0,
        anti_entropy_retry_ms=100.0,
    )
    agent = Agent(client, config)
    await agent.start()
    app = build_http_app(agent)
    port = free_port()
    runner = await start_http(app, "127.0.0.1", port)
    try:
        yield AgentHandle(agent, client, f"http://127.0.0.1:{port}", port, key_prefix)
    finally:
        await runner.cleanup()
        await agent.stop()
        await client.close()


#: Agent test files whose etcd variant runs by default: KV, sessions and locks
#: lean on the store's transactions and leases. The agent's other behaviour
#: reads the store only through the registry layer, which tests/registry runs
#: on both stores, so their etcd variants run with the slow ones.
ETCD_BY_DEFAULT = {"test_py_consul.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        callspec = getattr(item, "callspec", None)
        if (
            path.parent == here
            and path.name not in ETCD_BY_DEFAULT
            and callspec is not None
            and callspec.params.get("store") == "etcd"
        ):
            item.add_marker(pytest.mark.slow)
