"""KV over real gRPC: every field of Range/Put/DeleteRange/Txn/Compact, and hostile input."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE
from tests.server.grpc_api.conftest import CALL_TIMEOUT_S, TEST_MAX_REQUEST_BYTES, Served
from tests.server.grpc_api.local_backend import CLUSTER_ID, MEMBER_ID

_Sort = rpc_pb2.RangeRequest
_Cmp = rpc_pb2.Compare


def kv(served: Served) -> Any:
    return served.stub(KV_SERVICE)


async def put(served: Served, key: bytes, value: bytes, **kw: Any) -> Any:
    return await kv(served).Put(
        rpc_pb2.PutRequest(key=key, value=value, **kw), timeout=CALL_TIMEOUT_S
    )


async def rng(served: Served, **kw: Any) -> Any:
    return await kv(served).Range(rpc_pb2.RangeRequest(**kw), timeout=CALL_TIMEOUT_S)


async def expect_error(call: Any, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert (info.value.code(), info.value.details()) == (code, message)


async def test_put_then_range_carries_header_and_versions(served: Served) -> None:
    first = await put(served, b"a", b"1")
    second = await put(served, b"a", b"2", prev_kv=True)
    got = await rng(served, key=b"a")
    assert first.header.revision == 2 and second.header.revision == 3
    assert (got.header.cluster_id, got.header.member_id, got.header.raft_term) == (
        CLUSTER_ID,
        MEMBER_ID,
        2,
    )
    assert second.prev_kv.value == b"1" and second.prev_kv.mod_revision == 2
    assert not first.HasField("prev_kv")
    (item,) = got.kvs
    assert (item.value, item.version, item.create_revision, item.mod_revision) == (b"2", 2, 2, 3)
    assert got.header.revision == 3 and got.count == 1


async def test_range_sort_limit_filters_and_projections(served: Served) -> None:
    for key, value in [(b"p/c", b"1"), (b"p/a", b"3"), (b"p/b", b"2"), (b"q", b"x")]:
        await put(served, key, value)
    await put(served, b"p/c", b"9")  # p/c: created 2, modified 6
    prefix = {"key": b"p/", "range_end": b"p0"}
    by_value = await rng(
        served, **prefix, sort_target=_Sort.VALUE, sort_order=_Sort.DESCEND, limit=2
    )
    assert [k.key for k in by_value.kvs] == [b"p/c", b"p/a"]
    assert by_value.more and by_value.count == 3
    by_key_desc = await rng(served, **prefix, sort_order=_Sort.DESCEND)
    assert [k.key for k in by_key_desc.kvs] == [b"p/c", b"p/b", b"p/a"]
    by_mod = await rng(served, **prefix, sort_target=_Sort.MOD)  # NONE + MOD = ascend
    assert [k.key for k in by_mod.kvs] == [b"p/a", b"p/b", b"p/c"]
    keys_only = await rng(served, **prefix, keys_only=True)
    assert [k.value for k in keys_only.kvs] == [b"", b"", b""]
    count_only = await rng(served, **prefix, count_only=True)
    assert (count_only.count, len(count_only.kvs)) == (3, 0)
    modified_late = await rng(served, **prefix, min_mod_revision=4)
    assert [k.key for k in modified_late.kvs] == [b"p/b", b"p/c"]
    created_early = await rng(served, **prefix, max_create_revision=3)
    assert [k.key for k in created_early.kvs] == [b"p/a", b"p/c"]
    window = await rng(served, **prefix, min_create_revision=3, max_mod_revision=3)
    assert [k.key for k in window.kvs] == [b"p/a"]
    from_key = await rng(served, key=b"p/b", range_end=b"\0")
    assert [k.key for k in from_key.kvs] == [b"p/b", b"p/c", b"q"]
    old = await rng(served, key=b"p/c", revision=2)
    assert old.kvs[0].value == b"1" and old.header.revision == 6


async def test_delete_range_returns_prev_kvs_and_revision(served: Served) -> None:
    await put(served, b"d/1", b"a")
    await put(served, b"d/2", b"b")
    resp = await kv(served).DeleteRange(
        rpc_pb2.DeleteRangeRequest(key=b"d/", range_end=b"d0", prev_kv=True),
        timeout=CALL_TIMEOUT_S,
    )
    assert resp.deleted == 2 and resp.header.revision == 4
    assert [p.value for p in resp.prev_kvs] == [b"a", b"b"]
    nothing = await kv(served).DeleteRange(
        rpc_pb2.DeleteRangeRequest(key=b"d/1"), timeout=CALL_TIMEOUT_S
    )
    assert (nothing.deleted, nothing.header.revision) == (0, 4)


def _op_put(key: bytes, value: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, prev_kv=True))


async def test_txn_compares_every_target_and_nests(served: Served) -> None:
    grant = await served.stub("etcdserverpb.Lease").LeaseGrant(  # type: ignore[attr-defined]
        rpc_pb2.LeaseGrantRequest(TTL=60, ID=77), timeout=CALL_TIMEOUT_S
    )
    await put(served, b"t", b"v1", lease=grant.ID)  # rev 2: create=2 mod=2 version=1
    compares = [
        _Cmp(key=b"t", target=_Cmp.VALUE, result=_Cmp.EQUAL, value=b"v1"),
        _Cmp(key=b"t", target=_Cmp.VERSION, result=_Cmp.EQUAL, version=1),
        _Cmp(key=b"t", target=_Cmp.CREATE, result=_Cmp.LESS, create_revision=3),
        _Cmp(key=b"t", target=_Cmp.MOD, result=_Cmp.GREATER, mod_revision=1),
        _Cmp(key=b"t", target=_Cmp.LEASE, result=_Cmp.EQUAL, lease=77),
        _Cmp(key=b"t", range_end=b"u", target=_Cmp.VERSION, result=_Cmp.NOT_EQUAL, version=0),
    ]
    nested = rpc_pb2.TxnRequest(
        compare=[_Cmp(key=b"absent", target=_Cmp.CREATE, result=_Cmp.EQUAL, create_revision=0)],
        success=[_op_put(b"n", b"inner")],
    )
    txn = rpc_pb2.TxnRequest(
        compare=compares,
        success=[
            _op_put(b"t", b"v2"),
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"t")),
            rpc_pb2.RequestOp(request_txn=nested),
        ],
        failure=[_op_put(b"f", b"never")],
    )
    resp = await kv(served).Txn(txn, timeout=CALL_TIMEOUT_S)
    assert resp.succeeded and resp.header.revision == 3
    put_resp, range_resp, txn_resp = resp.responses
    assert put_resp.response_put.prev_kv.value == b"v1"
    assert range_resp.response_range.kvs[0].value == b"v2"  # reads see earlier writes
    assert txn_resp.response_txn.succeeded
    assert txn_resp.response_txn.responses[0].WhichOneof("response") == "response_put"
    assert (await rng(served, key=b"n")).kvs[0].value == b"inner"

    failed = await kv(served).Txn(
        rpc_pb2.TxnRequest(
            compare=[_Cmp(key=b"t", target=_Cmp.VALUE, result=_Cmp.EQUAL, value=b"v1")],
            success=[_op_put(b"s", b"no")],
            failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"n"))],
        ),
        timeout=CALL_TIMEOUT_S,
    )
    assert not failed.succeeded
    assert failed.responses[0].response_delete_range.deleted == 1
    assert (await rng(served, key=b"s")).count == 0


async def test_compact_then_old_revision_is_out_of_range(served: Served) -> None:
    for i in range(4):
        await put(served, b"c", str(i).encode())
    resp = await kv(served).Compact(
        rpc_pb2.CompactionRequest(revision=4, physical=True), timeout=CALL_TIMEOUT_S
    )
    assert resp.header.revision == 5
    await expect_error(
        rng(served, key=b"c", revision=2),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    await expect_error(
        kv(served).Compact(rpc_pb2.CompactionRequest(revision=3), timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert (await rng(served, key=b"c", revision=4)).kvs[0].value == b"2"


# ------------------------------------------------------------ hostile input


def _txn_puts(*keys: bytes) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(success=[_op_put(k, b"x") for k in keys])


HOSTILE: list[tuple[str, str, Any, grpc.StatusCode, str]] = [
    (
        "empty key put",
        "Put",
        rpc_pb2.PutRequest(key=b"", value=b"v"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    ),
    (
        "empty key range",
        "Range",
        rpc_pb2.RangeRequest(key=b""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    ),
    (
        "oversized put",
        "Put",
        rpc_pb2.PutRequest(key=b"big", value=b"x" * (TEST_MAX_REQUEST_BYTES + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    ),
    (
        "oversized txn",
        "Txn",
        rpc_pb2.TxnRequest(
            success=[_op_put(b"big", b"x" * (TEST_MAX_REQUEST_BYTES // 2))] * 1
            + [_op_put(b"big2", b"y" * (TEST_MAX_REQUEST_BYTES // 2))]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    ),
    (
        "future revision",
        "Range",
        rpc_pb2.RangeRequest(key=b"k", revision=99),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    ),
    (
        "future compaction",
        "Compact",
        rpc_pb2.CompactionRequest(revision=99),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    ),
    (
        "bad sort order",
        "Range",
        rpc_pb2.RangeRequest(key=b"k", sort_order=7),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: invalid sort option",
    ),
    (
        "bad sort target",
        "Range",
        rpc_pb2.RangeRequest(key=b"k", sort_target=-3),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: invalid sort option",
    ),
    (
        "too many txn ops",
        "Txn",
        _txn_puts(*[f"k{i}".encode() for i in range(129)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: too many operations in txn request",
    ),
    (
        "duplicate txn keys",
        "Txn",
        _txn_puts(b"dup", b"dup"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: duplicate key given in txn request",
    ),
    (
        "unknown lease",
        "Put",
        rpc_pb2.PutRequest(key=b"k2", value=b"v", lease=12345),
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    ),
    (
        "ignore_value with value",
        "Put",
        rpc_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: value is provided",
    ),
    (
        "ignore_lease with lease",
        "Put",
        rpc_pb2.PutRequest(key=b"k", lease=5, ignore_lease=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: lease is provided",
    ),
    (
        "ignore_value on missing key",
        "Put",
        rpc_pb2.PutRequest(key=b"missing", ignore_value=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key not found",
    ),
    (
        "txn op with no request",
        "Txn",
        rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: invalid argument",
    ),
    (
        "txn compare with unknown target",
        "Txn",
        rpc_pb2.TxnRequest(compare=[_Cmp(key=b"k", target=9)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: invalid argument",
    ),
    (
        "txn compare with empty key",
        "Txn",
        rpc_pb2.TxnRequest(compare=[_Cmp(key=b"", target=_Cmp.VERSION)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    ),
]


@pytest.mark.parametrize(
    ("method", "request_pb", "code", "message"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
async def test_hostile_request_gets_etcd_error_and_changes_nothing(
    served: Served, method: str, request_pb: Any, code: grpc.StatusCode, message: str
) -> None:
    await put(served, b"k", b"v")
    store = served.backend.store
    before = (store.revision, store.hash_kv().hash, store.size_bytes)
    await expect_error(
        getattr(kv(served), method)(request_pb, timeout=CALL_TIMEOUT_S), code, message
    )
    assert (store.revision, store.hash_kv().hash, store.size_bytes) == before
    store.check_invariants()
    # The server still serves.
    assert (await rng(served, key=b"k")).kvs[0].value == b"v"


async def test_compacted_revision_read_in_txn_is_refused(served: Served) -> None:
    for i in range(3):
        await put(served, b"k", str(i).encode())
    await kv(served).Compact(rpc_pb2.CompactionRequest(revision=3), timeout=CALL_TIMEOUT_S)
    store = served.backend.store
    before = store.revision
    txn = rpc_pb2.TxnRequest(
        success=[
            _op_put(b"other", b"x"),
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k", revision=2)),
        ]
    )
    await expect_error(
        kv(served).Txn(txn, timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert store.revision == before


def _op_range(key: bytes, **kw: Any) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key, **kw))


async def test_read_only_txn_is_served_without_a_write(served: Served) -> None:
    await put(served, b"r", b"1")
    writes = len(served.backend.writes)
    cmp = _Cmp(key=b"r", target=_Cmp.VALUE, result=_Cmp.EQUAL, value=b"1")
    for serializable in (False, True):
        txn = rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[_op_range(b"r", serializable=serializable)],
            failure=[_op_range(b"absent")],
        )
        resp = await kv(served).Txn(txn, timeout=CALL_TIMEOUT_S)
        assert resp.succeeded and resp.header.revision == 2
        assert resp.responses[0].response_range.kvs[0].value == b"1"
    # Compares alone (the registry's "is it still mine?") read too.
    alone = await kv(served).Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=CALL_TIMEOUT_S)
    assert alone.succeeded and alone.responses == []
    assert len(served.backend.writes) == writes and len(served.backend.read_txns) == 3
    assert (await rng(served, key=b"r")).header.revision == 2


@pytest.mark.parametrize(
    "op",
    [
        _op_put(b"w", b"x"),
        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"w")),
        # etcd counts a nested Txn as a write even when it only reads.
        rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[_op_range(b"w")])),
    ],
)
async def test_txn_with_any_write_op_still_goes_through_the_log(
    served: Served, op: rpc_pb2.RequestOp
) -> None:
    # The write sits in the branch not taken: the Txn still counts as a write.
    txn = rpc_pb2.TxnRequest(success=[_op_range(b"w")], failure=[op])
    resp = await kv(served).Txn(txn, timeout=CALL_TIMEOUT_S)
    assert resp.succeeded
    assert len(served.backend.writes) == 1 and served.backend.read_txns == []


async def test_read_only_txn_reading_a_compacted_revision_is_refused(served: Served) -> None:
    for value in (b"1", b"2", b"3"):
        await put(served, b"c", value)
    await kv(served).Compact(rpc_pb2.CompactionRequest(revision=3), timeout=CALL_TIMEOUT_S)
    txn = rpc_pb2.TxnRequest(success=[_op_range(b"c", revision=2)])
    await expect_error(
        kv(served).Txn(txn, timeout=CALL_TIMEOUT_S),
        grpc.StatusCode.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert served.backend.writes[-1].__class__.__name__ == "CompactionRequest"


async def test_writes_carry_the_clients_own_bytes_as_their_log_entry(served: Served) -> None:
    """A Put, DeleteRange or Txn reaches the backend with the request's
    protobuf bytes, which the log then carries, and the request decoded once."""
    put_pb = rpc_pb2.PutRequest(key=b"w", value=b"1", prev_kv=True)
    delete_pb = rpc_pb2.DeleteRangeRequest(key=b"w", range_end=b"x")
    txn_pb = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t", value=b"2"))]
    )
    await kv(served).Put(put_pb, timeout=CALL_TIMEOUT_S)
    await kv(served).DeleteRange(delete_pb, timeout=CALL_TIMEOUT_S)
    await kv(served).Txn(txn_pb, timeout=CALL_TIMEOUT_S)
    wired = served.backend.wire_writes[-3:]
    assert [w.wire for w in wired] == [m.SerializeToString() for m in (put_pb, delete_pb, txn_pb)]
    assert [w.request for w in wired] == served.backend.writes[-3:]
    assert [type(w.request).__name__ for w in wired] == [
        "PutRequest",
        "DeleteRangeRequest",
        "TxnRequest",
    ]
