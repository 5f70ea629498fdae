"""A member's runtime on real sockets and a real disk: durability across
restart, replication to followers, ReadIndex reads, leader failover."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from syndic.kv.errors import KvError
from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from syndic.raft import Role
from syndic.server import node as node_module
from syndic.server.backend import ServerError
from syndic.server.bootstrap import MemberIdentityError
from syndic.server.entry_codec import EntryKind
from syndic.server.node import MemberNode
from tests.server.cluster_util import cluster_configs, eventually


async def test_single_member_is_writable_at_once_and_durable(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        for i in range(50):
            await node.write(PutRequest(key=b"k%02d" % i, value=b"v%d" % i))
        await node.write(DeleteRangeRequest(key=b"k00"))
        revision = node.state.store.revision
        digest = node.hash_kv(0).hash
    finally:
        await node.stop()
    restarted = MemberNode(config)
    await restarted.start()
    try:
        await eventually(lambda: restarted.state.store.revision == revision)
        assert restarted.hash_kv(0).hash == digest
        got = await restarted.range(RangeRequest(key=b"k01"))
        assert got.kvs[0].value == b"v1"
        assert (await restarted.range(RangeRequest(key=b"k00"))).kvs == ()
    finally:
        await restarted.stop()


async def test_store_errors_reach_the_caller_and_change_nothing(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        await node.write(PutRequest(key=b"a", value=b"1"))
        before = node.state.store.revision
        with pytest.raises(KvError, match="requested lease not found"):
            await node.write(PutRequest(key=b"a", value=b"2", lease=12345))
        assert node.state.store.revision == before
        with pytest.raises(ServerError, match="request is too large"):
            await node.write(PutRequest(key=b"big", value=b"x" * (2 * 1024 * 1024)))
        assert node.state.store.revision == before
    finally:
        await node.stop()


async def test_three_members_replicate_and_survive_leader_loss(tmp_path: Path) -> None:
    nodes = [MemberNode(c) for c in cluster_configs(tmp_path, 3)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        leader = next(n for n in nodes if n._is_leader())
        followers = [n for n in nodes if n is not leader]
        for i in range(20):
            await leader.write(PutRequest(key=b"key", value=b"%d" % i))
        # A linearizable read on a follower sees the last acknowledged write.
        got = await followers[0].range(RangeRequest(key=b"key"))
        assert got.kvs[0].value == b"19"
        # A follower forwards writes to the leader and answers once it applied them.
        forwarded = await followers[0].write(PutRequest(key=b"x", value=b"y"))
        assert followers[0].state.store.revision >= forwarded.revision  # type: ignore[attr-defined]
        await eventually(lambda: len({n.hash_kv(0).hash for n in nodes}) == 1)

        await leader.stop()
        await eventually(lambda: any(f._is_leader() for f in followers))
        new_leader = next(f for f in followers if f._is_leader())
        assert new_leader.raft is not None and new_leader.raft.role is Role.LEADER
        await new_leader.write(PutRequest(key=b"key", value=b"after"))
        other = next(f for f in followers if f is not new_leader)
        assert (await other.range(RangeRequest(key=b"key"))).kvs[0].value == b"after"
    finally:
        for node in nodes:
            if not node._stopping:
                await node.stop()


async def test_alarms_are_raised_and_cleared_through_the_log(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        await node.alarm_activate(node.id, "NOSPACE")
        assert node.alarms() == [(node.id, "NOSPACE")]
        assert node.status().errors
        with pytest.raises(KvError, match="database space exceeded"):
            await node.write(PutRequest(key=b"a", value=b"1"))
        await node.alarm_disarm("NOSPACE")
        assert node.alarms() == []
        await node.write(PutRequest(key=b"a", value=b"1"))
    finally:
        await node.stop()
    restarted = MemberNode(config)
    await restarted.start()
    try:
        await eventually(lambda: restarted.state.store.revision == 2)
        assert restarted.alarms() == []
    finally:
        await restarted.stop()


async def test_a_data_dir_refuses_a_member_it_does_not_know(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    await node.write(PutRequest(key=b"a", value=b"1"))
    await node.stop()
    # Ids derive from peer URLs and the cluster token, as etcd's do.
    other_cluster = dataclasses.replace(config, initial_cluster_token="another-cluster")
    with pytest.raises(MemberIdentityError, match="belongs to"):
        await MemberNode(other_cluster).start()
    # The directory is left as it was: the right flags still start it.
    again = MemberNode(config)
    await again.start()
    try:
        await eventually(lambda: again.state.store.revision == 2)
    finally:
        await again.stop()


async def test_the_clock_ticks_while_writes_never_stop(tmp_path: Path) -> None:
    """A steady stream of writes always leaves another cycle to run; the node
    must still tick between cycles, or leases never expire (and heartbeats and
    elections stall) for as long as the load lasts."""
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        # Staggered, as network clients are: some write always arrives while
        # a cycle's fsync runs, so there is always a next cycle.
        i = 0
        while not stop.is_set():
            await asyncio.sleep(0.0002 * (n % 8))
            await node.write(PutRequest(key=b"w%d/%d" % (n, i % 100), value=b"v"))
            i += 1

    try:
        grant = await node.write(LeaseGrantRequest(ttl_s=1))
        assert isinstance(grant, LeaseGrantResponse)
        await node.write(PutRequest(key=b"leased", value=b"v", lease=grant.id))
        writers = [asyncio.create_task(writer(n)) for n in range(64)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6
        while node.state.store.range(RangeRequest(key=b"leased")).count:
            assert loop.time() < deadline, "the lease did not expire under load"
            await asyncio.sleep(0.05)
        # The writers were still going when the lease expired.
        assert not any(w.done() for w in writers)
        stop.set()
        await asyncio.gather(*writers)
    finally:
        stop.set()
        await node.stop()


async def test_read_only_txn_takes_no_log_entry_and_sees_acknowledged_writes(
    tmp_path: Path,
) -> None:
    nodes = [MemberNode(c) for c in cluster_configs(tmp_path, 3)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        leader = next(n for n in nodes if n._is_leader())
        follower = next(n for n in nodes if n is not leader)
        txn = TxnRequest(
            compare=(Compare(b"cfg", CompareTarget.VALUE, CompareResult.EQUAL, value=b"v1"),),
            success=(RangeRequest(key=b"cfg"),),
            failure=(RangeRequest(key=b"other"),),
        )
        await leader.write(PutRequest(key=b"cfg", value=b"v1"))
        # The same Txn through the log answers what the read path answers.
        logged = await leader.write(txn)
        await eventually(
            lambda: (
                follower.raft is not None
                and leader.raft is not None
                and follower.raft.applied_index == leader.raft.applied_index
            )
        )
        before = [(n.state.store.revision, n.raft.last_index) for n in nodes]  # type: ignore[union-attr]
        for node in nodes:
            assert await node.read_txn(txn) == logged
        after = [(n.state.store.revision, n.raft.last_index) for n in nodes]  # type: ignore[union-attr]
        assert after == before
        # Linearizable: a follower's read-only Txn right after an acknowledged
        # write sees it, with no wait of its own.
        for i in range(5):
            await leader.write(PutRequest(key=b"cfg", value=b"v%d" % (i + 2)))
            got = await follower.read_txn(TxnRequest(success=(RangeRequest(key=b"cfg"),)))
            assert got.responses[0].kvs[0].value == b"v%d" % (i + 2)  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="Range ops alone"):
            await follower.read_txn(TxnRequest(success=(PutRequest(key=b"x", value=b"y"),)))
        assert follower.state.store.range(RangeRequest(key=b"x")).kvs == ()
    finally:
        for node in nodes:
            await node.stop()


async def test_the_proposer_applies_its_own_request_undecoded_and_members_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded_by: list[bytes] = []
    decode = node_module.decode_entry

    def counting_decode(data: bytes) -> Any:
        entry = decode(data)
        if entry.kind is EntryKind.STORE:  # not the members publishing themselves
            decoded_by.append(data)
        return entry

    monkeypatch.setattr(node_module, "decode_entry", counting_decode)
    nodes = [MemberNode(c) for c in cluster_configs(tmp_path, 3)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        leader = next(n for n in nodes if n._is_leader())
        follower = next(n for n in nodes if n is not leader)
        decoded_by.clear()
        txn = TxnRequest(success=(PutRequest(key=b"t", value=b"x"), DeleteRangeRequest(key=b"a")))
        for proposer in (leader, follower):
            await proposer.write(PutRequest(key=b"a", value=b"1", prev_kv=True))
            await proposer.write(txn)
        await eventually(lambda: len({n.state.store.revision for n in nodes}) == 1)
        # Each entry was decoded by the two members that did not propose it,
        # and the follower's two once more by the leader checking what it
        # was forwarded.
        assert len(decoded_by) == 4 * 2 + 2
        assert len({n.hash_kv(0).hash for n in nodes}) == 1
        assert all(n._rt.proposals.own_entries_waiting == 0 for n in nodes)
    finally:
        for node in nodes:
            await node.stop()
