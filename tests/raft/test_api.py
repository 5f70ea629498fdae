"""Hostile and malformed input to RaftNode's public methods: a typed error, no change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.raft import (
    Entry,
    InvalidArgumentError,
    InvariantError,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    RaftNode,
    Role,
)
from syndic.raft.core import DROPPED_ENTRIES_FREED_PER_ADVANCE
from syndic.raft.progress import ProgressState

from .helpers import elect, frozen_view
from .network import Network


@pytest.fixture
def cluster() -> Network:
    net = Network(3)
    elect(net, 1)
    net.nodes[1].propose(b"x")
    net.stabilize()
    return net


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("propose", ("text",), InvalidArgumentError),
        ("propose", (None,), InvalidArgumentError),
        ("propose", (b"x" * (64 * 1024 * 1024 + 1),), ProposalDroppedError),
        ("propose_conf_change", (b"raw",), InvalidArgumentError),
        ("read_index", (1,), InvalidArgumentError),
        ("transfer_leadership", (0,), InvalidArgumentError),
        ("transfer_leadership", (-1,), InvalidArgumentError),
        ("transfer_leadership", ("2",), InvalidArgumentError),
        ("transfer_leadership", (True,), InvalidArgumentError),
        ("compact", (99, b""), InvalidArgumentError),
        ("compact", (1.5, b""), InvalidArgumentError),
        ("report_unreachable", (0,), InvalidArgumentError),
        ("report_unreachable", (-7,), InvalidArgumentError),
        ("report_snapshot", (0, True), InvalidArgumentError),
        ("report_snapshot", (2, "yes"), InvalidArgumentError),
        ("entries_between", (-1, 5), InvalidArgumentError),
        ("entries_between", (1, "5"), InvalidArgumentError),
        ("step", ("APPEND",), InvalidArgumentError),
    ],
)
def test_bad_input_to_leader_raises_and_changes_nothing(
    cluster: Network, method: str, args: tuple[object, ...], error: type[Exception]
) -> None:
    leader = cluster.nodes[1]
    before = frozen_view(leader)
    with pytest.raises(error):
        getattr(leader, method)(*args)
    assert frozen_view(leader) == before
    leader.check_invariants()


def test_follower_refuses_leader_only_calls(cluster: Network) -> None:
    follower = cluster.nodes[2]
    before = frozen_view(follower)
    for call in (
        lambda: follower.propose(b"x"),
        lambda: follower.transfer_leadership(3),
    ):
        with pytest.raises(NotLeaderError) as info:
            call()
        assert info.value.leader_id == 1
    assert frozen_view(follower) == before


def test_misrouted_and_self_addressed_messages_are_ignored(cluster: Network) -> None:
    node = cluster.nodes[2]
    before = frozen_view(node)
    node.step(Message(MessageType.APPEND, 1, 3, 9, entries=(Entry(9, 1),)))
    node.step(Message(MessageType.VOTE, 2, 2, 9))
    assert frozen_view(node) == before


messages = st.builds(
    Message,
    type=st.sampled_from([t for t in MessageType if t is not MessageType.SNAPSHOT]),
    from_id=st.integers(1, 5),
    to_id=st.just(2),
    term=st.integers(0, 4),
    log_term=st.integers(0, 4),
    index=st.integers(0, 6),
    commit=st.integers(0, 8),
    reject=st.booleans(),
    reject_hint=st.integers(0, 6),
    context=st.binary(max_size=9),
)


@given(st.lists(messages, max_size=12))
def test_arbitrary_peer_messages_never_raise_or_break_invariants(batch: list[Message]) -> None:
    """Fuzz: well-formed but nonsensical messages are handled without exceptions.

    Only violations the messages *prove* (a leader contradicting a committed entry)
    may surface through check_invariants; nothing else may break.
    """
    net = Network(3)
    elect(net, 1)
    node = net.nodes[2]
    for msg in batch:
        node.step(msg)
        try:
            node.check_invariants()
        except InvariantError as exc:
            assert "claims term" in str(exc)
            return
        if node.has_ready():
            node.advance(node.ready())


def test_check_invariants_detects_corruption() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.check_invariants()
    pr = leader._progress[2]
    pr.next = pr.match
    with pytest.raises(InvariantError, match="match"):
        leader.check_invariants()
    pr.next = pr.match + 1
    leader.check_invariants()
    leader.term -= 1
    with pytest.raises(InvariantError, match="term went back"):
        leader.check_invariants()


def test_check_invariants_detects_commit_beyond_quorum() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(1)
    leader.propose(b"x")
    leader._log.committed = leader.last_index
    with pytest.raises(InvariantError, match="quorum holds only"):
        leader.check_invariants()


def test_check_invariants_detects_role_confusion() -> None:
    net = Network(3)
    elect(net, 1)
    follower: RaftNode = net.nodes[2]
    follower.lead = 2
    with pytest.raises(InvariantError, match="names itself leader"):
        follower.check_invariants()


def test_status_reports_progress_for_leader_only(cluster: Network) -> None:
    status = cluster.nodes[1].status()
    assert status["role"] == "leader" and status["commit"] == 2
    progress = status["progress"]
    assert isinstance(progress, dict)
    assert progress[2]["state"] == ProgressState.REPLICATE.name.lower()
    assert cluster.nodes[2].status()["progress"] == {}
    assert cluster.nodes[2].role is Role.FOLLOWER


def test_advance_frees_compacted_entries_in_bounded_slices() -> None:
    net = Network(3)
    node = elect(net, 1)
    count = 3 * DROPPED_ENTRIES_FREED_PER_ADVANCE
    for i in range(count):
        node.propose(b"%d" % i)
    net.stabilize()
    node.compact(node.applied_index, b"state")
    dropped = node._log.dropped_entries
    assert dropped > count
    while dropped:
        node.tick()  # a heartbeat: one Ready, one advance
        net.process_ready(1)
        freed = dropped - node._log.dropped_entries
        assert 0 < freed <= DROPPED_ENTRIES_FREED_PER_ADVANCE
        dropped = node._log.dropped_entries
