"""The values the client returns: frozen, slotted, compared by value.

Each mirrors one etcd v3 response, with Python names and units in the names
(``ttl_s``); ``revision`` is always the response header's revision, the
store revision the answer reflects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key's state (etcd: mvccpb.KeyValue); ``lease`` is 0 when it has none."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class GetResult:
    """A Range answer: the keys, their total count and whether ``limit`` cut it short."""

    kvs: list[KeyValue]
    count: int
    more: bool
    revision: int


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    revision: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded`` says which branch ran; ``responses`` has one result per op in it."""

    succeeded: bool
    responses: list[OpResult]
    revision: int


OpResult: TypeAlias = GetResult | PutResult | DeleteResult | TxnResult


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change; for a DELETE, ``kv`` holds the key and its deletion revision."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response (fragments joined); empty for progress notices.

    ``revision`` is the header revision: every change up to it that matches
    the watch has been delivered once this batch arrives.
    """

    revision: int
    events: list[Event]

    @property
    def is_progress_notify(self) -> bool:
        return not self.events


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    id: int
    ttl_s: int
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """``ttl_s`` is -1 when the lease expired or never existed (etcd's convention)."""

    id: int
    ttl_s: int
    granted_ttl_s: int
    keys: list[bytes]
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseKeepAlive:
    """A renewal's answer; ``ttl_s`` 0 means the lease is gone."""

    id: int
    ttl_s: int
    revision: int


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberListResult:
    members: list[Member]
    revision: int
    member_id: int
    cluster_id: int


@dataclass(frozen=True, slots=True)
class MemberAddResult:
    member: Member
    members: list[Member]
    revision: int


class AlarmType(enum.Enum):
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


@dataclass(frozen=True, slots=True)
class Alarm:
    member_id: int
    alarm: AlarmType


@dataclass(frozen=True, slots=True)
class Status:
    """A member's view of itself (etcd: StatusResponse)."""

    member_id: int
    version: str
    db_size_bytes: int
    db_size_in_use_bytes: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: list[str]
    is_learner: bool
    revision: int


@dataclass(frozen=True, slots=True)
class HashKV:
    hash: int
    compact_revision: int
    revision: int
    member_id: int
