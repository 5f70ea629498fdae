"""Learners and one-at-a-time membership changes driven through RaftNode."""

from __future__ import annotations

import pytest

from syndic.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfState,
    InvalidArgumentError,
    Role,
)

from .helpers import elect, frozen_view
from .network import Network


def change(kind: ConfChangeType, node_id: int) -> ConfChange:
    return ConfChange(kind, node_id)


def add_learner(net: Network, leader_id: int, node_id: int) -> None:
    net.nodes[leader_id].propose_conf_change(change(ConfChangeType.ADD_LEARNER, node_id))
    net.add_node(node_id, ConfState(voters=frozenset()))
    net.stabilize()


def test_learner_receives_log_but_does_not_count_for_commit() -> None:
    net = Network(3)
    leader = elect(net, 1)
    add_learner(net, 1, 4)
    assert leader.conf_state.learners == {4}
    assert net.nodes[4].conf_state == ConfState(
        voters=frozenset({1, 2, 3}), learners=frozenset({4})
    )
    net.partition({1, 4}, {2, 3})
    leader.propose(b"x")
    net.stabilize()
    assert net.nodes[4].last_index == leader.last_index
    assert leader.commit_index == leader.last_index - 1  # a learner is no quorum


def test_learner_never_campaigns_and_its_vote_does_not_count() -> None:
    net = Network(3)
    elect(net, 1)
    add_learner(net, 1, 4)
    learner = net.nodes[4]
    for _ in range(100):
        learner.tick()
    assert learner.role is Role.FOLLOWER
    learner.campaign()
    assert learner.role is Role.FOLLOWER


def test_promote_learner_then_it_counts() -> None:
    net = Network(3)
    leader = elect(net, 1)
    add_learner(net, 1, 4)
    leader.propose_conf_change(change(ConfChangeType.ADD_VOTER, 4))
    net.stabilize()
    assert leader.conf_state.voters == {1, 2, 3, 4}
    assert not leader.conf_state.learners
    net.partition({1, 4}, {2, 3})
    leader.propose(b"x")
    net.stabilize()
    assert leader.commit_index < leader.last_index  # 2 of 4 is no majority
    net.partition({1, 2, 4}, {3})
    leader.tick()
    net.stabilize()
    assert leader.commit_index == leader.last_index


def test_remove_follower_shrinks_quorum() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose_conf_change(change(ConfChangeType.REMOVE_NODE, 3))
    net.stabilize()
    assert leader.conf_state.voters == {1, 2}
    assert set(leader.status()["progress"]) == {1, 2}  # type: ignore[arg-type]
    net.down.add(3)
    leader.propose(b"x")
    net.stabilize()
    assert leader.commit_index == leader.last_index


def test_removed_leader_steps_down_and_the_rest_elect() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose_conf_change(change(ConfChangeType.REMOVE_NODE, 1))
    net.stabilize()
    assert leader.role is Role.FOLLOWER
    assert leader.conf_state.voters == {2, 3}
    net.tick_all(30)
    new = net.leader()
    assert new in (2, 3)
    net.nodes[new].propose(b"after")
    net.stabilize()
    assert net.applied_data(2) == net.applied_data(3) == [b"after"]
    leader.campaign()  # a removed node never campaigns
    assert leader.role is Role.FOLLOWER


def test_one_pending_change_and_current_term_commit_required() -> None:
    net = Network(3)
    leader = net.nodes[1]
    leader.campaign()
    for _ in range(4):
        net.process_all()
        net.deliver_once()
    assert leader.role is Role.LEADER
    before = frozen_view(leader)
    with pytest.raises(ConfChangeError, match="no entry of term"):
        leader.propose_conf_change(change(ConfChangeType.ADD_LEARNER, 4))
    assert frozen_view(leader) == before
    net.stabilize()
    leader.propose_conf_change(change(ConfChangeType.ADD_LEARNER, 4))
    before = frozen_view(leader)
    with pytest.raises(ConfChangeError, match="pending"):
        leader.propose_conf_change(change(ConfChangeType.ADD_LEARNER, 5))
    assert frozen_view(leader) == before


def test_invalid_changes_raise_and_change_nothing() -> None:
    net = Network(3)
    leader = elect(net, 1)
    before = frozen_view(leader)
    with pytest.raises(ConfChangeError, match="not a member"):
        leader.propose_conf_change(change(ConfChangeType.REMOVE_NODE, 7))
    with pytest.raises(ConfChangeError, match="already a voter"):
        leader.propose_conf_change(change(ConfChangeType.ADD_VOTER, 2))
    with pytest.raises(ConfChangeError, match="demotion"):
        leader.propose_conf_change(change(ConfChangeType.ADD_LEARNER, 2))
    with pytest.raises(InvalidArgumentError):
        leader.propose_conf_change("add 4")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        change(ConfChangeType.ADD_VOTER, -4)
    assert frozen_view(leader) == before


def test_new_leader_applies_previous_terms_change_before_proposing() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose_conf_change(change(ConfChangeType.ADD_LEARNER, 4))
    net.add_node(4, ConfState(voters=frozenset()))
    net.process_all()  # appended, sent, nothing delivered
    net.down.add(1)
    for _ in range(25):
        net.tick(2)
        net.tick(3)
        net.stabilize()
    new = net.leader()
    assert new in (2, 3)
    net.stabilize()
    assert net.nodes[new].conf_state.learners in (frozenset(), frozenset({4}))
    net.nodes[new].propose_conf_change(change(ConfChangeType.ADD_LEARNER, 5))
