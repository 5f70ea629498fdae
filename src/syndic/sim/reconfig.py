"""The membership fault: add a learner, promote it once caught up, remove a
member (the leader too), while the other faults run.

Each change goes through the member runtime's own path, as the server's
``member add/promote/remove`` handlers do on the leader: the strict
reconfiguration check (``syndic.server.reconfig``) on the leader's view of
its voters, ``Membership.check_promotable`` for a learner, then
``Membership.propose`` of the conf-change entry. A removal the leader has
applied retires the removed process (the operator never starts it again); a
running member that applies its own removal stops by itself (the driver).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from syndic.raft import ConfChange, ConfChangeType, ConfState
from syndic.server.backend import ServerError
from syndic.server.config import ELECTION_TIMEOUT_MS_DEFAULT
from syndic.server.reconfig import Voter, check_add, check_promote, check_remove
from syndic.server.state_machine import MemberAttrs

if TYPE_CHECKING:
    import random

    from syndic.sim.cluster import SimCluster
    from syndic.sim.network import SimNetwork

# Voters kept at least this many, and at least one fewer than the cluster
# started with (a removal below it is not tried), so a majority survives the
# other faults' one crashed or cut-off member.
VOTERS_MIN: Final = 3


@dataclass(frozen=True, slots=True)
class ReconfigConfig:
    # Virtual ms between attempts: most are refused by the strict check while
    # the other faults keep a voter down, so they come often.
    interval_ms_min: int = 20
    interval_ms_max: int = 80
    # Processes (voters and learners) at most ``nodes + extra_members_max``.
    extra_members_max: int = 1
    # Share of removals aimed at the leader.
    remove_leader_share: float = 0.3
    # Share of runs with etcd's strict reconfiguration check on (the server
    # always has it on). Under the sim's constant faults it refuses nearly
    # every add until the faults heal, so the other runs drop it, as etcd's
    # --strict-reconfig-check=false does, to change members mid-fault: Raft
    # must stay safe either way; the check only guards availability.
    strict_check_share: float = 0.5


@dataclass(slots=True)
class ReconfigStats:
    # Proposed (accepted into the leader's log), and refused by a check.
    learners_added: int = 0
    promotions: int = 0
    removals: int = 0
    refused: int = 0
    # Seen in force in a leader's applied configuration.
    learners_joined: int = 0
    voters_promoted: int = 0
    members_removed: int = 0


class Reconfigurator:
    """Proposes one membership change per strike on the current leader."""

    def __init__(
        self,
        rng: random.Random,
        cluster: SimCluster,
        network: SimNetwork,
        config: ReconfigConfig,
        trace: Callable[[str], None],
    ) -> None:
        self._rng = rng
        self._cluster = cluster
        self._network = network
        self.config = config
        self._trace = trace
        self.stats = ReconfigStats()
        self._members_max = len(cluster.node_ids) + config.extra_members_max
        self._voters_min = max(VOTERS_MIN, len(cluster.node_ids) - 1)
        self._next_id = max(cluster.node_ids) + 1
        # Ids seen in the leader's configuration, and the started ones whose
        # ADD_LEARNER has not been seen committed yet (it may have been lost
        # with a leader: the operator adds it again).
        self._seen: set[int] = set(cluster.node_ids)
        # The applied index of the configuration each id was last seen in: an
        # id is gone only from one applied past it. A new leader that has not
        # applied the latest changes yet shows an older configuration, which
        # is not a removal (retiring a member re-added since left the voters
        # without a quorum after a power loss, seed 9 of power-loss).
        self._seen_index: dict[int, int] = dict.fromkeys(cluster.node_ids, 0)
        self._gone: set[int] = set()
        self._voters_seen: set[int] = set(cluster.node_ids)
        self._joining: set[int] = set()
        # The sim runs on compressed time (its election timeout against the
        # server's default), so the reconfiguration check's "connected for
        # 5 s" is measured on the same scale.
        election_ms = cluster.config.election_timeout_ticks * cluster.config.tick_ms
        self._time_scale = ELECTION_TIMEOUT_MS_DEFAULT / election_ms
        self.strict = rng.random() < config.strict_check_share

    def strike(self) -> None:
        leader_id = self._cluster.leader()
        if not leader_id:
            return
        runtime = self._cluster.members[leader_id].runtime
        assert runtime is not None
        conf = runtime.raft.conf_state
        self._retire_removed(conf, runtime.raft.applied_index)
        learners = sorted(conf.learners)
        voters = sorted(conf.voters)
        members = self._cluster.members
        # A voter whose disk recovery refused never comes back: it does not count.
        sound_voters = [
            v for v in voters if members[v].stopped_reason is None and not members[v].wal_damaged
        ]
        processes = [i for i in self._cluster.node_ids if not members[i].retired]
        if self._joining:
            self._add_learner(leader_id, min(self._joining))
        elif learners:
            self._promote(leader_id, learners[0])
        elif len(sound_voters) > self._voters_min and (
            len(processes) >= self._members_max or self._rng.random() < 0.5
        ):
            self._remove(leader_id, voters)
        elif len(processes) < self._members_max:
            self._add_learner(leader_id, self._next_id)

    def _retire_removed(self, conf: ConfState, applied_index: int) -> None:
        """Members the leader's applied configuration no longer holds."""
        ids = conf.all_ids()
        self._joining -= ids
        self.stats.learners_joined += len(ids - self._seen)
        self.stats.voters_promoted += len(conf.voters - self._voters_seen)
        self._seen |= ids
        self._voters_seen |= conf.voters
        seen_index = self._seen_index
        for node_id in ids:
            seen_index[node_id] = max(seen_index.get(node_id, 0), applied_index)
        gone = {i for i in self._seen - ids if applied_index > seen_index.get(i, 0)}
        self._gone |= gone
        self.stats.members_removed = len(self._gone)
        for node_id in sorted(gone):
            self._cluster.retire(node_id)

    def _voters(self, leader_id: int) -> dict[int, Voter]:
        runtime = self._cluster.members[leader_id].runtime
        assert runtime is not None
        now = self._cluster.now_ms()
        connected_for_s: dict[int, float | None] = {}
        members: dict[int, MemberAttrs] = {}
        for node_id, member in self._cluster.members.items():
            if member.live:
                # A running process has published its name (MEMBER_ATTRS on start).
                members[node_id] = MemberAttrs(f"n{node_id}", (), ())
            since = self._network.link_up_since_ms(leader_id, node_id)
            if not member.live or since is None:
                connected_for_s[node_id] = None
                continue
            up_ms = now - max(since, member.up_since_ms)
            connected_for_s[node_id] = up_ms * self._time_scale / 1000
        return runtime.membership.voters_for_reconfig(
            runtime.raft.conf_state, members, connected_for_s
        )

    def _propose(self, leader_id: int, change: ConfChange, check: Callable[[], None]) -> bool:
        runtime = self._cluster.members[leader_id].runtime
        assert runtime is not None
        label = f"{change.type.name} n{change.node_id} on n{leader_id}"
        try:
            if self.strict:
                check()
            index = runtime.membership.propose(runtime.raft, change)
        except ServerError as exc:
            self.stats.refused += 1
            self._trace(f"MEMBERSHIP {label} refused: {exc}")
            return False
        self._trace(f"MEMBERSHIP {label} proposed at index {index}")
        self._cluster.wake(leader_id)
        return True

    def _add_learner(self, leader_id: int, new_id: int) -> None:
        change = ConfChange(ConfChangeType.ADD_LEARNER, new_id)
        if not self._propose(
            leader_id, change, lambda: check_add(self._voters(leader_id), is_learner=True)
        ):
            return
        self.stats.learners_added += 1
        if new_id == self._next_id:
            self._next_id += 1
            self._joining.add(new_id)
            self._cluster.start_member(new_id)

    def _promote(self, leader_id: int, learner: int) -> None:
        runtime = self._cluster.members[leader_id].runtime
        assert runtime is not None

        try:
            # Caught up or not, whatever the strict check says (etcd too).
            runtime.membership.check_promotable(runtime.raft, learner)
        except ServerError as exc:
            self.stats.refused += 1
            self._trace(f"MEMBERSHIP promote n{learner} on n{leader_id} refused: {exc}")
            return
        change = ConfChange(ConfChangeType.ADD_VOTER, learner)
        if self._propose(leader_id, change, lambda: check_promote(self._voters(leader_id))):
            self.stats.promotions += 1

    def _remove(self, leader_id: int, voters: list[int]) -> None:
        if self._rng.random() < self.config.remove_leader_share:
            victim = leader_id
        else:
            victim = self._rng.choice([v for v in voters if v != leader_id])
        change = ConfChange(ConfChangeType.REMOVE_NODE, victim)
        self._cluster.permanent_loss_allowed = False
        if self._propose(leader_id, change, lambda: check_remove(self._voters(leader_id), victim)):
            self.stats.removals += 1
