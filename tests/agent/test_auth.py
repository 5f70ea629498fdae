"""X-Consul-Token mapped to syndic auth: users, roles and key permissions apply to /v1/kv."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from syndic.agent.agent import Agent
from syndic.agent.auth import TokenAuth
from syndic.agent.config import AgentConfig
from syndic.agent.http import build_http_app, start_http
from syndic.client import Client
from tests.server.cluster_util import free_port
from tests.server.processes import NEEDS_ETCDCTL, etcdctl
from tests.stores import start_single, wait_ready

pytestmark = [NEEDS_ETCDCTL]

SETUP = [
    ["user", "add", "root:rootpw"],
    ["role", "add", "root"],
    ["user", "grant-role", "root", "root"],
    ["role", "add", "team"],
    ["role", "grant-permission", "team", "readwrite", "team/", "--prefix"],
    ["user", "add", "alice:alicepw"],
    ["user", "grant-role", "alice", "team"],
    ["auth", "enable"],
]


@pytest.fixture
async def auth_agent(tmp_path: Path) -> AsyncIterator[str]:
    store = start_single("syndic", tmp_path / "store")
    try:
        await asyncio.to_thread(wait_ready, store.endpoints)
        for args in SETUP:
            out = await asyncio.to_thread(etcdctl, store.endpoints[0], *args)
            assert out.returncode == 0, (args, out.stderr)
        async with Client(store.endpoints, username="root", password="rootpw") as client:
            agent = Agent(client, AgentConfig(node_name="n1"))
            await agent.start()
            port = free_port()
            app = build_http_app(agent, token_auth=TokenAuth(store.endpoints))
            runner = await start_http(app, "127.0.0.1", port)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()
                await agent.stop()
    finally:
        store.stop()


async def test_tokens_map_to_syndic_users(auth_agent: str) -> None:
    alice = {"X-Consul-Token": "alice:alicepw"}
    root = {"X-Consul-Token": "root:rootpw"}
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{auth_agent}/v1/catalog/services")
        assert r.status == 403 and "token" in await r.text()
        r = await http.get(
            f"{auth_agent}/v1/catalog/services", headers={"X-Consul-Token": "alice:wrong"}
        )
        assert r.status == 403 and await r.text() == "ACL not found"
        r = await http.get(f"{auth_agent}/v1/catalog/services", headers=alice)
        assert r.status == 200
        r = await http.put(f"{auth_agent}/v1/kv/team/a", data=b"1", headers=alice)
        assert r.status == 200 and await r.json() is True
        r = await http.get(f"{auth_agent}/v1/kv/team/a?raw", headers=alice)
        assert await r.read() == b"1"
        r = await http.put(f"{auth_agent}/v1/kv/secret", data=b"1", headers=alice)
        assert r.status == 403
        r = await http.put(f"{auth_agent}/v1/kv/secret?token=root:rootpw", data=b"s")
        assert r.status == 200
        r = await http.get(f"{auth_agent}/v1/kv/secret", headers=alice)
        assert r.status == 403
        r = await http.get(f"{auth_agent}/v1/kv/secret?raw", headers=root)
        assert await r.read() == b"s"
