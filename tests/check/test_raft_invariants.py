"""Each Raft safety property is caught when broken, and quiet when it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from syndic.check.raft_invariants import RaftSafetyChecker, SafetyViolationError
from syndic.raft import Entry, InvariantError, Role


@dataclass
class FakeCore:
    term: int = 1
    role: Role = Role.FOLLOWER
    commit_index: int = 0
    log: list[Entry] = field(default_factory=list)
    broken: str = ""

    @property
    def last_index(self) -> int:
        return self.log[-1].index if self.log else 0

    def entries_between(self, lo: int, hi: int) -> tuple[Entry, ...]:
        return tuple(e for e in self.log if lo <= e.index < hi)

    def check_invariants(self) -> None:
        if self.broken:
            raise InvariantError(self.broken)


def E(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(term=term, index=index, data=data or f"{index}@{term}".encode())


def test_quiet_on_a_healthy_history() -> None:
    checker = RaftSafetyChecker()
    leader = FakeCore(term=1, role=Role.LEADER, commit_index=2, log=[E(1, 1), E(2, 1)])
    follower = FakeCore(term=1, commit_index=2, log=[E(1, 1), E(2, 1)])
    checker.observe_append(1, leader.log, 0)
    checker.observe_append(2, follower.log, 0)
    for e in leader.log:
        checker.observe_apply(1, e)
        checker.observe_apply(2, e)
    checker.check_step([(1, leader), (2, follower)], touched=[1, 2])
    checker.check_logs_full([(1, leader), (2, follower)])
    assert checker.committed_index == 2
    assert checker.checks == 1


def test_two_leaders_in_one_term() -> None:
    checker = RaftSafetyChecker()
    a = FakeCore(term=3, role=Role.LEADER)
    b = FakeCore(term=3, role=Role.LEADER)
    with pytest.raises(SafetyViolationError, match="term 3 has two leaders") as info:
        checker.check_step([(1, a), (2, b)])
    assert info.value.invariant == "election-safety"


def test_two_leaders_in_one_term_across_time() -> None:
    checker = RaftSafetyChecker()
    checker.check_step([(1, FakeCore(term=3, role=Role.LEADER))])
    checker.check_step([(1, FakeCore(term=4, role=Role.FOLLOWER))])
    with pytest.raises(SafetyViolationError, match="election-safety"):
        checker.check_step([(2, FakeCore(term=3, role=Role.LEADER))])


def test_log_matching_different_data_same_index_and_term() -> None:
    checker = RaftSafetyChecker()
    checker.observe_append(1, [E(1, 1, b"a")], 0)
    with pytest.raises(SafetyViolationError, match="log-matching"):
        checker.observe_append(2, [E(1, 1, b"b")], 0)


def test_log_matching_different_prefix() -> None:
    checker = RaftSafetyChecker()
    checker.observe_append(1, [E(2, 3)], 1)
    with pytest.raises(SafetyViolationError, match="prefixes differ"):
        checker.observe_append(2, [E(2, 3)], 2)


def test_log_matching_full_scan() -> None:
    checker = RaftSafetyChecker()
    a = FakeCore(log=[E(1, 1, b"x"), E(2, 2)])
    b = FakeCore(log=[E(1, 1, b"y"), E(2, 2)])
    with pytest.raises(SafetyViolationError, match="differ at index 1"):
        checker.check_logs_full([(1, a), (2, b)])


def test_state_machine_safety() -> None:
    checker = RaftSafetyChecker()
    checker.observe_apply(1, E(5, 2, b"put x"))
    checker.observe_apply(2, E(5, 2, b"put x"))
    with pytest.raises(SafetyViolationError, match="state-machine-safety"):
        checker.observe_apply(3, E(5, 3, b"put y"))


def test_commit_never_decreases_within_a_life() -> None:
    checker = RaftSafetyChecker()
    checker.check_step([(1, FakeCore(commit_index=5))])
    with pytest.raises(SafetyViolationError, match="went from 5 down to 4"):
        checker.check_step([(1, FakeCore(commit_index=4))])


def test_commit_floor_after_restart_is_the_synced_commit() -> None:
    checker = RaftSafetyChecker()
    checker.check_step([(1, FakeCore(commit_index=9))])
    # Crash: only commit 6 was synced; restarting at 6 is fine, below it is not.
    checker.observe_restart(1, 6)
    checker.check_step([(1, FakeCore(commit_index=6))])
    checker.observe_restart(1, 6)
    with pytest.raises(SafetyViolationError, match="commit-monotonic"):
        checker.check_step([(1, FakeCore(commit_index=5))])


def test_leader_completeness_missing_entry() -> None:
    checker = RaftSafetyChecker()
    old = FakeCore(term=2, role=Role.LEADER, commit_index=3, log=[E(1, 1), E(2, 2), E(3, 2)])
    for e in old.log:
        checker.observe_apply(1, e)
    checker.check_step([(1, old)])
    new = FakeCore(term=3, role=Role.LEADER, commit_index=1, log=[E(1, 1)])
    with pytest.raises(SafetyViolationError, match="lacks committed index 2") as info:
        checker.check_step([(1, FakeCore(term=3, commit_index=3, log=old.log)), (2, new)])
    assert info.value.invariant == "leader-completeness"


def test_leader_completeness_overwritten_entry() -> None:
    checker = RaftSafetyChecker()
    old = FakeCore(term=4, role=Role.LEADER, commit_index=2, log=[E(1, 1), E(2, 2)])
    for e in old.log:
        checker.observe_apply(1, e)
    checker.check_step([(1, old)])
    new = FakeCore(term=5, role=Role.LEADER, commit_index=1, log=[E(1, 1), E(2, 3)])
    with pytest.raises(SafetyViolationError, match="holds 2@3 where 2@2 was committed"):
        checker.check_step([(2, new)])


def test_stale_leader_of_lower_term_is_not_required_to_hold_newer_commits() -> None:
    checker = RaftSafetyChecker()
    new = FakeCore(term=6, role=Role.LEADER, commit_index=2, log=[E(1, 1), E(2, 6)])
    for e in new.log:
        checker.observe_apply(1, e)
    stale = FakeCore(term=5, role=Role.LEADER, commit_index=1, log=[E(1, 1)])
    checker.check_step([(1, new), (2, stale)])


def test_core_invariant_failure_is_reported_for_touched_cores_only() -> None:
    checker = RaftSafetyChecker()
    broken = FakeCore(broken="match >= next")
    checker.check_step([(1, broken)], touched=[])
    with pytest.raises(SafetyViolationError, match="core-invariant: n1: match >= next"):
        checker.check_step([(1, broken)], touched=[1])


def test_only_touched_changed_still_catches_a_touched_commit_going_back() -> None:
    checker = RaftSafetyChecker()
    checker.check_step([(1, FakeCore(commit_index=5))], touched=[1], only_touched_changed=True)
    with pytest.raises(SafetyViolationError, match="went from 5 down to 4"):
        checker.check_step([(1, FakeCore(commit_index=4))], touched=[1], only_touched_changed=True)


def test_an_untouched_verified_leader_is_checked_again_when_others_commit() -> None:
    checker = RaftSafetyChecker()
    log = [E(1, 1), E(2, 2)]
    for e in log:
        checker.observe_apply(1, e)
    follower = FakeCore(term=2, commit_index=1, log=log)
    leader = FakeCore(term=3, role=Role.LEADER, commit_index=1, log=[E(1, 1)])
    checker.check_step([(1, follower), (2, leader)], touched=[1, 2], only_touched_changed=True)
    checker.check_step([(1, follower), (2, leader)], touched=[1], only_touched_changed=True)
    # Index 2 becomes committed (in term 2) on the follower; the leader of term
    # 3, untouched by this step, lacks it.
    follower.commit_index = 2
    with pytest.raises(SafetyViolationError, match="lacks committed index 2") as info:
        checker.check_step([(1, follower), (2, leader)], touched=[1], only_touched_changed=True)
    assert info.value.invariant == "leader-completeness"
