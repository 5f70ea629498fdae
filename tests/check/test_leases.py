"""The lease checker: expiry on the leader's clock, never early, never overdue."""

from __future__ import annotations

import pytest

from syndic.check.leases import LeaseChecker

TTL_MS = 1_000


def test_a_revoke_after_the_ttl_since_the_last_keep_alive_is_fine() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={7: TTL_MS})
    checker.keep_alive(1, 7, local_ms=400)
    checker.tick(1, local_ms=1_390)
    checker.revoke_proposed(1, 7, local_ms=1_400)
    checker.tick(1, local_ms=5_000)  # revoking: not overdue any more
    assert checker.violations == []


def test_a_revoke_before_the_ttl_since_a_keep_alive_is_early() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={7: TTL_MS})
    checker.keep_alive(1, 7, local_ms=800)
    checker.revoke_proposed(1, 7, local_ms=1_500)
    [violation] = checker.violations
    assert violation.rule == "lease-expired-early"
    assert "1800" in violation.detail


def test_a_new_leader_counts_the_ttl_from_its_own_promotion() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={7: TTL_MS})
    checker.demote(1)
    # Member 2's clock is hours ahead: only its own readings are compared.
    checker.promote(2, local_ms=7_200_000, leases={7: TTL_MS})
    checker.revoke_proposed(2, 7, local_ms=7_200_500)
    assert [v.rule for v in checker.violations] == ["lease-expired-early"]


def test_a_lease_left_unrevoked_past_its_ttl_is_reported_once() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={})
    checker.granted(1, 9, TTL_MS, local_ms=100)
    checker.tick(1, local_ms=1_110)  # within the grace
    assert checker.violations == []
    checker.tick(1, local_ms=1_200)
    checker.tick(1, local_ms=1_300)
    [violation] = checker.violations
    assert violation.rule == "lease-outlived-ttl"


def test_keep_alives_off_the_primary_or_for_unknown_leases_are_reported() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.keep_alive(3, 7, local_ms=0)
    checker.promote(1, local_ms=0, leases={})
    checker.keep_alive(1, 8, local_ms=10)
    assert [v.rule for v in checker.violations] == ["keep-alive-off-primary", "keep-alive-unknown"]


def test_a_removed_lease_is_neither_due_nor_early() -> None:
    checker = LeaseChecker(grace_ms=20)
    checker.promote(1, local_ms=0, leases={7: TTL_MS})
    checker.removed(1, 7)  # a client revoked it
    checker.revoke_proposed(1, 7, local_ms=10)  # a retried expiry of nothing
    checker.tick(1, local_ms=10_000)
    assert checker.violations == []


def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_ms"):
        LeaseChecker(grace_ms=-1)
