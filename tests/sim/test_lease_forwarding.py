"""Keep-alives sent to a follower go to the leader through the runtime, renew
the lease on the leader's clock (where the lease checker follows them), and
a forwarded batch of proposals the network delivers twice applies once."""

from __future__ import annotations

from syndic.kv.messages import RangeRequest
from syndic.sim import SimConfig, run_simulation
from syndic.sim.cluster import SimCluster
from syndic.sim.network import NetworkConfig
from syndic.sim.workload import Reply, ReplyStatus, Request, RequestKind
from tests.sim.harness import elect, run_until, small_cluster

LEASE = 0x5_0000_0001
TTL_MS = 1_000


def _request(n: int, kind: RequestKind, key: str = "", **kw: object) -> Request:
    value = kw.pop("value", None)
    return Request(f"c1-{n}", 1, kind, key, value, None, 0, 0, **kw)  # type: ignore[arg-type]


def _ask(cluster: SimCluster, replies: list[Reply], node_id: int, request: Request) -> Reply:
    clock = cluster._clock
    count = len(replies)
    cluster.client_request(node_id, request)
    run_until(clock, lambda: len(replies) > count)
    return replies[-1]


def _held(cluster: SimCluster, node_id: int) -> bool:
    runtime = cluster.members[node_id].runtime
    assert runtime is not None
    return runtime.state.store.range(RangeRequest(key=b"held")).count == 1


def test_a_keep_alive_through_a_follower_renews_the_lease_on_the_leader() -> None:
    clock, cluster, replies = small_cluster(5)
    leader = elect(clock, cluster)
    follower = next(i for i in cluster.node_ids if i != leader)
    grant = _request(1, RequestKind.LEASE_GRANT, lease_id=LEASE, ttl_s=TTL_MS // 1000)
    assert _ask(cluster, replies, leader, grant).status is ReplyStatus.OK
    put = _request(2, RequestKind.LEASE_PUT, "held", value="v", lease_id=LEASE)
    assert _ask(cluster, replies, leader, put).status is ReplyStatus.OK
    granted_ms = clock.now_ms
    run_until(clock, lambda: clock.now_ms >= granted_ms + 600)
    reply = _ask(cluster, replies, follower, _request(3, RequestKind.KEEP_ALIVE, lease_id=LEASE))
    assert (reply.status, reply.succeeded) == (ReplyStatus.OK, True)
    assert cluster.stats.renewals_forwarded == 1 and cluster.stats.renewals_answered == 1
    # Past the TTL since the grant, within it since the keep-alive: still held
    # (clocks run up to 1% apart; a tick and an fsync are the checker's grace).
    run_until(clock, lambda: clock.now_ms >= granted_ms + 1_300)
    assert _held(cluster, leader)
    # No keep-alive since: revoked one TTL after the last, on the leader's clock.
    run_until(clock, lambda: not _held(cluster, leader), limit_ms=1_000)
    assert clock.now_ms - granted_ms < 600 + TTL_MS + 200
    assert cluster.leases.checks > 0 and cluster.leases.violations == []


def test_an_unknown_lease_is_refused_through_a_follower() -> None:
    clock, cluster, replies = small_cluster(6)
    leader = elect(clock, cluster)
    follower = next(i for i in cluster.node_ids if i != leader)
    reply = _ask(cluster, replies, follower, _request(1, RequestKind.KEEP_ALIVE, lease_id=77))
    assert (reply.status, reply.succeeded) == (ReplyStatus.OK, False)


def test_a_forwarded_batch_delivered_twice_applies_once() -> None:
    clock, cluster, replies = small_cluster(7, NetworkConfig(duplicate_rate=1.0))
    leader = elect(clock, cluster)
    follower = next(i for i in cluster.node_ids if i != leader)
    runtime = cluster.members[leader].runtime
    assert runtime is not None
    before = runtime.state.store.revision
    write = _request(1, RequestKind.WRITE, "k", value="v")
    assert _ask(cluster, replies, follower, write).status is ReplyStatus.OK
    run_until(clock, lambda: cluster.stats.forwarded_copies_dropped >= 1)
    assert runtime.state.store.revision == before + 1


def test_every_run_forwards_keep_alives_through_the_runtime() -> None:
    result = run_simulation(SimConfig(seed=1))
    assert result.ok, result.violation
    assert isinstance(result.stats["cluster_renewals_forwarded"], int)
    assert result.stats["cluster_renewals_forwarded"] > 0
    assert isinstance(result.stats["cluster_renewals_answered"], int)
    assert result.stats["cluster_renewals_answered"] > 0
