"""Client writes logged as their own protobuf bytes, on real members: followers
and a restart decode them, and a log written before that format still recovers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syndic.api.gen import rpc_pb2
from syndic.kv.messages import PutRequest, RangeRequest
from syndic.server import node as node_module
from syndic.server import request_pb
from syndic.server.entry_codec import EntryKind, WireRequest
from syndic.server.node import MemberNode
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
