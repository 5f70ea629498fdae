"""Blocking queries at fan-out: one change answers every watcher of its service (more
than one wake batch of them) with the change, shares one rendered answer, and leaves
other services' watchers waiting; watchers that time out leave nothing behind."""

from __future__ import annotations

import asyncio

import aiohttp

from syndic.agent.catalog import WAKE_BATCH_MAX
from syndic.registry.model import CheckDefinition, CheckKind, HealthStatus, Instance
from tests.agent.conftest import AgentHandle


def instance(name: str) -> Instance:
    # Check ids are unique per agent, as in Consul.
    ttl = CheckDefinition(
        f"ttl-{name}", CheckKind.TTL, ttl_ms=600_000, initial_status=HealthStatus.PASSING
    )
    return Instance("default", name, f"{name}-1", "10.0.0.1", 80, checks=(ttl,))


#: Watchers of the changed service: three wake batches and a part.
WATCHERS = 3 * WAKE_BATCH_MAX + 7


async def index_of(http: aiohttp.ClientSession, url: str) -> str:
    for _ in range(200):
        r = await http.get(url)
        if await r.json():
            return r.headers["X-Consul-Index"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never listed an instance")


async def until(condition: object, timeout_s: float = 20.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_one_change_answers_all_its_watchers_and_only_them(agent_http: AgentHandle) -> None:
    agent = agent_http.agent
    for name in ("hot", "cold"):
        await agent.register(instance(name))
    hot = f"{agent_http.url}/v1/health/service/hot"
    cold = f"{agent_http.url}/v1/health/service/cold"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        hot_index, cold_index = await index_of(http, hot), await index_of(http, cold)

        async def watch(url: str, index: str, wait: str) -> tuple[str, list[dict[str, object]]]:
            r = await http.get(url, params={"index": index, "wait": wait})
            return r.headers["X-Consul-Index"], await r.json()

        hot_watchers = [
            asyncio.ensure_future(watch(hot, hot_index, "60s")) for _ in range(WATCHERS)
        ]
        cold_watchers = [asyncio.ensure_future(watch(cold, cold_index, "60s")) for _ in range(5)]
        catalog = agent.catalog
        await until(
            lambda: (
                catalog.waiting(("default", "hot")) == WATCHERS
                and catalog.waiting(("default", "cold")) == 5
            )
        )
        wakeups = catalog.wakeups_total
        await agent.update_ttl("ttl-hot", HealthStatus.WARNING, "changed")

        answers = await asyncio.wait_for(asyncio.gather(*hot_watchers), 30)
        assert {index for index, _doc in answers} != {hot_index}
        assert len({index for index, _doc in answers}) == 1
        for _index, doc in answers:
            assert [c["Status"] for c in doc[0]["Checks"]] == ["warning"]  # type: ignore[index]
        # The hot service's key woke once; the cold watchers are still waiting.
        assert catalog.wakeups_total - wakeups == 1
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in cold_watchers)
        assert catalog.waiting(("default", "cold")) == 5
        for w in cold_watchers:
            w.cancel()
        await asyncio.gather(*cold_watchers, return_exceptions=True)


async def test_watchers_that_time_out_leave_no_waiter(agent_http: AgentHandle) -> None:
    agent = agent_http.agent
    await agent.register(instance("idle"))
    url = f"{agent_http.url}/v1/health/service/idle"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        index = await index_of(http, url)

        async def watch() -> str:
            r = await http.get(url, params={"index": index, "wait": "300ms"})
            return r.headers["X-Consul-Index"]

        answers = await asyncio.wait_for(asyncio.gather(*(watch() for _ in range(50))), 30)
    # Consul's rule: a query that times out answers with the same index.
    assert set(answers) == {index}
    assert agent.catalog.waiting(("default", "idle")) == 0
