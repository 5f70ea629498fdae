"""Store requests inside Raft log entries.

A client's Put, DeleteRange or Txn travels as its own protobuf bytes: one tag
byte (which request), the proposer's member id and its request id as two
big-endian uint64, then the request exactly as the client sent it. The
leader decoded and checked the request once, at admission (``WireRequest``
keeps both forms), and applies its own entries without decoding them; other
members and a restart parse the protobuf once. This spares encoding the
request a second time, in another format, on the path of every write.

Every other entry's data is msgpack: ``[kind, proposer_id, request_id,
payload]``, and a store request written so by an earlier version (or
proposed by the member itself: a lease grant, a compaction) still decodes.
A msgpack entry begins with an array header (0x94, 0x95), never with one of
the tag bytes, so one byte tells the two apart.
The proposer's member id and its request id let the member that proposed the
entry answer its waiting caller. An entry carries no clock reading: lease
deadlines are the leader's alone, on its own clock (``syndic.kv.lease``).
Entries written before that held the proposer's clock as a fourth field,
``[kind, proposer_id, request_id, now_ms, payload]``; they still decode, and
the reading is dropped unread.

Store requests are the frozen dataclasses of ``syndic.kv.messages``; each is
encoded as a one-entry map ``{type_id: [field values]}`` and tuples as lists,
which decodes without ambiguity and without trusting the bytes: only the
registered classes can be built, and their own validation runs on decode.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import struct
from collections.abc import Callable
from typing import Any, Final

import msgpack

from syndic.api.gen import rpc_pb2
from syndic.kv import messages as kv
from syndic.server import request_pb

# Only these classes may appear in a log entry. Append-only: a type id is
# part of the on-disk format of the WAL and of snapshots sent to peers.
_REQUEST_TYPES: tuple[type, ...] = (
    kv.RangeRequest,
    kv.PutRequest,
    kv.DeleteRangeRequest,
    kv.TxnRequest,
    kv.Compare,
    kv.CompactionRequest,
    kv.LeaseGrantRequest,
    kv.LeaseRevokeRequest,
    kv.LeaseKeepAliveRequest,
)
_TYPE_ID = {cls: i for i, cls in enumerate(_REQUEST_TYPES)}
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _REQUEST_TYPES}


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Every field of a request in declaration order, as one tuple."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    # attrgetter of one name returns the value bare, not in a tuple; typed
    # apart, so the compiled build does not expect a tuple from it.
    get_one: Callable[[Any], Any] = operator.attrgetter(names[0])
    return lambda value: (get_one(value),)


_GETTERS = {cls: _getter(names) for cls, names in _FIELDS.items()}


class EntryKind(enum.IntEnum):
    """What a normal log entry asks the state machine to do."""

    STORE = 1  # a syndic.kv request
    MEMBER_ATTRS = 2  # a member publishes its name and client URLs
    ALARM = 3  # raise or clear an alarm on every member: [active, alarm]
    # An auth-store operation or an authenticated write, as a plain list
    # [name, actor, *args] (see syndic.server.auth.store.OPERATIONS); a write
    # carries its store request, encoded like a STORE entry's.
    AUTH = 4


class EntryCodecError(ValueError):
    """Entry data that no syndic member wrote; the message says what is wrong."""


def _request_map(value: Any) -> dict[int, list[Any]]:
    # msgpack calls this for what it cannot pack itself (the request
    # dataclasses); tuples, IntEnums and the scalars it packs natively, as
    # arrays and ints, so only the requests cost a Python call.
    cls = type(value)
    type_id = _TYPE_ID.get(cls)
    if type_id is None:
        raise TypeError(f"{cls.__name__} cannot travel in a log entry")
    return {type_id: list(_GETTERS[cls](value))}


def _request_of(raw: dict[Any, Any]) -> Any:
    # msgpack calls this for every map it decodes, innermost first; arrays
    # arrive as tuples (use_list=False), as the request fields hold them.
    if len(raw) != 1:
        raise EntryCodecError("a request map must have exactly one type id")
    ((type_id, fields),) = raw.items()
    if type(type_id) is not int or not 0 <= type_id < len(_REQUEST_TYPES):
        raise EntryCodecError(f"unknown request type id {type_id!r}")
    cls = _REQUEST_TYPES[type_id]
    if type(fields) is not tuple or len(fields) != len(_FIELDS[cls]):
        raise EntryCodecError(f"{cls.__name__} needs {len(_FIELDS[cls])} fields")
    # The class's own validation runs: entry bytes come from peers and disk.
    return cls(*fields)


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedEntry:
    kind: EntryKind
    proposer_id: int
    request_id: int
    payload: Any


WireWrite = kv.PutRequest | kv.DeleteRangeRequest | kv.TxnRequest


@dataclasses.dataclass(frozen=True, slots=True)
class WireRequest:
    """A client's write in both forms: ``request``, decoded and checked at
    admission, is what the proposing member applies; ``wire``, the request's
    protobuf bytes as the client sent them, is what the log carries."""

    request: WireWrite
    wire: bytes

    def __post_init__(self) -> None:
        if type(self.request) not in _WIRE_TAGS:
            raise TypeError(f"{type(self.request).__name__} does not travel as protobuf")
        if type(self.wire) is not bytes:
            raise TypeError("wire must be bytes")


# Tag bytes of the protobuf entries (module docstring): part of the on-disk
# format, append-only. None may be a msgpack array header (0x90-0x9f, 0xdc, 0xdd).
_WIRE_TAGS: Final[dict[type, int]] = {
    kv.PutRequest: 0x01,
    kv.DeleteRangeRequest: 0x02,
    kv.TxnRequest: 0x03,
}
_WIRE_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    0x01: lambda wire: request_pb.put_request_from_pb(rpc_pb2.PutRequest.FromString(wire)),
    0x02: lambda wire: request_pb.delete_range_request_from_pb(
        rpc_pb2.DeleteRangeRequest.FromString(wire)
    ),
    0x03: lambda wire: request_pb.txn_request_from_pb(rpc_pb2.TxnRequest.FromString(wire)),
}
_WIRE_HEADER = struct.Struct(">BQQ")  # tag, proposer id, request id


def store_request(payload: Any) -> Any:
    """The request a STORE payload applies: a WireRequest's decoded form."""
    return payload.request if type(payload) is WireRequest else payload


