"""Overload is refused early with etcd's "too many requests"
(RESOURCE_EXHAUSTED), never left to wait out the request timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from syndic.kv.messages import PutRequest, RangeRequest
from syndic.server.backend import ServerError
from syndic.server.node import MemberNode
from tests.server.cluster_util import cluster_configs, eventually


async def _slow_disk_member(tmp_path: Path, fsync_s: float, **settings: Any) -> MemberNode:
    (config,) = cluster_configs(tmp_path, 1)
    config = dataclasses.replace(config, **settings)
    node = MemberNode(config)
    await node.start()
    await eventually(node._is_leader)
    await node.write(PutRequest(key=b"settled", value=b"v"))
    assert node._wal is not None
    save = node._wal.save

    def slow_save(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("must_sync"):
            time.sleep(fsync_s)
        return save(*args, **kwargs)

    node._wal.save = slow_save  # type: ignore[method-assign]
    return node


async def _outcome(call: Any) -> str:
    started = time.monotonic()
    try:
        await call
    except ServerError as exc:
        assert time.monotonic() - started < 0.5, "refused late"
        return f"{exc.code}: {exc.message}"
    return "ok"


async def test_writes_past_the_pending_bound_are_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _slow_disk_member(tmp_path, fsync_s=0.3, max_pending_proposals=8)
    try:
        outcomes = await asyncio.gather(
            *(_outcome(node.write(PutRequest(key=b"k%d" % i, value=b"v"))) for i in range(30))
        )
        refused = outcomes.count("RESOURCE_EXHAUSTED: etcdserver: too many requests")
        assert outcomes.count("ok") == 8 and refused == 22, outcomes
        assert (
            node.metrics.registry.get_sample_value(
                "syndic_server_requests_refused_total", {"kind": "proposal"}
            )
            == 22
        )
        # Room again once they are applied.
        await node.write(PutRequest(key=b"later", value=b"v"))
    finally:
        await node.stop()


async def test_a_proposal_is_refused_while_apply_lags_far_behind_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _slow_disk_member(tmp_path, fsync_s=0)
    try:
        # The member took its limits when it started.
        proposals = node._rt.proposals
        monkeypatch.setattr(
            proposals, "limits", dataclasses.replace(proposals.limits, apply_gap_entries_max=-1)
        )  # any gap is too much
        with pytest.raises(ServerError, match="too many requests"):
            await node.write(PutRequest(key=b"x", value=b"v"))
        assert node.state.store.range(RangeRequest(key=b"x")).count == 0
    finally:
        await node.stop()


async def test_linearizable_reads_past_their_bound_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _slow_disk_member(tmp_path, fsync_s=0)
    # 0 is below what a setting allows; the runtime's Reads took its bound at start.
    monkeypatch.setattr(node._rt.reads, "pending_max", 0)
    try:
        with pytest.raises(ServerError, match="too many requests") as err:
            await node.range(RangeRequest(key=b"settled"))
        assert err.value.code == "RESOURCE_EXHAUSTED"
        # A serializable read takes no ReadIndex round and is still served.
        got = await node.range(RangeRequest(key=b"settled", serializable=True))
        assert got.count == 1
    finally:
        await node.stop()


async def test_heartbeats_are_not_starved_by_a_flood_of_client_writes(tmp_path: Path) -> None:
    """The node loop takes a due tick before each cycle of proposals, so a
    leader flooded with writes keeps its followers' election timers reset:
    no election, and the leader's clock keeps ticking at its rate."""
    # The three members share this process's one loop, so every client call
    # competes with every member's ticks: etcd's timers at twice the speed.
    nodes = [MemberNode(c) for c in cluster_configs(tmp_path, 3, heartbeat_ms=50)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        leader = next(n for n in nodes if n._is_leader())
        assert leader.raft is not None
        term = leader.raft.term
        ticks = 0
        tick = leader.raft.tick

        def counted_tick() -> None:
            nonlocal ticks
            ticks += 1
            tick()

        leader.raft.tick = counted_tick  # type: ignore[method-assign]
        stop = asyncio.Event()

        async def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                await nodes[n % 3].write(PutRequest(key=b"c%d-%d" % (n, i % 50), value=b"v" * 64))
                i += 1

        loop = asyncio.get_running_loop()
        started, revision = loop.time(), leader.state.store.revision
        clients = [asyncio.create_task(client(n)) for n in range(128)]
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*clients)
        elapsed = loop.time() - started
        assert leader.state.store.revision - revision > 500  # the flood was real
        assert all(n.raft is not None and n.raft.term == term for n in nodes), "an election"
        assert leader._is_leader()
        # 50 ms ticks: at least half of them, however busy the loop.
        assert ticks >= 0.5 * elapsed / 0.050, (ticks, elapsed)
    finally:
        for node in nodes:
            await node.stop()
