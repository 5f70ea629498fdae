"""Client writes logged as their own protobuf bytes, on real members: followers
and a restart decode them, a log written before that format still recovers
and applies as the same writes in the new format do, and a committed entry
whose protobuf does not decode stops the member, naming its index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from syndic.api.gen import rpc_pb2
from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from syndic.member.runtime import UndecodableEntryError
from syndic.raft import Entry, EntryType
from syndic.server import node as node_module
from syndic.server import request_pb
from syndic.server.entry_codec import EntryKind, WireRequest
from syndic.server.node import MemberNode
from tests.member.harness import Cluster
from tests.server.cluster_util import cluster_configs, eventually


def _wired_put(key: bytes, value: bytes) -> WireRequest:
    pb = rpc_pb2.PutRequest(key=key, value=value, prev_kv=True)
    return WireRequest(request_pb.put_request_from_pb(pb), pb.SerializeToString())


def _wired_txn(key: bytes) -> WireRequest:
    pb = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.VERSION, version=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"txn"))],
    )
    return WireRequest(request_pb.txn_request_from_pb(pb), pb.SerializeToString())


def _count_store_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first byte of every STORE entry the members decode from now on."""
    first_bytes: list[int] = []
    decode = node_module.decode_entry

    def counting_decode(data: bytes) -> Any:
        entry = decode(data)
        if entry.kind is EntryKind.STORE:
            first_bytes.append(data[0])
        return entry

    monkeypatch.setattr(node_module, "decode_entry", counting_decode)
    return first_bytes


async def test_a_log_of_both_formats_recovers_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        # A plain request is logged as msgpack, as every earlier version wrote
        # client writes: the log below starts as one written before.
        for i in range(5):
            await node.write(PutRequest(key=b"old%d" % i, value=b"m%d" % i))
        for i in range(5):
            await node.write(_wired_put(b"new%d" % i, b"p%d" % i))
        await node.write(_wired_txn(b"t"))
        revision = node.state.store.revision
        digest = node.hash_kv(0).hash
    finally:
        await node.stop()
    # Recovery replays the log (no snapshot at stop for so small a log).
    first_bytes = _count_store_decodes(monkeypatch)
    restarted = MemberNode(config)
    await restarted.start()
    try:
        await eventually(lambda: restarted.state.store.revision == revision)
        assert restarted.hash_kv(0).hash == digest
        assert sorted(set(first_bytes)) == [0x01, 0x03, 0x94]  # put, txn, msgpack
        for key, value in ((b"old3", b"m3"), (b"new3", b"p3"), (b"t", b"txn")):
            got = await restarted.range(RangeRequest(key=key))
            assert got.kvs[0].value == value
    finally:
        await restarted.stop()


async def test_followers_apply_the_leaders_wire_entries_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_bytes = _count_store_decodes(monkeypatch)
    nodes = [MemberNode(c) for c in cluster_configs(tmp_path, 3)]
    for node in nodes:
        await node.start()
    try:
        await eventually(lambda: sum(n._is_leader() for n in nodes) == 1)
        leader = next(n for n in nodes if n._is_leader())
        follower = next(n for n in nodes if n is not leader)
        first_bytes.clear()
        await leader.write(_wired_put(b"a", b"1"))
        # A follower forwards the same bytes; the leader proposes them as they are.
        resp: Any = await follower.write(_wired_put(b"a", b"2"))
        assert resp.prev_kv.value == b"1"
        await follower.write(_wired_txn(b"b"))
        await eventually(lambda: len({n.state.store.revision for n in nodes}) == 1)
        assert len({n.hash_kv(0).hash for n in nodes}) == 1
        # Each entry decoded by the members that did not propose it (two),
        # the follower's once more by the leader checking what it was forwarded.
        assert len(first_bytes) == 3 * 2 + 2 and set(first_bytes) == {0x01, 0x03}
    finally:
        for node in nodes:
            await node.stop()


def _wired(request: PutRequest | DeleteRangeRequest | TxnRequest) -> WireRequest:
    """``request`` with the protobuf bytes a client would have sent for it."""
    if isinstance(request, PutRequest):
        pb: Any = rpc_pb2.PutRequest(key=request.key, value=request.value, prev_kv=request.prev_kv)
        return WireRequest(request_pb.put_request_from_pb(pb), pb.SerializeToString())
    if isinstance(request, DeleteRangeRequest):
        pb = rpc_pb2.DeleteRangeRequest(key=request.key, range_end=request.range_end)
        return WireRequest(request_pb.delete_range_request_from_pb(pb), pb.SerializeToString())
    (compare,) = request.compare
    (put,) = request.success
    assert isinstance(put, PutRequest)
    pb = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=compare.key, target=rpc_pb2.Compare.VERSION, version=0)],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=put.key, value=put.value))],
    )
    wired = WireRequest(request_pb.txn_request_from_pb(pb), pb.SerializeToString())
    assert wired.request == request
    return wired


