"""The store dies and comes back empty (a replaced or restored member): the agent's
anti-entropy registers its services again, and blocking-query indexes keep growing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from syndic.agent.agent import Agent
from syndic.agent.config import AgentConfig
from syndic.client import Client
from syndic.registry.model import CheckDefinition, CheckKind, HealthStatus, Instance
from tests.stores import start_store_cluster, wait_ready


async def test_services_come_back_after_the_store_lost_everything(tmp_path: Path) -> None:
    store = start_store_cluster("syndic", tmp_path / "store", 1)
    try:
        async with Client(store.endpoints, timeout_s=3.0) as client:
            config = AgentConfig(
                node_name="n1", anti_entropy_interval_ms=500.0, anti_entropy_retry_ms=200.0
            )
            agent = Agent(client, config)
            await agent.start()
            try:
                ttl = CheckDefinition("ttl", CheckKind.TTL, ttl_ms=600_000)
                await agent.register(
                    Instance("default", "web", "w1", "10.0.0.1", 80, checks=(ttl,))
                )
                await agent.update_ttl("ttl", HealthStatus.PASSING, "ok")
                for _ in range(20):  # some history, so the old revision is well ahead
                    await client.put(b"filler", b"x")
                index_before = agent.catalog.view.service_index("default", "web")

                member = store.members[0]
                member.kill()
                shutil.rmtree(member.data_dir)
                member.start()
                await asyncio.to_thread(wait_ready, store.endpoints)

                layout = agent.store.layout
                for _ in range(300):
                    r = await client.get(layout.instance("default", "web", "w1"))
                    entry = agent.catalog.view.service("default", "web")
                    if r.kvs and entry is not None and ("w1", "ttl") in entry.checks:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the agent did not register its service again")
                assert entry.checks[("w1", "ttl")].state.status is HealthStatus.PASSING
                assert agent.catalog.view.service_index("default", "web") > index_before
            finally:
                await agent.stop()
    finally:
        store.stop()


@pytest.mark.slow  # about 15 s: a heartbeat TTL passes and the store restarts
async def test_sdk_registration_and_discovery_recover(tmp_path: Path) -> None:
    from syndic.registry.sdk import Registry

    store = start_store_cluster("syndic", tmp_path / "store", 1)
    try:
        async with Client(store.endpoints, timeout_s=3.0) as client:
            registry = Registry(client)
            registration = await registry.register(
                Instance("default", "api", "a1", "10.0.0.2", 81), heartbeat_ttl_s=2
            )
            live = await registry.discover("api", resync_interval_s=0.5)
            try:
                for _ in range(20):
                    await client.put(b"filler", b"x")
                assert [e.address for e in live.endpoints] == ["10.0.0.2:81"]
                await asyncio.sleep(1.5)  # the live set has seen the store at that revision
                member = store.members[0]
                member.kill()
                shutil.rmtree(member.data_dir)
                member.start()
                await asyncio.to_thread(wait_ready, store.endpoints)
                # The heartbeat's lease is gone with the old store: the SDK registers
                # again; the live set (its watch was past the new store's revision)
                # notices the revision went back and reads the service again.
                for _ in range(300):
                    if live.resyncs_total and registration.registrations_total >= 2:
                        break
                    await asyncio.sleep(0.1)
                assert live.resyncs_total >= 1 and registration.registrations_total >= 2
                await live.wait_for(lambda s: len(s) == 1, 30)
                # And it follows the new store: a deregistration is seen.
                await registry.deregister("api", "a1")
                await live.wait_for(lambda s: len(s) == 0, 30)
            finally:
                await live.close()
                await registration.close()
    finally:
        store.stop()
