"""The runtime's parts on their own: leases, membership, snapshot schedule."""

from __future__ import annotations

import math

import pytest

from syndic.kv.messages import LeaseGrantRequest
from syndic.kv.mvcc import Store, StoreConfig
from syndic.member.leases import LeaderLeases
from syndic.member.membership import Membership
from syndic.member.snapshots import LOG_BYTES_MIN, SnapshotSchedule
from syndic.raft import ConfState
from syndic.server.backend import ServerError
from syndic.server.reconfig import Voter
from syndic.server.state_machine import MemberAttrs


def _store_with_lease(lease_id: int, ttl_s: int) -> Store:
    store = Store(StoreConfig(lease_ttl_s_min=1))
    store.lease_demote()
    store.apply(LeaseGrantRequest(ttl_s=ttl_s, id=lease_id), 0)
    return store


def test_the_lessor_is_primary_exactly_while_leading() -> None:
    store, leases = _store_with_lease(7, 5), LeaderLeases()
    assert leases.sync_role(store, True, 1_000) is True
    assert leases.sync_role(store, True, 2_000) is False  # already primary
    leases.sync_role(store, False, 3_000)
    assert not store.lease_primary
    with pytest.raises(ServerError, match="no leader"):
        leases.renew(store, [7], 3_000)


def test_a_due_lease_is_revoked_once_until_its_revoke_is_done() -> None:
    store, leases = _store_with_lease(7, 5), LeaderLeases()
    leases.sync_role(store, True, 1_000)
    assert leases.due(store, 5_999) == []
    assert leases.due(store, 6_001) == [7]
    assert leases.due(store, 6_100) == []  # its revoke is in flight
    leases.revoke_done(7)
    # The lessor offers a lease whose revoke was lost again after its retry delay.
    assert leases.due(store, 600_000) == [7]


def test_renewal_is_in_memory_and_unknown_leases_answer_minus_one() -> None:
    store, leases = _store_with_lease(7, 5), LeaderLeases()
    leases.sync_role(store, True, 1_000)
    assert leases.renew(store, [7, 99], 5_000) == [5, -1]
    assert leases.due(store, 9_000) == []  # renewed at 5 s: due at 10 s


def test_removal_is_noticed_once() -> None:
    membership = Membership(2)
    assert not membership.check_removed(ConfState(voters=frozenset({1, 2, 3})))
    assert membership.check_removed(ConfState(voters=frozenset({1, 3})))
    assert not membership.check_removed(ConfState(voters=frozenset({1, 3})))


def test_a_joining_member_is_not_removed_before_it_was_a_member() -> None:
    assert not Membership(4).check_removed(ConfState(voters=frozenset({1, 2, 3})))


def test_voters_as_the_reconfiguration_check_sees_them() -> None:
    voters = Membership(1).voters_for_reconfig(
        ConfState(voters=frozenset({1, 2, 3})),
        {2: MemberAttrs("b", ("http://b",), ()), 3: MemberAttrs("", (), ())},
        {2: 12.0},
    )
    assert voters == {1: Voter(True, math.inf), 2: Voter(True, 12.0), 3: Voter(False, None)}


def test_a_snapshot_is_due_every_so_many_entries() -> None:
    schedule = SnapshotSchedule(100, 50)
    assert not schedule.due(149, 0)
    assert schedule.due(150, 0)
    schedule.taken(150)
    schedule.taken(120)  # an older one changes nothing
    assert schedule.index == 150 and not schedule.due(249, 0)
    with pytest.raises(ValueError):
        SnapshotSchedule(0, 0)


def test_each_snapshot_threshold_is_drawn_at_most_a_quarter_early() -> None:
    """Members apply the same entries together; drawn thresholds keep them
    from all snapshotting at once, never later than configured."""
    draws = iter([0.0, 0.999, 0.5])
    schedule = SnapshotSchedule(100, 0, draw=lambda: next(draws))
    assert not schedule.due(99, 0) and schedule.due(100, 0)  # drew 0: the configured count
    schedule.taken(100)
    assert not schedule.due(175, 0) and schedule.due(176, 0)  # drew 0.999: a quarter early
    schedule.taken(176)
    assert not schedule.due(263, 0) and schedule.due(264, 0)  # drew 0.5: an eighth early


def test_a_drawn_threshold_counts_the_log_for_more() -> None:
    early = SnapshotSchedule(100_000, 1, draw=lambda: 0.999)
    configured = SnapshotSchedule(100_000, 1, draw=lambda: 0.0)
    for schedule in (early, configured):
        schedule.applied_bytes += int(LOG_BYTES_MIN * 0.76)
    assert early.due(2, 0)  # a quarter early by bytes too
    assert not configured.due(2, 0)
