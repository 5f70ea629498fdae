"""The simulator drives the member runtime the server runs: requests enter
through its entry points, followers forward to the leader, and a restarted
member never reuses its earlier runs' request ids."""

from __future__ import annotations

import random
from collections.abc import Callable

from syndic.check.raft_invariants import RaftSafetyChecker
from syndic.kv.messages import RangeRequest
from syndic.raft import Role
from syndic.sim import SimConfig, run_simulation
from syndic.sim.clock import VirtualClock
from syndic.sim.cluster import ClusterConfig, SimCluster
from syndic.sim.network import NetworkConfig, SimNetwork
from syndic.sim.workload import Reply, ReplyStatus, Request, RequestKind


def _cluster(seed: int) -> tuple[VirtualClock, SimCluster, list[Reply]]:
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
    cluster.network = SimNetwork(rng, clock, NetworkConfig(), cluster.deliver)
    replies: list[Reply] = []
    cluster.reply_to_client = lambda reply, request: replies.append(reply)
    cluster.start_clocks(10)
    return clock, cluster, replies


def _run_until(clock: VirtualClock, done: Callable[[], object], limit_ms: int = 5_000) -> None:
    deadline = clock.now_ms + limit_ms
    while not done():
        assert clock.now_ms < deadline, "not within the virtual time limit"
        clock.pop_due()[0]()


def _elect(clock: VirtualClock, cluster: SimCluster) -> int:
    """Run until every member knows the same leader; its id."""

    def settled() -> bool:
        leader = cluster.leader()
        runtimes = [m.runtime for m in cluster.members.values()]
        return bool(leader) and all(r is not None and r.leader_id == leader for r in runtimes)

    _run_until(clock, settled)
    return cluster.leader()


def _write(key: str, value: str) -> Request:
    return Request("c1-1", 1, RequestKind.WRITE, key, value, None, 0, 0)


def test_a_write_sent_to_a_follower_is_forwarded_and_answered_there() -> None:
    clock, cluster, replies = _cluster(3)
    leader = _elect(clock, cluster)
    follower = next(i for i in cluster.node_ids if i != leader)
    cluster.client_request(follower, _write("k", "v"))
    _run_until(clock, lambda: replies)
    assert [r.status for r in replies] == [ReplyStatus.OK]
    assert cluster.stats.proposals_forwarded == 1

    def applied_everywhere() -> bool:
        found = [
            m.runtime.state.store.range(RangeRequest(key=b"k"))
            for m in cluster.members.values()
            if m.runtime is not None
        ]
        return len(found) == 3 and all(f.kvs and f.kvs[0].value == b"v" for f in found)

    _run_until(clock, applied_everywhere)
    assert cluster.members[follower].role is Role.FOLLOWER


def test_a_restarted_member_starts_its_request_ids_past_its_earlier_runs() -> None:
    clock, cluster, replies = _cluster(4)
    leader = _elect(clock, cluster)
    cluster.client_request(leader, _write("a", "1"))
    _run_until(clock, lambda: replies)
    cluster.crash(leader)
    # The write's entry may still apply after the restart: its id is never reused.
    base = cluster.members[leader].id_base
    assert base > 1
    cluster.restart(leader)
    again = cluster.members[leader].runtime
    assert again is not None
    assert again.retire() >= base


def test_every_run_forwards_through_the_real_path() -> None:
    result = run_simulation(SimConfig(seed=1))
    assert result.ok, result.violation
    assert isinstance(result.stats["cluster_proposals_forwarded"], int)
    assert result.stats["cluster_proposals_forwarded"] > 0
