"""X-Consul-Token mapped to syndic auth: users, roles and key permissions apply to /v1/kv."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from syndic.agent.agent import Agent
from syndic.agent.auth import TokenAuth
from syndic.agent.config import AgentConfig
from syndic.agent.consul_kv import ConsulKv
from syndic.agent.http import build_http_app, start_http
from syndic.client import Client, PermissionDeniedError
from syndic.registry.keys import KeyLayout
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
async def auth_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[str]]:
    """A member (syndic unless parametrized) with auth on: root, and alice with
    readwrite on ``team/``."""
    store = start_single(getattr(request, "param", "syndic"), tmp_path / "store")
    try:
        await asyncio.to_thread(wait_ready, store.endpoints)
        for args in SETUP:
            out = await asyncio.to_thread(etcdctl, store.endpoints[0], *args)
            assert out.returncode == 0, (args, out.stderr)
        yield store.endpoints
    finally:
        store.stop()


@pytest.fixture
async def auth_agent(auth_store: list[str]) -> AsyncIterator[str]:
    async with Client(auth_store, username="root", password="rootpw") as client:
        agent = Agent(client, AgentConfig(node_name="n1"))
        await agent.start()
        port = free_port()
        app = build_http_app(agent, token_auth=TokenAuth(auth_store))
        runner = await start_http(app, "127.0.0.1", port)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
            await agent.stop()


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


class RevokedAfterFirstTxn:
    """A user's client whose role loses its ``team/`` permission right after the user's
    first transaction is answered: the window between a permission check and a write."""

    def __init__(self, client: Client, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self.revoked = False

    async def txn(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.client.txn(*args, **kwargs)
        if not self.revoked:
            self.revoked = True
            await permission(self.endpoint, "revoke-permission")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def permission(endpoint: str, verb: str) -> None:
    args = ["--user", "root:rootpw", "role", verb, "team"]
    args += ["readwrite", "team/", "--prefix"] if verb == "grant-permission" else ["team/"]
    args += ["--prefix"] if verb == "revoke-permission" else []
    out = await asyncio.to_thread(etcdctl, endpoint, *args)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "auth_store", ["syndic", pytest.param("etcd", marks=pytest.mark.etcd)], indirect=True
)
async def test_a_permission_revoked_after_the_check_stops_the_write(
    auth_store: list[str],
) -> None:
    """The user's write is itself the permission check: a revocation landing after any
    earlier check still refuses it, and the agent leaves no value, flags or lock behind."""
    layout = KeyLayout("syndic/registry/")
    async with (
        Client(auth_store, username="root", password="rootpw") as root,
        Client(auth_store, username="alice", password="alicepw") as alice,
    ):
        agent_kv = ConsulKv(root, layout, "n1")
        session = await agent_kv.create_session(
            name="s", behavior="release", ttl_s=30, lock_delay_ms=0, node="n1"
        )
        await root.put(b"team/kept", b"v0")

        def as_alice() -> ConsulKv:
            racing = RevokedAfterFirstTxn(alice, auth_store[0])
            return agent_kv.as_user(cast(Client, racing))

        writes: list[tuple[str, Callable[[ConsulKv], Awaitable[bool]]]] = [
            ("put", lambda kv: put(kv, b"team/a", flags=None, acquire=None)),
            ("put with flags", lambda kv: put(kv, b"team/b", flags=7, acquire=None)),
            ("acquire", lambda kv: put(kv, b"team/c", flags=3, acquire=session.session_id)),
            ("delete", lambda kv: kv.delete(b"team/kept", recurse=False, cas=None)),
        ]
        for what, write in writes:
            with pytest.raises(PermissionDeniedError):
                await write(as_alice())
            await permission(auth_store[0], "grant-permission")
            got = await root.get(b"team/", prefix=True)
            assert [(kv.key, kv.value) for kv in got.kvs] == [(b"team/kept", b"v0")], what
            meta = await root.get(layout.kvmeta(b"team/"), prefix=True)
            locks = await root.get(layout.lock(b"team/"), prefix=True)
            assert meta.kvs == [] and locks.kvs == [], what

        # With the permission in place the same writes go through, flags and lock included.
        kv = agent_kv.as_user(alice)
        assert await put(kv, b"team/c", flags=3, acquire=session.session_id)
        entries, _revision = await kv.read(b"team/c", recurse=False, limit=0)
        assert [(e.value, e.flags, e.lock_index, e.session) for e in entries] == [
            (b"v", 3, 1, session.session_id)
        ]
        assert await kv.delete(b"team/", recurse=True, cas=None)
        meta = await root.get(layout.kvmeta(b"team/"), prefix=True)
        assert meta.kvs == []


async def put(kv: ConsulKv, key: bytes, *, flags: int | None, acquire: str | None) -> bool:
    return await kv.put(key, b"v", flags=flags, cas=None, acquire=acquire, release=None)
