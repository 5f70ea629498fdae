"""The simulated members apply what the server applies.

Client operations become the store's own request types
(:mod:`syndic.kv.messages`), travel in log entries through the server's entry
codec (:mod:`syndic.server.entry_codec`) and are applied by the server's
:class:`~syndic.server.state_machine.StateMachine` (the MVCC store, leases,
auth): the simulator's KV history exercises production apply, and its
snapshots are the server's snapshot bytes.

A write is a ``PutRequest``; a compare-and-set is a ``TxnRequest`` comparing
the value (or, for "absent", the create revision with 0) and putting on
success; a linearizable read is a ``RangeRequest`` answered locally after a
ReadIndex round.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from syndic.kv.errors import KvError
from syndic.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
    TxnResponse,
)
from syndic.kv.mvcc import StoreConfig
from syndic.server.entry_codec import DecodedEntry, EntryKind, decode_entry, encode_entry
from syndic.server.state_machine import StateMachine
from syndic.sim.workload import Request, RequestKind

# The server's limits, except the lease TTL floor: etcd's is 1.5 election
# timeouts (2 s with its defaults); the simulator's election timeout is about
# 100 ms, so 1 s keeps the same margin and lets leases expire within a run.
SIM_STORE_CONFIG = StoreConfig(lease_ttl_s_min=1)


class ApplyError(RuntimeError):
    """A committed entry the state machine cannot apply: the member must stop."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one entry produced for the member that proposed it."""

    proposer_id: int
    request_id: int
    revision: int
    succeeded: bool
    description: str
    payload: object
    result: object


StoreRequest = (
    PutRequest
    | TxnRequest
    | DeleteRangeRequest
    | CompactionRequest
    | LeaseGrantRequest
    | LeaseRevokeRequest
)


def store_request(request: Request) -> StoreRequest:
    """The store request a logged client operation becomes."""
    kind = request.kind
    key = request.key.encode()
    if kind is RequestKind.DELETE:
        return DeleteRangeRequest(key=key)
    if kind is RequestKind.COMPACT:
        return CompactionRequest(revision=request.revision)
    if kind is RequestKind.LEASE_GRANT:
        return LeaseGrantRequest(ttl_s=request.ttl_s, id=request.lease_id)
    if kind is RequestKind.LEASE_REVOKE:
        return LeaseRevokeRequest(id=request.lease_id)
    assert request.value is not None
    put = PutRequest(key=key, value=request.value.encode(), lease=request.lease_id)
    if kind in (RequestKind.WRITE, RequestKind.LEASE_PUT):
        return put
    if request.expected is None:
        condition = Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0)
    else:
        condition = Compare(
            key, CompareTarget.VALUE, CompareResult.EQUAL, value=request.expected.encode()
        )
    return TxnRequest(compare=(condition,), success=(put,))


def encode_request(request: Request, proposer_id: int, request_id: int) -> bytes:
    """Entry data as the server writes it (no clock reading: lease time is the leader's)."""
    return encode_entry(EntryKind.STORE, proposer_id, request_id, store_request(request))


def encode_expiry(proposer_id: int, lease_id: int) -> bytes:
    """A leader's revoke of a lease that expired on its clock (request id 0: no caller)."""
    return encode_entry(EntryKind.STORE, proposer_id, 0, LeaseRevokeRequest(id=lease_id))


# Every member applies the same committed entries within a few ms of each
# other; this many recent decodings cover that window.
DECODED_ENTRIES_CACHED_MAX = 1024


@functools.lru_cache(maxsize=DECODED_ENTRIES_CACHED_MAX)
def _decode_shared(data: bytes) -> DecodedEntry:
    """decode_entry(), once per distinct entry rather than once per member.

    Decoding is a pure function of the bytes and its result is immutable
    (frozen dataclasses and tuples), so members may share it; bytes that fail
    to decode are not cached and fail again on each member, as they must.
    """
    return decode_entry(data)


class MemberState:
    """One member's applied state: the server's state machine plus its applied index."""

    __slots__ = ("applied_index", "proposer_id", "sm")

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        # The applying member's own clock: the store reads it only while it is
        # the lease primary (a leader starting a granted lease's TTL).
        self.sm = StateMachine(SIM_STORE_CONFIG, {}, clock_ms=clock_ms)
        self.applied_index = 0
        # The member that proposed the entry being applied.
        self.proposer_id = 0

    @classmethod
    def restore(cls, clock_ms: Callable[[], int], data: bytes, index: int) -> MemberState:
        state = cls(clock_ms)
        state.sm.restore(data)
        state.applied_index = index
        return state

    def snapshot_bytes(self) -> bytes:
        return self.sm.serialize()

    @property
    def revision(self) -> int:
        return self.sm.store.revision

    def get(self, key: str) -> str | None:
        response = self.sm.store.range(RangeRequest(key=key.encode()))
        return response.kvs[0].value.decode() if response.kvs else None

    def skip(self, index: int) -> None:
        """Advance past an entry that carries no request (a no-op or conf change)."""
        self._advance(index)

    def apply(self, index: int, data: bytes) -> Applied | None:
        """Apply one committed normal entry; None for a leader's empty entry."""
        self._advance(index)
        if not data:
            return None
        try:
            entry = _decode_shared(data)
        except ValueError as exc:
            raise ApplyError(f"entry {index} cannot be decoded: {exc}") from exc
        self.proposer_id = entry.proposer_id
        result = self.sm.apply(entry)
        payload = entry.payload
        name = type(payload).__name__
        if isinstance(result, KvError):
            return Applied(
                entry.proposer_id,
                entry.request_id,
                self.revision,
                False,
                f"{name}: {result}",
                payload,
                result,
            )
        succeeded = result.succeeded if isinstance(result, TxnResponse) else True
        if isinstance(result, LeaseGrantResponse):
            name = f"{name} {result.id:#x} ttl={result.ttl_s}s"
        elif isinstance(payload, (PutRequest, DeleteRangeRequest)):
            name = f"{name} {payload.key.decode(errors='replace')}"
        return Applied(
            entry.proposer_id, entry.request_id, self.revision, succeeded, name, payload, result
        )

    def _advance(self, index: int) -> None:
        if index != self.applied_index + 1:
            raise ApplyError(f"apply out of order: index {index} after {self.applied_index}")
        self.applied_index = index
