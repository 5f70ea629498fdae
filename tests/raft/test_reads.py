"""ReadIndex (thesis §6.4) and the optional leader lease (thesis §6.4.1)."""

from __future__ import annotations

import pytest

from syndic.raft import InvalidArgumentError, MessageType, NotLeaderError, Role

from .helpers import elect, frozen_view, sent
from .network import Network


def test_read_index_on_leader_after_quorum_confirmation() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    net.stabilize()
    leader.read_index(b"r1")
    rd = leader.ready()
    assert not rd.read_states  # not before a heartbeat round
    assert {m.type for m in sent(rd)} == {MessageType.HEARTBEAT}
    leader.advance(rd)
    net.in_flight.extend(sent(rd))
    net.stabilize()
    states = net.read_states[1]
    assert [(s.index, s.request_ctx) for s in states] == [(2, b"r1")]


def test_reads_between_two_readies_share_one_heartbeat_round() -> None:
    # etcd batches ReadIndex requests the same way: a heartbeat per read
    # cost the leader and every follower a message per read.
    net = Network(3)
    leader = elect(net, 1)
    net.stabilize()
    for ctx in (b"r1", b"r2", b"r3"):
        leader.read_index(ctx)
    assert leader.has_ready()
    rd = leader.ready()
    heartbeats = [m for m in sent(rd) if m.type is MessageType.HEARTBEAT]
    assert sorted(m.to_id for m in heartbeats) == [2, 3]
    leader.advance(rd)
    net.in_flight.extend(sent(rd))
    net.stabilize()
    assert [s.request_ctx for s in net.read_states[1]] == [b"r1", b"r2", b"r3"]


def test_reads_during_a_round_wait_for_it_then_share_the_next() -> None:
    # One round in flight at a time, as etcd's read loop: a round per Ready
    # would wake every follower once per loop pass of a busy leader.
    net = Network(3)
    leader = elect(net, 1)
    net.stabilize()
    leader.read_index(b"r1")
    first = leader.ready()
    assert sorted(m.to_id for m in sent(first) if m.type is MessageType.HEARTBEAT) == [2, 3]
    leader.advance(first)
    for ctx in (b"r2", b"r3"):
        leader.read_index(ctx)
    assert not leader.has_ready()  # r2 and r3 wait for r1's round to be answered
    net.in_flight.extend(sent(first))
    net.deliver_once()
    for follower in (2, 3):
        net.process_ready(follower)
    net.deliver_once()  # the answers to r1's round reach the leader
    second = leader.ready()
    assert [s.request_ctx for s in second.read_states] == [b"r1"]
    assert sorted(m.to_id for m in sent(second) if m.type is MessageType.HEARTBEAT) == [2, 3]
    leader.advance(second)
    net.in_flight.extend(sent(second))
    net.stabilize()
    assert [s.request_ctx for s in net.read_states[1]] == [b"r2", b"r3"]


def test_read_deferred_until_leader_commits_in_its_term() -> None:
    net = Network(3)
    leader = net.nodes[1]
    leader.campaign()
    for _ in range(4):
        net.process_all()
        net.deliver_once()
    assert leader.role is Role.LEADER and leader.commit_index == 0
    leader.read_index(b"early")
    net.process_all()
    assert not net.read_states[1]
    net.stabilize()
    assert [(s.index, s.request_ctx) for s in net.read_states[1]] == [(1, b"early")]


def test_follower_forwards_read_and_gets_response() -> None:
    net = Network(3)
    elect(net, 1)
    net.nodes[3].read_index(b"f")
    net.stabilize()
    assert [(s.index, s.request_ctx) for s in net.read_states[3]] == [(1, b"f")]
    assert not net.read_states[1]


def test_no_read_state_without_quorum() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(1)
    leader.read_index(b"lonely")
    for _ in range(5):
        leader.tick()
        net.stabilize()
    assert not net.read_states[1]


def test_many_reads_are_confirmed_by_a_later_round_in_order() -> None:
    net = Network(3)
    leader = elect(net, 1)
    for i in range(5):
        leader.read_index(f"r{i}".encode())
    net.stabilize()
    assert [s.request_ctx for s in net.read_states[1]] == [f"r{i}".encode() for i in range(5)]


def test_duplicate_contexts_are_all_answered() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.read_index(b"same")
    leader.read_index(b"same")
    net.stabilize()
    assert len(net.read_states[1]) == 2


def test_read_without_leader_raises() -> None:
    net = Network(3)
    with pytest.raises(NotLeaderError) as info:
        net.nodes[1].read_index(b"x")
    assert info.value.leader_id == 0


def test_read_rejects_bad_ctx_without_state_change() -> None:
    net = Network(3)
    leader = elect(net, 1)
    before = frozen_view(leader)
    with pytest.raises(InvalidArgumentError):
        leader.read_index("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        leader.read_index(b"x" * 5000)
    assert frozen_view(leader) == before


def confirm_lease(net: Network) -> None:
    net.nodes[1].tick()
    net.stabilize()


def test_lease_read_answers_without_a_round_when_enabled() -> None:
    net = Network(3, lease_read=True)
    leader = elect(net, 1)
    confirm_lease(net)
    leader.read_index(b"fast")
    rd = leader.ready()
    assert [(s.index, s.request_ctx) for s in rd.read_states] == [(1, b"fast")]
    assert not sent(rd)
    leader.advance(rd)


def test_no_lease_read_when_disabled() -> None:
    net = Network(3)
    leader = elect(net, 1)
    confirm_lease(net)
    leader.read_index(b"slow")
    rd = leader.ready()
    assert not rd.read_states
    assert sent(rd)
    leader.advance(rd)


def test_lease_expires_strictly_before_election_timeout() -> None:
    net = Network(3, lease_read=True)
    leader = elect(net, 1)
    confirm_lease(net)
    net.isolate(1)
    for _ in range(8):
        leader.tick()
    net.stabilize()
    leader.read_index(b"still")
    assert leader.ready().read_states  # 8 ticks < lease of 9
    net2 = Network(3, lease_read=True)
    leader2 = elect(net2, 1)
    confirm_lease(net2)
    net2.isolate(1)
    for _ in range(9):
        leader2.tick()
    net2.stabilize()
    leader2.read_index(b"expired")
    rd = leader2.ready()
    assert not rd.read_states


def test_lease_is_revoked_by_leader_transfer() -> None:
    net = Network(3, lease_read=True)
    leader = elect(net, 1)
    confirm_lease(net)
    leader.transfer_leadership(2)
    net.process_all()
    net.in_flight.clear()  # the TIMEOUT_NOW is lost
    for _ in range(10):
        leader.tick()  # transfer aborts
    net.process_all()
    net.in_flight.clear()
    assert leader.role is Role.LEADER and leader.lead_transferee == 0
    leader.read_index(b"after-transfer")
    rd = leader.ready()
    assert not rd.read_states  # a late TIMEOUT_NOW may still elect node 2
