"""Per-follower progress and the in-flight window (etcd tracker/progress.go semantics)."""

from __future__ import annotations

import pytest

from syndic.raft import InvariantError
from syndic.raft.progress import Inflights, Progress, ProgressState


def test_inflights_bounded_by_messages() -> None:
    window = Inflights(max_messages=3, max_bytes=1000)
    for index in (5, 7, 9):
        assert not window.full()
        window.add(index, 10)
    assert window.full()
    with pytest.raises(InvariantError):
        window.add(11, 1)
    window.free_le(7)
    assert len(window) == 1 and window.bytes == 10
    assert not window.full()


def test_inflights_bounded_by_bytes_but_admits_one_big_message() -> None:
    window = Inflights(max_messages=10, max_bytes=100)
    window.add(1, 500)  # larger than the budget, but the window was empty
    assert window.full()
    window.free_le(1)
    window.add(2, 60)
    assert not window.full()
    window.add(3, 40)
    assert window.full()
    window.free_first_one()
    assert window.bytes == 40 and not window.full()


def test_inflights_reject_non_increasing_index() -> None:
    window = Inflights(4, 100)
    window.add(5, 1)
    with pytest.raises(InvariantError):
        window.add(5, 1)


def make(next_index: int = 6, match: int = 0) -> Progress:
    pr = Progress(next_index, max_inflight_messages=2, max_inflight_bytes=1000)
    pr.match = match
    return pr


def test_probe_pauses_after_one_append_until_answer() -> None:
    pr = make()
    assert not pr.is_paused()
    pr.sent_entries(7, 10)
    assert pr.is_paused()
    assert pr.next == 6  # probing does not advance next optimistically
    assert pr.maybe_update(7)
    assert not pr.is_paused()
    assert pr.next == 8


def test_replicate_streams_until_window_full() -> None:
    pr = make(match=5)
    pr.become_replicate()
    assert pr.next == 6
    pr.sent_entries(8, 10)
    pr.sent_entries(10, 10)
    assert pr.next == 11
    assert pr.is_paused()
    pr.maybe_update(8)
    pr.inflights.free_le(8)
    assert not pr.is_paused()


def test_decrease_in_replicate_restarts_after_match() -> None:
    pr = make(match=5)
    pr.become_replicate()
    pr.sent_entries(9, 10)
    assert not pr.maybe_decrease_to(4, 0)  # stale: below match
    assert pr.maybe_decrease_to(7, 0)
    assert pr.next == 6


def test_decrease_in_probe_uses_hint_and_ignores_stale() -> None:
    pr = make(next_index=10, match=2)
    assert not pr.maybe_decrease_to(5, 3)  # answers an append we did not just send
    assert pr.maybe_decrease_to(9, 4)
    assert pr.next == 5
    pr2 = make(next_index=10, match=6)
    assert pr2.maybe_decrease_to(9, 1)
    assert pr2.next == 7  # never below match + 1


def test_snapshot_state_pauses_and_probe_resumes_after_it() -> None:
    pr = make(match=2)
    pr.become_snapshot(20)
    assert pr.state is ProgressState.SNAPSHOT
    assert pr.is_paused()
    assert pr.next == 21
    pr.become_probe()
    assert pr.next == 21  # the follower holds at least the snapshot
    pr.become_snapshot(20)
    pr.pending_snapshot = 0  # failed snapshot
    pr.become_probe()
    assert pr.next == 3


def test_check_catches_broken_progress() -> None:
    pr = make(match=3)
    pr.check(2, last_index=10)
    pr.next = 3
    with pytest.raises(InvariantError, match="match 3 !< next 3"):
        pr.check(2, last_index=10)
    pr.next = 12
    pr.match = 11
    with pytest.raises(InvariantError, match="beyond leader last"):
        pr.check(2, last_index=10)


def test_describe() -> None:
    assert make(match=3).describe()["state"] == "probe"
