"""Lease bookkeeping of the store (etcd's lessor, minus its clock).

A lease is granted for ``ttl_s`` seconds and keeps a set of attached keys.
Expiry is decided outside the state machine: the leader asks
:meth:`Lessor.expired` with its own ``now_ms`` and proposes a revoke entry
for each id, so every member deletes the same keys at the same revision
(etcd: lessor.revokeExpiredLeases -> LeaseRevoke through raft).

``expiry_ms`` values are only as good as the ``now_ms`` the caller stamps
into the entries that grant or refresh a lease; they are never hashed
(``hash_kv`` covers keys only, as etcd's HashKV) and a new leader calls
:meth:`Lessor.promote` to restart every lease's full TTL (etcd: Promote).
"""

from __future__ import annotations

from typing import Final

from syndic.kv.errors import (
    InvalidArgumentError,
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

_MASK64: Final = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    # Deterministic mixing so generated ids look like etcd's (spread over the
    # id space) while depending only on replicated state.
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class Lease:
    """One granted lease. ``keys`` holds every key whose latest revision names it."""

    __slots__ = ("expiry_ms", "id", "keys", "ttl_s")

    def __init__(self, lease_id: int, ttl_s: int, expiry_ms: int) -> None:
        self.id = lease_id
        self.ttl_s = ttl_s
        self.expiry_ms = expiry_ms
        self.keys: set[bytes] = set()

    def remaining_s(self, now_ms: int) -> int:
        # etcd: int64(l.Remaining().Seconds()) truncates toward zero.
        return max(0, (self.expiry_ms - now_ms) // 1000)


class Lessor:
    """Leases by id, plus the counter that makes generated ids deterministic."""

    __slots__ = ("id_seq", "leases", "ttl_s_max", "ttl_s_min")

    def __init__(
        self, ttl_s_min: int = LEASE_TTL_S_MIN_DEFAULT, ttl_s_max: int = LEASE_TTL_S_MAX
    ) -> None:
        self.leases: dict[int, Lease] = {}
        self.id_seq = 0
        self.ttl_s_min = ttl_s_min
        self.ttl_s_max = ttl_s_max

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
        self.check_grant(lease_id, ttl_s)
        ttl_s = max(ttl_s, self.ttl_s_min)
        lease = Lease(lease_id, ttl_s, now_ms + ttl_s * 1000)
        self.leases[lease_id] = lease
        return lease

    def get(self, lease_id: int) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError(f"id={lease_id}")
        return lease

    def keep_alive(self, lease_id: int, now_ms: int) -> int:
        lease = self.get(lease_id)
        if lease.expiry_ms <= now_ms:
            # etcd: Renew waits for the pending revoke of an expired lease and
            # then answers ErrLeaseNotFound; refreshing it here would resurrect it.
            raise LeaseNotFoundError(f"id={lease_id} expired")
        lease.expiry_ms = now_ms + lease.ttl_s * 1000
        return lease.ttl_s

    def expired(self, now_ms: int, limit: int) -> tuple[int, ...]:
        """Ids whose expiry is <= now_ms, earliest first, at most ``limit``."""
        due = sorted((ls.expiry_ms, ls.id) for ls in self.leases.values() if ls.expiry_ms <= now_ms)
        return tuple(lease_id for _, lease_id in due[: max(0, limit)])

    def promote(self, now_ms: int) -> None:
        """Give every lease a full TTL from ``now_ms`` (a new leader; etcd: lessor.Promote)."""
        for lease in self.leases.values():
            lease.expiry_ms = now_ms + lease.ttl_s * 1000
