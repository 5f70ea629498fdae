"""The store layer and the SDK on both stores: a syndic member and Debian's etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from syndic.client import Client
from syndic.registry.calls import ServiceCaller
from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    CheckDefinition,
    CheckKind,
    CheckState,
    HealthStatus,
    Instance,
    ServiceSettings,
)
from syndic.registry.sdk import Registry
from syndic.registry.store import RegistryStore
from syndic.registry.view import RegistryView
from syndic.traffic.balancer import SmoothWeightedRoundRobin
from syndic.traffic.outlier import OutlierConfig, OutlierDetector
from tests.server.cluster_util import free_port
from tests.stores import Store

TTL = CheckDefinition("ttl", CheckKind.TTL, ttl_ms=60_000, initial_status=HealthStatus.PASSING)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    async with Client(store.endpoints, timeout_s=10.0) as c:
        yield c


@pytest.fixture
def layout(key_prefix: bytes) -> KeyLayout:
    return KeyLayout(key_prefix.decode())


def inst(iid: str, port: int = 80, **kw: object) -> Instance:
    fields: dict[str, object] = {"checks": (TTL,), **kw}
    return Instance("default", "web", iid, "127.0.0.1", port, **fields)  # type: ignore[arg-type]


async def test_store_round_trip_and_view(client: Client, layout: KeyLayout) -> None:
    store = RegistryStore(client, layout)
    await store.register(inst("w1"))
    await store.register(inst("w2", tags=("canary",)))
    assert await store.set_check_state(
        "default", "web", "w2", "ttl", CheckState(HealthStatus.CRITICAL, "down")
    )
    assert await store.set_maintenance("default", "web", "w1", True, "upgrade")
    await store.put_settings("default", "web", ServiceSettings(0.5))
    changes, revision = await store.read_all()
    view = RegistryView(layout)
    view.load(changes, revision)
    entry = view.service("default", "web")
    assert entry is not None and sorted(entry.instances) == ["w1", "w2"]
    assert entry.status_of("w1") is HealthStatus.CRITICAL  # maintenance
    assert entry.status_of("w2") is HealthStatus.CRITICAL
    assert entry.settings.protect_threshold == 0.5
    assert entry.index == revision
    # Deregistration removes the instance and its check states at one revision;
    # a late check write cannot bring state back.
    assert await store.deregister("default", "web", "w2")
    assert not await store.deregister("default", "web", "w2")
    assert not await store.set_check_state(
        "default", "web", "w2", "ttl", CheckState(HealthStatus.PASSING)
    )
    r = await client.get(layout.instance_checks("default", "web", "w2"), prefix=True)
    assert r.kvs == []


async def test_discovery_follows_health_and_heartbeats(client: Client, layout: KeyLayout) -> None:
    registry = Registry(client, layout=layout)
    balancer = SmoothWeightedRoundRobin()
    outlier = OutlierDetector(config=OutlierConfig(consecutive_errors=2, max_ejection_percent=50))
    r1 = await registry.register(inst("w1", 81, zone="a"), heartbeat_ttl_s=5)
    r2 = await registry.register(inst("w2", 82, zone="b"), heartbeat_ttl_s=5)
    live = await registry.discover("web", balancers=[balancer], outlier=outlier)
    zone_a = await registry.discover("web", zone="a")
    try:
        assert sorted(e.address for e in live.endpoints) == ["127.0.0.1:81", "127.0.0.1:82"]
        assert [e.address for e in zone_a.endpoints] == ["127.0.0.1:81"]
        # Outlier detection works on the discovered endpoints: two errors eject w2.
        w2 = live.endpoints.get("127.0.0.1:82")
        assert w2 is not None
        outlier.report(w2, ok=False)
        outlier.report(w2, ok=False)
        assert [e.address for e in outlier.healthy(list(live.endpoints))] == ["127.0.0.1:81"]
        # w2 turns critical: it leaves the set and the balancer within a watch round trip.
        await registry.store.set_check_state(
            "default", "web", "w2", "ttl", CheckState(HealthStatus.CRITICAL)
        )
        await live.wait_for(lambda s: len(s) == 1, 10)
        assert {balancer.pick().address for _ in range(4)} == {"127.0.0.1:81"}
        # Protect threshold: with half the instances required healthy, both come back.
        await registry.store.put_settings("default", "web", ServiceSettings(0.6))
        await live.wait_for(lambda s: len(s) == 2, 10)
        await registry.store.put_settings("default", "web", ServiceSettings(0.0))
        await live.wait_for(lambda s: len(s) == 1, 10)
        # The heartbeat stops (the process "dies"): the ephemeral instance goes away.
        assert r1.lease is not None
        await client.revoke(r1.lease.id)
        r1._closed = True  # a dead process does not register again
        await live.wait_for(lambda s: len(s) == 0, 10)
    finally:
        await live.close()
        await zone_a.close()
        await r1.close()
        await r2.close()
    changes, _ = await registry.store.read_all()
    assert [c.key for c in changes if b"/inst/" in c.key or b"/check/" in c.key] == []


async def test_lost_lease_registers_again(client: Client, layout: KeyLayout) -> None:
    registry = Registry(client, layout=layout)
    reg = await registry.register(inst("w1"), heartbeat_ttl_s=5)
    live = await registry.discover("web")
    try:
        assert reg.lease is not None
        lost = reg.lease.id
        await client.revoke(lost)  # as if the store had expired it
        # The instance leaves and comes back under a new lease. The moment it
        # is gone can be too short for a watcher to see (the delete and the
        # new put may arrive in one watch response), so what is checked is
        # the second registration and the instance discoverable again.
        for _ in range(400):
            if reg.registrations_total == 2:
                break
            await asyncio.sleep(0.05)
        assert reg.registrations_total == 2
        assert reg.lease is not None and reg.lease.id != lost
        await live.wait_for(lambda s: len(s) == 1, 20)
    finally:
        await live.close()
        await reg.close()


async def test_call_by_name(client: Client, layout: KeyLayout) -> None:
    hits: dict[int, int] = {}
    runners = []
    ports = [free_port(), free_port()]
    for port in ports:

        async def hello(_r: web.Request, port: int = port) -> web.Response:
            hits[port] = hits.get(port, 0) + 1
            return web.Response(text=f"hello from {port}")

        app = web.Application()
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    registry = Registry(client, layout=layout)
    regs = [await registry.register(inst(f"w{p}", p)) for p in ports]
    live = await registry.discover("web")
    caller = ServiceCaller(live, SmoothWeightedRoundRobin())
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                status, body = await caller.aiohttp_request(http, "GET", "/hello")
                assert status == 200 and body.startswith(b"hello from")
        assert hits == {ports[0]: 2, ports[1]: 2}
        import httpx

        from syndic.registry.httpx_transport import ServiceTransport

        async with httpx.AsyncClient(transport=ServiceTransport({"web": caller})) as hx:
            reply = await hx.get("http://web/hello")
            assert reply.status_code == 200 and reply.text.startswith("hello from")
    finally:
        await caller.close()
        await live.close()
        for reg in regs:
            await reg.close()
        for runner in runners:
            await runner.cleanup()
    await asyncio.sleep(0)


async def test_grpc_call_by_name(client: Client, layout: KeyLayout) -> None:
    import grpc

    servers = []
    ports = []
    for name in (b"a", b"b"):
        server = grpc.aio.server()

        async def say(request: bytes, _context: object, name: bytes = name) -> bytes:
            return b"hello " + request + b" from " + name

        handler = grpc.method_handlers_generic_handler(
            "demo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
        )
        server.add_generic_rpc_handlers((handler,))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    registry = Registry(client, layout=layout)
    regs = [await registry.register(inst(f"g{p}", p)) for p in ports]
    live = await registry.discover("web")
    caller = ServiceCaller(live, SmoothWeightedRoundRobin())
    try:
        replies = set()
        for _ in range(4):
            reply = await caller.grpc_call(lambda ch: ch.unary_unary("/demo.Echo/Say")(b"you"))
            replies.add(reply)
        assert replies == {b"hello you from a", b"hello you from b"}
    finally:
        await caller.close()
        await live.close()
        for reg in regs:
            await reg.close()
        for server in servers:
            await server.stop(None)


async def test_reregistration_keeps_statuses_and_replaces_checks(
    client: Client, layout: KeyLayout
) -> None:
    store = RegistryStore(client, layout)
    other = CheckDefinition("other", CheckKind.TTL, ttl_ms=60_000)
    await store.register(inst("w1", checks=(TTL, other)))
    await store.set_check_state("default", "web", "w1", "ttl", CheckState(HealthStatus.WARNING))
    await store.register(inst("w1", checks=(TTL, other)))
    view = RegistryView(layout)
    view.load(*(await store.read_all()))
    entry = view.service("default", "web")
    assert entry is not None
    assert entry.checks[("w1", "ttl")].state.status is HealthStatus.WARNING  # kept
    await store.register(inst("w1", checks=(TTL,)), replace_existing_checks=True)
    view.load(*(await store.read_all()))
    entry = view.service("default", "web")
    assert entry is not None and sorted(c for _i, c in entry.checks) == ["ttl"]
