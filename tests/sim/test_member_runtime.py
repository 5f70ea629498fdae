"""The simulator drives the member runtime the server runs: requests enter
through its entry points, followers forward to the leader, and a restarted
member never reuses its earlier runs' request ids."""

from __future__ import annotations

from syndic.kv.messages import RangeRequest
from syndic.raft import Role
from syndic.sim import SimConfig, run_simulation
from syndic.sim.workload import ReplyStatus, Request, RequestKind
from tests.sim.harness import elect, run_until, small_cluster


def _write(key: str, value: str) -> Request:
    return Request("c1-1", 1, RequestKind.WRITE, key, value, None, 0, 0)


def test_a_write_sent_to_a_follower_is_forwarded_and_answered_there() -> None:
    clock, cluster, replies = small_cluster(3)
    leader = elect(clock, cluster)
    follower = next(i for i in cluster.node_ids if i != leader)
    cluster.client_request(follower, _write("k", "v"))
    run_until(clock, lambda: replies)
    assert [r.status for r in replies] == [ReplyStatus.OK]
    assert cluster.stats.proposals_forwarded == 1

    def applied_everywhere() -> bool:
        found = [
            m.runtime.state.store.range(RangeRequest(key=b"k"))
            for m in cluster.members.values()
            if m.runtime is not None
        ]
        return len(found) == 3 and all(f.kvs and f.kvs[0].value == b"v" for f in found)

    run_until(clock, applied_everywhere)
    assert cluster.members[follower].role is Role.FOLLOWER


def test_a_restarted_member_starts_its_request_ids_past_its_earlier_runs() -> None:
    clock, cluster, replies = small_cluster(4)
    leader = elect(clock, cluster)
    cluster.client_request(leader, _write("a", "1"))
    run_until(clock, lambda: replies)
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
