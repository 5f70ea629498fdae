"""Requests, responses and events of the store, shaped like etcd's protobufs.

Field names follow ``etcdserverpb``/``mvccpb`` so the gRPC layer maps them one
to one. One deliberate difference: responses carry ``revision`` directly
instead of a ``ResponseHeader``; the server fills ``cluster_id``,
``member_id`` and ``raft_term`` and copies ``revision`` into the header.

Every message validates its field *types* in ``__post_init__`` (a Python
caller can pass anything; protobuf cannot), raising
:class:`~syndic.kv.errors.InvalidArgumentError` or, for enum fields,
the error etcd gives. Semantic checks (empty key, duplicate keys in a txn)
happen in the store so their error is exactly etcd's.

Example::

    resp = store.put(PutRequest(key=b"/svc/a", value=b"10.0.0.1", prev_kv=True))
    resp.revision  # store revision after the write
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from syndic.frozen import fast_frozen_init
from syndic.kv.errors import InvalidArgumentError, InvalidSortOptionError

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _check_bytes(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise InvalidArgumentError(f"{name} must be bytes, got {type(value).__name__}")


def _check_int64(name: str, value: object) -> None:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgumentError(f"{name} must be an int64, got {value!r:.40}")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise InvalidArgumentError(f"{name} must be bool, got {type(value).__name__}")


class SortOrder(enum.IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(enum.IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(enum.IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


class WatchFilter(enum.IntEnum):
    NOPUT = 0
    NODELETE = 1


class AlarmType(enum.IntEnum):
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class KeyValue:
    """mvccpb.KeyValue. A deleted key in a DELETE event has only key and mod_revision."""

    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Event:
    """mvccpb.Event: one change at ``kv.mod_revision``."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class RangeRequest:
    """etcdserverpb.RangeRequest.

    ``range_end`` conventions (etcd): empty = the single ``key``;
    ``b"\\0"`` = every key >= ``key``; otherwise the half-open ``[key, range_end)``
    (``prefix_end(p)`` gives the end of prefix ``p``). ``limit`` <= 0 and
    ``revision`` <= 0 mean "no limit" and "current revision", as in etcd.
    """

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("range_end", self.range_end)
        for name in (
            "limit",
            "revision",
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
        ):
            _check_int64(name, getattr(self, name))
        for name in ("serializable", "keys_only", "count_only"):
            _check_bool(name, getattr(self, name))
        # etcd: ErrGRPCInvalidSortOption for values outside the enums.
        try:
            object.__setattr__(self, "sort_order", SortOrder(self.sort_order))
            object.__setattr__(self, "sort_target", SortTarget(self.sort_target))
        except (ValueError, TypeError):
            raise InvalidSortOptionError(
                f"sort_order={self.sort_order!r:.20} sort_target={self.sort_target!r:.20}"
            ) from None


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class RangeResponse:
    revision: int
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class PutRequest:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    def __post_init__(self) -> None:
        # One test for the valid case: every replayed or proposed put passes
        # here (a restart decodes a million of them); the named checks below
        # run only to word the error.
        if (
            type(self.key) is bytes
            and type(self.value) is bytes
            and type(self.lease) is int
            and INT64_MIN <= self.lease <= INT64_MAX
            and type(self.prev_kv) is bool
            and type(self.ignore_value) is bool
            and type(self.ignore_lease) is bool
        ):
            return
        _check_bytes("key", self.key)
        _check_bytes("value", self.value)
        _check_int64("lease", self.lease)
        for name in ("prev_kv", "ignore_value", "ignore_lease"):
            _check_bool(name, getattr(self, name))


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class PutResponse:
    revision: int
    prev_kv: KeyValue | None = None


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("range_end", self.range_end)
        _check_bool("prev_kv", self.prev_kv)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    revision: int
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Compare:
    """etcdserverpb.Compare. The operand used is the one matching ``target``."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    range_end: bytes = b""
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("range_end", self.range_end)
        _check_bytes("value", self.value)
        for name in ("version", "create_revision", "mod_revision", "lease"):
            _check_int64(name, getattr(self, name))
        try:
            object.__setattr__(self, "target", CompareTarget(self.target))
            object.__setattr__(self, "result", CompareResult(self.result))
        except (ValueError, TypeError):
            raise InvalidArgumentError(
                f"compare target={self.target!r:.20} result={self.result!r:.20}"
            ) from None


RequestOp: TypeAlias = "RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest"
ResponseOp: TypeAlias = "RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse"
_OP_TYPES: tuple[type, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TxnRequest:
    """etcdserverpb.TxnRequest: if every compare holds, ``success`` runs, else ``failure``."""

    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()

    def __post_init__(self) -> None:
        for name in ("compare", "success", "failure"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if type(value) is not tuple:
                raise InvalidArgumentError(f"{name} must be a tuple, got {type(value).__name__}")
        for cmp in self.compare:
            if type(cmp) is not Compare:
                raise InvalidArgumentError(
                    f"compare entry must be Compare, got {type(cmp).__name__}"
                )
        for op in self.success + self.failure:
            if type(op) not in _OP_TYPES:
                raise InvalidArgumentError(f"txn op must be a request, got {type(op).__name__}")


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class TxnResponse:
    revision: int
    succeeded: bool
    responses: tuple[ResponseOp, ...] = ()


_OP_TYPES = (RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class CompactionRequest:
    revision: int
    physical: bool = False

    def __post_init__(self) -> None:
        _check_int64("revision", self.revision)
        _check_bool("physical", self.physical)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class CompactionResponse:
    revision: int


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    """A new lease; ``id`` 0 = generate one.

    ``ttl_s`` below the store's minimum is raised to it (etcd: minLeaseTTL).
    """

    ttl_s: int
    id: int = 0

    def __post_init__(self) -> None:
        _check_int64("ttl_s", self.ttl_s)
        _check_int64("id", self.id)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    revision: int
    id: int
    ttl_s: int
    error: str = ""


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    id: int

    def __post_init__(self) -> None:
        _check_int64("id", self.id)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    revision: int


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    id: int

    def __post_init__(self) -> None:
        _check_int64("id", self.id)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResponse:
    revision: int
    id: int
    ttl_s: int


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveRequest:
    id: int
    keys: bool = False

    def __post_init__(self) -> None:
        _check_int64("id", self.id)
        _check_bool("keys", self.keys)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResponse:
    """``ttl_s`` is -1 for an unknown lease, as etcd answers (not an error)."""

    revision: int
    id: int
    ttl_s: int
    granted_ttl_s: int = 0
    keys: tuple[bytes, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseStatus:
    id: int


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class LeaseLeasesResponse:
    revision: int
    leases: tuple[LeaseStatus, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class AlarmMember:
    member_id: int
    alarm: AlarmType


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class HashKVResponse:
    """``hash`` of every key-value revision in (compact_revision, revision], as etcd's HashKV."""

    revision: int
    hash: int
    compact_revision: int
    hash_revision: int = field(default=0)


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` covering every key starting with ``prefix`` (clientv3.GetPrefixRangeEnd).

    >>> prefix_end(b"/svc/")
    b'/svc0'
    """
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    # All 0xff (or empty): no upper bound, which etcd spells "\0".
    return b"\0"
