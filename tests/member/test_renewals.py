"""Keep-alives through the runtime: a leader renews in memory, a follower
queues them and forwards one batch per cycle to the leader, and hands each
caller the leader's answer."""

from __future__ import annotations

import pytest

from syndic.kv.messages import LeaseGrantRequest
from syndic.member.proposals import TooManyRequestsError
from syndic.member.renewals import ForwardedRenewals
from syndic.member.runtime import MemberRuntime, RuntimeLimits
from syndic.server import backend as errors
from syndic.server.backend import ServerError
from syndic.server.entry_codec import EntryKind
from tests.member.harness import Cluster, Done

LEASE = 0x7


def _granted(
    cluster: Cluster, leader: MemberRuntime, lease_id: int = LEASE, ttl_s: int = 5
) -> None:
    done = Done()
    leader.propose(EntryKind.STORE, LeaseGrantRequest(ttl_s=ttl_s, id=lease_id), done)
    cluster.cycle()
    assert done.error is None


def _transfer(cluster: Cluster, from_id: int, to_id: int) -> None:
    cluster.members[from_id].raft.transfer_leadership(to_id)
    cluster.cycle()
    assert cluster.members[to_id].is_leader


def _expired_on(leader: MemberRuntime, now_ms: int) -> list[int]:
    return list(leader.state.store.expired_leases(now_ms))


def test_a_follower_keep_alive_is_renewed_by_the_leader_on_its_clock() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    _granted(cluster, leader)
    follower = cluster.members[2]
    cluster.now_ms = 4_000
    done = Done()
    follower.keep_alive(LEASE, done)
    assert not done.finished  # queued for the next cycle
    follower.flush()
    assert [(to, ids) for _, to, _, ids in cluster.net.renewals] == [(1, [LEASE])]
    cluster.cycle()
    assert done.result == 5
    # Renewed at 4 s on the leader: due at 9 s there, not at 5 s.
    assert _expired_on(leader, 8_900) == []
    assert _expired_on(leader, 9_100) == [LEASE]
    # The follower decides nothing about the lease.
    assert not follower.state.store.lease_primary


def test_a_follower_keep_alive_that_never_reaches_the_leader_renews_nothing() -> None:
    cluster = Cluster(3, RuntimeLimits(request_timeout_ms=1_000))
    leader = cluster.elect(1)
    _granted(cluster, leader)
    follower = cluster.members[2]
    cluster.now_ms = 4_000
    done = Done()
    follower.keep_alive(LEASE, done)
    follower.flush()
    cluster.net.renewals.clear()  # lost on the way
    cluster.cycle()
    assert not done.finished
    assert _expired_on(leader, 5_100) == [LEASE]  # still due at 5 s
    cluster.now_ms = 5_001
    follower.fail_expired()
    assert isinstance(done.error, ServerError) and "timed out" in done.error.message
    assert len(follower.renewals) == 0 and follower.renewals.batches_in_flight == 0


def test_one_batch_per_cycle_and_one_entry_per_lease() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    _granted(cluster, leader, 7)
    _granted(cluster, leader, 8)
    follower = cluster.members[3]
    calls = [Done() for _ in range(3)]
    follower.keep_alive(7, calls[0])
    follower.keep_alive(8, calls[1])
    follower.keep_alive(7, calls[2])
    follower.flush()
    assert [ids for _, _, _, ids in cluster.net.renewals] == [[7, 8]]
    cluster.cycle()
    assert [c.result for c in calls] == [5, 5, 5]


def test_an_unknown_lease_answers_minus_one_after_a_read_barrier() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    follower = cluster.members[2]
    done = Done()
    follower.keep_alive(99, done)
    cluster.cycle()
    assert done.result == -1


def test_a_miss_on_the_leader_is_answered_only_after_a_read_barrier() -> None:
    # A miss may be a grant this new leader has not applied yet: it is tried
    # again once the leader applied everything committed before the call.
    cluster = Cluster(3)
    leader = cluster.elect(1)
    done = Done()
    leader.keep_alive(99, done)
    assert not done.finished and len(leader.reads) == 1
    cluster.cycle()
    assert done.result == -1


def test_a_batch_that_cannot_go_waits_for_the_next_tick() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    _granted(cluster, leader)
    follower = cluster.members[2]
    cluster.net.forwarding_works = False
    done = Done()
    follower.keep_alive(LEASE, done)
    follower.flush()
    assert not done.finished and cluster.net.renewals == []
    cluster.net.forwarding_works = True
    follower.flush()
    assert cluster.net.renewals == []  # held until a tick passes
    assert not follower.has_work() or follower.raft.has_ready()
    follower.tick()
    cluster.cycle()
    assert done.result == 5


