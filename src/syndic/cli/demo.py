"""``syndic demo``: a short, readable demo of a simulated 5-member cluster under faults.

It runs one seed of the deterministic simulator with every fault kind on,
prints what a person would want to watch (elections, partitions, crashes,
commits, the final checks) and says how to run a full sweep.
"""

from __future__ import annotations

import click

from syndic.sim.runner import SimConfig, run_simulation

# What the demo shows from the transcript: cluster-level events, not every
# client operation (those are in ``syndic sim --seed S --trace``).
_SHOWN = (
    "START",
    "LEADER",
    "PARTITION",
    "HEAL",
    "CRASH",
    "RESTART",
    "POWER LOSS",
    "PAUSE",
    "RESUME",
    "STORM",
    "CALM",
    "COMMIT",
    "LIVENESS",
    "CHECK",
    "VIOLATION",
)

# Long enough for a few rounds of faults, short enough to print in a second or two.
DEMO_SAFETY_TICKS = 200


def _shown(line: str) -> bool:
    body = line[9:]
    if body.startswith("n") and " " in body:
        body = body.split(" ", 1)[1]
    return body.startswith(_SHOWN)


@click.command("demo")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--nodes", type=click.IntRange(3, 9), default=5, show_default=True)
def demo(seed: int, nodes: int) -> None:
    """Watch a simulated cluster elect leaders and commit writes under faults."""
    config = SimConfig(seed=seed, nodes=nodes, safety_ticks=DEMO_SAFETY_TICKS, trace=True)
    click.echo(
        f"syndic demo: {nodes} simulated members, virtual clock, all faults "
        f"(network, partition, crash, pause, disk), seed {seed}"
    )
    click.echo("   time_ms event")
    result = run_simulation(config)
    for line in result.transcript:
        if _shown(line):
            click.echo(line)
    stats = result.stats
    click.echo("")
    click.echo(
        f"clients: {stats['client_invoked']} ops invoked, {stats['client_ok']} answered, "
        f"{stats['client_refused']} refused (not leader), {stats['client_unknown']} unknown"
    )
    click.echo(
        f"faults: {stats['cluster_crashes']} crashes, {stats['nemesis_partitions']} partitions, "
        f"{stats['cluster_pauses']} pauses, {stats['net_dropped_random']} messages dropped, "
        f"{stats['net_duplicated']} duplicated, {stats['cluster_torn_writes']} torn writes"
    )
    verdict = "all checks passed" if result.ok else "VIOLATION"
    click.echo(f"result: {verdict} (Raft invariants after every event, linearizability at end)")
    if result.violation is not None:
        click.echo(result.violation.describe())
    click.echo("")
    click.echo(f"full transcript of this run:  syndic sim --seed {seed} --trace")
    click.echo("sweep many seeds:             syndic sim --nodes 5 --seeds 1-200 --faults all")
    click.echo("see the checkers catch a bug: syndic sim --bug list")
    raise SystemExit(0 if result.ok else 1)
