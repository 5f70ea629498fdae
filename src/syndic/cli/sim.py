"""``syndic sim``: run the deterministic simulator over a range of seeds.

Examples::

    syndic sim --nodes 5 --seeds 1-200 --faults all
    syndic sim --seed 17 --trace                 # replay one seed, print its transcript
    syndic sim --bug stale-leader-read --seeds 1-60
    syndic sim --bug list

A sweep prints its parameters, one line per failing seed with the exact
command that replays it, and ``seeds: N, violations: V``; it exits 0 only when
V is 0 (1 on violations, 2 on bad arguments).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace

import click

from syndic.sim.buggify import PLANTED_BUGS
from syndic.sim.nemesis import FAULT_KINDS, FaultSpecError, faults_spec, parse_faults
from syndic.sim.runner import (
    MAX_NODES,
    MIN_NODES,
    SimConfig,
    SimConfigError,
    SimResult,
    run_simulation,
)
from syndic.sim.scenarios import BUG_SCENARIO, SCENARIOS

# A sweep wider than this is a typo (a million seeds is days of CPU).
MAX_SEEDS_PER_SWEEP = 1_000_000


def parse_seeds(spec: str) -> list[int]:
    """``1-200``, ``7`` or ``1,5,10-12``: a sorted list of distinct seeds.

    >>> parse_seeds("3,1-2")
    [1, 2, 3]
    """
    seeds: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 1-200") from None
        if lo < 0 or hi < lo:
            raise click.BadParameter(f"{part!r}: need 0 <= first <= last")
        if hi - lo + 1 + len(seeds) > MAX_SEEDS_PER_SWEEP:
            raise click.BadParameter(f"more than {MAX_SEEDS_PER_SWEEP} seeds")
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise click.BadParameter("no seeds given")
    return sorted(seeds)


def _run_one(config: SimConfig) -> SimResult:
    return run_simulation(config)


def _fail_line(result: SimResult) -> str:
    assert result.violation is not None
    headline = result.violation.describe().splitlines()[0]
    return f"FAIL seed {result.config.seed}: {headline}\n  replay: {result.config.replay_command()}"


def _print_bugs() -> None:
    width = max(len(name) for name in PLANTED_BUGS)
    for name, description in PLANTED_BUGS.items():
        click.echo(f"{name:<{width}}  {description} [scenario: {BUG_SCENARIO[name]}]")


def _print_single(result: SimResult, trace: bool) -> None:
    if trace:
        for line in result.transcript:
            click.echo(line)
    stats = result.stats
    click.echo(
        f"seed {result.config.seed}: {'ok' if result.ok else 'VIOLATION'} "
        f"(client ops {result.client_ops}, virtual time {result.virtual_ms} ms, "
        f"events {stats['events']}, committed index {stats['committed_index']})"
    )
    if result.violation is not None:
        click.echo(result.violation.describe())
        click.echo(f"replay: {result.config.replay_command()}")


@click.command("sim")
@click.option(
    "--nodes",
    type=click.IntRange(MIN_NODES, MAX_NODES),
    default=5,
    show_default=True,
    help="Members in the simulated cluster.",
)
@click.option("--seeds", "seeds_spec", default=None, help="Seeds to sweep, e.g. 1-200 or 1,4,9.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Run one seed.")
@click.option(
    "--faults",
    "faults_text",
    default="all",
    show_default=True,
    help=f"all, none, or a comma list of: {', '.join(FAULT_KINDS)}.",
)
@click.option(
    "--ticks",
    type=click.IntRange(1, 1_000_000),
    default=300,
    show_default=True,
    help="Length of the safety phase, in Raft ticks.",
)
@click.option(
    "--bug",
    "bugs",
    multiple=True,
    help="Plant a bug (negative control); 'list' names them all.",
)
@click.option(
    "--scenario",
    type=click.Choice(sorted(SCENARIOS)),
    default=None,
    help="Fault schedule (default: 'default', or the one a planted bug names).",
)
@click.option("--trace", is_flag=True, help="Print the event transcript (single seed).")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes for a sweep; output order and results do not depend on it.",
)
def sim(
    nodes: int,
    seeds_spec: str | None,
    seed: int | None,
    faults_text: str,
    ticks: int,
    bugs: tuple[str, ...],
    scenario: str | None,
    trace: bool,
    jobs: int,
) -> None:
    """Run the deterministic cluster simulator and check every run."""
    if "list" in bugs:
        _print_bugs()
        return
    try:
        faults = parse_faults(faults_text)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    unknown = sorted(set(bugs) - set(PLANTED_BUGS))
    if unknown:
        raise click.BadParameter(
            f"unknown bug(s) {unknown}; known: {', '.join(PLANTED_BUGS)} (or 'list')",
            param_hint="--bug",
        )
    if seed is not None and seeds_spec is not None:
        raise click.UsageError("give --seed or --seeds, not both")
    if scenario is None:
        scenario = BUG_SCENARIO[sorted(bugs)[0]] if bugs else "default"
    seeds = [seed] if seed is not None else parse_seeds(seeds_spec or "1-100")
    try:
        base = SimConfig(
            seed=seeds[0],
            nodes=nodes,
            faults=faults,
            bugs=frozenset(bugs),
            safety_ticks=ticks,
            scenario=scenario,
            trace=trace,
        )
    except SimConfigError as exc:
        raise click.UsageError(str(exc)) from None

    if seed is not None:
        result = run_simulation(base)
        _print_single(result, trace)
        raise SystemExit(0 if result.ok else 1)

    click.echo(
        f"sim: nodes={nodes} seeds={seeds_spec or '1-100'} ({len(seeds)}) "
        f"faults={faults_spec(faults)} ticks={ticks} scenario={scenario} "
        f"bugs={','.join(sorted(bugs)) or 'none'} jobs={jobs}"
    )
    configs = [replace(base, seed=s, trace=False) for s in seeds]
    violations = 0
    ops = 0
    if jobs == 1:
        results = map(_run_one, configs)
        for result in results:
            ops += result.client_ops
            if not result.ok:
                violations += 1
                click.echo(_fail_line(result))
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for result in pool.imap(_run_one, configs, chunksize=4):
                ops += result.client_ops
                if not result.ok:
                    violations += 1
                    click.echo(_fail_line(result))
    click.echo(f"client ops: {ops}")
    click.echo(f"seeds: {len(seeds)}, violations: {violations}")
    raise SystemExit(0 if violations == 0 else 1)
