"""Benchmark of syndic's deterministic simulator.

Each seed runs five members through the production WAL, snapshot store and
recovery on a faulty simulated disk, the server's state machine (MVCC store,
leases, auth) and the real watch hub, with Put, Range (linearizable and
serializable), DeleteRange, Txn, Compact, leases and watches as the workload.

There is no external peer for this suite: the comparison column is the goal.

* simulated client operations per wall-clock second and per CPU second: 5
  members, all faults, one process; the median of three blocks of
  consecutive seeds;
* the same on 2 worker processes at once (``--jobs 2``, as ``make sim-deep``
  runs): the machine has 2 cores, so this is what it can do when it is not
  shared; per CPU second it is each worker's own CPU time;
* ``syndic sim --nodes 5 --seeds 1-1000 --faults all`` timed over a smaller
  sweep and extrapolated to 1,000 seeds, in one process and with ``--jobs 2``
  (``make sim-deep``).

The machine is shared, so wall-clock figures depend on its load: the load
average is printed and recorded with them, and the per-CPU figures are the
ones to compare across runs.

Goals (issue 11): >= 1,000 simulated ops/s, 1,000 seeds in < 15 min.
``--quick`` uses small blocks and sweeps. Prints a table and writes
bench/results/sim.json.
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
GOAL_SWEEP_1000_S = 900.0
SWEEP_JOBS = 2
THROUGHPUT_BLOCKS = 3


def _run(config: SimConfig) -> SimResult:
    return run_simulation(config)


def _run_block(seeds: range) -> dict[str, float]:
    """One worker's share of the parallel throughput run: its own counts and clocks."""
    ops = 0
    start = time.monotonic()  # system-wide on Linux: comparable across the workers
    cpu_start = time.process_time()
    for seed in seeds:
        ops += run_simulation(SimConfig(seed=seed, nodes=5)).client_ops
    return {
        "client_ops": ops,
        "start": start,
        "end": time.monotonic(),
        "cpu_s": time.process_time() - cpu_start,
    }


def measure_parallel_throughput(seeds_per_job: int, jobs: int) -> dict[str, float]:
    """``jobs`` processes, each running its own block of consecutive seeds at
    once; wall time from the first worker's start to the last one's end, so
    the processes' start-up is not counted."""
    blocks = [range(1 + i * seeds_per_job, 1 + (i + 1) * seeds_per_job) for i in range(jobs)]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        parts = pool.map(_run_block, blocks)
    ops = sum(p["client_ops"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    return {
        "jobs": jobs,
        "seeds": seeds_per_job * jobs,
        "client_ops": ops,
        "wall_s": wall,
        "cpu_s": cpu,
        "ops_per_wall_s": ops / wall,
        "ops_per_cpu_s": ops / cpu,
        "load_average_1m": os.getloadavg()[0],
    }


def measure_throughput(seeds: int, first_seed: int = 1) -> dict[str, float]:
    base = SimConfig(seed=first_seed, nodes=5)
    ops = 0
    events = 0
    violations = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for seed in range(first_seed, first_seed + seeds):
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
        "load_average_1m": os.getloadavg()[0],
    }


def measure_sweep(seeds: int, jobs: int) -> dict[str, float]:
    configs = [SimConfig(seed=s, nodes=5) for s in range(1, seeds + 1)]
    start = time.perf_counter()
    violations = 0
    if jobs == 1:
        for config in configs:
            violations += 0 if run_simulation(config).ok else 1
    else:
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
        "load_average_1m": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in well under 30 s")
    args = parser.parse_args()
    tp_seeds, sweep_seeds = (8, 40) if args.quick else (40, 200)

    blocks = [
        measure_throughput(tp_seeds, first_seed=1 + i * tp_seeds) for i in range(THROUGHPUT_BLOCKS)
    ]
    throughput = sorted(blocks, key=lambda b: b["ops_per_wall_s"])[THROUGHPUT_BLOCKS // 2]
    parallel_throughput = measure_parallel_throughput(tp_seeds, SWEEP_JOBS)
    serial = measure_sweep(sweep_seeds, 1)
    parallel = measure_sweep(sweep_seeds, SWEEP_JOBS)

    rows = [
        (
            "simulated client ops / wall s (5 members, all faults; median of 3)",
            f"{throughput['ops_per_wall_s']:,.0f}",
            f">= {GOAL_OPS_PER_S:,.0f}",
            throughput["ops_per_wall_s"] / GOAL_OPS_PER_S,
        ),
        (
            "simulated client ops / CPU s (the same runs; less moved by a busy machine)",
            f"{throughput['ops_per_cpu_s']:,.0f}",
            f">= {GOAL_OPS_PER_S:,.0f}",
            throughput["ops_per_cpu_s"] / GOAL_OPS_PER_S,
        ),
        (
            f"simulated client ops / wall s, {SWEEP_JOBS} processes at once (--jobs {SWEEP_JOBS})",
            f"{parallel_throughput['ops_per_wall_s']:,.0f}",
            f">= {GOAL_OPS_PER_S:,.0f}",
            parallel_throughput["ops_per_wall_s"] / GOAL_OPS_PER_S,
        ),
        (
            f"  per CPU s of the {SWEEP_JOBS} workers",
            f"{parallel_throughput['ops_per_cpu_s']:,.0f}",
            "-",
            None,
        ),
        (
            f"syndic sim --nodes 5 --seeds 1-{sweep_seeds} --faults all (s)",
            f"{serial['wall_s']:.1f}",
            "-",
            None,
        ),
        (
            "  extrapolated to --seeds 1-1000 (s)",
            f"{serial['per_1000_seeds_s']:.0f}",
            f"< {GOAL_SWEEP_1000_S:.0f}",
            GOAL_SWEEP_1000_S / serial["per_1000_seeds_s"],
        ),
        (
            f"  the same with --jobs {SWEEP_JOBS}, extrapolated (s)",
            f"{parallel['per_1000_seeds_s']:.0f}",
            f"< {GOAL_SWEEP_1000_S:.0f}",
            GOAL_SWEEP_1000_S / parallel["per_1000_seeds_s"],
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'syndic':>10}  {'goal':>10}  {'ratio':>7}")
    for name, value, goal, ratio in rows:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
        print(f"{name:<{width}}  {value:>10}  {goal:>10}  {ratio_text:>7}")
    total_violations = int(
        sum(b["violations"] for b in blocks) + serial["violations"] + parallel["violations"]
    )
    print(f"violations during the benchmark: {total_violations}")
    print("(ratio > 1 means the goal is met; the machine is shared, so wall time includes waits)")
    print(
        f"cpus: {os.cpu_count()}; load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "suite": "sim",
                "quick": args.quick,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "goal": {"ops_per_wall_s": GOAL_OPS_PER_S, "sweep_1000_s": GOAL_SWEEP_1000_S},
                "throughput_blocks": blocks,
                "throughput": throughput,
                "throughput_parallel": parallel_throughput,
                "load_average_end": list(os.getloadavg()),
                "sweep_serial": serial,
                "sweep_parallel": parallel,
                "violations": total_violations,
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if total_violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
