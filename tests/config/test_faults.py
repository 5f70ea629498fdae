"""Faults: a member killed while configs are being published loses no acknowledged
version; an SDK started from its snapshot while the centre is down catches up.

A 3-member cluster (syndic, and Debian's etcd as the reference) takes a
stream of compare-and-set publishes; the leader is SIGKILLed in the middle.
Every publish the store acknowledged must be in history with its content,
versions must stay contiguous, and a publish whose outcome was unknown must
either be there exactly once or not at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syndic.client import Client, ClientError
from syndic.config.errors import ConflictError
from syndic.config.metrics import ConfigMetrics
from syndic.config.model import ConfigId
from syndic.config.sdk import ConfigClient, Source
from syndic.config.store import ConfigStore
from tests.stores import Store, start_single, start_store_cluster, wait_ready

CID = ConfigId("prod", "orders", "pool.yaml")
PUBLISHES = 30
KILL_AFTER = 10
# Long enough for a new election and a client failover on a loaded machine.
RETRY_DEADLINE_S = 60.0


async def _leader_index(client: Client, store: Store) -> int:
    for i, endpoint in enumerate(store.endpoints):
        status = await client.status(endpoint)
        if status.leader == status.member_id:
            return i
    return 0


async def _publish_until_decided(store: ConfigStore, expected: int, content: str) -> bool:
    """True when this publish is stored as version expected+1; retries across failover."""
    deadline = asyncio.get_running_loop().time() + RETRY_DEADLINE_S
    while True:
        try:
            await store.publish(CID, content, format="text", expected_version=expected, author="t")
            return True
        except ConflictError:
            # An earlier try applied after all (its answer was lost), or it did not.
            entry = await store.entry(CID, expected + 1)
            return entry.content == content
        except ClientError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("kind", ["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
async def test_killed_leader_during_publishes_loses_no_acknowledged_version(
    kind: str, tmp_path: Path
) -> None:
    cluster = start_store_cluster(kind, tmp_path / kind, 3)
    try:
        async with Client(cluster.all_endpoints(), timeout_s=5.0) as client:
            store = ConfigStore(client)
            acknowledged: dict[int, str] = {}
            kill: asyncio.Task[object] | None = None
            for n in range(PUBLISHES):
                if n == KILL_AFTER:
                    # The kill races the publish: SIGKILL lands while it is in flight.
                    leader = await _leader_index(client, cluster)
                    kill = asyncio.create_task(asyncio.to_thread(cluster.kill, leader))
                content = f"publish {n}"
                if await _publish_until_decided(store, n, content):
                    acknowledged[n + 1] = content
            assert kill is not None
            await kill
            history = {e.version: e.content for e in await store.history(CID)}
            assert sorted(history) == list(range(1, PUBLISHES + 1))
            for version, content in acknowledged.items():
                assert history[version] == content, (version, history)
            assert len(acknowledged) == PUBLISHES
    finally:
        cluster.stop()


async def test_sdk_started_from_snapshot_catches_up_when_the_centre_returns(
    tmp_path: Path,
) -> None:
    single = start_single("syndic", tmp_path / "centre")
    try:
        wait_ready(single.endpoints)
        endpoints = single.all_endpoints()
        snapshots = tmp_path / "snapshots"
        async with Client(endpoints) as client:
            await ConfigStore(client).publish(
                CID, "size: 1\n", format="yaml", expected_version=0, author="t"
            )
            async with ConfigClient(
                client, namespace="prod", client_id="c", snapshot_dir=snapshots, metrics=_metrics()
            ) as cfg:
                await cfg.get(CID.group, CID.data_id)
        single.kill(0)
        async with (
            Client(endpoints, timeout_s=2.0) as client,
            ConfigClient(
                client,
                namespace="prod",
                client_id="c",
                snapshot_dir=snapshots,
                fetch_timeout_ms=1000,
                retry_ms_max=200,
                metrics=_metrics(),
            ) as cfg,
        ):
            value = await cfg.get(CID.group, CID.data_id)
            assert (value.source, value.version) == (Source.SNAPSHOT, 1)
            changes = cfg.changes(CID.group, CID.data_id)
            single.restart(0)
            wait_ready(single.endpoints)
            await ConfigStore(client).publish(
                CID, "size: 2\n", format="yaml", expected_version=1, author="t"
            )
            deadline = asyncio.get_running_loop().time() + RETRY_DEADLINE_S
            while True:
                change = await asyncio.wait_for(anext(changes), RETRY_DEADLINE_S)
                assert change.new is not None
                if change.new.version == 2:
                    break
                assert asyncio.get_running_loop().time() < deadline
            assert (change.new.source, change.new.content) == (Source.CENTRE, "size: 2\n")
            await changes.aclose()
    finally:
        single.stop()


def _metrics() -> ConfigMetrics:
    return ConfigMetrics(CollectorRegistry())
