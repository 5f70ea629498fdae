"""syndic's messages and an etcd client's (aetcd) are the same on the wire.

Each message is built with one side's classes, serialized, parsed with the
other side's classes, and compared field by field; re-serializing must give
the same bytes. aetcd's classes come from etcd's own rpc.proto, kv.proto and
auth.proto, so agreement with them is agreement with etcd.
"""

from __future__ import annotations

from typing import Any

import pytest
from aetcd.rpc import auth_pb2 as etcd_auth
from aetcd.rpc import kv_pb2 as etcd_kv
from aetcd.rpc import rpc_pb2 as etcd_rpc
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import given
from hypothesis import strategies as st

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2
from tests.api.wire_helpers import as_dict, fill, oneof_choices

_PAIRS = ((rpc_pb2, etcd_rpc), (kv_pb2, etcd_kv), (auth_pb2, etcd_auth))


def _counterpart(message: Message) -> type[Message]:
    """The class on the other side with the same message name."""
    for ours, theirs in _PAIRS:
        for module, other in ((ours, theirs), (theirs, ours)):
            if type(message) is getattr(module, type(message).__name__, None):
                cls: type[Message] = getattr(other, type(message).__name__)
                return cls
    raise AssertionError(f"no counterpart for {type(message)}")


def _cross(message: Message) -> Message:
    """Serialize ``message``, parse it as its counterpart, check both agree."""
    data = message.SerializeToString(deterministic=True)
    parsed = _counterpart(message).FromString(data)
    assert as_dict(parsed) == as_dict(message)
    assert parsed.SerializeToString(deterministic=True) == data
    # Nothing parsed as unknown: every field number is known on both sides.
    assert len(UnknownFieldSet(parsed)) == 0
    return parsed


def _both_ways(message: Message) -> None:
    parsed = _cross(message)
    _cross(parsed)


_h = rpc_pb2.ResponseHeader(cluster_id=2**64 - 1, member_id=2**63, revision=2**63 - 1, raft_term=7)
_kv = kv_pb2.KeyValue(
    key=b"\x00key",
    create_revision=3,
    mod_revision=5,
    version=2,
    value=b"\xffvalue",
    lease=-1,
)


