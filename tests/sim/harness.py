"""A small simulated cluster driven by hand: three real member runtimes on a
virtual clock and a simulated network, with no fault schedule, for tests that
step one scenario and look inside the members."""

from __future__ import annotations

import random
from collections.abc import Callable

from syndic.check.raft_invariants import RaftSafetyChecker
from syndic.sim.clock import VirtualClock
from syndic.sim.cluster import ClusterConfig, SimCluster
from syndic.sim.network import NetworkConfig, SimNetwork
from syndic.sim.workload import Reply


def small_cluster(
    seed: int, network: NetworkConfig | None = None
) -> tuple[VirtualClock, SimCluster, list[Reply]]:
    """Members 1-3 with clocks started; every client reply lands in the list."""
    rng, clock = random.Random(seed), VirtualClock(10)
    cluster = SimCluster(
        [1, 2, 3],
        rng,
        clock,
        ClusterConfig(fsync_failure_share=0, bit_flip_share=0),
        RaftSafetyChecker(),
        frozenset(),
        lambda line: None,
        disk_faults=False,
    )
    cluster.network = SimNetwork(rng, clock, network or NetworkConfig(), cluster.deliver)
    replies: list[Reply] = []
    cluster.reply_to_client = lambda reply, request: replies.append(reply)
    cluster.start_clocks(10)
    return clock, cluster, replies


def run_until(clock: VirtualClock, done: Callable[[], object], limit_ms: int = 5_000) -> None:
    """Run due events until ``done()`` holds, failing past ``limit_ms`` of virtual time."""
    deadline = clock.now_ms + limit_ms
    while not done():
        assert clock.now_ms < deadline, "not within the virtual time limit"
        clock.pop_due()[0]()


def elect(clock: VirtualClock, cluster: SimCluster) -> int:
    """Run until every member knows the same leader; its id."""

    def settled() -> bool:
        leader = cluster.leader()
        runtimes = [m.runtime for m in cluster.members.values()]
        return bool(leader) and all(r is not None and r.leader_id == leader for r in runtimes)

    run_until(clock, settled)
    return cluster.leader()
