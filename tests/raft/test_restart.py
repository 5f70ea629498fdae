"""Restart from PersistentState: term, vote, log, commit and membership survive."""

from __future__ import annotations

import random

import pytest

from syndic.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    InvalidArgumentError,
    PersistentState,
    RaftConfig,
    RaftNode,
    Role,
)

from .helpers import elect, sent
from .network import Network


def test_restart_keeps_term_vote_log_and_commit() -> None:
    net = Network(3)
    leader = elect(net, 1)
    for i in range(5):
        leader.propose(bytes([i]))
    net.stabilize()
    before = net.nodes[2]
    node = net.restart(2)
    assert node is not before
    assert (node.term, node.vote) == (before.term, before.vote)
    assert node.commit_index == before.commit_index
    assert node.last_index == before.last_index
    assert node.applied_index == 0  # the runtime re-applies from its snapshot (none here)
    assert node.role is Role.FOLLOWER
    net.stabilize()
    assert net.applied_data(2) == [bytes([i]) for i in range(5)]


def test_restarted_node_does_not_vote_twice_in_a_term() -> None:
    net = Network(3, pre_vote=False, check_quorum=False)
    net.nodes[1].campaign()
    net.stabilize()
    node = net.restart(2)
    assert node.vote == 1
    from syndic.raft import Message, MessageType

    node.step(Message(MessageType.VOTE, 3, 2, 1, log_term=1, index=1))
    rd = node.ready()
    assert sent(rd)[0].reject


def test_restart_restores_membership_from_log_and_snapshot() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.add_node(4, ConfState(voters=frozenset()))
    net.stabilize()
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    net.stabilize()
    expected = ConfState(voters=frozenset({1, 2}), learners=frozenset({4}))
    assert net.restart(2).conf_state == expected
    assert net.restart(4).conf_state == expected  # joined empty, learned it from the log
    net.stabilize()
    net.compact(2, net.nodes[2].applied_index)
    assert net.restart(2).conf_state == expected
    net.stabilize()
    # Re-applying the committed changes after restart leaves the configuration alone.
    assert net.nodes[2].conf_state == expected


def test_whole_cluster_restart_recovers_and_keeps_committed_data() -> None:
    net = Network(3)
    leader = elect(net, 1)
    for i in range(3):
        leader.propose(f"d{i}".encode())
    net.stabilize()
    for node_id in (1, 2, 3):
        net.restart(node_id)
    net.tick_all(40)
    new = net.leader()
    assert new
    net.nodes[new].propose(b"more")
    net.stabilize()
    for node_id in (1, 2, 3):
        assert net.applied_data(node_id) == [b"d0", b"d1", b"d2", b"more"]


def test_restored_state_with_term_behind_log_is_refused() -> None:
    restored = PersistentState(HardState(term=1), None, (Entry(2, 1),))
    with pytest.raises(InvalidArgumentError, match="beyond hard state term"):
        RaftNode(RaftConfig(1), ConfState(voters=frozenset({1})), random.Random(1), restored)


def test_constructor_refuses_wrong_types() -> None:
    conf = ConfState(voters=frozenset({1}))
    with pytest.raises(InvalidArgumentError):
        RaftNode({"node_id": 1}, conf, random.Random(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        RaftNode(RaftConfig(1), {1, 2}, random.Random(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        RaftNode(RaftConfig(1), conf, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        RaftNode(RaftConfig(1), conf, random.Random(1), restored="disk")  # type: ignore[arg-type]


def test_lease_read_restart_stays_quiet_for_an_election_timeout() -> None:
    net = Network(3, lease_read=True)
    elect(net, 1)
    node = net.restart(3)
    from syndic.raft import Message, MessageType

    net.process_ready(3)  # re-apply the committed log
    node.step(Message(MessageType.PRE_VOTE, 2, 3, 2, log_term=1, index=1))
    assert not node.has_ready()  # no answer: it may have acked the leader's lease
    for _ in range(10):
        node.tick()
    node.step(Message(MessageType.PRE_VOTE, 2, 3, 2, log_term=1, index=1))
    rd = node.ready()
    assert [m.type for m in sent(rd)] == [MessageType.PRE_VOTE_RESP]
