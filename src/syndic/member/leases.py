"""Leases on the leader's clock (etcd's lessor).

The log carries lease ids and TTLs, never a clock reading. The lessor in the
store (``syndic.kv.lease``) is primary exactly while this member leads: on
taking the lead every lease gets a full TTL on this member's clock (the old
leader's deadlines died with it), keep-alives renew in memory with no log
entry, and expiry is decided here and revoked through the log.
"""

from __future__ import annotations

from syndic.kv.errors import LeaseNotFoundError
from syndic.kv.lease import LeaseNotPrimaryError
from syndic.kv.messages import LeaseKeepAliveRequest
from syndic.kv.mvcc import Store
from syndic.server import backend as errors


class LeaderLeases:
    """The lease role of one member and the revocations it has in flight."""

    def __init__(self) -> None:
        # Leases whose revoke is proposed and not yet applied or failed: one
        # revoke each, not one per tick until it commits.
        self._revoking: set[int] = set()

    def sync_role(self, store: Store, leading: bool, now_ms: int) -> bool:
        """Make the lessor primary exactly while leading; True if it was just promoted."""
        if leading and not store.lease_primary:
            self._revoking.clear()
            store.lease_promote(now_ms)
            return True
        if not leading and store.lease_primary:
            store.lease_demote()
        return False

    def due(self, store: Store, now_ms: int) -> list[int]:
        """Leases past their deadline on this leader's clock and not yet being
        revoked; the caller proposes a revoke for each and reports it done."""
        due = [lid for lid in store.expired_leases(now_ms) if lid not in self._revoking]
        self._revoking.update(due)
        return due

    def revoke_done(self, lease_id: int) -> None:
        """The revoke applied or failed; a lease still due is revoked again."""
        self._revoking.discard(lease_id)

    def renew(self, store: Store, lease_ids: list[int], now_ms: int) -> list[int]:
        """Renew on this leader: each lease's TTL in s, or -1 if unknown or
        expired. Raises etcd's "not leader" when this member does not lead."""
        ttls = []
        for lease_id in lease_ids:
            try:
                ttls.append(store.lease_keep_alive(LeaseKeepAliveRequest(lease_id), now_ms).ttl_s)
            except LeaseNotPrimaryError:
                raise errors.not_leader() from None
            except LeaseNotFoundError:
                ttls.append(-1)
        return ttls
