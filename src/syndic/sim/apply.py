"""The simulated members apply what the server applies.

The member runtime (``syndic.member``) applies committed entries; this
module is what the simulator adds around it: the client model's operations
as store requests, one decoding per entry shared by all members, and the
transcript's description of an applied request.

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
from typing import Any

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
    TxnRequest,
    TxnResponse,
)
from syndic.kv.mvcc import StoreConfig
from syndic.server.entry_codec import DecodedEntry, decode_entry
from syndic.server.state_machine import StateMachine
from syndic.sim.workload import Request, RequestKind

# The server's limits, except the lease TTL floor: etcd's is 1.5 election
# timeouts (2 s with its defaults); the simulator's election timeout is about
# 100 ms, so 1 s keeps the same margin and lets leases expire within a run.
SIM_STORE_CONFIG = StoreConfig(lease_ttl_s_min=1)


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


# Every member applies the same committed entries within a few ms of each
# other; this many recent decodings cover that window.
DECODED_ENTRIES_CACHED_MAX = 1024


@functools.lru_cache(maxsize=DECODED_ENTRIES_CACHED_MAX)
def decode_shared(data: bytes) -> DecodedEntry:
    """decode_entry(), once per distinct entry rather than once per member.

    Decoding is a pure function of the bytes and its result is immutable
    (frozen dataclasses and tuples), so members may share it; bytes that fail
    to decode are not cached and fail again on each member, as they must.
    """
    return decode_entry(data)


def describe_applied(payload: object, result: object) -> tuple[bool, str]:
    """Whether an applied request succeeded, and a line for the transcript."""
    name = type(payload).__name__
    if isinstance(result, KvError):
        return False, f"{name}: {result}"
    succeeded = result.succeeded if isinstance(result, TxnResponse) else True
    if isinstance(result, LeaseGrantResponse):
        name = f"{name} {result.id:#x} ttl={result.ttl_s}s"
    elif isinstance(payload, (PutRequest, DeleteRangeRequest)):
        name = f"{name} {payload.key.decode(errors='replace')}"
    return succeeded, name


class ProposerClockStateMachine(StateMachine):
    """The state machine of the planted bug ``lease-proposer-clock``: it knows
    which member proposed the entry it applies, so the simulator can hand it
    that member's clock instead of the applying leader's."""

    proposer_id = 0

    def apply(self, entry: DecodedEntry) -> Any:
        self.proposer_id = entry.proposer_id
        return super().apply(entry)
