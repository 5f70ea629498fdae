"""The Ready contract: what must be persisted, when to sync, one Ready at a time."""

from __future__ import annotations

import random

import pytest

from syndic.raft import (
    ConfState,
    Message,
    MessageType,
    RaftConfig,
    RaftNode,
    ReadyContractError,
    Role,
)

from .helpers import elect, sent
from .network import Network


def node3(node_id: int = 1, **fields: object) -> RaftNode:
    config = RaftConfig(node_id, **fields)  # type: ignore[arg-type]
    return RaftNode(config, ConfState(voters=frozenset({1, 2, 3})), random.Random(3))


def test_fresh_node_has_nothing_ready() -> None:
    assert not node3().has_ready()


def test_campaign_ready_carries_term_and_vote_and_must_sync() -> None:
    node = node3(pre_vote=False)
    node.campaign()
    rd = node.ready()
    assert rd.hard_state is not None
    assert (rd.hard_state.term, rd.hard_state.vote) == (1, 1)
    assert rd.must_sync
    assert rd.soft_state is not None and rd.soft_state.role is Role.CANDIDATE
    assert {m.type for m in sent(rd)} == {MessageType.VOTE}
    node.advance(rd)
    assert not node.has_ready()


def test_hard_state_only_when_changed_and_commit_alone_needs_no_sync() -> None:
    net = Network(3)
    leader = elect(net, 1)
    follower = net.nodes[2]
    leader.propose(b"x")
    net.process_ready(1)
    net.deliver_once()  # follower appends
    rd = follower.ready()
    assert rd.entries and rd.must_sync
    assert rd.hard_state is None  # term, vote, commit unchanged
    follower.advance(rd)
    net.in_flight.extend(sent(rd))
    net.deliver_once()  # leader commits
    net.process_ready(1)
    net.deliver_once()  # follower learns commit
    rd = follower.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert not rd.entries
    assert not rd.must_sync
    assert [e.data for e in rd.committed_entries] == [b"x"]
    follower.advance(rd)


def test_vote_grant_is_in_the_same_ready_as_the_vote_it_promises() -> None:
    node = node3(2, pre_vote=False)
    node.step(Message(MessageType.VOTE, 1, 2, 1))
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    assert rd.must_sync
    assert sent(rd)[0].type is MessageType.VOTE_RESP and not sent(rd)[0].reject


def test_ready_twice_without_advance_and_foreign_advance_are_refused() -> None:
    node = node3(pre_vote=False)
    node.campaign()
    rd = node.ready()
    assert not node.has_ready()
    with pytest.raises(ReadyContractError):
        node.ready()
    other = node3(pre_vote=False)
    other.campaign()
    with pytest.raises(ReadyContractError):
        node.advance(other.ready())
    node.advance(rd)
    with pytest.raises(ReadyContractError):
        node.advance(rd)


def test_messages_produced_between_ready_and_advance_come_next_time() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"a")
    rd = leader.ready()
    leader.propose(b"b")
    leader.advance(rd)
    rd2 = leader.ready()
    assert [e.data for e in rd2.entries] == [b"b"]
    leader.advance(rd2)


def test_leader_messages_include_append_responses_only_after_persisting_entries() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    net.process_ready(1)
    net.deliver_once()
    follower = net.nodes[3]
    rd = follower.ready()
    acks = [m for m in sent(rd) if m.type is MessageType.APPEND_RESP]
    assert acks and all(m.index <= rd.entries[-1].index for m in acks)
    follower.advance(rd)
