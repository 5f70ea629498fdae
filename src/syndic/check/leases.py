"""Checker of lease safety: expiry is decided on the leader's clock, never early,
never (much) late.

Lease time is the leader's alone (DESIGN): the log carries lease ids and TTLs,
a leader gives every lease a full TTL from its own clock when it takes office
(etcd: ``Promote``), renews a lease in its memory on each keep-alive it
accepts, starts a granted lease's TTL when it applies the grant, and proposes
a revoke once a deadline passes on its clock. The runtime reports those
moments, each with the leader's own clock reading, and this checker holds it
to two rules:

* **never early** — a leader proposes the revoke of an expired lease only
  once the TTL has passed on its clock since the latest of: its taking
  office, its applying the grant, its last accepted keep-alive;
* **gone once due** — at every tick of a leader, no lease is still unrevoked
  whose TTL passed, on that leader's clock, more than ``grace_ms`` ago
  without a keep-alive (the revoke, once proposed, deletes the lease's keys
  in one revision on every member).

Example::

    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={7: 2_000})
    checker.keep_alive(1, 7, local_ms=1_500)
    checker.revoke_proposed(1, 7, local_ms=3_000)   # too early: renewed at 1.5 s
    assert checker.violations
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A run records at most this many violations; the first is what matters.
VIOLATIONS_MAX = 16


@dataclass(frozen=True, slots=True)
class LeaseViolation:
    rule: str
    member: int
    lease_id: int
    local_ms: int
    detail: str

    def describe(self) -> str:
        where = f"n{self.member} lease {self.lease_id:#x} at {self.local_ms} ms"
        return f"{self.rule}: {where} ({self.detail})"


@dataclass(slots=True)
class _Tenure:
    """One member's time as primary: per lease, its TTL and when its clock started."""

    ttl_ms: dict[int, int] = field(default_factory=dict)
    since_ms: dict[int, int] = field(default_factory=dict)
    revoking: set[int] = field(default_factory=set)


class LeaseChecker:
    """Fed by the runtime as it acts as primary; collects :class:`LeaseViolation`."""

    __slots__ = ("_tenures", "checks", "grace_ms", "violations")

    def __init__(self, grace_ms: int) -> None:
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.grace_ms = grace_ms
        self._tenures: dict[int, _Tenure] = {}
        self.violations: list[LeaseViolation] = []
        self.checks = 0

    def _add(self, rule: str, member: int, lease_id: int, local_ms: int, detail: str) -> None:
        if len(self.violations) < VIOLATIONS_MAX:
            self.violations.append(LeaseViolation(rule, member, lease_id, local_ms, detail))

    # --- what the runtime reports ---------------------------------------

    def promote(self, member: int, local_ms: int, leases: dict[int, int]) -> None:
        """``member`` became primary; ``leases`` maps every lease it holds to its TTL in ms."""
        self._tenures[member] = _Tenure(
            ttl_ms=dict(leases), since_ms=dict.fromkeys(leases, local_ms)
        )

    def demote(self, member: int) -> None:
        """``member`` stopped being primary (stepped down, crashed)."""
        self._tenures.pop(member, None)

    def granted(self, member: int, lease_id: int, ttl_ms: int, local_ms: int) -> None:
        tenure = self._tenures.get(member)
        if tenure is not None:
            tenure.ttl_ms[lease_id] = ttl_ms
            tenure.since_ms[lease_id] = local_ms
            tenure.revoking.discard(lease_id)

    def keep_alive(self, member: int, lease_id: int, local_ms: int) -> None:
        """``member`` accepted a keep-alive (the client was told the lease lives on)."""
        tenure = self._tenures.get(member)
        if tenure is None:
            self._add("keep-alive-off-primary", member, lease_id, local_ms, "not primary")
            return
        if lease_id not in tenure.ttl_ms:
            self._add("keep-alive-unknown", member, lease_id, local_ms, "lease not held")
            return
        tenure.since_ms[lease_id] = local_ms

    def removed(self, member: int, lease_id: int) -> None:
        """The lease's revoke was applied on ``member``: it no longer holds it."""
        tenure = self._tenures.get(member)
        if tenure is not None:
            tenure.ttl_ms.pop(lease_id, None)
            tenure.since_ms.pop(lease_id, None)
            tenure.revoking.discard(lease_id)

    def revoke_proposed(self, member: int, lease_id: int, local_ms: int) -> None:
        """``member`` proposed revoking ``lease_id`` because it expired."""
        self.checks += 1
        tenure = self._tenures.get(member)
        if tenure is None:
            self._add("expiry-off-primary", member, lease_id, local_ms, "not primary")
            return
        if lease_id not in tenure.ttl_ms:
            return  # already gone here: a retried revoke of nothing
        due_ms = tenure.since_ms[lease_id] + tenure.ttl_ms[lease_id]
        if local_ms < due_ms:
            self._add(
                "lease-expired-early",
                member,
                lease_id,
                local_ms,
                f"TTL {tenure.ttl_ms[lease_id]} ms runs from {tenure.since_ms[lease_id]} "
                f"to {due_ms} on the leader's clock",
            )
        tenure.revoking.add(lease_id)

    def tick(self, member: int, local_ms: int) -> None:
        """A primary's tick: no lease it holds may be overdue for revocation."""
        tenure = self._tenures.get(member)
        if tenure is None:
            return
        self.checks += 1
        for lease_id, since in tenure.since_ms.items():
            if lease_id in tenure.revoking:
                continue
            due_ms = since + tenure.ttl_ms[lease_id]
            if local_ms > due_ms + self.grace_ms:
                self._add(
                    "lease-outlived-ttl",
                    member,
                    lease_id,
                    local_ms,
                    f"due at {due_ms} on the leader's clock, no revoke by {local_ms}",
                )
                tenure.revoking.add(lease_id)  # report it once
