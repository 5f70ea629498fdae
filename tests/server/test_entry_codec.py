"""Log entry data: the bytes on disk and on the wire stay what syndic has
always written (a client's write as its own protobuf bytes since that
format came in), every request round-trips, and foreign bytes are refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from syndic.api.gen import rpc_pb2
from syndic.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from syndic.server import request_pb
from syndic.server.entry_codec import (
    EntryCodecError,
    EntryKind,
    WireRequest,
    decode_entry,
    encode_entry,
    store_request,
)

MEMBER_ID = 0x8E9E05C52164694D

TXN = TxnRequest(
    compare=(Compare(b"k", CompareTarget.MOD, CompareResult.LESS, mod_revision=3),),
    success=(RangeRequest(key=b"a", range_end=b"b", limit=2),),
    failure=(DeleteRangeRequest(key=b"k"), TxnRequest(success=(PutRequest(key=b"x"),))),
)

# Entry data as syndic has written it to WALs and snapshots: a member must
# keep reading old logs and writing what older members read.
GOLDEN = [
    (
        EntryKind.STORE,
        PutRequest(key=b"k", value=b"v", lease=7, prev_kv=True),
        "9401cf8e9e05c52164694d2a810196c4016bc4017607c3c2c2",
    ),
    (
        EntryKind.STORE,
        TXN,
        "9401cf8e9e05c52164694d2a81039391810499c4016b0202c400000003c400009181009dc40161c401"
        "6202000000c2c2c20000000092810293c4016bc400c28103939091810196c40178c40000c2c2c290",
    ),
    (EntryKind.ALARM, [True, 1], "9403cf8e9e05c52164694d2a92c301"),
    (
        EntryKind.AUTH,
        ["write", "u1", 4, PutRequest(key=b"/p/x", value=b"1")],
        "9404cf8e9e05c52164694d2a94a57772697465a2753104810196c4042f702f78c4013100c2c2c2",
    ),
    (EntryKind.STORE, LeaseGrantRequest(ttl_s=60, id=77), "9401cf8e9e05c52164694d2a8106923c4d"),
]


@pytest.mark.parametrize(("kind", "payload", "hex_data"), GOLDEN)
def test_entry_bytes_are_syndics_format(kind: EntryKind, payload: Any, hex_data: str) -> None:
    assert encode_entry(kind, MEMBER_ID, 42, payload).hex() == hex_data
    decoded = decode_entry(bytes.fromhex(hex_data))
    assert (decoded.kind, decoded.proposer_id, decoded.request_id) == (kind, MEMBER_ID, 42)
    # Arrays come back as tuples, as the request fields hold them.
    assert decoded.payload == (tuple(payload) if isinstance(payload, list) else payload)


@pytest.mark.parametrize(
    "request_",
    [
        PutRequest(key=b"\x00" * 3, value=b"v" * 300, lease=-1, ignore_lease=True),
        RangeRequest(
            key=b"a",
            range_end=b"\x00",
            revision=9,
            sort_order=SortOrder.DESCEND,
            sort_target=SortTarget.MOD,
            serializable=True,
            keys_only=True,
            max_create_revision=4,
        ),
        DeleteRangeRequest(key=b"a", range_end=b"z", prev_kv=True),
        TXN,
        TxnRequest(),
        CompactionRequest(revision=12, physical=True),
        LeaseRevokeRequest(id=5),
        LeaseKeepAliveRequest(id=6),
    ],
)
def test_every_request_round_trips(request_: object) -> None:
    decoded = decode_entry(encode_entry(EntryKind.STORE, 1, 2, request_))
    assert decoded.payload == request_ and type(decoded.payload) is type(request_)


def test_an_older_entry_with_a_clock_reading_still_decodes() -> None:
    old = msgpack.packb([1, 3, 4, 123456, {6: [60, 77]}])
    assert decode_entry(old).payload == LeaseGrantRequest(ttl_s=60, id=77)


def test_what_no_request_class_is_cannot_be_encoded() -> None:
    with pytest.raises(TypeError, match="cannot travel in a log entry"):
        encode_entry(EntryKind.STORE, 1, 2, object())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a syndic entry"),
        (b"\x94\x01", "not a syndic entry"),  # truncated
        (msgpack.packb({1: 2}), "PutRequest needs 6 fields"),  # not even an array
        (msgpack.packb([1, 2, 3]), "not a syndic entry"),
        (msgpack.packb([9, 1, 2, None]), "not a syndic entry"),  # unknown kind
        (msgpack.packb([1, "a", 2, None]), "ids must be integers"),
        (msgpack.packb([1, 1, True, None]), "ids must be integers"),
        (msgpack.packb([1, 1, 2, {99: []}]), "unknown request type id 99"),
        (msgpack.packb([1, 1, 2, {"1": []}]), "unknown request type id"),
        (msgpack.packb([1, 1, 2, {1: [b"k"], 2: [b"k"]}]), "exactly one type id"),
        (msgpack.packb([1, 1, 2, {1: [b"k"]}]), "PutRequest needs 6 fields"),
        (msgpack.packb([1, 1, 2, {1: b"k"}]), "PutRequest needs 6 fields"),
        # The class's own validation runs on what a peer or a disk handed over.
        (msgpack.packb([1, 1, 2, {1: ["k", b"v", 0, False, False, False]}]), "key"),
        (msgpack.packb([1, 1, 2, {1: [b"k", b"v", 1 << 63, False, False, False]}]), "lease"),
        (msgpack.packb([1, 1, 2, {3: [[{1: [b"k"] * 6}], [], []]}]), "not a syndic entry"),
    ],
)
def test_foreign_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(EntryCodecError, match=message):
        decode_entry(data)


def test_deeply_nested_maps_are_refused_not_a_crash() -> None:
    data = b"\x94\x01\x01\x02" + b"\x81\x03" * 100_000 + b"\xc0"
    with pytest.raises(EntryCodecError):
        decode_entry(data)


# ---------------------------------------------------------------- protobuf entries

_PUT_PB = rpc_pb2.PutRequest(key=b"k", value=b"v", lease=7, prev_kv=True)
_TXN_PB = rpc_pb2.TxnRequest(
    compare=[rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.MOD, mod_revision=3)],
    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"x"))],
    failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"k"))],
)
WIRE = [
    WireRequest(request_pb.put_request_from_pb(_PUT_PB), _PUT_PB.SerializeToString()),
    WireRequest(
        DeleteRangeRequest(key=b"a", range_end=b"z", prev_kv=True),
        rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"z", prev_kv=True).SerializeToString(),
    ),
    WireRequest(request_pb.txn_request_from_pb(_TXN_PB), _TXN_PB.SerializeToString()),
]


def test_a_put_entry_is_a_tag_the_ids_and_the_clients_bytes() -> None:
    data = encode_entry(EntryKind.STORE, MEMBER_ID, 42, WIRE[0])
    # Part of the on-disk format: tag 0x01, proposer and request ids as uint64.
    assert data.hex() == "018e9e05c52164694d000000000000002a" + _PUT_PB.SerializeToString().hex()


@pytest.mark.parametrize("wired", WIRE)
def test_a_wire_entry_decodes_to_the_request_admitted(wired: WireRequest) -> None:
    decoded = decode_entry(encode_entry(EntryKind.STORE, MEMBER_ID, 42, wired))
    assert (decoded.kind, decoded.proposer_id, decoded.request_id) == (
        EntryKind.STORE,
        MEMBER_ID,
        42,
    )
    assert decoded.payload == wired.request and type(decoded.payload) is type(wired.request)
    assert store_request(wired) is wired.request


def test_a_wire_request_travels_only_in_a_store_entry_and_only_for_writes() -> None:
    with pytest.raises(TypeError, match="STORE entry"):
        encode_entry(EntryKind.AUTH, 1, 2, WIRE[0])
    with pytest.raises(TypeError, match="does not travel as protobuf"):
        WireRequest(LeaseRevokeRequest(id=5), b"")  # type: ignore[arg-type]


def _wire_txn(*ops: rpc_pb2.RequestOp) -> bytes:
    return b"\x03" + bytes(16) + rpc_pb2.TxnRequest(success=ops).SerializeToString()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x00", "not a syndic entry"),  # header cut short
        (b"\x01" + bytes(16) + b"\xff\xff", "not a syndic entry"),  # not protobuf
        # A Txn op with no request set, refused as at admission.
        (_wire_txn(rpc_pb2.RequestOp()), "no request set"),
        # A sort enum protobuf lets through, inside a Txn's range.
        (
            _wire_txn(rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(sort_order=7))),
            "sort_order",
        ),
    ],
)
def test_foreign_wire_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(EntryCodecError, match=message):
        decode_entry(data)
