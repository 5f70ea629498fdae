"""The fault schedule: partitions, crashes, pauses, network storms, torn disks,
membership changes (``syndic.sim.reconfig``).

Every fault is drawn from the run's rng at random virtual times and undone
after a random duration, so faults overlap and recur. ``heal_for_liveness``
ends the safety phase: everything is healed except, sometimes, one member
(a minority) that stays crashed or cut off, and a majority must then make
progress on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from syndic.sim.network import NetworkConfig, bridge, isolate, ring, split
from syndic.sim.reconfig import ReconfigConfig, Reconfigurator

if TYPE_CHECKING:
    import random

    from syndic.sim.clock import VirtualClock
    from syndic.sim.cluster import SimCluster
    from syndic.sim.network import SimNetwork

FAULT_KINDS = ("network", "partition", "crash", "pause", "disk", "membership")
ALL_FAULTS = frozenset(FAULT_KINDS)

PARTITION_KINDS = (
    "isolate",
    "isolate-leader",
    "majority-minority",
    "ring",
    "bridge",
    "one-way",
)


# Background faults while "network" is enabled, the rates of a storm, and a
# network with delays only (no faults), used when "network" is off and for the
# liveness phase.
BASE_NETWORK = NetworkConfig(drop_rate=0.01, duplicate_rate=0.02, reorder_rate=0.05)
STORM_NETWORK = NetworkConfig(
    delay_ms_mean=6.0, drop_rate=0.2, duplicate_rate=0.1, reorder_rate=0.3
)
CALM_NETWORK = NetworkConfig()


class FaultSpecError(ValueError):
    """A ``--faults`` value that names no known fault kind."""


def parse_faults(spec: str) -> frozenset[str]:
    """``all``, ``none`` or a comma list of :data:`FAULT_KINDS`.

    >>> sorted(parse_faults("crash, partition"))
    ['crash', 'partition']
    """
    text = spec.strip().lower()
    if text == "all":
        return ALL_FAULTS
    if text in ("none", ""):
        return frozenset()
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(kinds - ALL_FAULTS)
    if unknown:
        raise FaultSpecError(
            f"unknown fault kind(s) {unknown}; use all, none or a comma list of "
            f"{', '.join(FAULT_KINDS)}"
        )
    return kinds


def faults_spec(kinds: frozenset[str]) -> str:
    """The inverse of :func:`parse_faults`, for replay commands."""
    if kinds == ALL_FAULTS:
        return "all"
    if not kinds:
        return "none"
    return ",".join(k for k in FAULT_KINDS if k in kinds)


@dataclass(frozen=True, slots=True)
class NemesisConfig:
    """When and how hard to hit; durations in virtual ms.

    ``weights`` biases the choice between enabled fault kinds (a bug that needs
    crashes to show gets a sweep that crashes more).
    """

    interval_ms_min: int = 20
    interval_ms_max: int = 250
    partition_ms_min: int = 30
    partition_ms_max: int = 600
    down_ms_min: int = 5
    down_ms_max: int = 400
    pause_ms_min: int = 10
    pause_ms_max: int = 300
    storm_ms_min: int = 50
    storm_ms_max: int = 400
    crash_leader_share: float = 0.4
    pause_leader_share: float = 0.4
    # Share of crash actions that are a power loss: a majority (or everyone)
    # crashes at once, so only what was synced anywhere survives.
    power_loss_share: float = 0.1
    # Share of newly elected leaders crashed within ``new_leader_crash_ms_max``:
    # leader churn leaves half-replicated tails behind (Raft Figure 8).
    new_leader_crash_share: float = 0.0
    new_leader_crash_ms_max: int = 15
    # Share of leaders crashed right after they first apply a commit in their
    # term, before the next round of APPENDs lands (crash points after commit).
    commit_crash_share: float = 0.0
    # Share of vote grants followed at once by a crash of the voter, which then
    # restarts within ``voter_down_ms_max``: the moment a vote must be durable.
    voter_crash_share: float = 0.0
    voter_down_ms_max: int = 10
    # Share of that churn done by cutting the new leader off instead of crashing it,
    # which keeps its unreplicated tail (a crash mid-fsync would lose it).
    new_leader_isolate_share: float = 0.0
    partition_weights: tuple[tuple[str, float], ...] = tuple((k, 1.0) for k in PARTITION_KINDS)
    weights: tuple[tuple[str, float], ...] = (
        ("network", 1.0),
        ("partition", 2.0),
        ("crash", 2.0),
        ("pause", 1.0),
        ("disk", 1.0),
    )
    base_network: NetworkConfig = BASE_NETWORK
    storm_network: NetworkConfig = STORM_NETWORK
    calm_network: NetworkConfig = CALM_NETWORK
    reconfig: ReconfigConfig = field(default_factory=ReconfigConfig)


@dataclass(slots=True)
class NemesisStats:
    storms: int = 0
    partitions: int = 0
    heals: int = 0
    crashes: int = 0
    power_losses: int = 0
    pauses: int = 0


class Nemesis:
    def __init__(
        self,
        rng: random.Random,
        clock: VirtualClock,
        cluster: SimCluster,
        network: SimNetwork,
        kinds: frozenset[str],
        config: NemesisConfig,
        trace: Callable[[str], None],
    ) -> None:
        self._rng = rng
        self._clock = clock
        self._cluster = cluster
        self._network = network
        self.kinds = kinds
        self.config = config
        self._trace = trace
        self.stats = NemesisStats()
        self.active = False
        self._partition_gen = 0
        self._storm_gen = 0
        self._kept_down: set[int] = set()
        weights = dict(config.weights)
        # Membership changes run on their own cadence, over the other faults.
        self._choices = [
            k for k in FAULT_KINDS if k in kinds and k != "membership" and weights.get(k, 0) > 0
        ]
        self._weights = [weights[k] for k in self._choices]
        network.config = config.base_network if "network" in kinds else config.calm_network
        cluster.on_leader = self._on_leader
        cluster.on_leader_commit = self._on_leader_commit
        cluster.on_vote_granted = self._on_vote_granted
        self._commit_crash_armed: set[int] = set()
        self._reconfig_active = False
        self.reconfig = Reconfigurator(rng, cluster, network, config.reconfig, trace)

    def _log(self, line: str) -> None:
        self._trace(line)

    def start(self) -> None:
        if "membership" in self.kinds:
            self.active = True
            self._reconfig_active = True
            self._schedule_reconfig()
        if not self._choices:
            return
        self.active = True
        self._schedule_next()

    def _schedule_reconfig(self) -> None:
        cfg = self.config.reconfig
        delay = self._rng.randint(cfg.interval_ms_min, cfg.interval_ms_max)
        self._clock.schedule(delay, self._reconfigure, "membership")

    def _reconfigure(self) -> None:
        # Operators go on changing members after the faults heal: a member
        # left down is then replaced (removed, and a new one added).
        if not self._reconfig_active:
            return
        self.reconfig.strike()
        self._schedule_reconfig()

    def _schedule_next(self) -> None:
        delay = self._rng.randint(self.config.interval_ms_min, self.config.interval_ms_max)
        self._clock.schedule(delay, self._strike, "nemesis")

    def _strike(self) -> None:
        if not self.active:
            return
        kind = self._rng.choices(self._choices, self._weights)[0]
        if kind == "partition":
            self._partition()
        elif kind in ("crash", "disk"):
            self._crash()
        elif kind == "pause":
            self._pause()

        else:
            self._storm()
        self._schedule_next()

    # --- faults -------------------------------------------------------------

    def _pick_node(self, leader_share: float) -> int:
        leader = self._cluster.leader()
        if leader and self._rng.random() < leader_share:
            return leader
        return self._rng.choice(self._cluster.node_ids)

    def _partition(self) -> None:
        ids = list(self._cluster.node_ids)
        kinds, weights = zip(*self.config.partition_weights, strict=True)
        kind = self._rng.choices(kinds, weights)[0]
        order = ids[:]
        self._rng.shuffle(order)
        if kind == "isolate":
            node = order[0]
            cut, label = isolate(node, ids), f"isolate n{node}"
        elif kind == "isolate-leader":
            node = self._pick_node(1.0)
            cut, label = isolate(node, ids), f"isolate-leader n{node}"
        elif kind == "majority-minority":
            k = self._rng.randint(1, len(ids) // 2)
            minority, majority = sorted(order[:k]), sorted(order[k:])
            cut, label = split(minority, majority), f"majority-minority {minority}|{majority}"
        elif kind == "ring":
            cut, label = ring(order), f"ring {order}"
        elif kind == "bridge":
            b, rest = order[0], order[1:]
            half = len(rest) // 2
            a_side, b_side = sorted(rest[:half]), sorted(rest[half:])
            cut = bridge([b, *a_side], [b, *b_side], b)
            label = f"bridge n{b} joins {a_side}|{b_side}"
        else:
            node = order[0]
            if self._rng.random() < 0.5:
                cut = {(o, node) for o in ids if o != node}
                label = f"one-way n{node} hears nobody"
            else:
                cut = {(node, o) for o in ids if o != node}
                label = f"one-way nobody hears n{node}"
        self._cut(label, cut)

    def _cut(self, label: str, cut: set[tuple[int, int]]) -> None:
        self._network.set_partition(label, cut)
        self.stats.partitions += 1
        self._partition_gen += 1
        gen = self._partition_gen
        self._log(f"PARTITION {label}")
        duration = self._rng.randint(self.config.partition_ms_min, self.config.partition_ms_max)
        self._clock.schedule(duration, lambda: self._heal(gen), "heal")

    def _heal(self, gen: int) -> None:
        if gen != self._partition_gen or not self._network.partition_label:
            return
        self._network.heal()
        self.stats.heals += 1
        self._log("HEAL partition")

    def _on_leader(self, node: int) -> None:
        if not self.active or not ({"crash", "disk"} & self.kinds):
            return
        if self._rng.random() < self.config.commit_crash_share:
            self._commit_crash_armed.add(node)
        if self._rng.random() >= self.config.new_leader_crash_share:
            return
        delay = self._rng.randint(1, self.config.new_leader_crash_ms_max)
        if self._rng.random() < self.config.new_leader_isolate_share:
            self._clock.schedule(delay, lambda: self._isolate_new_leader(node), "leader-churn")
        else:
            self._clock.schedule(delay, lambda: self._crash_new_leader(node), "leader-churn")

    def _on_vote_granted(self, node: int) -> None:
        if not self.active or not self.config.voter_crash_share:
            return
        if self._rng.random() >= self.config.voter_crash_share:
            return

        def crash_voter() -> None:
            if not self.active:
                return
            self._log(f"VOTER CRASH n{node}")
            self._cluster.crash(node)
            self.stats.crashes += 1
            down = self._rng.randint(1, self.config.voter_down_ms_max)
            self._clock.schedule(down, lambda: self._restart(node), "restart")

        self._clock.schedule(0, crash_voter, "voter-crash")

    def _on_leader_commit(self, node: int) -> None:
        if node in self._commit_crash_armed:
            self._commit_crash_armed.discard(node)
            # Delay 0: after the current event, before any message it sent arrives.
            self._clock.schedule(0, lambda: self._crash_new_leader(node), "commit-crash")

    def _crash_new_leader(self, node: int) -> None:
        self._commit_crash_armed.discard(node)
        if self.active:
            self._log(f"LEADER CHURN n{node}")
            self._crash_for_a_while(node)

    def _isolate_new_leader(self, node: int) -> None:
        if self.active:
            self._cut(f"isolate-leader n{node}", isolate(node, self._cluster.node_ids))

    def _crash(self) -> None:
        if self._rng.random() < self.config.power_loss_share:
            self._power_loss()
            return
        node = self._pick_node(self.config.crash_leader_share)
        self._crash_for_a_while(node)

    def _crash_for_a_while(self, node: int) -> None:
        self._cluster.crash(node)
        self.stats.crashes += 1
        down = self._rng.randint(self.config.down_ms_min, self.config.down_ms_max)
        self._clock.schedule(down, lambda: self._restart(node), "restart")

    def _power_loss(self) -> None:
        ids = list(self._cluster.node_ids)
        size = self._rng.randint(len(ids) // 2 + 1, len(ids))
        victims = sorted(self._rng.sample(ids, size))
        self.stats.power_losses += 1
        self._log(f"POWER LOSS {victims}")
        for node in victims:
            self._crash_for_a_while(node)

    def _restart(self, node: int) -> None:
        if node not in self._kept_down:
            self._cluster.restart(node)

    def _pause(self) -> None:
        node = self._pick_node(self.config.pause_leader_share)
        self._cluster.pause(node)
        self.stats.pauses += 1
        duration = self._rng.randint(self.config.pause_ms_min, self.config.pause_ms_max)
        self._clock.schedule(duration, lambda: self._cluster.resume(node), "resume")

    def _storm(self) -> None:
        self._network.config = self.config.storm_network
        self.stats.storms += 1
        self._storm_gen += 1
        gen = self._storm_gen
        self._log("STORM network loss/duplication/reordering up")
        duration = self._rng.randint(self.config.storm_ms_min, self.config.storm_ms_max)
        self._clock.schedule(duration, lambda: self._calm(gen), "calm")

    def _calm(self, gen: int) -> None:
        if gen == self._storm_gen and self.active:
            self._network.config = self.config.base_network
            self._log("CALM network back to base rates")

    # --- end of the safety phase ---------------------------------------------

    def heal_for_liveness(self) -> str:
        """Stop new faults and heal all but at most one member; returns a summary."""
        self.active = False
        self._partition_gen += 1
        self._storm_gen += 1
        self._network.heal()
        self._network.config = self.config.calm_network
        ids = list(self._cluster.node_ids)
        left_out = ""
        # A member whose WAL was damaged (it stays down) is already the minority left out.
        stopped = any(m.wal_damaged for m in self._cluster.members.values())
        if self.kinds and len(ids) >= 3 and not stopped and self._rng.random() < 0.3:
            node = self._rng.choice(ids)
            crash = self._rng.random() < 0.5 and ("crash" in self.kinds or "disk" in self.kinds)
            if not self._quorum_without(node):
                left_out = f"; n{node} not left out: the others hold no quorum without it"
            elif crash:
                self._cluster.crash(node)
                self._kept_down.add(node)
                left_out = f"; n{node} stays crashed"
            else:
                self._network.set_partition(f"isolate n{node}", isolate(node, ids))
                left_out = f"; n{node} stays isolated"
        for node in ids:
            self._cluster.resume(node)
            if node not in self._kept_down:
                self._cluster.restart(node)
        summary = "HEAL all faults for liveness" + left_out
        self._log(summary)
        return summary

    def _quorum_without(self, node: int) -> bool:
        """Whether the members other than ``node`` hold a majority of every voter
        set a running member may still elect under. A removal committed but
        not yet applied by the others leaves the removed member among their
        voters (the leader that removed itself stops at once), so leaving one
        more out can leave no quorum at all: the liveness phase would then
        test the schedule, not the member."""
        up = set(self._cluster.node_ids) - {node}
        for member in self._cluster.members.values():
            if member.runtime is None:
                continue
            conf = member.runtime.raft.conf_state
            for voters in (conf.voters, conf.voters_outgoing):
                if voters and 2 * len(voters & up) <= len(voters):
                    return False
        return True


def weighted(config: NemesisConfig, **weights: float) -> NemesisConfig:
    """A copy of ``config`` with some fault kinds reweighted."""
    merged = dict(config.weights)
    merged.update(weights)
    return replace(config, weights=tuple(merged.items()))
