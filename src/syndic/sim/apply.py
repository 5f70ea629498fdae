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

from dataclasses import dataclass

from syndic.check.linearizability import OpKind
from syndic.kv.errors import KvError
from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    PutRequest,
    RangeRequest,
    TxnRequest,
    TxnResponse,
)
from syndic.kv.mvcc import StoreConfig
from syndic.server.entry_codec import EntryKind, decode_entry, encode_entry
from syndic.server.state_machine import StateMachine
from syndic.sim.workload import Request

# The simulated store is tiny; the server's defaults (quota, limits) apply.
SIM_STORE_CONFIG = StoreConfig()


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


def store_request(request: Request) -> PutRequest | TxnRequest:
    """The store request a client write or compare-and-set becomes."""
    assert request.value is not None
    key = request.key.encode()
    put = PutRequest(key=key, value=request.value.encode())
    if request.kind is OpKind.WRITE:
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


class MemberState:
    """One member's applied state: the server's state machine plus its applied index."""

    __slots__ = ("applied_index", "sm")

    def __init__(self) -> None:
        self.sm = StateMachine(SIM_STORE_CONFIG, {})
        self.applied_index = 0

    @classmethod
    def restore(cls, data: bytes, index: int) -> MemberState:
        state = cls()
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
            entry = decode_entry(data)
        except ValueError as exc:
            raise ApplyError(f"entry {index} cannot be decoded: {exc}") from exc
        result = self.sm.apply(entry)
        if isinstance(result, KvError):
            return Applied(entry.proposer_id, entry.request_id, self.revision, False, str(result))
        succeeded = result.succeeded if isinstance(result, TxnResponse) else True
        name = type(entry.payload).__name__
        return Applied(entry.proposer_id, entry.request_id, self.revision, succeeded, name)

    def _advance(self, index: int) -> None:
        if index != self.applied_index + 1:
            raise ApplyError(f"apply out of order: index {index} after {self.applied_index}")
        self.applied_index = index
