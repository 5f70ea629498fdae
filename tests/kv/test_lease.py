"""Leases: grant, revoke in one revision, keep-alive, TTL, expiry decided by the caller."""

from __future__ import annotations

import pytest

from syndic.kv.errors import LeaseExistsError, LeaseNotFoundError, LeaseTTLTooLargeError
from syndic.kv.lease import LEASE_TTL_S_MAX, LeaseNotPrimaryError, Lessor
from syndic.kv.messages import (
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
)
from syndic.kv.mvcc import Store


def test_grant_generated_ids_are_deterministic_positive_and_distinct() -> None:
    a, b = Store(), Store()
    ids_a = [a.lease_grant(LeaseGrantRequest(ttl_s=10), now_ms=0).id for _ in range(50)]
    ids_b = [b.lease_grant(LeaseGrantRequest(ttl_s=10), now_ms=99).id for _ in range(50)]
    assert ids_a == ids_b
    assert len(set(ids_a)) == 50 and all(0 < i < 2**63 for i in ids_a)


def test_grant_min_ttl_existing_id_and_too_large() -> None:
    store = Store()
    resp = store.lease_grant(LeaseGrantRequest(ttl_s=1, id=5), now_ms=0)
    assert resp.ttl_s == 2  # raised to the minimum TTL
    assert store.lease_grant(LeaseGrantRequest(ttl_s=-4, id=6), now_ms=0).ttl_s == 2
    with pytest.raises(LeaseExistsError) as err:
        store.lease_grant(LeaseGrantRequest(ttl_s=10, id=5), now_ms=0)
    assert err.value.grpc_code == "FAILED_PRECONDITION"
    assert err.value.message == "etcdserver: lease already exists"
    with pytest.raises(LeaseTTLTooLargeError) as big:
        store.lease_grant(LeaseGrantRequest(ttl_s=LEASE_TTL_S_MAX + 1, id=7), now_ms=0)
    assert big.value.grpc_code == "OUT_OF_RANGE"
    assert big.value.message == "etcdserver: too large lease TTL"
    assert [s.id for s in store.lease_leases().leases] == [5, 6]


def test_revoke_deletes_attached_keys_in_one_revision() -> None:
    store = Store()
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=10), now_ms=0).id
    for k in (b"c", b"a", b"b"):
        store.put(PutRequest(k, b"v", lease=lease))
    store.put(PutRequest(b"free", b"v"))
    store.put(PutRequest(b"b", b"detached"))  # overwriting without lease detaches b
    rev = store.revision
    store.lease_revoke(LeaseRevokeRequest(lease))
    assert store.revision == rev + 1
    assert [kv.key for kv in store.range(RangeRequest(b"\0", b"\0")).kvs] == [b"b", b"free"]
    assert store.log_keys(rev + 1) == (b"a", b"c")  # sorted, like etcd
    with pytest.raises(LeaseNotFoundError):
        store.lease_revoke(LeaseRevokeRequest(lease))
    store.check_invariants()


def test_revoke_of_lease_without_keys_keeps_revision() -> None:
    store = Store()
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=10), now_ms=0).id
    store.lease_revoke(LeaseRevokeRequest(lease))
    assert store.revision == 1 and store.lease_leases().leases == ()


def test_expiry_keep_alive_and_time_to_live() -> None:
    store = Store()
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=10, id=1), now_ms=1_000).id
    store.lease_grant(LeaseGrantRequest(ttl_s=20, id=2), now_ms=1_000)
    store.put(PutRequest(b"k", b"v", lease=lease))
    ttl = store.lease_time_to_live(LeaseTimeToLiveRequest(lease, keys=True), now_ms=4_500)
    assert (ttl.ttl_s, ttl.granted_ttl_s, ttl.keys) == (6, 10, (b"k",))
    assert store.expired_leases(now_ms=10_999) == ()
    assert store.lease_keep_alive(LeaseKeepAliveRequest(lease), now_ms=10_000).ttl_s == 10
    assert store.expired_leases(now_ms=19_999) == ()
    assert store.expired_leases(now_ms=21_000, limit=1) == (1,)
    assert store.expired_leases(now_ms=21_000) == (2,)
    with pytest.raises(LeaseNotFoundError):  # expired: waiting for its revoke
        store.lease_keep_alive(LeaseKeepAliveRequest(lease), now_ms=21_000)
    store.lease_promote(now_ms=21_000)  # a new leader restarts every TTL
    assert store.expired_leases(now_ms=30_999) == ()
    assert store.expired_leases(now_ms=31_000) == (1,)
    missing = store.lease_time_to_live(LeaseTimeToLiveRequest(404), now_ms=0)
    assert missing.ttl_s == -1
    with pytest.raises(LeaseNotFoundError):
        store.lease_keep_alive(LeaseKeepAliveRequest(404), now_ms=0)
    store.check_invariants()


