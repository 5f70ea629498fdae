"""Log replication: §5.3 consistency check and repair, §5.4.2 commit rule (figure 8),
flow control, batching and the bound on uncommitted bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from syndic.raft import (
    InvalidArgumentError,
    InvariantError,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
)
from syndic.raft.progress import ProgressState

from .helpers import elect, frozen_view, sent
from .network import Network


def test_proposals_commit_and_apply_everywhere_in_order() -> None:
    net = Network(3)
    leader = elect(net, 1)
    for i in range(10):
        assert leader.propose(f"v{i}".encode()) == i + 2
    net.stabilize()
    for node_id in net.nodes:
        assert net.applied_data(node_id) == [f"v{i}".encode() for i in range(10)]
        assert net.nodes[node_id].commit_index == 11


def test_follower_refuses_proposals_naming_the_leader() -> None:
    net = Network(3)
    elect(net, 1)
    with pytest.raises(NotLeaderError) as info:
        net.nodes[2].propose(b"x")
    assert info.value.leader_id == 1


def test_append_batches_respect_entry_and_byte_bounds() -> None:
    net = Network(2, max_entries_per_message=3, max_bytes_per_message=100)
    leader = elect(net, 1)
    net.isolate(2)
    for _ in range(7):
        leader.propose(b"x" * 10)
    net.stabilize()
    net.heal()
    leader.tick()
    net.process_all()
    net.deliver_once()  # heartbeat
    net.process_all()
    net.deliver_once()  # heartbeat response -> appends
    appends = [m for m in net.in_flight if m.type is MessageType.APPEND]
    net.stabilize()
    traced = [m for m in net.trace if " APPEND " in m and "[" in m]
    assert traced
    assert all(len(m.entries) <= 3 for m in appends)
    big = Network(2, max_entries_per_message=64, max_bytes_per_message=25)
    leader = elect(big, 1)
    for _ in range(4):
        leader.propose(b"y" * 10)
    rd = leader.ready()
    sizes = [sum(len(e.data) for e in m.entries) for m in sent(rd)]
    assert all(size <= 25 for size in sizes)


def test_inflight_window_limits_unacknowledged_appends() -> None:
    net = Network(2, max_inflight_messages=2)
    leader = elect(net, 1)
    for i in range(6):
        leader.propose(bytes([i]))
    rd = leader.ready()
    to_2 = [m for m in sent(rd) if m.type is MessageType.APPEND and m.to_id == 2]
    assert len(to_2) == 2
    progress = leader.status()["progress"]
    assert isinstance(progress, dict)
    assert progress[2]["inflight"] == 2
    leader.advance(rd)
    net.in_flight.extend(sent(rd))
    net.stabilize()
    assert net.nodes[2].commit_index == 7


def test_inflight_byte_window() -> None:
    net = Network(2, max_inflight_bytes=25)
    leader = elect(net, 1)
    for _ in range(5):
        leader.propose(b"z" * 10)
    rd = leader.ready()
    to_2 = [m for m in sent(rd) if m.type is MessageType.APPEND and m.to_id == 2]
    assert len(to_2) == 3  # 10 + 10 < 25, the third fills it
    leader.advance(rd)


def test_uncommitted_bytes_bound_drops_proposals_until_commit() -> None:
    net = Network(3, max_uncommitted_bytes=100)
    leader = elect(net, 1)
    net.isolate(1)
    leader.propose(b"a" * 60)
    before = frozen_view(leader)
    with pytest.raises(ProposalDroppedError) as info:
        leader.propose(b"b" * 60)
    assert info.value.reason == "uncommitted-bytes"
    assert frozen_view(leader) == before
    with pytest.raises(ProposalDroppedError, match="too-large"):
        leader.propose(b"c" * 101)
    net.heal()
    net.stabilize()
    leader.tick()
    net.stabilize()
    assert leader.commit_index == 2
    leader.propose(b"b" * 60)


def test_log_conflict_repair_with_fast_backoff() -> None:
    net = Network(3, max_entries_per_message=100)
    elect(net, 1)
    net.isolate(1)
    for i in range(20):
        net.nodes[1].propose(f"lost{i}".encode())
    net.stabilize()
    for _ in range(10):
        net.tick(2)
        net.tick(3)
    elect(net, 2)
    for i in range(5):
        net.nodes[2].propose(f"kept{i}".encode())
    net.stabilize()
    net.heal()
    net.tick(2)
    rejects_before = sum(1 for line in net.trace if "reject" in line)
    net.stabilize()
    rejects = sum(1 for line in net.trace if "reject" in line) - rejects_before
    assert rejects <= 2  # one hint skips the whole divergent term, not 20 round trips
    assert net.nodes[1].entries_between(1, 100) == net.nodes[2].entries_between(1, 100)
    assert net.applied_data(1) == [f"kept{i}".encode() for i in range(5)]


def figure8(planted_bugs: frozenset[str]) -> Network:
    """Raft paper figure 8: an entry of an old term, replicated on a majority by a
    later leader, can still be overwritten; committing it by counting is unsafe."""
    net = Network(
        5, pre_vote=False, check_quorum=False, max_entries_per_message=1, planted_bugs=planted_bugs
    )
    elect(net, 1)
    # (a) S1 leads term 1 and replicates index 2 only to S2.
    net.partition({1, 2}, {3, 4, 5})
    net.nodes[1].propose(b"a")
    net.stabilize()
    # (b) S5 wins term 2 with S3 and S4 and appends its own index 2, which no one gets.
    net.nodes[5].campaign()
    for _ in range(2):
        net.process_all()
        net.deliver_once()
    net.process_all()
    assert net.nodes[5].role is Role.LEADER
    net.isolate(5)
    net.stabilize()
    # (c) S1 restarts and wins term 3 with S2, S3, S4; it replicates the term-1 entry at
    # index 2 to S3, but its term-3 entry never leaves it.
    net.restart(1)
    net.partition({1, 2, 3}, {4}, {5})

    def settle_without_term3_entries() -> None:
        for _ in range(10):
            net.process_all()
            net.in_flight = [
                replace(m, entries=tuple(e for e in m.entries if e.term != 3))
                for m in net.in_flight
            ]
            net.deliver_once()

    while net.nodes[1].role is not Role.LEADER:
        net.nodes[1].campaign()
        settle_without_term3_entries()
    assert net.nodes[1].term == 3
    assert net.nodes[3].entries_between(2, 3)[0].term == 1
    return net


def test_figure8_old_term_entry_is_not_committed_by_counting() -> None:
    net = figure8(frozenset())
    assert net.nodes[1].commit_index == 1  # Raft §5.4.2
    # (d) S1 crashes; S5 wins term 4 and overwrites index 2 everywhere: safe, because
    # it was never committed.
    net.down.add(1)
    net.heal()
    net.restart(5)  # S5 still thinks it leads term 2 (no check-quorum); restart it as follower
    for _ in range(5):  # bounded: term 3 may split, term 4 must win
        net.nodes[5].campaign()
        net.stabilize()
        if net.leader() == 5:
            break
    assert net.leader() == 5
    net.stabilize()
    assert net.nodes[3].entries_between(2, 3)[0].term == 2


def test_figure8_planted_bug_commits_old_term_entry_and_breaks_safety() -> None:
    net = figure8(frozenset({"old-term-commit"}))
    assert net.nodes[1].commit_index == 2
    assert net.applied[1][2] == b"a"
    net.down.add(1)
    net.heal()
    net.restart(5)  # S5 still thinks it leads term 2 (no check-quorum); restart it as follower
    with pytest.raises(InvariantError):
        for _ in range(5):
            net.nodes[5].campaign()
            net.stabilize()
        net.stabilize()


def test_rewriting_committed_entries_is_reported_by_check_invariants() -> None:
    net = Network(3)
    elect(net, 1)
    net.nodes[1].propose(b"x")
    net.stabilize()
    follower = net.nodes[2]
    from syndic.raft import Entry

    forged = Message(
        MessageType.APPEND, 1, 2, 1, log_term=1, index=1, entries=(Entry(1, 2, data=b"y"),)
    )
    forged_term = Message(
        MessageType.APPEND, 3, 2, 5, log_term=1, index=1, entries=(Entry(5, 2, data=b"y"),)
    )
    follower.step(forged)  # same entry term: no conflict detected by term, ignored
    follower.check_invariants()
    follower.step(forged_term)
    with pytest.raises(InvariantError, match="committed with term 1, leader claims term 5"):
        follower.check_invariants()
    assert follower.entries_between(2, 3)[0].data == b"x"


def test_hostile_ack_beyond_last_index_is_ignored() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.step(Message(MessageType.APPEND_RESP, 2, 1, 1, index=99))
    leader.check_invariants()
    assert leader.commit_index == 1


def test_report_unreachable_moves_replicate_to_probe() -> None:
    net = Network(3)
    leader = elect(net, 1)
    progress = leader.status()["progress"]
    assert isinstance(progress, dict) and progress[2]["state"] == "replicate"
    leader.report_unreachable(2)
    progress = leader.status()["progress"]
    assert isinstance(progress, dict) and progress[2]["state"] == "probe"
    leader.report_unreachable(42)  # unknown: nothing to do
    leader.check_invariants()


def test_lost_appends_are_retransmitted_after_heartbeat() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    net.process_all()
    net.in_flight.clear()  # every APPEND lost
    for _ in range(3):
        leader.tick()
        net.stabilize()
    assert all(n.commit_index == 2 for n in net.nodes.values())
    assert leader.status()["progress"][2]["state"] == ProgressState.REPLICATE.name.lower()  # type: ignore[index]


def test_a_batch_of_proposals_goes_out_as_one_append_per_follower() -> None:
    net = Network(3)
    leader = elect(net, 1)
    net.stabilize()
    assert leader.propose_batch([b"a", b"b", b"c"]) == 4
    net.process_all()
    appends = [m for m in net.in_flight if m.type is MessageType.APPEND]
    assert sorted(m.to_id for m in appends) == [2, 3]
    assert all([e.data for e in m.entries] == [b"a", b"b", b"c"] for m in appends)
    net.stabilize()
    for node_id in net.nodes:
        assert net.applied_data(node_id) == [b"a", b"b", b"c"]


def test_a_batch_is_proposed_whole_or_not_at_all() -> None:
    net = Network(3, max_uncommitted_bytes=100)
    leader = elect(net, 1)
    net.stabilize()
    before = leader.last_index
    with pytest.raises(ProposalDroppedError):
        leader.propose_batch([b"x" * 60, b"y" * 60])
    for bad in ([], [b"ok", "not bytes"]):
        with pytest.raises(InvalidArgumentError):
            leader.propose_batch(bad)  # type: ignore[arg-type]
    assert leader.last_index == before
    with pytest.raises(NotLeaderError):
        net.nodes[2].propose_batch([b"x"])


def test_leader_appends_may_leave_before_its_own_fsync() -> None:
    net = Network(3)
    leader = elect(net, 1)
    leader.propose(b"x")
    rd = leader.ready()
    appends = [m for m in rd.early_messages if m.type is MessageType.APPEND]
    assert {m.to_id for m in appends} == {2, 3}
    assert all(m.entries and m.entries[-1].data == b"x" for m in appends)
    assert not [m for m in rd.messages if m.type is MessageType.APPEND]
    leader.advance(rd)


def test_leader_counts_itself_only_once_its_entries_are_persisted() -> None:
    net = Network(3)
    leader = elect(net, 1)
    index = leader.propose(b"x")
    rd = leader.ready()  # being persisted: not advanced yet
    net.in_flight.extend(m for m in rd.early_messages if m.to_id == 2)
    net.deliver_once()  # node 2 takes the append
    net.process_ready(2)  # ... persists it and acknowledges
    ack = [m for m in net.in_flight if m.type is MessageType.APPEND_RESP]
    assert ack and ack[0].index == index
    leader.step(ack[0])
    # One follower holds it durably; the leader's own copy may not be on disk.
    assert leader.commit_index < index
    leader.advance(rd)
    assert leader.commit_index == index
    leader.check_invariants()
    # The followers hear of the commit at once: they answer writes forwarded
    # through them when they apply, and must not wait for a heartbeat.
    told = [m for m in sent(leader.ready()) if m.type is MessageType.APPEND]
    assert {m.to_id for m in told} == {2, 3}
    assert all(m.commit == index for m in told)


def test_a_candidates_messages_never_leave_early() -> None:
    net = Network(3)
    net.nodes[1].campaign()
    rd = net.nodes[1].ready()
    # Its (pre-)vote requests speak for a term and vote that must be durable first.
    assert rd.early_messages == ()
    assert rd.messages
    assert all(m.type in (MessageType.PRE_VOTE, MessageType.VOTE) for m in rd.messages)
    net.nodes[1].advance(rd)
