"""Bounded sweeps: many seeds, 5 members, all faults, zero violations."""

from __future__ import annotations

import pytest

from syndic.sim import SimConfig, run_simulation
from syndic.sim.scenarios import SCENARIOS

# About 0.4 s of CPU per seed (the real store, WAL, leases and watches): the
# CI sweep is a smoke test; the slow sweeps and make sim-deep go deep.
CI_SWEEP_SEEDS = 8
DEEP_SWEEP_SEEDS = 600


def _violations(seeds: range, **kwargs: object) -> list[str]:
    found = []
    for seed in seeds:
        result = run_simulation(SimConfig(seed=seed, **kwargs))  # type: ignore[arg-type]
        if not result.ok:
            assert result.violation is not None
            found.append(f"{result.violation.describe()} -> {result.config.replay_command()}")
    return found


def test_ci_sweep_all_faults_five_nodes() -> None:
    # Seeds 1-12 run in tests/sim/test_runner.py already.
    assert _violations(range(100, 100 + CI_SWEEP_SEEDS), nodes=5) == []


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"default"}))
def test_each_scenario_is_clean_without_bugs(scenario: str) -> None:
    # A schedule that breaks a sound system would make its negative control meaningless.
    assert _violations(range(1, 11), nodes=3, scenario=scenario) == []


@pytest.mark.slow
def test_deep_sweep_all_faults() -> None:
    assert _violations(range(1, DEEP_SWEEP_SEEDS + 1), nodes=5) == []


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("nodes", [3, 5])
def test_deep_sweep_scenarios(scenario: str, nodes: int) -> None:
    assert _violations(range(1000, 1100), nodes=nodes, scenario=scenario) == []