def test_a_deposed_leader_sends_the_batch_to_the_next_one() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    _granted(cluster, leader)
    follower = cluster.members[3]
    done = Done()
    follower.keep_alive(LEASE, done)
    follower.flush()
    ((_, _, batch_id, _),) = cluster.net.renewals
    cluster.net.renewals.clear()
    follower.renewals_refused(batch_id, errors.not_leader())
    assert not done.finished and len(follower.renewals) == 1
    _transfer(cluster, 1, 2)
    follower.tick()
    cluster.cycle()
    assert done.result == 5
    assert cluster.members[2].state.store.lease_primary


def test_a_refusal_other_than_not_leader_is_the_callers() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    follower = cluster.members[2]
    done = Done()
    follower.keep_alive(LEASE, done)
    follower.flush()
    ((_, _, batch_id, _),) = cluster.net.renewals
    follower.renewals_refused(batch_id, ServerError("INVALID_ARGUMENT", "bad lease ids"))
    assert isinstance(done.error, ServerError) and done.error.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("answer", [[], [1, 2], ["5"], [True], None])
def test_a_malformed_answer_fails_the_batch_as_timed_out(answer: object) -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    follower = cluster.members[2]
    done = Done()
    follower.keep_alive(LEASE, done)
    follower.flush()
    ((_, _, batch_id, _),) = cluster.net.renewals
    follower.renewals_answered(batch_id, answer if isinstance(answer, list) else [answer])
    assert isinstance(done.error, ServerError) and "timed out" in done.error.message
    # A second answer to the same batch (a copy) finds nothing.
    follower.renewals_answered(batch_id, [5])
    assert len(follower.renewals) == 0


def test_keep_alives_queued_as_a_follower_are_renewed_here_once_leading() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    _granted(cluster, cluster.members[1])
    member = cluster.members[2]
    cluster.net.forwarding_works = False
    done = Done()
    member.keep_alive(LEASE, done)
    member.flush()
    cluster.net.forwarding_works = True
    _transfer(cluster, 1, 2)
    member.tick()
    member.flush()
    assert done.result == 5 and cluster.net.renewals == []


def test_the_leader_reports_each_keep_alive_it_accepts() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    _granted(cluster, leader)
    seen: list[tuple[int, int]] = []
    leader.renew_observer = lambda lease_id, now_ms: seen.append((lease_id, now_ms))
    cluster.now_ms = 2_500
    follower = cluster.members[2]
    follower.keep_alive(LEASE, Done())
    follower.keep_alive(99, Done())  # unknown: not accepted
    cluster.cycle()
    assert seen == [(LEASE, 2_500)]


def test_a_follower_refuses_keep_alives_past_its_bound_and_queues_nothing() -> None:
    cluster = Cluster(3, RuntimeLimits(renewals_pending_max=2))
    cluster.elect(1)
    follower = cluster.members[2]
    follower.keep_alive(1, Done())
    follower.keep_alive(2, Done())
    with pytest.raises(TooManyRequestsError) as refused:
        follower.keep_alive(3, Done())
    assert refused.value.queue == "renewal" and len(follower.renewals) == 2


def test_batches_in_flight_are_bounded() -> None:
    cluster = Cluster(3, RuntimeLimits(renewal_batches_in_flight_max=1))
    cluster.elect(1)
    follower = cluster.members[2]
    follower.keep_alive(1, Done())
    follower.flush()
    follower.keep_alive(2, Done())
    follower.flush()
    assert [ids for _, _, _, ids in cluster.net.renewals] == [[1]]
    cluster.cycle()  # the first answered, the second goes
    assert len(follower.renewals) == 0


def test_a_leader_refuses_forwarded_keep_alives_when_not_leading() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    with pytest.raises(ServerError, match="no leader"):
        cluster.members[2].renew_forwarded([LEASE], Done())


def test_stopping_fails_queued_and_in_flight_keep_alives() -> None:
    cluster = Cluster(3, RuntimeLimits(renewal_batches_in_flight_max=1))
    cluster.elect(1)
    follower = cluster.members[2]
    sent, queued = Done(), Done()
    follower.keep_alive(1, sent)
    follower.flush()
    follower.keep_alive(2, queued)
    follower.fail_all(errors.server_stopped())
    assert sent.error is not None and queued.error is not None
    assert len(follower.renewals) == 0 and follower.renewals.batches_in_flight == 0


def test_renewal_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ForwardedRenewals(iter(range(10)), pending_max=1, batches_in_flight_max=0)
