"""The Raft log: append, conflicts, term lookup, commit, compaction, stability."""

from __future__ import annotations

import pytest

from syndic.raft import ConfState, Entry, InvariantError, Snapshot, SnapshotMeta
from syndic.raft.errors import SnapshotOutOfDateError
from syndic.raft.log import RaftLog


def ents(*terms: int, start: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(term=t, index=start + i, data=bytes([i])) for i, t in enumerate(terms))


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(voters=frozenset({1}))), b"s")


def test_empty_log() -> None:
    log = RaftLog()
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 0, 0)
    assert log.term(0) == 0
    assert log.term(1) is None


def test_append_and_term_lookup() -> None:
    log = RaftLog()
    assert log.append(ents(1, 1, 2)) == 3
    assert [log.term(i) for i in range(5)] == [0, 1, 1, 2, None]
    assert log.unstable_entries() == ents(1, 1, 2)


def test_append_truncates_conflicting_suffix() -> None:
    log = RaftLog(entries=ents(1, 1, 1, 1))
    log.append(ents(2, 2, start=3))
    assert [log.term(i) for i in range(1, 6)] == [1, 1, 2, 2, None]
    assert log.unstable_from == 3


def test_append_rejects_gap_and_decreasing_term() -> None:
    log = RaftLog(entries=ents(2, 2))
    with pytest.raises(InvariantError):
        log.append(ents(2, start=5))
    with pytest.raises(InvariantError):
        log.append(ents(1, start=3))


def test_append_never_overwrites_committed() -> None:
    log = RaftLog(entries=ents(1, 1, 1))
    log.commit_to(2)
    with pytest.raises(InvariantError, match="committed"):
        log.append(ents(2, start=2))


def test_maybe_append_checks_prev_and_commits_only_what_it_vouches_for() -> None:
    log = RaftLog(entries=ents(1, 1))
    assert log.maybe_append(3, 1, 5, ents(1, start=4)) is None  # gap
    assert log.maybe_append(2, 2, 5, ents(2, start=3)) is None  # prev term mismatch
    assert log.maybe_append(2, 1, 9, ents(2, start=3)) == 3
    assert log.committed == 3
    # A heartbeat-like append with no entries commits up to prev only.
    log2 = RaftLog(entries=ents(1, 1, 1))
    assert log2.maybe_append(1, 1, 3, ()) == 1
    assert log2.committed == 1


def test_maybe_append_keeps_matching_entries_after_a_stale_message() -> None:
    log = RaftLog(entries=ents(1, 1, 2, 2))
    # An old message carrying only a prefix must not truncate the suffix (Raft §5.3).
    assert log.maybe_append(1, 1, 0, ents(1, start=2)) == 2
    assert log.last_index() == 4


def test_maybe_append_refuses_to_rewrite_committed_entries() -> None:
    log = RaftLog(entries=ents(1, 1, 1))
    log.commit_to(3)
    with pytest.raises(InvariantError, match="conflicts with committed"):
        log.maybe_append(1, 1, 3, ents(2, 2, start=2))
    assert log.term(3) == 1


def test_find_conflict_by_term() -> None:
    log = RaftLog(entries=ents(1, 1, 3, 3, 3, 5))
    assert log.find_conflict_by_term(6, 4) == 5
    assert log.find_conflict_by_term(6, 2) == 2
    assert log.find_conflict_by_term(6, 0) == 0
    assert log.find_conflict_by_term(99, 5) == 6


def test_is_up_to_date() -> None:
    log = RaftLog(entries=ents(1, 2, 2))
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_slice_bounds_count_and_bytes_but_always_one() -> None:
    big = tuple(Entry(term=1, index=i, data=b"x" * 10) for i in range(1, 6))
    log = RaftLog(entries=big)
    assert len(log.slice(1, 6, max_count=2)) == 2
    assert len(log.slice(1, 6, max_bytes=25)) == 2
    assert len(log.slice(1, 6, max_bytes=1)) == 1
    assert log.slice(4, 99) == big[3:]
    assert log.slice(0, 2) == big[:1]


def test_commit_and_apply_cursors() -> None:
    log = RaftLog(entries=ents(1, 2))
    assert not log.maybe_commit(2, 1)  # §5.4.2: only with the expected term
    assert log.maybe_commit(2, 2)
    with pytest.raises(InvariantError):
        log.commit_to(3)
    log.applied_to(1)
    with pytest.raises(InvariantError):
        log.applied_to(0)


def test_compaction_keeps_suffix_and_term_of_offset() -> None:
    log = RaftLog(entries=ents(1, 1, 2, 2, 3))
    log.stable_to(5, 3)
    log.commit_to(4)
    log.applied_to(4)
    log.compact(snap(3, 2))
    assert log.first_index() == 4
    assert log.term(3) == 2
    assert log.term(2) is None
    assert log.slice(1, 6) == ents(1, 1, 2, 2, 3)[3:]
    with pytest.raises(SnapshotOutOfDateError):
        log.compact(snap(3, 2))
    with pytest.raises(InvariantError):
        log.compact(snap(5, 3))  # beyond applied
    log.check()


def test_compacted_entries_are_freed_a_slice_at_a_time() -> None:
    # Freeing a whole compacted log in one step held a member's loop for
    # 60-120 ms at 100,000 entries; each release frees at most its limit.
    log = RaftLog(entries=ents(*[1] * 10))
    log.commit_to(10)
    log.applied_to(10)
    log.compact(snap(7, 1))
    assert (log.first_index(), log.dropped_entries) == (8, 7)
    log.release_dropped(3)
    assert log.dropped_entries == 4
    log.restore(snap(20, 2))  # a restored snapshot drops the rest of the log too
    assert log.dropped_entries == 7
    for left in (4, 1, 0, 0):
        log.release_dropped(3)
        assert log.dropped_entries == left
    log.check()


def test_restore_replaces_log_and_marks_snapshot_unstable() -> None:
    log = RaftLog(entries=ents(1, 1))
    log.restore(snap(10, 4))
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.unstable_snapshot is not None
    log.check()  # applied may lag while the snapshot is unapplied
    log.stable_snapshot_to(10)
    log.applied_to(10)
    log.check()
    with pytest.raises(SnapshotOutOfDateError):
        log.restore(snap(10, 4))


def test_stable_to_ignores_rewritten_entries() -> None:
    log = RaftLog()
    log.append(ents(1, 1))
    log.append(ents(2, start=2))
    log.stable_to(2, 1)  # the (2, term 1) entry the runtime saved is gone
    assert log.unstable_from == 1
    log.stable_to(2, 2)
    assert log.unstable_from == 3
    assert log.unstable_entries() == ()
