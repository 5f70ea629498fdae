"""Membership changes under faults: learners join and are promoted, members
(the leader too) are removed, through the runtime's conf-change path; a
removed member stops and never votes again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from syndic.sim import SimConfig, run_simulation
from syndic.sim.cluster import SimCluster
from syndic.sim.nemesis import ALL_FAULTS, parse_faults

# Seeds of the default 5-member, all-faults run in which every kind of change
# is in force at least once (found by running them; most runs change members).
SEEDS = (1, 2, 6)


@pytest.mark.parametrize("seed", SEEDS)
def test_members_join_get_promoted_and_leave_under_faults(seed: int) -> None:
    result = run_simulation(SimConfig(seed=seed, nodes=5))
    assert result.ok, result.violation
    stats = result.stats
    assert stats["membership_learners_joined"] >= 1
    assert stats["membership_voters_promoted"] >= 1
    assert stats["membership_members_removed"] >= 1
    assert stats["cluster_members_started"] >= 1
    # At least one removed member applied its removal while running and stopped.
    assert stats["cluster_removed_stopped"] >= 1


def test_membership_is_a_fault_of_its_own_and_part_of_all() -> None:
    assert "membership" in ALL_FAULTS
    assert parse_faults("membership") == frozenset({"membership"})


def test_membership_alone_changes_members_and_replays_identically() -> None:
    config = SimConfig(seed=2, nodes=3, faults=frozenset({"membership"}))
    first = run_simulation(config)
    assert first.ok, first.violation
    assert first.stats["membership_learners_joined"] >= 1
    again = run_simulation(config)
    assert again.digest == first.digest


def test_replay_with_membership_is_byte_identical() -> None:
    config = SimConfig(seed=SEEDS[0], nodes=5, trace=True)
    first, again = run_simulation(config), run_simulation(config)
    assert first.transcript == again.transcript
    assert any("MEMBERSHIP ADD_LEARNER" in line for line in first.transcript)


def test_a_removed_member_that_keeps_running_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a driver that does not stop a member once it applied
    its own removal lets it go on sending (votes, campaigns); the simulator
    reports it."""
    original = SimCluster._check_removed

    def keep_running(self: SimCluster, member: object, runtime: object) -> None:
        membership = runtime.membership  # type: ignore[attr-defined]
        if membership.peers_dirty:
            membership.peers_dirty = False
            membership.check_removed(runtime.raft.conf_state)  # type: ignore[attr-defined]

    monkeypatch.setattr(SimCluster, "_check_removed", keep_running)
    caught = [run_simulation(SimConfig(seed=seed, nodes=5)).violation for seed in SEEDS]
    assert any(v is not None and v.invariant == "removed-member-sends" for v in caught), caught
    monkeypatch.setattr(SimCluster, "_check_removed", original)
    assert run_simulation(replace(SimConfig(seed=SEEDS[0], nodes=5))).ok