def _representative() -> list[tuple[str, Message]]:
    Range = rpc_pb2.RangeRequest
    Compare = rpc_pb2.Compare
    FilterType = rpc_pb2.WatchCreateRequest.FilterType
    nested_txn = rpc_pb2.TxnRequest(
        compare=[
            Compare(key=b"n", target=Compare.LEASE, result=Compare.GREATER, lease=9),
        ],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"n", value=b"v"))],
    )
    return [
        (
            "range",
            Range(
                key=b"a",
                range_end=b"\x00",
                limit=10,
                revision=42,
                sort_order=Range.DESCEND,
                sort_target=Range.VALUE,
                serializable=True,
                keys_only=True,
                count_only=True,
                min_mod_revision=1,
                max_mod_revision=2,
                min_create_revision=3,
                max_create_revision=4,
            ),
        ),
        ("range-response", rpc_pb2.RangeResponse(header=_h, kvs=[_kv, _kv], more=True, count=9)),
        (
            "put",
            rpc_pb2.PutRequest(
                key=b"k",
                value=b"v" * 300,
                lease=2**62,
                prev_kv=True,
                ignore_value=True,
                ignore_lease=True,
            ),
        ),
        ("put-response", rpc_pb2.PutResponse(header=_h, prev_kv=_kv)),
        (
            "txn",
            rpc_pb2.TxnRequest(
                compare=[
                    Compare(key=b"a", target=Compare.VERSION, result=Compare.EQUAL, version=0),
                    Compare(
                        key=b"b", target=Compare.CREATE, result=Compare.LESS, create_revision=4
                    ),
                    Compare(
                        key=b"c",
                        range_end=b"d",
                        target=Compare.MOD,
                        result=Compare.NOT_EQUAL,
                        mod_revision=5,
                    ),
                    Compare(key=b"e", target=Compare.VALUE, result=Compare.GREATER, value=b""),
                ],
                success=[
                    rpc_pb2.RequestOp(request_range=Range(key=b"a")),
                    rpc_pb2.RequestOp(request_txn=nested_txn),
                ],
                failure=[
                    rpc_pb2.RequestOp(
                        request_delete_range=rpc_pb2.DeleteRangeRequest(
                            key=b"a", range_end=b"z", prev_kv=True
                        )
                    )
                ],
            ),
        ),
        (
            "txn-response",
            rpc_pb2.TxnResponse(
                header=_h,
                succeeded=True,
                responses=[
                    rpc_pb2.ResponseOp(response_range=rpc_pb2.RangeResponse(kvs=[_kv])),
                    rpc_pb2.ResponseOp(
                        response_txn=rpc_pb2.TxnResponse(
                            responses=[
                                rpc_pb2.ResponseOp(
                                    response_delete_range=rpc_pb2.DeleteRangeResponse(
                                        deleted=1, prev_kvs=[_kv]
                                    )
                                )
                            ]
                        )
                    ),
                ],
            ),
        ),
        (
            "watch-create",
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=b"w",
                    range_end=b"x",
                    start_revision=17,
                    progress_notify=True,
                    filters=[FilterType.NOPUT, FilterType.NODELETE],
                    prev_kv=True,
                    watch_id=5,
                    fragment=True,
                )
            ),
        ),
        (
            "watch-cancel",
            rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=5)),
        ),
        ("watch-progress", rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())),
        (
            "watch-response",
            rpc_pb2.WatchResponse(
                header=_h,
                watch_id=5,
                created=True,
                canceled=True,
                compact_revision=3,
                cancel_reason="compacted",
                fragment=True,
                events=[
                    kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=_kv, prev_kv=_kv),
                    kv_pb2.Event(type=kv_pb2.Event.PUT, kv=_kv),
                ],
            ),
        ),
        ("lease-keepalive", rpc_pb2.LeaseKeepAliveRequest(ID=2**63 - 1)),
        ("lease-keepalive-response", rpc_pb2.LeaseKeepAliveResponse(header=_h, ID=-5, TTL=-1)),
        (
            "member-add",
            rpc_pb2.MemberAddRequest(peerURLs=["http://10.0.0.1:2380", "unix://p"], isLearner=True),
        ),
        (
            "member-add-response",
            rpc_pb2.MemberAddResponse(
                header=_h,
                member=rpc_pb2.Member(ID=2**64 - 1, name="m1", peerURLs=["http://a:2380"]),
                members=[
                    rpc_pb2.Member(ID=1, name="m0", clientURLs=["http://a:2379"], isLearner=True)
                ],
            ),
        ),
        (
            "role-grant-permission",
            rpc_pb2.AuthRoleGrantPermissionRequest(
                name="reader",
                perm=auth_pb2.Permission(
                    permType=auth_pb2.Permission.READWRITE, key=b"/a", range_end=b"/b"
                ),
            ),
        ),
        ("status-request", rpc_pb2.StatusRequest()),
        (
            "status-response",
            rpc_pb2.StatusResponse(
                header=_h,
                version="3.5.0",
                dbSize=1 << 40,
                leader=2**64 - 2,
                raftIndex=99,
                raftTerm=3,
                raftAppliedIndex=98,
                errors=["NOSPACE", "ünïcode"],
                dbSizeInUse=1 << 20,
                isLearner=True,
            ),
        ),
        (
            "alarm",
            rpc_pb2.AlarmRequest(
                action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=3, alarm=rpc_pb2.CORRUPT
            ),
        ),
        (
            "user",
            auth_pb2.User(
                name=b"u", password=b"$2a$", roles=["r1", "r2"], options={"no_password": True}
            ),
        ),
    ]


@pytest.mark.parametrize(("name", "message"), _representative(), ids=lambda v: v)
def test_representative_messages_cross_parse_both_ways(name: str, message: Message) -> None:
    _both_ways(message)


def test_representative_messages_set_every_field_they_claim() -> None:
    # Guard against a vacuous comparison: each sample really carries data.
    for name, message in _representative():
        if message.DESCRIPTOR.fields:
            assert message.ListFields(), name


