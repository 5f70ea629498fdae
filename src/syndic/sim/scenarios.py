"""Named fault schedules.

``default`` mixes every enabled fault. The others lean on the faults that
expose one class of bug, so a negative control is caught within a small sweep;
each must also pass clean without a planted bug (tests/sim/test_scenarios.py),
or it would be testing the schedule rather than the system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from syndic.sim.cluster import ClusterConfig
from syndic.sim.nemesis import NemesisConfig, weighted
from syndic.sim.network import NetworkConfig
from syndic.sim.workload import WorkloadConfig

# Many vote requests arrive late, after their receiver crashed and restarted.
VOTE_CHURN_NETWORK = NetworkConfig(drop_rate=0.01, duplicate_rate=0.05, reorder_rate=0.4)


@dataclass(frozen=True, slots=True)
class Plan:
    cluster: ClusterConfig
    workload: WorkloadConfig
    nemesis: NemesisConfig


def _default(p: Plan) -> Plan:
    return p


def _vote_churn(p: Plan) -> Plan:
    # Split votes need concurrent candidates (no pre-vote round to filter them)
    # and a voter that crashes and comes back between two vote requests.
    nemesis = replace(
        weighted(p.nemesis, crash=6.0, partition=1.0, pause=0.5, network=1.0),
        interval_ms_min=10,
        interval_ms_max=80,
        down_ms_min=1,
        down_ms_max=30,
        crash_leader_share=0.5,
        power_loss_share=0.0,
        voter_crash_share=0.5,
        voter_down_ms_max=5,
        # Vote requests that arrive late reach a voter after it restarted.
        base_network=VOTE_CHURN_NETWORK,
    )
    return replace(p, cluster=replace(p.cluster, pre_vote=False), nemesis=nemesis)


def _power_loss(p: Plan) -> Plan:
    # Slow fsyncs widen the window in which acknowledged data is only in the
    # page cache; correlated crashes then lose it on a majority at once.
    nemesis = replace(
        weighted(p.nemesis, crash=5.0),
        power_loss_share=0.6,
        down_ms_min=5,
        down_ms_max=100,
    )
    return replace(p, cluster=replace(p.cluster, fsync_ms_min=5, fsync_ms_max=40), nemesis=nemesis)


def _deposed_leader(p: Plan) -> Plan:
    # A leader cut off from its peers, or stopped and resumed, keeps believing it
    # leads until check-quorum demotes it; clients that still talk to it read.
    nemesis = replace(
        weighted(p.nemesis, partition=4.0, pause=3.0, crash=0.5, disk=0.0),
        partition_weights=(("isolate-leader", 1.0),),
        partition_ms_min=150,
        partition_ms_max=600,
        pause_ms_min=100,
        pause_ms_max=400,
        pause_leader_share=0.9,
    )
    workload = replace(p.workload, read_ratio=0.6, cas_ratio=0.1, leader_affinity=1.0)
    return replace(p, workload=workload, nemesis=nemesis)


def _figure8(p: Plan) -> Plan:
    # Raft Figure 8: new leaders cut off before their no-op replicates leave
    # divergent tails of different terms; one entry per APPEND lets a later
    # leader's match index reach old-term entries before its own no-op, and a
    # crash right after its first commit stops that no-op from landing.
    nemesis = replace(
        weighted(p.nemesis, crash=2.0, partition=1.0, pause=0.5),
        partition_weights=(("isolate-leader", 2.0), ("majority-minority", 1.0)),
        partition_ms_min=30,
        partition_ms_max=300,
        crash_leader_share=0.5,
        down_ms_min=5,
        down_ms_max=100,
        power_loss_share=0.0,
        new_leader_crash_share=0.8,
        new_leader_crash_ms_max=8,
        new_leader_isolate_share=1.0,
        commit_crash_share=0.5,
    )
    cluster = replace(p.cluster, max_entries_per_message_choices=(1,))
    return replace(p, cluster=cluster, nemesis=nemesis)


def _disk_rot(p: Plan) -> Plan:
    # Frequent crashes, each likely to find a durable WAL byte flipped: the CRC
    # must catch it at restart and the member must stay down, not replay less.
    nemesis = replace(
        weighted(p.nemesis, crash=5.0, disk=2.0, partition=0.5, pause=0.5),
        down_ms_min=5,
        down_ms_max=60,
        power_loss_share=0.0,
    )
    cluster = replace(p.cluster, bit_flip_share=0.6)
    return replace(p, cluster=cluster, nemesis=nemesis)


SCENARIOS: dict[str, tuple[str, Callable[[Plan], Plan]]] = {
    "default": ("every enabled fault, evenly mixed", _default),
    "vote-churn": ("frequent short crashes, no pre-vote: contested elections", _vote_churn),
    "power-loss": ("slow fsyncs and a majority crashing at once", _power_loss),
    "deposed-leader": ("the leader isolated or paused while clients read", _deposed_leader),
    "figure8": ("leader crashes with one entry per append (Raft Figure 8)", _figure8),
    "disk-rot": ("frequent crashes after which a WAL bit may have flipped", _disk_rot),
}

# The schedule a planted bug runs under unless another is named.
BUG_SCENARIO: dict[str, str] = {
    "vote-not-persisted": "vote-churn",
    "ack-before-persist": "power-loss",
    "stale-leader-read": "deposed-leader",
    "old-term-commit": "figure8",
    "skip-undecodable-entry": "disk-rot",
    "ack-before-fsync": "power-loss",
    "read-before-apply": "default",
    "lease-proposer-clock": "default",
    "watch-drop-on-compact": "default",
}


class UnknownScenarioError(ValueError):
    """A scenario name that does not exist."""


def apply_scenario(name: str, plan: Plan) -> Plan:
    try:
        _, build = SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(
            f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}"
        ) from None
    return build(plan)
