"""Benchmark of syndic's deterministic simulator.

There is no external peer for this suite: the comparison column is the goal.

* simulated client operations per wall-clock second: 5 members, all faults,
  one process, measured over a run of consecutive seeds;
* wall time of a sweep of N seeds (5 members, all faults) on 2 worker
  processes, and that time extrapolated to 1,000 seeds.

Goals: >= 1,000 simulated ops/s, and 1,000 seeds in < 10 min on 2 cores.
A full run sweeps 1,000 seeds; ``--quick`` sweeps 60 and extrapolates.
Prints a table and writes bench/results/sim.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from syndic.sim import SimConfig, SimResult, run_simulation

RESULTS = Path(__file__).resolve().parent / "results" / "sim.json"
GOAL_OPS_PER_S = 1_000.0
GOAL_SWEEP_1000_S = 600.0
SWEEP_JOBS = 2


def _run(config: SimConfig) -> SimResult:
    return run_simulation(config)


def measure_throughput(seeds: int) -> dict[str, float]:
    base = SimConfig(seed=1, nodes=5)
    ops = 0
    events = 0
    violations = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for seed in range(1, seeds + 1):
        result = run_simulation(replace(base, seed=seed))
        ops += result.client_ops
        events += int(result.stats["events"])  # type: ignore[call-overload]
        violations += 0 if result.ok else 1
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "seeds": seeds,
        "client_ops": ops,
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        "ops_per_wall_s": ops / wall,
        "ops_per_cpu_s": ops / cpu,
        "events_per_wall_s": events / wall,
        "violations": violations,
    }


def measure_sweep(seeds: int, jobs: int) -> dict[str, float]:
    configs = [SimConfig(seed=s, nodes=5) for s in range(1, seeds + 1)]
    start = time.perf_counter()
    violations = 0
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for result in pool.imap_unordered(_run, configs, chunksize=4):
            violations += 0 if result.ok else 1
    wall = time.perf_counter() - start
    return {
        "seeds": seeds,
        "jobs": jobs,
        "wall_s": wall,
        "per_1000_seeds_s": wall * 1000 / seeds,
        "violations": violations,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in well under 30 s")
    args = parser.parse_args()
    tp_seeds, sweep_seeds = (20, 60) if args.quick else (100, 1000)

    throughput = measure_throughput(tp_seeds)
    sweep = measure_sweep(sweep_seeds, SWEEP_JOBS)

    rows = [
        (
            "simulated client ops / wall s (5 members, all faults)",
            f"{throughput['ops_per_wall_s']:,.0f}",
            f">= {GOAL_OPS_PER_S:,.0f}",
            throughput["ops_per_wall_s"] / GOAL_OPS_PER_S,
        ),
        (
            f"sweep of {sweep_seeds} seeds, {SWEEP_JOBS} workers (s)",
            f"{sweep['wall_s']:.1f}",
            "-",
            None,
        ),
        (
            "1,000 seeds on 2 cores (s, extrapolated)"
            if args.quick
            else "1,000 seeds on 2 cores (s)",
            f"{sweep['per_1000_seeds_s']:.0f}",
            f"< {GOAL_SWEEP_1000_S:.0f}",
            GOAL_SWEEP_1000_S / sweep["per_1000_seeds_s"],
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'syndic':>10}  {'goal':>10}  {'ratio':>7}")
    for name, value, goal, ratio in rows:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
        print(f"{name:<{width}}  {value:>10}  {goal:>10}  {ratio_text:>7}")
    total_violations = int(throughput["violations"] + sweep["violations"])
    print(f"violations during the benchmark: {total_violations}")
    print("(ratio > 1 means the goal is met; the machine is shared, so wall time includes waits)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "suite": "sim",
                "quick": args.quick,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "goal": {"ops_per_wall_s": GOAL_OPS_PER_S, "sweep_1000_s": GOAL_SWEEP_1000_S},
                "throughput": throughput,
                "sweep": sweep,
                "violations": total_violations,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if total_violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
