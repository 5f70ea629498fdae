"""Compaction and snapshot installation (Raft §7)."""

from __future__ import annotations

import pytest

from syndic.raft import InvalidArgumentError, MessageType, SnapshotOutOfDateError

from .helpers import elect, frozen_view, sent
from .network import Network


def lagging_cluster() -> Network:
    net = Network(3)
    leader = elect(net, 1)
    net.isolate(3)
    for i in range(10):
        leader.propose(f"v{i}".encode())
    net.stabilize()
    net.compact(1, 8)
    net.heal()
    return net


def test_compact_drops_prefix_and_keeps_suffix() -> None:
    net = lagging_cluster()
    leader = net.nodes[1]
    assert leader.first_index == 9
    assert [e.index for e in leader.entries_between(1, 100)] == [9, 10, 11]
    leader.check_invariants()


def test_lagging_follower_receives_snapshot_and_catches_up() -> None:
    net = lagging_cluster()
    net.nodes[1].tick()
    net.stabilize()
    assert any(" SNAPSHOT " in line for line in net.trace)
    follower = net.nodes[3]
    assert follower.commit_index == 11
    assert follower.first_index == 9
    assert net.applied_data(3) == [f"v{i}".encode() for i in range(10)]
    assert net.storage[3].snapshot is not None
    assert net.storage[3].snapshot.meta.index == 8
    progress = net.nodes[1].status()["progress"]
    assert isinstance(progress, dict) and progress[3]["state"] == "replicate"


def test_snapshot_is_surfaced_in_ready_with_conf_state() -> None:
    net = lagging_cluster()
    net.nodes[1].tick()
    follower = net.nodes[3]
    seen = []
    for _ in range(6):
        net.process_ready(1)
        net.deliver_once()
        if follower.has_ready():
            rd = follower.ready()
            seen.append(rd)
            net.in_flight.extend(sent(rd))
            follower.advance(rd)
    snaps = [rd for rd in seen if rd.snapshot is not None]
    assert len(snaps) == 1
    rd = snaps[0]
    assert rd.snapshot is not None and rd.must_sync
    assert rd.snapshot.meta.conf_state.voters == {1, 2, 3}
    assert all(e.index > 8 for e in rd.committed_entries)


def test_report_snapshot_failure_returns_to_probe() -> None:
    net = lagging_cluster()
    leader = net.nodes[1]
    leader.tick()
    sent = []
    for _ in range(6):  # heartbeat, its response, a probe, its rejection
        net.process_all()
        sent = [m for m in net.in_flight if m.type is MessageType.SNAPSHOT]
        if sent:
            break
        net.deliver_once()
    assert sent
    net.in_flight.clear()  # the snapshot is lost
    progress = leader.status()["progress"]
    assert isinstance(progress, dict) and progress[3]["state"] == "snapshot"
    leader.report_snapshot(3, ok=False)
    progress = leader.status()["progress"]
    assert isinstance(progress, dict) and progress[3]["state"] == "probe"
    leader.check_invariants()
    for _ in range(3):
        leader.tick()
        net.stabilize()
    assert net.nodes[3].commit_index == leader.commit_index


def test_compact_refusals_change_nothing() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    net.stabilize()
    before = frozen_view(leader)
    with pytest.raises(InvalidArgumentError, match="beyond the applied index"):
        leader.compact(5, b"")
    with pytest.raises(InvalidArgumentError):
        leader.compact(0, b"")
    with pytest.raises(InvalidArgumentError):
        leader.compact(-1, b"")
    with pytest.raises(InvalidArgumentError):
        leader.compact(1, "data")  # type: ignore[arg-type]
    assert frozen_view(leader) == before
    leader.compact(2, b"s")
    with pytest.raises(SnapshotOutOfDateError):
        leader.compact(2, b"s")
    with pytest.raises(SnapshotOutOfDateError):
        leader.compact(1, b"s")


def test_snapshot_records_the_configuration_at_its_index() -> None:
    from syndic.raft import ConfChange, ConfChangeType

    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    net.stabilize()
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    old = leader.compact(2, b"")
    assert old.meta.conf_state.learners == frozenset()
    new = leader.compact(3, b"")
    assert new.meta.conf_state.learners == {4}


def test_stale_snapshot_message_is_ignored() -> None:
    net = lagging_cluster()
    net.nodes[1].tick()
    net.stabilize()
    follower = net.nodes[3]
    snapshot = net.storage[1].snapshot
    assert snapshot is not None
    from syndic.raft import Message

    follower.step(Message(MessageType.SNAPSHOT, 1, 3, follower.term, snapshot=snapshot))
    rd = follower.ready()
    assert rd.snapshot is None
    follower.advance(rd)
    follower.check_invariants()
