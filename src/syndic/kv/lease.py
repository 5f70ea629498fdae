"""Lease bookkeeping of the store, and the leader's expiry clock (etcd's lessor).

Two kinds of state live here and must not be confused:

* **Replicated**: each lease's id, granted TTL and attached keys, and the
  id counter. Every member holds the same after the same entries; the log
  carries lease ids and TTLs, never a member's clock reading.
* **The primary's view**: a deadline per lease on the leader's own monotonic
  clock, in a heap. Only the member acting as primary (the Raft leader)
  keeps it; it is never replicated, hashed or snapshotted, so the clocks of
  different hosts (which count from different boots) are never compared.
  A non-primary lessor holds every lease "forever" (etcd: ``forever()``).

Keep-alives renew a deadline in the primary's memory and write nothing to
the log (etcd replicates none). The primary asks :meth:`Lessor.expired` on
each tick and proposes a revoke entry for each id it returns (etcd:
revokeExpiredLeases -> LeaseRevoke through raft), so every member deletes
the same keys at the same revision. A new leader calls :meth:`Lessor.promote`,
which gives every lease a full TTL from its own clock (etcd: Promote), and a
member that steps down calls :meth:`Lessor.demote`.

Cost: granting, renewing and each expiry are O(log n) heap operations; a
tick that finds nothing due costs O(1) (one look at the heap's top). A
renewed lease leaves its old heap item behind; items are matched against
the lease's current ``due_ms`` and stale ones dropped when they surface, and
the heap is rebuilt once stale items outnumber live ones, so its size stays
within ``2 * leases + HEAP_SLACK_ITEMS``.
"""

from __future__ import annotations

import heapq
from typing import Final

from syndic.kv.errors import (
    InvalidArgumentError,
    KvError,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseTTLTooLargeError,
)

# etcd: lease.MaxLeaseTTL; a larger TTL overflows time.Duration in nanoseconds.
LEASE_TTL_S_MAX: Final = 9_000_000_000
# etcd's minimum TTL with default timing is ceil(1.5 * election timeout) = 2 s,
# so a lease cannot expire during a single leader election.
LEASE_TTL_S_MIN_DEFAULT: Final = 2
# The generated-id loop skips ids in use; with 2**63 ids and a bounded lease
# count a collision chain longer than this means the state is corrupt.
LEASE_ID_PROBES_MAX: Final = 1024
# After the primary hands out an expired id for revocation it looks at it
# again only after this long, in case the revoke entry was lost with a
# leadership change (etcd: expiredLeaseRetryInterval = 3 s).
REVOKE_RETRY_MS_DEFAULT: Final = 3_000
# Stale heap items tolerated beyond one per live lease before a rebuild; a
# rebuild is O(n), so doing it only past 2n keeps renewals O(log n) amortised.
HEAP_SLACK_ITEMS: Final = 64
# A deadline no clock reaches: a non-primary lessor's leases never expire.
FOREVER_MS: Final = 1 << 62

_MASK64: Final = (1 << 64) - 1


class LeaseNotPrimaryError(KvError):
    """Renewal asked of a member that is not the leader (etcd: ErrNotPrimary).

    Never reaches a client: the member hands the request to its leader."""

    grpc_code = "UNAVAILABLE"
    message = "etcdserver: not primary"