# Writes whose outcomes depend on each other: a put over a put, a range
# delete, a Txn that succeeds and one that fails.
_WRITES: list[PutRequest | DeleteRangeRequest | TxnRequest] = [
    PutRequest(key=b"a1", value=b"1"),
    PutRequest(key=b"a2", value=b"2"),
    PutRequest(key=b"a1", value=b"3", prev_kv=True),
    PutRequest(key=b"b", value=b"4"),
    DeleteRangeRequest(key=b"a", range_end=b"b"),
    *(
        TxnRequest(
            compare=(Compare(key, CompareTarget.VERSION, CompareResult.EQUAL, version=0),),
            success=(PutRequest(key=key, value=b"txn"),),
        )
        for key in (b"c", b"b")
    ),
]


async def _write_all_then_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, wired: bool
) -> tuple[list[Any], int, int, list[int]]:
    """Responses, revision and KV hash after a restart, and the first byte of
    each STORE entry the restart decoded."""
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        responses = [await node.write(_wired(w) if wired else w) for w in _WRITES]
    finally:
        await node.stop()
    first_bytes = _count_store_decodes(monkeypatch)
    restarted = MemberNode(config)
    await restarted.start()
    try:
        await eventually(lambda: restarted.state.store.revision >= len(_WRITES) - 1)
        digest = restarted.hash_kv(0).hash
        return responses, restarted.state.store.revision, digest, list(first_bytes)
    finally:
        await restarted.stop()
        monkeypatch.undo()


async def test_a_msgpack_log_recovers_and_applies_as_the_wire_log_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain requests are logged in msgpack, byte for byte as before the
    # protobuf entries (test_entry_codec's GOLDEN entries pin those bytes).
    old = await _write_all_then_restart(tmp_path / "old", monkeypatch, wired=False)
    new = await _write_all_then_restart(tmp_path / "new", monkeypatch, wired=True)
    assert set(old[3]) == {0x94} and len(old[3]) == len(_WRITES)
    assert set(new[3]) == {0x01, 0x02, 0x03} and len(new[3]) == len(_WRITES)
    old_responses, *old_state = old
    new_responses, *new_state = new
    # The same answers (revisions, prev_kv, txn outcomes) and the same store.
    assert old_responses == new_responses
    assert old_state[:2] == new_state[:2]


_HEADER = bytes(16)  # proposer and request ids
_UNDECODABLE_WIRE = [
    pytest.param(b"\x01\x00\x00", id="header-cut-short"),
    pytest.param(b"\x01" + _HEADER + b"\xff\xff", id="put-not-protobuf"),
    pytest.param(b"\x02" + _HEADER + b"\x0a\x05ab", id="delete-field-cut-short"),
    pytest.param(
        b"\x03" + _HEADER + rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]).SerializeToString(),
        id="txn-op-without-request",
    ),
]


@pytest.mark.parametrize("data", _UNDECODABLE_WIRE)
def test_an_undecodable_wire_entry_stops_the_runtime_naming_its_index(data: bytes) -> None:
    cluster = Cluster(1)
    leader = cluster.elect(1)
    applied = leader.raft.applied_index
    with pytest.raises(UndecodableEntryError, match=r"committed entry 9 .*cannot be decoded"):
        leader.apply((Entry(index=9, term=1, type=EntryType.NORMAL, data=data),))
    assert leader.raft.applied_index == applied


@pytest.mark.parametrize("data", _UNDECODABLE_WIRE)
def test_undecodable_forwarded_wire_proposals_never_enter_the_log(data: bytes) -> None:
    cluster = Cluster(1)
    leader = cluster.elect(1)
    before = leader.raft.last_index
    assert leader.propose_forwarded([data]).undecodable == 1
    assert leader.raft.last_index == before


async def test_a_committed_put_that_does_not_decode_stops_the_member(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        await node.write(_wired_put(b"before", b"v"))
        assert node.raft is not None
        bad_index = node.raft.propose(b"\x01" + _HEADER + b"\xff\xff")
        node._wake.set()
        await asyncio.wait_for(node.failed.wait(), 10)
        assert f"committed entry {bad_index} " in node.failure
        assert node.raft.applied_index < bad_index
        with pytest.raises(Exception):  # noqa: B017 (timed out or refused, never applied)
            await asyncio.wait_for(node.write(_wired_put(b"after", b"v")), 2)
        assert node.state.store.range(RangeRequest(key=b"after")).count == 0
    finally:
        await node.stop()
