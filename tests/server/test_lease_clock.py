"""Leases on the leader's clock, with members whose clocks differ by days.

Each member reads its own monotonic clock, offset per member here as the
clocks of different hosts are (they count from different boots). A lease
granted and kept alive through a follower must expire one TTL after its last
keep-alive on the leader's clock; keep-alives must write nothing to the log;
a new leader gives every lease a full TTL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from syndic.kv.errors import LeaseNotFoundError
from syndic.kv.messages import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
)
from syndic.server.node import CLOCK_OFFSET_ENV, MemberNode
from tests.server.cluster_util import cluster_configs, eventually

DAY_S = 86_400
# Member clocks: one far behind, one far ahead, one near zero.
OFFSETS_S = (-3 * DAY_S, 5 * DAY_S, 0)


async def _skewed_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[MemberNode]:
    nodes = []
    for config, offset_s in zip(cluster_configs(tmp_path, 3), OFFSETS_S, strict=True):
        monkeypatch.setenv(CLOCK_OFFSET_ENV, str(offset_s))
        nodes.append(MemberNode(config))
    monkeypatch.delenv(CLOCK_OFFSET_ENV)
    for node in nodes:
        await node.start()
    await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
    return nodes


async def _stop(nodes: list[MemberNode]) -> None:
    for node in nodes:
        if not node._stopping:
            await node.stop()


def test_member_clocks_really_differ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The premise of the tests below: the offset reaches the member's clock.
    (config,) = cluster_configs(tmp_path, 1)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(2 * DAY_S))
    ahead = MemberNode(config)
    monkeypatch.delenv(CLOCK_OFFSET_ENV)
    plain = MemberNode(config)
    assert ahead._now_ms() - plain._now_ms() >= 2 * DAY_S * 1000 - 1000


async def test_lease_through_skewed_follower_expires_one_ttl_after_last_keep_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = await _skewed_cluster(tmp_path, monkeypatch)
    try:
        leader = next(n for n in nodes if n._is_leader())
        follower = next(n for n in nodes if not n._is_leader())
        grant = await follower.write(LeaseGrantRequest(ttl_s=3))
        assert isinstance(grant, LeaseGrantResponse)
        await follower.write(PutRequest(key=b"held", value=b"v", lease=grant.id))
        assert leader.raft is not None
        log_index = leader.raft.last_index
        loop = asyncio.get_running_loop()
        # Kept alive for twice its TTL: it must not expire meanwhile.
        until = loop.time() + 6
        while True:
            # The leader renewed somewhere between asked and answered.
            asked = loop.time()
            assert await follower.lease_keep_alive(grant.id) == 3
            answered = loop.time()
            if answered > until:
                break
            await asyncio.sleep(0.5)
        # Keep-alives are renewals in the leader's memory: no log entry.
        assert leader.raft.last_index == log_index
        ttl = await follower.lease_ttl(LeaseTimeToLiveRequest(grant.id))
        assert ttl.granted_ttl_s == 3 and 1 <= ttl.ttl_s <= 3
        assert (await follower.range(RangeRequest(key=b"held"))).count == 1
        await eventually(
            lambda: all(not n.state.store.range(RangeRequest(key=b"held")).count for n in nodes),
            timeout_s=15,
        )
        gone = loop.time()
        assert gone - asked >= 3, (gone - asked, answered - asked)
        assert gone - answered <= 5.5, (gone - answered, answered - asked)
        with pytest.raises(LeaseNotFoundError):
            await follower.lease_keep_alive(grant.id)
    finally:
        await _stop(nodes)


async def test_new_leader_gives_every_lease_a_full_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = await _skewed_cluster(tmp_path, monkeypatch)
    try:
        leader = next(n for n in nodes if n._is_leader())
        grant = await leader.write(LeaseGrantRequest(ttl_s=4))
        assert isinstance(grant, LeaseGrantResponse)
        await asyncio.sleep(1.5)
        before = await leader.lease_ttl(LeaseTimeToLiveRequest(grant.id))
        assert before.ttl_s <= 3
        await leader.stop()
        rest = [n for n in nodes if n is not leader]
        await eventually(lambda: any(n._is_leader() for n in rest))
        new_leader = next(n for n in rest if n._is_leader())
        other = next(n for n in rest if n is not new_leader)
        after = await other.lease_ttl(LeaseTimeToLiveRequest(grant.id))
        assert after.ttl_s >= 3  # restarted on the new leader's clock
        assert await other.lease_keep_alive(grant.id) == 4
        # And the followers track no deadline of their own.
        assert not other.state.store.lease_primary
        assert new_leader.state.store.lease_primary
    finally:
        await _stop(nodes)


async def test_unknown_lease_is_refused_through_follower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = await _skewed_cluster(tmp_path, monkeypatch)
    try:
        follower = next(n for n in nodes if not n._is_leader())
        with pytest.raises(LeaseNotFoundError):
            await follower.lease_keep_alive(424242)
        missing = await follower.lease_ttl(LeaseTimeToLiveRequest(424242))
        assert missing.ttl_s == -1
        # Many keep-alives at once through a follower share a few requests.
        grants = [await follower.write(LeaseGrantRequest(ttl_s=10)) for _ in range(50)]
        ids = [g.id for g in grants if isinstance(g, LeaseGrantResponse)]
        ttls = await asyncio.gather(*(follower.lease_keep_alive(i) for i in ids * 4))
        assert ttls == [10] * 200
    finally:
        await _stop(nodes)
