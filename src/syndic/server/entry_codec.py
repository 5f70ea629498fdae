"""Store requests inside Raft log entries.

A log entry's data is msgpack: ``[kind, proposer_id, request_id, payload]``.
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
from collections.abc import Callable
from typing import Any

import msgpack

from syndic.kv import messages as kv

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
    get = operator.attrgetter(*names)
    if len(names) > 1:
        return get
    return lambda value: (get(value),)  # attrgetter of one name returns it bare


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


def encode_entry(kind: EntryKind, proposer_id: int, request_id: int, payload: Any) -> bytes:
    """Entry data for ``payload`` (a store request, or plain msgpack data).

    >>> decode_entry(encode_entry(EntryKind.ALARM, 1, 2, [True, 1])).payload
    (True, 1)
    """
    return msgpack.packb([int(kind), proposer_id, request_id, payload], default=_request_map)


def decode_entry(data: bytes) -> DecodedEntry:
    """The inverse of :func:`encode_entry`; raises EntryCodecError on foreign bytes."""
    try:
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