def _splitmix64(x: int) -> int:
    # Deterministic mixing so generated ids look like etcd's (spread over the
    # id space) while depending only on replicated state.
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class Lease:
    """One granted lease. ``keys`` holds every key whose latest revision names it.

    ``expiry_ms`` and ``due_ms`` are the primary's view only (see the module
    docstring): the deadline a keep-alive moves, and the time of this
    lease's live heap item (the deadline, or a revoke retry after it)."""

    __slots__ = ("due_ms", "expiry_ms", "id", "keys", "ttl_s")

    def __init__(self, lease_id: int, ttl_s: int, expiry_ms: int = FOREVER_MS) -> None:
        self.id = lease_id
        self.ttl_s = ttl_s
        self.expiry_ms = expiry_ms
        self.due_ms = expiry_ms
        self.keys: set[bytes] = set()

    def remaining_s(self, now_ms: int) -> int:
        # etcd: int64(l.Remaining().Seconds()) truncates toward zero; a
        # non-primary knows no deadline and reports the granted TTL.
        if self.expiry_ms >= FOREVER_MS:
            return self.ttl_s
        return max(0, (self.expiry_ms - now_ms) // 1000)


class Lessor:
    """Leases by id, the counter that makes generated ids deterministic, and,
    while primary, the expiry heap on the primary's clock.

    A lessor starts primary, as a store used on its own is its own leader;
    a cluster member demotes it until it leads.

    >>> lessor = Lessor()
    >>> lessor.grant(7, 10, now_ms=0).ttl_s
    10
    >>> lessor.expired(now_ms=9_999, limit=10), lessor.expired(now_ms=10_000, limit=10)
    ((), (7,))
    """

    __slots__ = (
        "_heap",
        "id_seq",
        "leases",
        "primary",
        "revoke_retry_ms",
        "ttl_s_max",
        "ttl_s_min",
    )

    def __init__(
        self,
        ttl_s_min: int = LEASE_TTL_S_MIN_DEFAULT,
        ttl_s_max: int = LEASE_TTL_S_MAX,
        revoke_retry_ms: int = REVOKE_RETRY_MS_DEFAULT,
    ) -> None:
        self.leases: dict[int, Lease] = {}
        self.id_seq = 0
        self.ttl_s_min = ttl_s_min
        self.ttl_s_max = ttl_s_max
        self.revoke_retry_ms = revoke_retry_ms
        self.primary = True
        # (due_ms, lease_id); an item is live iff the lease exists and its
        # due_ms equals the item's.
        self._heap: list[tuple[int, int]] = []

    # ------------------------------------------------------ replicated state

    def next_id(self) -> int:
        """A fresh positive id, a pure function of (id_seq, leases); advances id_seq."""
        for _ in range(LEASE_ID_PROBES_MAX):
            self.id_seq += 1
            # etcd masks generated ids to 63 bits so they stay positive int64.
            candidate = _splitmix64(self.id_seq) & ((1 << 63) - 1)
            if candidate != 0 and candidate not in self.leases:
                return candidate
        raise InvalidArgumentError("lease id space exhausted")  # pragma: no cover

    def check_grant(self, lease_id: int, ttl_s: int) -> None:
        if ttl_s > self.ttl_s_max:
            raise LeaseTTLTooLargeError(f"ttl_s={ttl_s} > {self.ttl_s_max}")
        if lease_id in self.leases:
            raise LeaseExistsError(f"id={lease_id}")

    def grant(self, lease_id: int, ttl_s: int, now_ms: int) -> Lease:
        """Add a lease; ``now_ms`` is the applying member's own clock, read
        only when it is primary (etcd: Grant refreshes only if primary)."""
        self.check_grant(lease_id, ttl_s)
        ttl_s = max(ttl_s, self.ttl_s_min)
        lease = Lease(lease_id, ttl_s)
        self.leases[lease_id] = lease
        if self.primary:
            self._schedule(lease, now_ms + ttl_s * 1000, expiry=True)
        return lease

    def get(self, lease_id: int) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(f"id={lease_id}")
        return lease

    def remove(self, lease_id: int) -> Lease:
        """Drop a revoked lease; its heap item goes stale and is dropped lazily."""
        lease = self.get(lease_id)
        del self.leases[lease_id]
        return lease

    # ------------------------------------------------------ primary's view

    def keep_alive(self, lease_id: int, now_ms: int) -> int:
        """Renew ``lease_id`` for a full TTL from ``now_ms``; the granted TTL.

        In memory only (etcd: Renew); raises LeaseNotPrimaryError off the
        leader and LeaseNotFoundError for an unknown or expired lease."""
        if not self.primary:
            raise LeaseNotPrimaryError(f"id={lease_id}")
        lease = self.get(lease_id)
        if lease.expiry_ms <= now_ms:
            # etcd: Renew waits for the pending revoke of an expired lease and
            # then answers ErrLeaseNotFound; refreshing it here would resurrect it.
            raise LeaseNotFoundError(f"id={lease_id} expired")
        self._schedule(lease, now_ms + lease.ttl_s * 1000, expiry=True)
        return lease.ttl_s

    def expired(self, now_ms: int, limit: int) -> tuple[int, ...]:
        """Ids whose deadline is <= ``now_ms``, earliest first, at most ``limit``.

        Each id returned is looked at again only ``revoke_retry_ms`` later,
        so a revoke in flight is not proposed twice; a lease that is still
        there then (its revoke was lost) is returned again. Empty when not
        primary."""
        if not self.primary:
            return ()
        due: list[int] = []
        heap = self._heap
        while heap and len(due) < limit and heap[0][0] <= now_ms:
            due_ms, lease_id = heapq.heappop(heap)
            lease = self.leases.get(lease_id)
            if lease is None or lease.due_ms != due_ms:
                continue  # revoked or renewed since this item was pushed
            due.append(lease_id)
            self._schedule(lease, now_ms + self.revoke_retry_ms, expiry=False)
        return tuple(due)

    def next_due_ms(self) -> int | None:
        """When the earliest item falls due (possibly a stale one), or None."""
        return self._heap[0][0] if self._heap else None

    def promote(self, now_ms: int) -> None:
        """Become primary: every lease gets a full TTL from ``now_ms`` (a new
        leader; etcd: lessor.Promote). O(n)."""
        self.primary = True
        for lease in self.leases.values():
            lease.expiry_ms = lease.due_ms = now_ms + lease.ttl_s * 1000
        self._heap = [(lease.due_ms, lease.id) for lease in self.leases.values()]
        heapq.heapify(self._heap)

    def demote(self) -> None:
        """Stop being primary: forget every deadline (etcd: Demote -> forever)."""
        self.primary = False
        self._heap = []
        for lease in self.leases.values():
            lease.expiry_ms = lease.due_ms = FOREVER_MS

    def _schedule(self, lease: Lease, at_ms: int, *, expiry: bool) -> None:
        if expiry:
            lease.expiry_ms = at_ms
        lease.due_ms = at_ms
        heapq.heappush(self._heap, (at_ms, lease.id))
        if len(self._heap) > 2 * len(self.leases) + HEAP_SLACK_ITEMS:
            self._heap = [(ls.due_ms, ls.id) for ls in self.leases.values()]
            heapq.heapify(self._heap)

    def check_invariants(self) -> None:
        """Every primary lease has exactly one live heap item; the heap is bounded."""
        assert len(self._heap) <= 2 * len(self.leases) + HEAP_SLACK_ITEMS + 1
        if not self.primary:
            assert not self._heap
            assert all(ls.expiry_ms == FOREVER_MS for ls in self.leases.values())
            return
        live = {(ls.due_ms, ls.id) for ls in self.leases.values()}
        assert live <= set(self._heap), "a primary lease has no heap item"
        assert all(ls.due_ms >= ls.expiry_ms for ls in self.leases.values())