def encode_entry(kind: EntryKind, proposer_id: int, request_id: int, payload: Any) -> bytes:
    """Entry data for ``payload`` (a WireRequest, a store request, or plain
    msgpack data).

    >>> decode_entry(encode_entry(EntryKind.ALARM, 1, 2, [True, 1])).payload
    (True, 1)
    """
    if type(payload) is WireRequest:
        if kind is not EntryKind.STORE:
            raise TypeError(f"a client's request travels in a STORE entry, not {kind.name}")
        header = _WIRE_HEADER.pack(_WIRE_TAGS[type(payload.request)], proposer_id, request_id)
        return header + payload.wire
    return msgpack.packb([int(kind), proposer_id, request_id, payload], default=_request_map)


def _decode_wire(data: bytes) -> DecodedEntry:
    tag, proposer_id, request_id = _WIRE_HEADER.unpack_from(data)
    # A request's own checks (sort enums, a Txn op with no request) run again
    # here, on bytes from peers and disk, as a msgpack entry's class
    # validation does; its size was checked once, by the member that admitted it.
    request = _WIRE_DECODERS[tag](data[_WIRE_HEADER.size :])
    return DecodedEntry(EntryKind.STORE, proposer_id, request_id, request)


def decode_entry(data: bytes) -> DecodedEntry:
    """The inverse of :func:`encode_entry`; raises EntryCodecError on foreign bytes."""
    try:
        if data[:1] and data[0] in _WIRE_DECODERS:
            return _decode_wire(data)
        fields = msgpack.unpackb(
            data, strict_map_key=False, use_list=False, object_hook=_request_of
        )
        if type(fields) is not tuple:
            raise EntryCodecError("an entry is an array")
        if len(fields) == 5:
            fields = fields[:3] + fields[4:]  # an older entry's clock reading (module docstring)
        kind, proposer_id, request_id, payload = fields
        if type(proposer_id) is not int or type(request_id) is not int:
            raise EntryCodecError("proposer and request ids must be integers")
        return DecodedEntry(EntryKind(kind), proposer_id, request_id, payload)
    except EntryCodecError:
        raise
    except Exception as exc:  # any defect of untrusted bytes is the same failure
        raise EntryCodecError(f"log entry data is not a syndic entry: {exc}") from exc
