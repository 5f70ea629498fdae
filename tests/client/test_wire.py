"""The client's hand-written protobuf: requests byte-identical to protobuf's
serializer, answers read to the same values protobuf's parser gives, and
malformed answers refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.client import Compare, KeyValue, Op
from syndic.client.requests import delete_request, put_request, range_request
from syndic.client.txn import txn_request
from syndic.client.wire import (
    MalformedAnswerError,
    delete_result,
    get_result,
    put_result,
    txn_result,
)
from syndic.protowire import varint

keys = st.binary(min_size=1, max_size=40)
values = st.binary(max_size=300)
int64s = st.integers(min_value=0, max_value=2**63 - 1)
# What a member may put in an answer: any int64 (negative ones take ten bytes).
any_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uint64s = st.integers(min_value=0, max_value=2**64 - 1)


@given(
    key=keys,
    end=st.one_of(st.none(), st.binary(min_size=1, max_size=10)),
    numbers=st.tuples(*[st.sampled_from([0, 1, 127, 128, 300, 2**40])] * 2 + [int64s] * 4),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    order=st.sampled_from(["none", "ascend", "descend"]),
    target=st.sampled_from(["key", "version", "create", "mod", "value"]),
)
def test_range_request_is_protobufs_bytes(
    key: bytes,
    end: bytes | None,
    numbers: tuple[int, ...],
    flags: tuple[bool, bool, bool],
    order: str,
    target: str,
) -> None:
    if end is not None and end != b"\x00" and end <= key:
        end = None
    limit, revision, min_mod, max_mod, min_create, max_create = numbers
    serializable, keys_only, count_only = flags
    ours = range_request(
        key,
        range_end=end,
        limit=limit,
        revision=revision,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        sort_order=order,  # type: ignore[arg-type]
        sort_target=target,  # type: ignore[arg-type]
        min_mod_revision=min_mod,
        max_mod_revision=max_mod,
        min_create_revision=min_create,
        max_create_revision=max_create,
    )
    theirs = rpc_pb2.RangeRequest(
        key=key,
        range_end=end or b"",
        limit=limit,
        revision=revision,
        sort_order=["none", "ascend", "descend"].index(order),  # type: ignore[arg-type]
        sort_target=["key", "version", "create", "mod", "value"].index(target),  # type: ignore[arg-type]
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        min_mod_revision=min_mod,
        max_mod_revision=max_mod,
        min_create_revision=min_create,
        max_create_revision=max_create,
    )
    assert ours == theirs.SerializeToString()


@given(key=keys, value=values, lease=int64s, prev_kv=st.booleans())
def test_put_and_delete_requests_are_protobufs_bytes(
    key: bytes, value: bytes, lease: int, prev_kv: bool
) -> None:
    assert (
        put_request(key, value, lease=lease, prev_kv=prev_kv)
        == rpc_pb2.PutRequest(
            key=key, value=value, lease=lease, prev_kv=prev_kv
        ).SerializeToString()
    )
    assert (
        delete_request(key, prefix=True, prev_kv=prev_kv)
        == rpc_pb2.DeleteRangeRequest(
            key=key, range_end=_prefix_end(key), prev_kv=prev_kv
        ).SerializeToString()
    )


def _prefix_end(key: bytes) -> bytes:
    from syndic.client import prefix_end

    return prefix_end(key)


def test_a_transaction_is_protobufs_bytes_zero_operands_included() -> None:
    """A oneof member set to zero or empty is on the wire (version == 0 means
    "the key does not exist"; leaving it out would compare nothing)."""
    request = txn_request(
        [
            Compare.version(b"a") == 0,
            Compare.value(b"b") != b"",
            Compare.mod_revision(b"c", prefix=True) < 2**40,
            Compare.lease(b"d") > 7,
            Compare.create_revision(b"e") == 3,
        ],
        [Op.put(b"k", b"v", lease=5), Op.get(b"p", prefix=True, limit=3), Op.delete(b"x")],
        [Op.txn([Compare.version(b"n") == 0], [Op.put(b"n", b"")], [])],
    )
    C = rpc_pb2.Compare
    expected = rpc_pb2.TxnRequest(
        compare=[
            C(result=C.EQUAL, target=C.VERSION, key=b"a", version=0),
            C(result=C.NOT_EQUAL, target=C.VALUE, key=b"b", value=b""),
            C(result=C.LESS, target=C.MOD, key=b"c", mod_revision=2**40, range_end=b"d"),
            C(result=C.GREATER, target=C.LEASE, key=b"d", lease=7),
            C(result=C.EQUAL, target=C.CREATE, key=b"e", create_revision=3),
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v", lease=5)),
            rpc_pb2.RequestOp(
                request_range=rpc_pb2.RangeRequest(key=b"p", range_end=b"q", limit=3)
            ),
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"x")),
        ],
        failure=[
            rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(
                    compare=[C(result=C.EQUAL, target=C.VERSION, key=b"n", version=0)],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"n"))],
                )
            )
        ],
    )
    assert request.encoded == expected.SerializeToString()
    assert not request.read_only
    assert (Compare.version(b"a") == 0).request == expected.compare[0]
    assert Op.get(b"p", prefix=True, limit=3).request == expected.success[1]


def test_varint_matches_protobuf_for_edge_values() -> None:
    for value in (1, 127, 128, 16_383, 16_384, 2**63 - 1, -1, -(2**63)):
        encoded = rpc_pb2.RangeRequest(limit=value).SerializeToString()
        assert encoded == b"\x18" + varint(value)


key_values = st.builds(
    kv_pb2.KeyValue,
    key=keys,
    create_revision=any_int64,
    mod_revision=any_int64,
    version=any_int64,
    value=values,
    lease=any_int64,
)
headers = st.builds(
    rpc_pb2.ResponseHeader,
    cluster_id=uint64s,
    member_id=uint64s,
    revision=any_int64,
    raft_term=uint64s,
)


def _kv(pb: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key, pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


@given(header=headers, kvs=st.lists(key_values, max_size=4), more=st.booleans(), count=any_int64)
def test_a_range_answer_reads_as_protobuf_reads_it(
    header: rpc_pb2.ResponseHeader, kvs: list[kv_pb2.KeyValue], more: bool, count: int
) -> None:
    pb = rpc_pb2.RangeResponse(header=header, kvs=kvs, more=more, count=count)
    result = get_result(pb.SerializeToString())
    assert result.kvs == [_kv(kv) for kv in kvs]
    assert (result.count, result.more, result.revision) == (count, more, header.revision)


@settings(max_examples=50)
@given(header=headers, prev=st.one_of(st.none(), key_values), deleted=any_int64)
def test_put_delete_and_txn_answers_read_as_protobuf_reads_them(
    header: rpc_pb2.ResponseHeader, prev: kv_pb2.KeyValue | None, deleted: int
) -> None:
    put = rpc_pb2.PutResponse(header=header, prev_kv=prev)
    result = put_result(put.SerializeToString())
    assert result.revision == header.revision
    assert result.prev_kv == (None if prev is None else _kv(prev))
    delete = rpc_pb2.DeleteRangeResponse(
        header=header, deleted=deleted, prev_kvs=[] if prev is None else [prev]
    )
    removed = delete_result(delete.SerializeToString())
    assert (removed.deleted, removed.revision) == (deleted, header.revision)
    assert removed.prev_kvs == ([] if prev is None else [_kv(prev)])
    inner = rpc_pb2.TxnResponse(
        header=header, succeeded=True, responses=[rpc_pb2.ResponseOp(response_put=put)]
    )
    txn = rpc_pb2.TxnResponse(
        header=header,
        succeeded=False,
        responses=[
            rpc_pb2.ResponseOp(response_range=rpc_pb2.RangeResponse(header=header, count=1)),
            rpc_pb2.ResponseOp(response_delete_range=delete),
            rpc_pb2.ResponseOp(response_txn=inner),
            rpc_pb2.ResponseOp(response_put=rpc_pb2.PutResponse()),  # an all-default answer
        ],
    )
    answer = txn_result(txn.SerializeToString())
    assert not answer.succeeded and answer.revision == header.revision
    got_range, got_delete, got_txn, got_empty = answer.responses
    assert got_range.count == 1 and got_range.kvs == []  # type: ignore[union-attr]
    assert got_delete == removed
    assert got_txn.succeeded and got_txn.responses == [result]  # type: ignore[union-attr]
    assert got_empty == put_result(b"")


def test_unknown_fields_are_skipped() -> None:
    """A newer server's fields (any wire type) do not disturb the ones read."""
    pb = rpc_pb2.RangeResponse(
        header=rpc_pb2.ResponseHeader(revision=9), kvs=[kv_pb2.KeyValue(key=b"k")], count=1
    )
    extra = (
        b"\xa8\x06\x05"  # field 101, varint
        + b"\xb1\x06"
        + b"\x00" * 8  # field 102, fixed64
        + b"\xba\x06\x02hi"  # field 103, bytes
        + b"\xc5\x06"
        + b"\x00" * 4  # field 104, fixed32
    )
    result = get_result(pb.SerializeToString() + extra)
    assert (result.revision, result.count, [kv.key for kv in result.kvs]) == (9, 1, [b"k"])
    # A header with fields this client does not know (field 20, bytes; field 5, varint).
    header = rpc_pb2.ResponseHeader(cluster_id=2**63, revision=11).SerializeToString()
    for unknown in (b"\xa2\x01\x03abc", b"\x28\x96\x01"):
        put = b"\x0a" + bytes([len(header) + len(unknown)]) + header + unknown
        assert put_result(put).revision == 11


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05\x18",  # a header said to be 5 bytes, 1 there
        b"\x20\xff\xff",  # a varint cut short
        b"\x20" + b"\xff" * 11,  # a varint longer than ten bytes
        b"\x12\x03\x0a\x09abc",  # a key longer than its key-value
        b"\x23",  # wire type 3 (groups) is not used by etcd
    ],
)
def test_malformed_answers_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedAnswerError):
        get_result(data)


def test_a_txn_answer_op_without_a_kind_is_refused() -> None:
    with pytest.raises(MalformedAnswerError, match="no operation"):
        txn_result(b"\x1a\x00")  # one ResponseOp, empty