def _all_message_classes() -> list[tuple[type[Message], int]]:
    cases = []
    for ours, _ in _PAIRS:
        for name in sorted(ours.DESCRIPTOR.message_types_by_name):
            cls = getattr(ours, name)
            cases.extend((cls, choice) for choice in range(oneof_choices(cls.DESCRIPTOR)))
    return cases


@pytest.mark.parametrize(
    ("cls", "choice"), _all_message_classes(), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_every_message_fully_populated_survives_both_directions(
    cls: type[Message], choice: int
) -> None:
    ours = fill(cls(), choice)
    _both_ways(ours)
    theirs = fill(_counterpart(ours)(), choice)
    parsed = _cross(theirs)
    assert parsed.SerializeToString(deterministic=True) == ours.SerializeToString(
        deterministic=True
    )


_int64 = st.integers(-(2**63), 2**63 - 1)
_key = st.binary(max_size=64)


@given(
    key=_key,
    range_end=_key,
    limit=_int64,
    revision=_int64,
    sort_order=st.sampled_from([0, 1, 2]),
    sort_target=st.sampled_from([0, 1, 2, 3, 4]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_range_requests_from_etcd_client_parse_identically(
    key: bytes,
    range_end: bytes,
    limit: int,
    revision: int,
    sort_order: int,
    sort_target: int,
    flags: tuple[bool, bool, bool],
) -> None:
    serializable, keys_only, count_only = flags
    theirs = etcd_rpc.RangeRequest(
        key=key,
        range_end=range_end,
        limit=limit,
        revision=revision,
        sort_order=sort_order,
        sort_target=sort_target,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
    )
    ours = rpc_pb2.RangeRequest.FromString(theirs.SerializeToString())
    assert (ours.key, ours.range_end, ours.limit, ours.revision) == (
        key,
        range_end,
        limit,
        revision,
    )
    assert (ours.sort_order, ours.sort_target) == (sort_order, sort_target)
    assert (ours.serializable, ours.keys_only, ours.count_only) == flags


_compare_operand: Any = st.one_of(
    st.tuples(st.just("version"), _int64),
    st.tuples(st.just("create_revision"), _int64),
    st.tuples(st.just("mod_revision"), _int64),
    st.tuples(st.just("value"), st.binary(max_size=32)),
    st.tuples(st.just("lease"), _int64),
)


@given(
    operand=_compare_operand,
    result=st.sampled_from([0, 1, 2, 3]),
    target=st.sampled_from([0, 1, 2, 3, 4]),
    key=_key,
    range_end=_key,
)
def test_compare_oneof_member_is_preserved(
    operand: tuple[str, Any], result: int, target: int, key: bytes, range_end: bytes
) -> None:
    field, value = operand
    ours = rpc_pb2.Compare(result=result, target=target, key=key, range_end=range_end)
    setattr(ours, field, value)
    theirs = etcd_rpc.Compare.FromString(ours.SerializeToString())
    assert theirs.WhichOneof("target_union") == field
    assert getattr(theirs, field) == value
    assert (theirs.result, theirs.target, theirs.key, theirs.range_end) == (
        result,
        target,
        key,
        range_end,
    )
    back = rpc_pb2.Compare.FromString(theirs.SerializeToString())
    assert back == ours


def test_field_from_a_newer_etcd_is_kept_not_dropped() -> None:
    # etcd 3.6 adds HashKVResponse.hash_revision = 4; a 3.5-shaped parser must
    # carry it through untouched so a proxying syndic does not lose it.
    newer = rpc_pb2.HashKVResponse(hash=7).SerializeToString() + b"\x20\x2a"
    parsed = rpc_pb2.HashKVResponse.FromString(newer)
    assert parsed.hash == 7
    assert parsed.SerializeToString() == newer


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05abc",  # length-delimited field running past the end
        b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
        b"\x0f",  # wire type 7 does not exist
        b"\x00\x01",  # field number 0 is invalid
    ],
)
def test_malformed_bytes_raise_decode_error(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        rpc_pb2.PutRequest.FromString(data)
