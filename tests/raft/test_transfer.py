"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

import pytest

from syndic.raft import (
    ConfChange,
    ConfChangeType,
    InvalidArgumentError,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
)

from .helpers import elect, frozen_view, sent
from .network import Network


def test_transfer_to_up_to_date_follower() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.transfer_leadership(2)
    rd = leader.ready()
    assert [m.type for m in sent(rd)] == [MessageType.TIMEOUT_NOW]
    leader.advance(rd)
    net.in_flight.extend(sent(rd))
    net.stabilize()
    assert net.nodes[2].role is Role.LEADER
    assert net.nodes[2].term == 2
    assert leader.role is Role.FOLLOWER


def test_transfer_brings_target_up_to_date_first() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(3)
    leader.propose(b"a")
    leader.propose(b"b")
    net.stabilize()
    net.heal()
    leader.transfer_leadership(3)
    with pytest.raises(ProposalDroppedError) as info:
        leader.propose(b"c")
    assert info.value.reason == "transferring"
    net.stabilize()
    assert net.leader() == 3
    assert net.applied_data(3) == [b"a", b"b"]


def test_transfer_bypasses_stickiness_of_other_followers() -> None:
    net = Network(5)
    leader = elect(net, 1)
    leader.tick()
    net.stabilize()  # every follower heard from the leader just now
    leader.transfer_leadership(4)
    net.stabilize()
    assert net.leader() == 4


def test_transfer_aborts_after_election_timeout() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(2)
    leader.transfer_leadership(2)
    assert leader.lead_transferee == 2
    for _ in range(10):
        leader.tick()
        net.stabilize()
    assert leader.lead_transferee == 0
    assert leader.role is Role.LEADER
    leader.propose(b"after")


def test_transfer_refusals_change_nothing() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    before = frozen_view(leader)
    with pytest.raises(InvalidArgumentError, match="not a voter"):
        leader.transfer_leadership(4)
    with pytest.raises(InvalidArgumentError, match="not a voter"):
        leader.transfer_leadership(9)
    with pytest.raises(InvalidArgumentError):
        leader.transfer_leadership(0)
    with pytest.raises(InvalidArgumentError):
        leader.transfer_leadership(-2)
    assert frozen_view(leader) == before
    with pytest.raises(NotLeaderError):
        net.nodes[2].transfer_leadership(3)
    leader.transfer_leadership(1)  # to itself: nothing to do
    assert frozen_view(leader) == before


def test_conf_change_refused_while_transferring() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(2)
    leader.transfer_leadership(2)
    with pytest.raises(ProposalDroppedError):
        leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
