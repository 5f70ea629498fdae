"""The member runtime driven synchronously: proposals, forwarding, reads,
apply, and what it refuses."""

from __future__ import annotations

import pytest

from syndic.kv.messages import PutRequest, PutResponse, RangeRequest
from syndic.member.proposals import ProposalLimits, TooManyRequestsError
from syndic.member.runtime import RuntimeLimits, UndecodableEntryError
from syndic.raft import Entry, EntryType
from syndic.server.backend import ServerError
from syndic.server.entry_codec import EntryKind
from tests.member.harness import Cluster, Done


def _put(key: bytes) -> PutRequest:
    return PutRequest(key=key, value=b"v")


def test_a_proposal_completes_with_what_applying_it_returned() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    done = Done()
    leader.propose(EntryKind.STORE, _put(b"a"), done)
    assert not done.done()  # waits in the outbox for the next cycle
    cluster.cycle()
    assert isinstance(done.result, PutResponse)
    for rt in cluster.members.values():
        assert rt.state.store.range(RangeRequest(key=b"a")).count == 1
    assert len(leader.proposals) == 0 and leader.proposals.pending_bytes == 0


def test_a_follower_forwards_its_outbox_to_the_leader_and_answers_on_apply() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    follower = cluster.members[2]
    done = Done()
    follower.propose(EntryKind.STORE, _put(b"f"), done)
    follower.flush()
    assert cluster.net.forwarded and cluster.net.forwarded[0][0] == 1
    cluster.cycle()
    assert isinstance(done.result, PutResponse)
    assert cluster.members[1].state.store.range(RangeRequest(key=b"f")).count == 1


def test_a_proposal_that_cannot_be_forwarded_fails_not_leader() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    cluster.net.forwarding_works = False
    done = Done()
    cluster.members[3].propose(EntryKind.STORE, _put(b"x"), done)
    assert cluster.members[3].flush() == 1
    assert isinstance(done.error, ServerError) and "no leader" in done.error.message
    assert len(cluster.members[3].proposals) == 0


def test_a_refused_proposal_changes_nothing() -> None:
    limits = RuntimeLimits(proposals=ProposalLimits(pending_max=1, request_bytes_max=64))
    cluster = Cluster(1, limits)
    leader = cluster.elect(1)
    with pytest.raises(ServerError, match="too large"):
        leader.propose(EntryKind.STORE, PutRequest(key=b"k", value=b"v" * 4096), Done())
    leader.propose(EntryKind.STORE, _put(b"a"), Done())
    before = (len(leader.proposals), leader.proposals.pending_bytes)
    with pytest.raises(TooManyRequestsError) as refused:
        leader.propose(EntryKind.STORE, _put(b"b"), Done())
    assert refused.value.code == "RESOURCE_EXHAUSTED" and refused.value.queue == "proposal"
    assert (len(leader.proposals), leader.proposals.pending_bytes) == before
    cluster.cycle()
    assert leader.state.store.range(RangeRequest(key=b"b")).count == 0


def test_callers_past_the_request_timeout_fail_oldest_first() -> None:
    cluster = Cluster(3, RuntimeLimits(request_timeout_ms=100))
    leader = cluster.elect(1)
    first, second = Done(), Done()
    leader.propose(EntryKind.STORE, _put(b"a"), first)
    cluster.now_ms += 60
    leader.propose(EntryKind.STORE, _put(b"b"), second)
    cluster.now_ms += 50
    assert leader.fail_expired() == 1
    assert isinstance(first.error, ServerError) and "timed out" in first.error.message
    assert not second.done()


def test_a_linearizable_read_waits_until_its_index_is_applied() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    follower = cluster.members[2]
    leader.propose(EntryKind.STORE, _put(b"r"), Done())
    leader.flush()
    # Committed on the leader, not yet applied on the follower.
    read = Done()
    follower.read(read)
    assert not read.done()
    cluster.cycle()
    assert read.done() and read.error is None
    assert follower.state.store.range(RangeRequest(key=b"r")).count == 1


def test_reads_past_their_bound_are_refused() -> None:
    cluster = Cluster(1, RuntimeLimits(reads_pending_max=0))
    leader = cluster.elect(1)
    with pytest.raises(TooManyRequestsError):
        leader.read(Done())


def test_an_undecodable_committed_entry_stops_the_member_naming_its_index() -> None:
    cluster = Cluster(1)
    leader = cluster.elect(1)
    with pytest.raises(UndecodableEntryError, match="committed entry 7 "):
        leader.apply((Entry(index=7, term=1, type=EntryType.NORMAL, data=b"\xc1junk"),))


def test_forwarded_proposals_that_do_not_decode_never_enter_the_log() -> None:
    cluster = Cluster(1)
    leader = cluster.elect(1)
    before = leader.raft.last_index
    assert leader.propose_forwarded([b"\x93junk", b""]).undecodable == 2
    assert leader.raft.last_index == before


def test_stopping_fails_every_waiting_caller() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    write, read, index = Done(), Done(), Done()
    leader.propose(EntryKind.STORE, _put(b"a"), write)
    leader.read(read)
    leader.wait_applied(leader.raft.last_index + 5, index)
    stopped = ServerError("UNAVAILABLE", "stopped")
    leader.fail_all(stopped)
    assert write.error is stopped and read.error is stopped and index.error is stopped
