"""The exact requests Prometheus's consul_sd_configs sends, answered as Consul answers them.

Prometheus (discovery/consul) first reads ``/v1/agent/self`` for
``Config.Datacenter``, then long-polls ``/v1/catalog/services`` and, per
service, ``/v1/health/service/<name>``, each with ``index``,
``wait=120000ms`` and ``stale`` (the Go client sends ``stale=``), plus
``dc``. It treats ``X-Consul-Index`` as the next ``index``.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.agent.conftest import AgentHandle

PROM_QUERY = {"wait": "120000ms", "stale": "", "dc": "dc1"}


async def register(http: aiohttp.ClientSession, url: str, name: str, sid: str) -> None:
    r = await http.put(
        f"{url}/v1/agent/service/register",
        json={"Name": name, "ID": sid, "Address": "10.1.1.1", "Port": 9100, "Tags": ["prom"]},
    )
    assert r.status == 200, await r.text()


async def test_prometheus_consul_sd_conversation(agent_http: AgentHandle) -> None:
    url = agent_http.url
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{url}/v1/agent/self")
        assert (await r.json())["Config"]["Datacenter"] == "dc1"

        r = await http.get(f"{url}/v1/catalog/services", params={**PROM_QUERY, "index": "0"})
        assert r.status == 200 and await r.json() == {}
        assert r.headers["X-Consul-KnownLeader"] == "true"
        assert "X-Consul-LastContact" in r.headers
        services_index = int(r.headers["X-Consul-Index"])
        assert services_index >= 1

        # The long poll returns when a service appears, with a larger index.
        poll = asyncio.ensure_future(
            http.get(
                f"{url}/v1/catalog/services",
                params={**PROM_QUERY, "index": str(services_index)},
            )
        )
        await asyncio.sleep(0.3)
        assert not poll.done()
        await register(http, url, "node-exporter", "ne-1")
        r = await asyncio.wait_for(poll, 10)
        assert await r.json() == {"node-exporter": ["prom"]}
        assert int(r.headers["X-Consul-Index"]) > services_index

        r = await http.get(
            f"{url}/v1/health/service/node-exporter", params={**PROM_QUERY, "index": "0"}
        )
        entries = await r.json()
        health_index = int(r.headers["X-Consul-Index"])
        node, service = entries[0]["Node"], entries[0]["Service"]
        # The fields Prometheus turns into __meta_consul_* labels.
        assert node["Node"] == "node-1" and node["Datacenter"] == "dc1"
        assert node["Address"] and isinstance(node["TaggedAddresses"], dict)
        assert isinstance(node["Meta"], dict)
        assert (service["ID"], service["Service"], service["Address"], service["Port"]) == (
            "ne-1",
            "node-exporter",
            "10.1.1.1",
            9100,
        )
        assert service["Tags"] == ["prom"] and isinstance(service["Meta"], dict)

        # A change to another service does not wake this service's long poll.
        poll = asyncio.ensure_future(
            http.get(
                f"{url}/v1/health/service/node-exporter",
                params={**PROM_QUERY, "index": str(health_index)},
            )
        )
        await register(http, url, "other", "o-1")
        await asyncio.sleep(1.0)
        assert not poll.done()
        r = await http.put(f"{url}/v1/agent/service/deregister/ne-1")
        assert r.status == 200
        r = await asyncio.wait_for(poll, 10)
        assert await r.json() == []
        assert int(r.headers["X-Consul-Index"]) > health_index


async def test_index_never_zero_or_backwards(agent_http: AgentHandle) -> None:
    url = agent_http.url
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{url}/v1/health/service/unknown")
        first = int(r.headers["X-Consul-Index"])
        assert first >= 1 and await r.json() == []
        await register(http, url, "svc", "s-1")
        r = await http.get(f"{url}/v1/health/service/svc", params={"index": "0"})
        registered = int(r.headers["X-Consul-Index"])
        await http.put(f"{url}/v1/agent/service/deregister/s-1")
        r = await http.get(
            f"{url}/v1/health/service/svc", params={"index": str(registered), "wait": "10s"}
        )
        assert int(r.headers["X-Consul-Index"]) > registered
        # A 404 carries the index header too.
        r = await http.get(f"{url}/v1/kv/{agent_http.prefix.decode()}missing")
        assert r.status == 404 and int(r.headers["X-Consul-Index"]) >= 1


async def test_wait_times_out_with_the_same_index(agent_http: AgentHandle) -> None:
    url = agent_http.url
    async with aiohttp.ClientSession() as http:
        await register(http, url, "quiet", "q-1")
        r = await http.get(f"{url}/v1/health/service/quiet")
        index = r.headers["X-Consul-Index"]
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = await http.get(
            f"{url}/v1/health/service/quiet", params={"index": index, "wait": "400ms"}
        )
        elapsed = loop.time() - start
        assert r.headers["X-Consul-Index"] == index
        assert 0.35 <= elapsed < 5.0  # wait plus at most wait/16 of jitter, on a busy machine


async def test_consistent_read_sees_a_write_made_elsewhere(agent_http: AgentHandle) -> None:
    """?consistent waits until the catalog has applied the store's current revision, so a
    registration written straight to the store (another agent's) is in the answer."""
    from syndic.registry.model import Instance

    store = agent_http.agent.store
    for i in range(5):
        await store.register(Instance("default", "elsewhere", f"e{i}", "10.0.0.9", 80 + i))
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"{agent_http.url}/v1/catalog/service/elsewhere?consistent")
            assert r.headers["X-Consul-Effective-Consistency"] == "consistent"
            assert len(await r.json()) == i + 1
