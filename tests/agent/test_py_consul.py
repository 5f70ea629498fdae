"""py-consul, a real Consul client, against the agent: services, health, KV, sessions, locks.

py-consul's client is synchronous (requests), so its calls run in a thread
while the agent serves in the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import consul
import pytest

from syndic.registry.model import Instance
from syndic.registry.store import RegistryStore
from tests.agent.conftest import AgentHandle

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def until(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await call(fn)
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met; last value {value!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
def c(agent_http: AgentHandle) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent_http.port)


async def test_register_ttl_health_deregister(c: consul.Consul, agent_http: AgentHandle) -> None:
    await call(
        c.agent.service.register,
        "web",
        service_id="web-1",
        address="10.0.0.1",
        port=8080,
        tags=["v1", "blue"],
        meta={"team": "core"},
        check=consul.Check.ttl("10s"),
    )
    services = await call(c.agent.services)
    assert services["web-1"]["Service"] == "web" and services["web-1"]["Port"] == 8080
    _, nodes = await until(lambda: c.health.service("web"), lambda r: len(r[1]) == 1)
    assert nodes[0]["Checks"][0]["Status"] == "critical"
    _, passing = await call(c.health.service, "web", passing=True)
    assert passing == []

    await call(c.agent.check.ttl_pass, "service:web-1", "all good")
    _, passing = await until(lambda: c.health.service("web", passing=True), lambda r: r[1])
    entry = passing[0]
    assert entry["Service"]["Tags"] == ["v1", "blue"]
    assert entry["Service"]["Meta"] == {"team": "core"}
    assert entry["Checks"][0]["Output"] == "all good"
    assert entry["Node"]["Node"] == "node-1"

    _, by_tag = await call(c.health.service, "web", tag="blue")
    assert len(by_tag) == 1
    _, none = await call(c.health.service, "web", tag="green")
    assert none == []
    _, catalog = await call(c.catalog.services)
    assert catalog == {"web": ["v1", "blue"]}
    _, instances = await call(c.catalog.service, "web")
    assert [i["ServiceID"] for i in instances] == ["web-1"]
    assert "web-1" in str(await call(c.agent.checks))

    await call(c.agent.check.ttl_warn, "service:web-1", "slow")
    _, warning = await until(lambda: c.health.state("warning"), lambda r: r[1])
    assert warning[0]["CheckID"] == "service:web-1"

    await call(c.agent.service.maintenance, "web-1", "true", "upgrade")
    _, checks = await until(lambda: c.health.checks("web"), lambda r: len(r[1]) == 2)
    assert {ch["CheckID"] for ch in checks} == {"service:web-1", "_service_maintenance:web-1"}
    await call(c.agent.service.maintenance, "web-1", "false")

    await call(c.agent.service.deregister, "web-1")
    await until(lambda: c.health.service("web"), lambda r: r[1] == [])
    assert await call(c.agent.services) == {}


async def test_blocking_query_wakes_on_change(c: consul.Consul, agent_http: AgentHandle) -> None:
    await call(c.agent.service.register, "api", service_id="api-1", port=1)
    index, _ = await until(lambda: c.health.service("api"), lambda r: r[1])
    waiter = asyncio.ensure_future(call(c.health.service, "api", index=index, wait="30s"))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await call(c.agent.service.register, "api", service_id="api-2", port=2)
    new_index, nodes = await asyncio.wait_for(waiter, 10)
    assert int(new_index) > int(index)
    assert sorted(n["Service"]["ID"] for n in nodes) == ["api-1", "api-2"]


async def test_kv(c: consul.Consul, agent_http: AgentHandle) -> None:
    base = agent_http.prefix.decode() + "kv/"
    assert await call(c.kv.put, base + "a", "1")
    assert await call(c.kv.put, base + "b/c", "2", flags=42)
    index, item = await call(c.kv.get, base + "a")
    assert item["Value"] == b"1" and item["Flags"] == 0 and int(index) >= item["ModifyIndex"]
    _, item = await call(c.kv.get, base + "b/c")
    assert item["Value"] == b"2" and item["Flags"] == 42
    _, missing = await call(c.kv.get, base + "nope")
    assert missing is None
    _, items = await call(c.kv.get, base, recurse=True)
    assert [i["Key"] for i in items] == [base + "a", base + "b/c"]
    _, keys = await call(c.kv.get, base, keys=True, separator="/")
    assert keys == [base + "a", base + "b/"]
    # Check-and-set: a stale ModifyIndex loses, the current one wins; cas=0 creates only.
    _, item = await call(c.kv.get, base + "a")
    assert not await call(c.kv.put, base + "a", "x", cas=item["ModifyIndex"] - 1)
    assert await call(c.kv.put, base + "a", "x", cas=item["ModifyIndex"])
    assert not await call(c.kv.put, base + "a", "y", cas=0)
    assert await call(c.kv.put, base + "new", "y", cas=0)
    assert await call(c.kv.delete, base + "b", recurse=True)
    _, keys = await call(c.kv.get, base, keys=True)
    assert keys == [base + "a", base + "new"]
    # A blocking read wakes on a write to the key.
    index, _ = await call(c.kv.get, base + "a")
    waiter = asyncio.ensure_future(call(c.kv.get, base + "a", index=index, wait="30s"))
    await asyncio.sleep(0.2)
    await call(c.kv.put, base + "a", "z")
    new_index, item = await asyncio.wait_for(waiter, 10)
    assert item["Value"] == b"z" and int(new_index) > int(index)


async def test_sessions_and_locks(c: consul.Consul, agent_http: AgentHandle) -> None:
    key = agent_http.prefix.decode() + "locks/leader"
    s1 = await call(c.session.create, name="one", ttl=30)
    s2 = await call(c.session.create, name="two", ttl=30)
    assert await call(c.kv.put, key, "me", acquire=s1)
    assert not await call(c.kv.put, key, "you", acquire=s2)  # held by s1
    _, item = await call(c.kv.get, key)
    assert item["Session"] == s1 and item["LockIndex"] == 1 and item["Value"] == b"me"
    assert not await call(c.kv.put, key, "x", release=s2)  # s2 does not hold it
    assert await call(c.kv.put, key, "free", release=s1)
    _, item = await call(c.kv.get, key)
    assert "Session" not in item
    assert await call(c.kv.put, key, "you", acquire=s2)
    _, item = await call(c.kv.get, key)
    assert item["Session"] == s2 and item["LockIndex"] == 2
    # Destroying the holder releases the lock (behavior "release"): the value stays.
    _, info = await call(c.session.info, s2)
    assert info["Name"] == "two" and info["Behavior"] == "release" and info["TTL"] == "30s"
    assert await call(c.session.renew, s2)
    assert await call(c.session.destroy, s2)
    _, item = await call(c.kv.get, key)
    assert "Session" not in item and item["Value"] == b"you"
    _, sessions = await call(c.session.list)
    assert [s["ID"] for s in sessions] == [s1]
    # Behavior "delete": the held key goes with the session.
    s3 = await call(c.session.create, behavior="delete", ttl=30)
    assert await call(c.kv.put, key + "-eph", "tmp", acquire=s3)
    await call(c.session.destroy, s3)
    _, gone = await call(c.kv.get, key + "-eph")
    assert gone is None
    with pytest.raises(consul.ConsulException):
        await call(c.kv.put, key, "x", acquire="0b6f2d6b-0000-0000-0000-000000000000")


async def test_catalog_nodes_datacenters_and_status(
    c: consul.Consul, agent_http: AgentHandle
) -> None:
    await call(c.agent.service.register, "db", service_id="db-1", port=5432)
    _, nodes = await call(c.catalog.nodes)
    assert [n["Node"] for n in nodes] == ["node-1"]
    assert await call(c.catalog.datacenters) == ["dc1"]
    leader = await call(c.status.leader)
    peers = await call(c.status.peers)
    assert leader and leader in peers
    _, catalog = await call(c.catalog.service, "db")
    _, health = await call(c.health.service, "db")
    # Catalog and health list instances in the same order.
    assert [e["ServiceID"] for e in catalog] == [e["Service"]["ID"] for e in health]


async def test_health_state_blocking_query_wakes_when_a_service_goes(
    c: consul.Consul, agent_http: AgentHandle
) -> None:
    # The newest change is the service that then goes: its index must still
    # count, or the query sleeps through the deregistration and its index
    # goes backwards.
    for name, port in (("db", 1), ("cache", 2)):
        await call(
            c.agent.service.register,
            name,
            service_id=f"{name}-1",
            port=port,
            check=consul.Check.ttl("30s"),
        )
    index, _ = await until(lambda: c.health.state("any"), lambda r: len(r[1]) == 2)
    waiter = asyncio.ensure_future(call(c.health.state, "any", index=index, wait="30s"))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await call(c.agent.service.deregister, "cache-1")
    new_index, checks = await asyncio.wait_for(waiter, 10)
    assert int(new_index) > int(index)
    assert [check["ServiceID"] for check in checks] == ["db-1"]
    # A check's change moves the index too.
    waiter = asyncio.ensure_future(call(c.health.state, "any", index=new_index, wait="30s"))
    await asyncio.sleep(0.3)
    await call(c.agent.check.ttl_pass, "service:db-1")
    newer_index, checks = await asyncio.wait_for(waiter, 10)
    assert int(newer_index) > int(new_index)
    assert [check["Status"] for check in checks] == ["passing"]


async def test_catalog_nodes_blocking_query_wakes_on_an_instance_on_a_new_node(
    c: consul.Consul, agent_http: AgentHandle
) -> None:
    # An application registering through syndic.registry writes no node
    # record; its instance's node is in the list all the same, so the query
    # must wake on it.
    index, nodes = await until(c.catalog.nodes, lambda r: r[1])  # the agent's own node
    assert "app-host" not in [n["Node"] for n in nodes]
    waiter = asyncio.ensure_future(call(c.catalog.nodes, index=index, wait="30s"))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    store = RegistryStore(agent_http.client, agent_http.agent.store.layout)
    await store.register(Instance("default", "worker", "w-1", port=9, node="app-host"))
    new_index, nodes = await asyncio.wait_for(waiter, 10)
    assert int(new_index) > int(index)
    assert "app-host" in [n["Node"] for n in nodes]