# ---------------------------------------------------------------- the lessor
# Deadlines are the primary's alone, on a clock the test injects as now_ms.


def test_handed_out_lease_is_retried_only_after_the_retry_interval() -> None:
    lessor = Lessor(revoke_retry_ms=3_000)
    lessor.grant(1, 5, now_ms=0)
    assert lessor.expired(now_ms=5_000, limit=10) == (1,)
    # Its revoke is in flight: not handed out again at once...
    assert lessor.expired(now_ms=7_999, limit=10) == ()
    # ...but again if the revoke was lost (the lease is still there).
    assert lessor.expired(now_ms=8_000, limit=10) == (1,)
    lessor.remove(1)
    assert lessor.expired(now_ms=100_000, limit=10) == ()
    lessor.check_invariants()


def test_keep_alive_moves_the_deadline_and_the_old_one_is_ignored() -> None:
    lessor = Lessor()
    lessor.grant(1, 5, now_ms=0)
    assert lessor.keep_alive(1, now_ms=4_000) == 5
    assert lessor.expired(now_ms=8_999, limit=10) == ()  # the 5 s item is stale
    assert lessor.leases[1].remaining_s(now_ms=6_500) == 2
    assert lessor.expired(now_ms=9_000, limit=10) == (1,)


def test_expiry_order_is_earliest_first_whatever_the_grant_order() -> None:
    lessor = Lessor(ttl_s_min=1)
    for lease_id, ttl_s in ((1, 30), (2, 10), (3, 20)):
        lessor.grant(lease_id, ttl_s, now_ms=0)
    assert lessor.expired(now_ms=60_000, limit=10) == (2, 3, 1)


def test_non_primary_tracks_no_deadline_and_refuses_renewal() -> None:
    lessor = Lessor()
    lessor.grant(1, 5, now_ms=0)
    lessor.demote()
    lessor.grant(2, 5, now_ms=0)  # applied on a follower: no clock reading kept
    assert lessor.expired(now_ms=10**12, limit=10) == ()
    assert lessor.leases[2].remaining_s(now_ms=10**12) == 5  # reports the granted TTL
    with pytest.raises(LeaseNotPrimaryError):
        lessor.keep_alive(1, now_ms=0)
    lessor.check_invariants()


def test_promote_gives_every_lease_a_full_ttl_on_the_new_clock() -> None:
    # Deadlines set on one member's clock mean nothing on another's: a new
    # leader whose clock reads days later must not expire anything at once.
    lessor = Lessor()
    lessor.grant(1, 5, now_ms=0)
    lessor.demote()
    days_ms = 3 * 86_400_000
    lessor.promote(now_ms=days_ms)
    assert lessor.expired(now_ms=days_ms + 4_999, limit=10) == ()
    assert lessor.expired(now_ms=days_ms + 5_000, limit=10) == (1,)


def test_renewals_keep_the_heap_bounded() -> None:
    lessor = Lessor()
    for lease_id in range(1, 11):
        lessor.grant(lease_id, 10, now_ms=0)
    for now_ms in range(1, 5_000):
        lessor.keep_alive(1 + now_ms % 10, now_ms=now_ms)
        lessor.check_invariants()
    assert lessor.next_due_ms() is not None


def test_expiry_pops_only_what_is_due() -> None:
    # O(log n) per expiry: 10,000 leases, one due; the tick does not walk them.
    lessor = Lessor(ttl_s_min=1)
    for lease_id in range(1, 10_001):
        lessor.grant(lease_id, 100, now_ms=0)
    lessor.keep_alive(7, now_ms=0)
    lessor.grant(20_000, 1, now_ms=0)
    heap_before = lessor.next_due_ms()
    assert heap_before == 1_000
    assert lessor.expired(now_ms=1_000, limit=10) == (20_000,)
    assert lessor.next_due_ms() == 4_000  # the retry item, then the 100 s ones


def test_limit_bounds_one_call() -> None:
    lessor = Lessor()
    for lease_id in range(1, 6):
        lessor.grant(lease_id, 2, now_ms=lease_id)
    assert lessor.expired(now_ms=10_000, limit=2) == (1, 2)
    assert lessor.expired(now_ms=10_000, limit=10) == (3, 4, 5)


def test_put_moves_key_between_leases() -> None:
    store = Store()
    a = store.lease_grant(LeaseGrantRequest(ttl_s=10, id=1), now_ms=0).id
    b = store.lease_grant(LeaseGrantRequest(ttl_s=10, id=2), now_ms=0).id
    store.put(PutRequest(b"k", b"v", lease=a))
    store.put(PutRequest(b"k", b"v", lease=b))
    store.lease_revoke(LeaseRevokeRequest(a))
    assert store.range(RangeRequest(b"k")).kvs[0].lease == b
    store.check_invariants()
