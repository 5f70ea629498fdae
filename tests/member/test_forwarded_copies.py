"""A forwarded batch delivered twice applies once: the leader remembers the
request ids it proposed for each forwarding member."""

from __future__ import annotations

import pytest

from syndic.kv.messages import PutRequest, PutResponse, RangeRequest
from syndic.member.recent_requests import RecentRequests
from syndic.raft import RaftError
from syndic.server.entry_codec import EntryKind, encode_entry
from tests.member.harness import Cluster, Done


def _forwarded_batch(cluster: Cluster, follower_id: int, keys: list[bytes]) -> list[bytes]:
    follower = cluster.members[follower_id]
    for key in keys:
        follower.propose(EntryKind.STORE, PutRequest(key=key, value=b"v"), Done())
    follower.flush()
    ((_, batch),) = cluster.net.forwarded
    return batch


def test_a_forwarded_batch_delivered_twice_applies_once() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    follower = cluster.members[2]
    done = Done()
    follower.propose(EntryKind.STORE, PutRequest(key=b"k", value=b"v"), done)
    follower.flush()
    ((to_id, batch),) = cluster.net.forwarded
    cluster.net.forwarded.append((to_id, list(batch)))  # the retried copy
    revision = leader.state.store.revision
    cluster.cycle()
    assert isinstance(done.result, PutResponse)
    for rt in cluster.members.values():
        assert rt.state.store.revision == revision + 1
        (kv,) = rt.state.store.range(RangeRequest(key=b"k")).kvs
        assert kv.version == 1


def test_the_copy_is_reported_and_not_proposed() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    batch = _forwarded_batch(cluster, 3, [b"a", b"b"])
    first = leader.propose_forwarded(batch)
    last_index = leader.raft.last_index
    again = leader.propose_forwarded(batch)
    assert (first.proposed, first.duplicates) == (2, 0)
    assert (again.proposed, again.duplicates, again.undecodable) == (0, 2, 0)
    assert leader.raft.last_index == last_index


def test_a_copy_inside_one_batch_is_proposed_once() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    (entry,) = _forwarded_batch(cluster, 2, [b"a"])
    outcome = leader.propose_forwarded([entry, entry])
    assert (outcome.proposed, outcome.duplicates) == (1, 1)


def test_a_batch_that_could_not_be_proposed_is_not_remembered() -> None:
    cluster = Cluster(3)
    cluster.elect(1)
    batch = _forwarded_batch(cluster, 2, [b"a"])
    with pytest.raises(RaftError):
        cluster.members[3].propose_forwarded(batch)  # not the leader
    assert not cluster.members[3].recent_forwarded.seen(2, 1)
    assert cluster.members[1].propose_forwarded(batch).proposed == 1


def test_each_member_has_its_own_ids() -> None:
    cluster = Cluster(3)
    leader = cluster.elect(1)
    put = PutRequest(key=b"k", value=b"v")
    same_id = [encode_entry(EntryKind.STORE, member, 42, put) for member in (2, 3)]
    assert leader.propose_forwarded(same_id).proposed == 2


def test_the_window_is_bounded_and_what_left_it_counts_as_seen() -> None:
    recent = RecentRequests(ids_per_member_max=3, members_max=2)
    for request_id in (10, 11, 12, 13):
        recent.record(2, request_id)
    # 10 left the window; an old copy of it is still refused, a new id is not.
    assert recent.seen(2, 10) and recent.seen(2, 13) and recent.seen(2, 9)
    assert not recent.seen(2, 14)
    recent.record(3, 1)
    recent.record(4, 1)  # a third member: the least recently heard (2) is forgotten
    assert not recent.seen(2, 13) and recent.seen(3, 1) and recent.seen(4, 1)


def test_window_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RecentRequests(ids_per_member_max=0)
