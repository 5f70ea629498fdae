"""The simulator's driver of the member runtime: N real members in one process.

Each member is a :class:`~syndic.member.runtime.MemberRuntime`, the code the
server runs, driven on virtual time. The runtime decides the Ready contract
(``syndic.raft.Ready``), proposals, reads, leases and apply; this driver does
what the server's asyncio driver does, with simulated ports:

1. the runtime flushes its outbox and begins the Ready (soft state, early
   appends);
2. the driver writes the snapshot file, then the entries and hard state to
   the member's WAL (the production ``syndic.storage`` code over a
   :class:`~syndic.sim.disk.SimDisk`);
3. when ``must_sync``, it fsyncs, which takes virtual time; the member does
   nothing else meanwhile (messages and requests queue in its inbox, as in a
   single-threaded node loop), a crash before the fsync completes may lose
   any suffix of the writes, and a failed fsync stops the member;
4. then the runtime finishes the Ready: it sends the messages, applies
   committed entries (finishing its clients' proposals), serves reads and
   calls ``advance``.

Planted runtime bugs (:mod:`syndic.sim.buggify`) bend exactly one step: the
persistence ones here, the others in the runtime itself.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndic.check.leases import LeaseChecker
from syndic.check.raft_invariants import RaftSafetyChecker, SafetyViolationError
from syndic.kv.errors import KvError
from syndic.kv.messages import (
    LeaseGrantResponse,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    RangeRequest,
)
from syndic.kv.watch import WatchHub, WatchResponse
from syndic.member.proposals import ProposalLimits
from syndic.member.runtime import MemberRuntime, RuntimeLimits
from syndic.raft import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    PersistentState,
    RaftConfig,
    RaftError,
    RaftNode,
    Ready,
    Role,
    SoftState,
)
from syndic.server.backend import ServerError
from syndic.server.entry_codec import DecodedEntry, EntryKind
from syndic.server.state_machine import StateMachine
from syndic.sim.apply import (
    SIM_STORE_CONFIG,
    ProposerClockStateMachine,
    decode_shared,
    describe_applied,
    store_request,
)
from syndic.sim.buggify import CORE_BUGS, WAL_BUGS
from syndic.sim.clock import MemberClock
from syndic.sim.disk import SimDisk
from syndic.sim.network import ForwardedProposals, ForwardedRenewals, Packet, RenewalsAnswer
from syndic.sim.persist import DurableMark, MemberStorage, wal_options
from syndic.sim.ports import ClientCompletion, RenewalsReply, RevokeCompletion, SimPeers
from syndic.sim.watchers import PULL_RESPONSES_MAX, RevisionLog, WatchHandle, open_watch
from syndic.sim.workload import Reply, ReplyStatus, Request, RequestKind
from syndic.storage import StorageError
from syndic.storage.records import (
    RECORD_HEADER_SIZE_BYTES,
    SEGMENT_HEADER_SIZE_BYTES,
    decode_record_header,
)

if TYPE_CHECKING:
    from syndic.sim.clock import VirtualClock
    from syndic.sim.network import SimNetwork

# A paused or fsyncing member buffers what arrives, like a socket buffer; past
# this many queued inputs it drops new ones, as a full kernel buffer would.
MAX_INBOX_ITEMS = 4096

# A member whose fsync failed exits and is restarted within this long.
FSYNC_FAILURE_DOWN_MS_MAX = 200

# Reads waiting for the applied index to reach their ReadIndex; a member with
# more than this outstanding refuses new reads instead of growing without bound.
MAX_PENDING_READS = 1024

# A member fails a proposal or read still waiting this long (virtual ms) with
# "request timed out", as the server does; longer than a client's own timeout
# (WorkloadConfig.timeout_ms), so the client has given up by then.
REQUEST_TIMEOUT_MS = 2_000


# A member removed while running is stopped by the operator after this long
# (virtual ms) if it has not applied its own removal and stopped by then.
RETIRE_GRACE_MS = 500


class MemberState(enum.Enum):
    UP = "up"
    CRASHED = "crashed"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Runtime knobs; times in virtual ms."""

    fsync_ms_min: int = 1
    fsync_ms_max: int = 4
    compact_every_entries: int = 64
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    # Entries per APPEND message; each run draws one of these so small batches
    # (match indexes that move one entry at a time) are exercised too.
    max_entries_per_message_choices: tuple[int, ...] = (1, 4, 64)
    # The member clocks' tick; set by the runner from SimConfig.tick_ms.
    tick_ms: int = 10
    # Disk faults: the share of fsyncs that fail (the member exits and is
    # restarted), and the share of crashes after which one durable WAL byte is
    # found flipped (at most one member per run, since a member whose WAL fails
    # its CRC stays down and a majority must remain).
    fsync_failure_share: float = 0.002
    bit_flip_share: float = 0.08
    # Each member's clock is offset from true time by up to this much and runs
    # up to this many parts per million fast or slow (1 %: a poor crystal is
    # 100 ppm; this is far worse, to shake the timing assumptions).
    clock_offset_ms_max: int = 6 * 3_600_000
    clock_rate_ppm_max: int = 10_000


@dataclass(slots=True)
class ClusterStats:
    crashes: int = 0
    restarts: int = 0
    pauses: int = 0
    unsynced_bytes_lost: int = 0
    bytes_flushed_at_crash: int = 0
    torn_writes: int = 0
    torn_tails_repaired: int = 0
    fsyncs: int = 0
    fsync_failures: int = 0
    bit_flips: int = 0
    stopped_corrupt: int = 0
    leaders_elected: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    entries_applied: int = 0
    inbox_dropped: int = 0
    reads_served: int = 0
    proposals_forwarded: int = 0
    forwarded_copies_dropped: int = 0
    renewals_forwarded: int = 0
    renewals_answered: int = 0
    stale_local_reads: int = 0
    members_started: int = 0
    removed_stopped: int = 0


class Member:
    """One simulated process: a disk, and while it runs, a member runtime."""

    def __init__(self, node_id: int, clock: MemberClock) -> None:
        self.node_id = node_id
        self.clock = clock
        self.state = MemberState.UP
        # Built at boot from the recovered log, gone while crashed.
        self.runtime: MemberRuntime | None = None
        self.disk = SimDisk()
        self.storage: MemberStorage | None = None
        # What the member last made durable; survives its crashes (checked at restart).
        self.durable = DurableMark(HardState(), 0)
        # Set when recovery refused the disk (a corrupt WAL): the member stays down.
        self.stopped_reason: str | None = None
        # A durable WAL byte was flipped: recovery will refuse this disk.
        self.wal_damaged = False
        self.hub: WatchHub | None = None
        self.hub_generation = 0
        self.generation = 0
        self.busy = False
        self.inbox: deque[Callable[[], None]] = deque()
        self.tick_owed = False
        self.role = Role.FOLLOWER
        # The last index applied, to check the runtime applies in order.
        self.applied_index = 0
        # The first request id the next runtime may use: a restarted member
        # must not reuse its earlier runs' ids.
        self.id_base = 1
        # Virtual ms when this process last started: it has published its
        # name (the server's MEMBER_ATTRS on start) and its links are up.
        self.up_since_ms = 0
        # Removed from the configuration: the operator never starts it again.
        self.retired = False

    @property
    def core(self) -> RaftNode | None:
        return self.runtime.raft if self.runtime is not None else None

    @property
    def live(self) -> bool:
        return self.state is not MemberState.CRASHED and self.runtime is not None


class SimCluster:
    """Hosts the members and routes network, client and fault events to them."""

    def __init__(
        self,
        node_ids: list[int],
        rng: random.Random,
        clock: VirtualClock,
        config: ClusterConfig,
        checker: RaftSafetyChecker,
        bugs: frozenset[str],
        trace: Callable[[str], None],
        disk_faults: bool,
    ) -> None:
        self.node_ids = node_ids
        self._rng = rng
        self._clock = clock
        self.config = config
        self.checker = checker
        # A leader's lease decisions, each checked against its own clock: a
        # tick is the grace for noticing a deadline, and an fsync delays a tick.
        self.leases = LeaseChecker(grace_ms=2 * config.tick_ms + config.fsync_ms_max)
        self.bugs = bugs
        self._trace = trace
        self.disk_faults = disk_faults
        self.members = {
            i: Member(
                i,
                MemberClock(
                    offset_ms=rng.randint(-config.clock_offset_ms_max, config.clock_offset_ms_max),
                    rate_ppm=rng.randint(-config.clock_rate_ppm_max, config.clock_rate_ppm_max),
                ),
            )
            for i in node_ids
        }
        self.stats = ClusterStats()
        self.network: SimNetwork | None = None
        self.reply_to_client: Callable[[Reply, Request], None] = lambda r, q: None
        self.touched: set[int] = set()
        self.on_leader: Callable[[int], None] = lambda node_id: None
        self.on_leader_commit: Callable[[int], None] = lambda node_id: None
        self.on_vote_granted: Callable[[int], None] = lambda node_id: None
        core_bugs = frozenset(b for b in bugs if b in CORE_BUGS)
        self.revisions = RevisionLog()
        self._live_cores: list[tuple[int, RaftNode]] | None = None
        self.max_entries_per_message = rng.choice(config.max_entries_per_message_choices)
        self._core_bugs = core_bugs
        self._raft_config = {i: self._raft_config_for(i) for i in node_ids}
        self._conf = ConfState(voters=frozenset(node_ids))
        self._wal_options = wal_options(frozenset(b for b in bugs if b in WAL_BUGS))
        self._runtime_bugs = frozenset(b for b in bugs if b not in CORE_BUGS | WAL_BUGS)
        self._runtime_limits = RuntimeLimits(
            proposals=ProposalLimits(),
            reads_pending_max=MAX_PENDING_READS,
            snapshot_every_entries=config.compact_every_entries,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            # The network loses batches without a word (the server's
            # connection would say): a lost one holds its slot until its
            # callers time out, so a few may be on the way at once.
            renewal_batches_in_flight_max=4,
        )
        self.bit_flipped = False
        # Cleared once a voter is removed: a member that has not yet applied
        # the removal still counts the removed (stopped) voter in its quorum,
        # so a voter lost for good on top of it would be two failures.
        self.permanent_loss_allowed = True
        for member in self.members.values():
            member.storage, _ = MemberStorage.open(member.disk, self._wal_options)
            self._boot(member, None)

    def _raft_config_for(self, node_id: int) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            election_timeout_ticks=self.config.election_timeout_ticks,
            heartbeat_interval_ticks=self.config.heartbeat_interval_ticks,
            pre_vote=self.config.pre_vote,
            max_entries_per_message=self.max_entries_per_message,
            planted_bugs=self._core_bugs,
        )

    # --- lifecycle --------------------------------------------------------

    def start_member(self, node_id: int) -> None:
        """Start a new member process on an empty disk, as ``syndic serve
        --initial-cluster-state existing`` does after ``member add``: it knows
        the configuration the log starts from (the sim's bootstrap voters, as
        every member's log does) and learns the rest by log or snapshot."""
        assert node_id not in self.members
        member = Member(
            node_id,
            MemberClock(
                offset_ms=self._rng.randint(
                    -self.config.clock_offset_ms_max, self.config.clock_offset_ms_max
                ),
                rate_ppm=self._rng.randint(
                    -self.config.clock_rate_ppm_max, self.config.clock_rate_ppm_max
                ),
            ),
        )
        self.members[node_id] = member
        self._raft_config[node_id] = self._raft_config_for(node_id)
        member.storage, _ = MemberStorage.open(member.disk, self._wal_options)
        self._boot(member, None)
        # In place: the clients and the nemesis share this list.
        self.node_ids.append(node_id)
        self.stats.members_started += 1
        self._trace(f"n{node_id} START empty (joining)")
        tick_ms = self.config.tick_ms
        # Its clock has counted ticks since time 0 like the others': go on from the next.
        tick = max(1, self._clock.now_ms // tick_ms)
        while member.clock.tick_due_ms(tick, tick_ms) <= self._clock.now_ms:
            tick += 1
        self._schedule_tick(member, tick, tick_ms)

    def retire(self, node_id: int) -> None:
        """The operator's step after a removal committed: the process is never
        started again, and once down it leaves the clients' list."""
        member = self.members[node_id]
        if member.retired:
            return
        member.retired = True
        self._trace(f"n{node_id} RETIRED (removed from the configuration)")
        if member.state is MemberState.CRASHED:
            self._forget(node_id)
            return
        # A running one stops by itself once it applies its removal; one cut
        # off from the leader never learns of it, and the operator stops it.
        self._clock.schedule(RETIRE_GRACE_MS, lambda: self._stop_retired(node_id), "retire")

    def _stop_retired(self, node_id: int) -> None:
        if self.members[node_id].state is not MemberState.CRASHED:
            self._trace(f"n{node_id} STOPPED by the operator after its removal")
            self.crash(node_id)
        self._forget(node_id)

    def now_ms(self) -> int:
        return self._clock.now_ms

    def wake(self, node_id: int) -> None:
        """Run the member's Ready loop after something was proposed on it directly."""
        member = self.members[node_id]
        if member.state is MemberState.UP and not member.busy:
            self.touched.add(node_id)
            self._drain(member)

    def _forget(self, node_id: int) -> None:
        if node_id in self.node_ids:
            self.node_ids.remove(node_id)

    def _check_removed(self, member: Member, runtime: MemberRuntime) -> None:
        """A member that applied its own removal stops (etcd: "the member has
        been permanently removed from the cluster"), as ``server/node.py`` does."""
        membership = runtime.membership
        if not membership.peers_dirty:
            return
        membership.peers_dirty = False
        if not membership.check_removed(runtime.raft.conf_state):
            return
        self._trace(f"n{member.node_id} REMOVED: applied its own removal, stopping")
        self.stats.removed_stopped += 1
        member.retired = True
        self.crash(member.node_id)
        self._forget(member.node_id)

    def _boot(self, member: Member, restored: PersistentState | None) -> None:
        """Build the member's runtime on its recovered log (None: a fresh disk)."""
        self._live_cores = None
        core_rng = self._rng_for_core()
        core = RaftNode(self._raft_config[member.node_id], self._conf, core_rng, restored)
        member.role = core.role
        state = self._new_state(member)
        snapshot_index = 0
        if restored is not None and restored.snapshot is not None:
            state.restore(restored.snapshot.data)
            snapshot_index = restored.snapshot.meta.index
        # Lease deadlines are the leader's alone: a member decides none until
        # it leads (the runtime promotes it then).
        state.store.lease_demote()
        # No ``chance``: snapshots fall due at the configured count, so a
        # seed replays the same schedule it always did (test_bugs names the
        # first seed that catches each planted bug).
        runtime = MemberRuntime(
            member.node_id,
            core,
            state,
            SimPeers(self, member.node_id),
            lambda: self.local_ms(member),
            self._runtime_limits,
            snapshot_index,
            id_base=member.id_base,
            decode=decode_shared,
            planted_bugs=self._runtime_bugs,
        )
        runtime.observer = self._apply_observer(member)
        # Every keep-alive a leader accepts, its own or a follower's forwarded
        # one, restarts the lease's TTL on its clock for the lease checker.
        node_id = member.node_id
        runtime.renew_observer = lambda lease_id, local_ms: self.leases.keep_alive(
            node_id, lease_id, local_ms
        )
        member.runtime = runtime
        member.up_since_ms = self._clock.now_ms
        member.applied_index = core.applied_index
        self._attach_state(member)

    def _check_durable(self, member: Member, restored: PersistentState) -> None:
        """Recovery never returns less than the member had synced (DESIGN: a
        corrupt record is reported, never silently skipped)."""
        mark = member.durable
        hs = restored.hard_state
        if restored.entries:
            last = restored.entries[-1].index
        else:
            last = restored.snapshot.meta.index if restored.snapshot is not None else 0
        lost = (
            hs.term < mark.hard_state.term
            or (hs.term == mark.hard_state.term and mark.hard_state.vote not in (0, hs.vote))
            or last < mark.hard_state.commit
        )
        if lost:
            raise SafetyViolationError(
                "durability",
                f"n{member.node_id} recovered term={hs.term} vote={hs.vote} last index={last} "
                f"but had synced term={mark.hard_state.term} vote={mark.hard_state.vote} "
                f"commit={mark.hard_state.commit}",
            )

    def _stop_on_disk_failure(self, member: Member, exc: StorageError) -> None:
        """A failed fsync leaves the file's state unknown: the process exits
        (etcd panics) and is restarted later, recovering from what is durable."""
        self.stats.fsync_failures += 1
        self._trace(f"n{member.node_id} EXIT on disk failure: {exc}")
        self.crash(member.node_id)
        node_id = member.node_id
        down = self._rng.randint(1, FSYNC_FAILURE_DOWN_MS_MAX)
        self._clock.schedule(down, lambda: self.restart(node_id), "restart")

    def _rng_for_core(self) -> random.Random:
        # Each core (and each restart) gets its own stream drawn from the run's rng.
        return random.Random(self._rng.getrandbits(64))

    def crash(self, node_id: int) -> None:
        member = self.members[node_id]
        if member.state is MemberState.CRASHED:
            return
        assert member.storage is not None
        report = member.storage.crash(self._rng if self.disk_faults else None)
        member.storage = None
        self.stats.crashes += 1
        self.stats.unsynced_bytes_lost += report.unsynced_bytes_lost
        self.stats.bytes_flushed_at_crash += report.flushed_bytes
        self.stats.torn_writes += int(report.torn)
        flipped = self._maybe_flip_bit(member)
        self.leases.demote(node_id)
        member.state = MemberState.CRASHED
        # The process is gone, and its callers' connections with it: they
        # learn nothing more and find out by their own timeouts.
        if member.runtime is not None:
            member.id_base = member.runtime.retire()
        member.runtime = None
        self._live_cores = None
        member.generation += 1
        member.busy = False
        member.inbox.clear()
        member.tick_owed = False
        member.role = Role.FOLLOWER
        extra = ", torn write" if report.torn else ""
        self._trace(
            f"n{node_id} CRASH (lost {report.unsynced_bytes_lost} unsynced bytes, "
            f"{report.flushed_bytes} flushed anyway{extra}{flipped})"
        )

    def _maybe_flip_bit(self, member: Member) -> str:
        """Now and then, a durable WAL byte of a crashed member rots."""
        if (
            not self.disk_faults
            or self.bit_flipped
            or not self.permanent_loss_allowed
            or len(self.node_ids) < 3
            or self._rng.random() >= self.config.bit_flip_share
        ):
            return ""
        disk = member.disk
        wal_dir = "/data/wal"
        segments = [n for n in disk.list_dir(wal_dir) if n.endswith(".wal")]
        choices: list[tuple[str, int]] = []
        for number, name in enumerate(segments):
            path = f"{wal_dir}/{name}"
            data = disk.read_file(path)
            # The last record of the last segment is left alone: damage there is
            # indistinguishable from a torn write, and is repaired as one.
            end = _last_record_start(data) if number == len(segments) - 1 else len(data)
            if end > 0:
                choices.append((path, end))
        if not choices:
            return ""
        path, end = self._rng.choice(choices)
        offset = self._rng.randrange(end)
        disk.flip_bit(path, offset, self._rng.randrange(8))
        self.bit_flipped = True
        member.wal_damaged = True
        self.stats.bit_flips += 1
        return f", bit flip in {path} at {offset}"

    def restart(self, node_id: int) -> None:
        member = self.members[node_id]
        if member.retired:
            self._forget(node_id)
            return
        if member.state is not MemberState.CRASHED or member.stopped_reason is not None:
            return
        try:
            storage, restored = MemberStorage.open(member.disk, self._wal_options)
        except StorageError as exc:
            # Recovery refused the disk (CRC failure mid-log, no fitting snapshot):
            # the member must not rejoin with a log it cannot trust.
            member.stopped_reason = str(exc)
            self.stats.stopped_corrupt += 1
            self._trace(f"n{node_id} STOPPED: {exc}")
            return
        self._check_durable(member, restored)
        member.storage = storage
        for repair in storage.repairs:
            self._trace(f"n{node_id} WAL repaired torn tail {repair}")
        self.stats.restarts += 1
        member.state = MemberState.UP
        self._boot(member, restored)
        self.checker.observe_restart(node_id, restored.hard_state.commit)
        hs = restored.hard_state
        self._trace(
            f"n{node_id} RESTART term={hs.term} vote={hs.vote} commit={hs.commit} "
            f"entries={len(restored.entries)}"
        )
        self.touched.add(node_id)
        self._drain(member)

    def pause(self, node_id: int) -> None:
        member = self.members[node_id]
        if member.state is MemberState.UP:
            member.state = MemberState.PAUSED
            self.stats.pauses += 1
            self._trace(f"n{node_id} PAUSE")

    def resume(self, node_id: int) -> None:
        member = self.members[node_id]
        if member.state is MemberState.PAUSED:
            member.state = MemberState.UP
            self._trace(f"n{node_id} RESUME")
            self._run_inbox(member)

    # --- inputs -----------------------------------------------------------

    def _submit(self, member: Member, action: Callable[[], None]) -> None:
        """Run ``action`` now, or queue it while the member is paused or fsyncing."""
        if member.state is MemberState.CRASHED:
            return
        if member.state is MemberState.PAUSED or member.busy:
            if len(member.inbox) >= MAX_INBOX_ITEMS:
                self.stats.inbox_dropped += 1
                return
            member.inbox.append(action)
            return
        action()
        self.touched.add(member.node_id)
        self._drain(member)

    def deliver(self, msg: Packet) -> None:
        if isinstance(msg, ForwardedProposals):
            forwarded, leader = msg, self.members[msg.to_id]
            self._submit(leader, lambda: self._propose_forwarded(leader, forwarded))
            return
        if isinstance(msg, ForwardedRenewals):
            renewals, leader = msg, self.members[msg.to_id]
            self._submit(leader, lambda: self._renew_forwarded(leader, renewals))
            return
        if isinstance(msg, RenewalsAnswer):
            answer, follower = msg, self.members[msg.to_id]
            self._submit(follower, lambda: self._renewals_answered(follower, answer))
            return
        member = self.members[msg.to_id]
        runtime = member.runtime
        if member.state is MemberState.UP and not member.busy and runtime is not None:
            # The common case, as _submit() would run it, without a closure.
            runtime.raft.step(msg)
            self.touched.add(member.node_id)
            self._drain(member)
            return
        self._submit(member, lambda: self._core(member).step(msg))

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        assert self.network is not None
        granted = 0
        network_send = self.network.send
        checked_from = 0  # a Ready's messages share their sender: look it up once
        for msg in messages:
            if msg.from_id != checked_from:
                checked_from = msg.from_id
                sender = self.members[checked_from].runtime
                if sender is not None and sender.membership.removed:
                    raise SafetyViolationError(
                        "removed-member-sends",
                        f"n{msg.from_id} applied its own removal but still sends {msg.type.name}",
                    )
            network_send(msg)
            if msg.type is MessageType.VOTE_RESP and not msg.reject:
                granted = msg.from_id
        if granted:
            self.on_vote_granted(granted)

    def forward(self, from_id: int, to_id: int, proposals: list[bytes]) -> bool:
        """A follower hands its outbox to the leader it knows of, as the
        server's transport does; False (the callers are refused) when the
        link is down, as a transport with no connection to the leader says."""
        assert self.network is not None
        if not self.network.reachable(from_id, to_id):
            return False
        self.network.send(ForwardedProposals(from_id, to_id, tuple(proposals)))
        self.stats.proposals_forwarded += len(proposals)
        return True

    def _propose_forwarded(self, member: Member, forwarded: ForwardedProposals) -> None:
        """The leader proposes what a follower forwarded; the follower answers
        its callers when it applies the entries. Dropped if not leader."""
        runtime = self._runtime(member)
        if not runtime.is_leader:
            return
        try:
            outcome = runtime.propose_forwarded(list(forwarded.proposals))
        except RaftError:
            return
        if outcome.undecodable:
            self._trace(
                f"n{member.node_id} refused {outcome.undecodable} undecodable forwarded proposals"
            )
        self.stats.forwarded_copies_dropped += outcome.duplicates

    def forward_renewals(
        self, from_id: int, to_id: int, batch_id: int, lease_ids: list[int]
    ) -> bool:
        """A follower hands a batch of keep-alives to its leader, as the
        server's peer request does; False when the link is down."""
        assert self.network is not None
        if not self.network.reachable(from_id, to_id):
            return False
        self.network.send(ForwardedRenewals(from_id, to_id, batch_id, tuple(lease_ids)))
        self.stats.renewals_forwarded += len(lease_ids)
        return True

    def answer_renewals(
        self,
        from_id: int,
        to_id: int,
        batch_id: int,
        ttls: tuple[int, ...],
        error: tuple[str, str] | None,
    ) -> None:
        assert self.network is not None
        if self.members[from_id].runtime is None:
            return  # crashed while a read barrier held the answer: no reply
        self.network.send(RenewalsAnswer(from_id, to_id, batch_id, ttls, error))

    def _renew_forwarded(self, member: Member, renewals: ForwardedRenewals) -> None:
        """The leader renews a follower's keep-alives and answers the batch."""
        runtime = self._runtime(member)
        reply = RenewalsReply(self, member.node_id, renewals.from_id, renewals.batch_id)
        try:
            runtime.renew_forwarded(list(renewals.lease_ids), reply)
        except ServerError as exc:
            reply.set_exception(exc)

    def _renewals_answered(self, member: Member, answer: RenewalsAnswer) -> None:
        runtime = self._runtime(member)
        self.stats.renewals_answered += 1
        if answer.error is None:
            runtime.renewals_answered(answer.batch_id, list(answer.ttls))
        else:
            runtime.renewals_refused(answer.batch_id, ServerError(*answer.error))

    def start_clocks(self, tick_ms: int) -> None:
        """Each member's ticks follow its own clock, which drifts from true time."""
        for member in self.members.values():
            self._schedule_tick(member, 1, tick_ms)

    def clocks_description(self) -> str:
        return " ".join(f"n{m.node_id}={m.clock.describe()}" for m in self.members.values())

    def _schedule_tick(self, member: Member, tick: int, tick_ms: int) -> None:
        delay = member.clock.tick_due_ms(tick, tick_ms) - self._clock.now_ms

        def fire() -> None:
            self._schedule_tick(member, tick + 1, tick_ms)
            self._tick(member)

        self._clock.schedule(max(0, delay), fire, "tick")

    def _tick(self, member: Member) -> None:
        if member.state is not MemberState.UP:
            return  # a paused process's timers do not fire
        if member.busy:
            member.tick_owed = True  # like a Go ticker: one tick is buffered
            return
        self._do_tick(member)

    def _do_tick(self, member: Member) -> None:
        runtime = self._runtime(member)
        due = runtime.tick()
        failed = runtime.fail_expired()
        if failed:
            self._trace(f"n{member.node_id} {failed} proposal(s) timed out")
        self.touched.add(member.node_id)
        if due:
            self._revoke(member, runtime, due)
        self._drain(member)
        if member.role is Role.LEADER and member.state is MemberState.UP and not member.busy:
            self.leases.tick(member.node_id, self.local_ms(member))

    def _revoke(self, member: Member, runtime: MemberRuntime, lease_ids: list[int]) -> None:
        """The leader revokes, through the log, each lease due on its own clock."""
        now = self.local_ms(member)
        for lease_id in lease_ids:
            completion = RevokeCompletion(runtime, lease_id)
            try:
                runtime.propose(EntryKind.STORE, LeaseRevokeRequest(id=lease_id), completion)
            except ServerError:
                runtime.leases.revoke_done(lease_id)
                continue
            self.leases.revoke_proposed(member.node_id, lease_id, now)
            self._trace(f"n{member.node_id} LEASE expire {lease_id:#x} at local {now}")

    def _attach_state(self, member: Member) -> None:
        """A new store (boot, restart, installed snapshot): the history log
        observes it and a new watch hub serves it; watches on the old one die."""
        store = self._runtime(member).state.store
        store.add_observer(self.revisions)
        member.hub = WatchHub(store)
        member.hub_generation += 1

    # --- watches (syndic.sim.watchers.WatchPort) -----------------------------

    def watch_open(self, node_id: int, start_revision: int) -> WatchHandle | None:
        member = self.members[node_id]
        if member.state is not MemberState.UP or member.hub is None:
            return None
        stream = member.hub.open_stream()
        open_watch(stream, start_revision)
        store = self._runtime(member).state.store
        return WatchHandle(node_id, member.hub_generation, stream, store.compact_revision)

    def watch_pull(self, handle: WatchHandle) -> list[WatchResponse] | None:
        member = self.members[handle.node_id]
        if member.state is MemberState.CRASHED or member.hub_generation != handle.hub_generation:
            return None
        if member.state is MemberState.PAUSED:
            return []  # a stopped process sends nothing; the connection stays
        responses = handle.stream.pull(PULL_RESPONSES_MAX)
        compacted = self._runtime(member).state.store.compact_revision
        if compacted > handle.compact_seen:
            handle.compact_seen = compacted
            if "watch-drop-on-compact" in self.bugs:
                return []  # Planted bug: what was pending when compaction ran is lost.
        return responses

    def revision_of(self, node_id: int) -> int | None:
        runtime = self.members[node_id].runtime
        return runtime.state.store.revision if runtime is not None else None

    def local_ms(self, member: Member) -> int:
        """``member``'s own clock reading now."""
        return member.clock.local_ms(self._clock.now_ms)

    def _new_state(self, member: Member) -> StateMachine:
        """An empty state machine on ``member``'s own clock."""
        if "lease-proposer-clock" not in self.bugs:
            return StateMachine(SIM_STORE_CONFIG, {}, clock_ms=lambda: self.local_ms(member))
        state = ProposerClockStateMachine(SIM_STORE_CONFIG, {})

        def proposer_clock() -> int:
            # Planted bug: the deadline comes from the proposing member's clock.
            proposer = self.members.get(state.proposer_id, member)
            return self.local_ms(proposer)

        state.clock_ms = proposer_clock
        return state

    def client_request(self, node_id: int, request: Request) -> None:
        member = self.members[node_id]
        self._submit(member, lambda: self._handle_request(member, request))

    @staticmethod
    def _runtime(member: Member) -> MemberRuntime:
        assert member.runtime is not None, f"n{member.node_id} is not running"
        return member.runtime

    @staticmethod
    def _core(member: Member) -> RaftNode:
        return SimCluster._runtime(member).raft

    def refuse(self, request: Request, leader_hint: int) -> None:
        self.reply_to_client(
            Reply(request.request_id, ReplyStatus.REFUSED, leader_hint=leader_hint), request
        )

    def _handle_request(self, member: Member, request: Request) -> None:
        """A client's request enters the member's runtime as the server's would."""
        runtime = self._runtime(member)
        completion = ClientCompletion(self, member, request)
        if request.kind is RequestKind.SERIAL_READ:
            # Served from local state without a ReadIndex round (etcd: serializable).
            self.answer_read(member, request)
            return
        try:
            if request.kind is RequestKind.READ:
                if runtime.is_leader and "stale-leader-read" in self.bugs:
                    self.stats.stale_local_reads += 1
                runtime.read(completion)
            elif request.kind is RequestKind.KEEP_ALIVE:
                # Renewed in the leader's memory, no log entry (etcd:
                # LeaseKeepAlive); a follower forwards it to the leader.
                runtime.keep_alive(request.lease_id, completion)
            else:
                runtime.propose(EntryKind.STORE, store_request(request), completion)
        except ServerError as exc:
            completion.set_exception(exc)

    def reply_ok(
        self,
        member: Member,
        request: Request,
        *,
        value: str | None = None,
        succeeded: bool | None = None,
    ) -> None:
        self.reply_to_client(
            Reply(
                request.request_id,
                ReplyStatus.OK,
                value=value,
                succeeded=succeeded,
                leader_hint=self.hint(member),
                revision=self._runtime(member).state.store.revision,
            ),
            request,
        )

    def answer_read(self, member: Member, request: Request) -> None:
        self.stats.reads_served += 1
        found = self._runtime(member).state.store.range(RangeRequest(key=request.key.encode()))
        value = found.kvs[0].value.decode() if found.kvs else None
        self.reply_ok(member, request, value=value)

    def hint(self, member: Member) -> int:
        return member.runtime.raft.leader_id if member.runtime is not None else 0

    # --- the Ready loop -----------------------------------------------------

    def _drain(self, member: Member) -> None:
        while member.state is MemberState.UP and not member.busy:
            runtime = member.runtime
            if runtime is None:
                return
            # Proposals queued since the last Ready go as one batch.
            runtime.flush()
            if not runtime.raft.has_ready():
                return
            self._handle_ready(member, runtime, runtime.raft.ready())

    def _handle_ready(self, member: Member, runtime: MemberRuntime, rd: Ready) -> None:
        core = runtime.raft
        # A leader's appends leave while its own disk is still writing them.
        soft = runtime.begin(rd)
        if soft is not None:
            self._on_soft_state(member, runtime, soft)
        hs = rd.hard_state
        if hs is not None and "vote-not-persisted" in self.bugs:
            hs = HardState(term=hs.term, vote=0, commit=hs.commit)
        assert member.storage is not None
        try:
            member.storage.write(hs, rd.entries, rd.snapshot)
        except StorageError as exc:
            self._stop_on_disk_failure(member, exc)
            return
        if rd.entries:
            first = rd.entries[0].index
            prev = core.entries_between(first - 1, first) if first > 1 else ()
            prev_term = prev[0].term if prev else (0 if first == 1 else -1)
            self.checker.observe_append(member.node_id, rd.entries, prev_term)
        if not rd.must_sync:
            self._finish_ready(member, runtime, rd, synced=True, sent=False)
            return
        sent = False
        if "ack-before-persist" in self.bugs:
            self.send(rd.messages)
            sent = True
        member.busy = True
        generation = member.generation
        delay = self._rng.randint(self.config.fsync_ms_min, self.config.fsync_ms_max)

        def finish() -> None:
            self._finish_ready(member, runtime, rd, synced=False, sent=sent)

        def fsync_done() -> None:
            if member.generation != generation:
                return  # crashed while the fsync was in flight: writes are lost
            member.busy = False
            if self.disk_faults and self._rng.random() < self.config.fsync_failure_share:
                member.disk.fail_next_fsync()
            if member.state is MemberState.PAUSED:
                # The process is stopped: it acts on the completion when resumed.
                member.inbox.appendleft(finish)
                return
            self.touched.add(member.node_id)
            finish()
            self._drain(member)
            self._run_inbox(member)

        self._clock.schedule(delay, fsync_done, "fsync")

    def _finish_ready(
        self, member: Member, runtime: MemberRuntime, rd: Ready, *, synced: bool, sent: bool
    ) -> None:
        if not synced:
            assert member.storage is not None
            records = member.storage.records_unsynced
            try:
                member.storage.sync()
            except StorageError as exc:
                self._stop_on_disk_failure(member, exc)
                return
            member.durable = member.storage.durable
            if member.role is Role.LEADER:
                self._trace(
                    f"n{member.node_id} WAL fsync +{records} records: {member.storage.describe()}"
                )
            self.stats.fsyncs += 1
        member.busy = False
        if rd.snapshot is not None:
            index = rd.snapshot.meta.index
            runtime.install_snapshot(runtime.state.decode(rd.snapshot.data), index)
            member.applied_index = index
            self._attach_state(member)
            self.stats.snapshots_installed += 1
            self._trace(f"n{member.node_id} installed snapshot at {index}")
        runtime.finish(rd, sent=sent)
        if runtime.membership.peers_dirty:  # tested here: this runs once per Ready
            self._check_removed(member, runtime)
            if member.runtime is None:
                return
        if rd.committed_entries and member.role is Role.LEADER:
            self.on_leader_commit(member.node_id)
        if runtime.snapshot_due():
            self._maybe_compact(member, runtime)

    def _apply_observer(
        self, member: Member
    ) -> Callable[[Entry, DecodedEntry | None, object], None]:
        """What the simulator checks and records of each entry the runtime applies."""

        def observe(entry: Entry, decoded: DecodedEntry | None, result: object) -> None:
            if entry.index != member.applied_index + 1:
                raise SafetyViolationError(
                    "apply-order",
                    f"n{member.node_id} applied index {entry.index} after {member.applied_index}",
                )
            member.applied_index = entry.index
            self.checker.observe_apply(member.node_id, entry)
            self.stats.entries_applied += 1
            if decoded is None:
                return
            if member.role is Role.LEADER:
                _, description = describe_applied(decoded.payload, result)
                revision = self._runtime(member).state.store.revision
                self._trace(
                    f"n{member.node_id} MVCC rev {revision} <- index {entry.index} "
                    f"{description} (n{decoded.proposer_id}#{decoded.request_id})"
                )
            self._observe_lease_apply(member, decoded.payload, result)

        return observe

    def _observe_lease_apply(self, member: Member, payload: object, result: object) -> None:
        if isinstance(result, LeaseGrantResponse):
            if self._runtime(member).state.store.lease_primary:
                now = self.local_ms(member)
                self.leases.granted(member.node_id, result.id, result.ttl_s * 1000, now)
        elif isinstance(payload, LeaseRevokeRequest) and not isinstance(result, KvError):
            self.leases.removed(member.node_id, payload.id)

    def _maybe_compact(self, member: Member, runtime: MemberRuntime) -> None:
        """Compact the log into a snapshot (the runtime said one is due)."""
        applied = runtime.raft.applied_index
        try:
            snap = runtime.raft.compact(applied, runtime.state.serialize())
        except RaftError:
            return  # e.g. SnapshotOutOfDateError: a newer snapshot already covers it
        assert member.storage is not None
        try:
            member.storage.save_snapshot(snap)
        except StorageError as exc:
            self._stop_on_disk_failure(member, exc)
            return
        member.durable = member.storage.durable
        runtime.snapshots.taken(snap.meta.index)
        self.stats.snapshots_taken += 1

    def _run_inbox(self, member: Member) -> None:
        while member.inbox and member.state is MemberState.UP and not member.busy:
            action = member.inbox.popleft()
            action()
            self.touched.add(member.node_id)
            self._drain(member)
        if member.tick_owed and member.state is MemberState.UP and not member.busy:
            member.tick_owed = False
            self._do_tick(member)

    def _on_soft_state(self, member: Member, runtime: MemberRuntime, soft: SoftState) -> None:
        role = soft.role
        if role is member.role:
            return
        member.role = role
        core = runtime.raft
        if role is Role.LEADER:
            # The runtime gave every lease a full TTL on this leader's clock
            # (etcd: Promote); the checker holds it to the same.
            store = runtime.state.store
            now = self.local_ms(member)
            held = {
                lease.id: 1000
                * store.lease_time_to_live(LeaseTimeToLiveRequest(lease.id), now).granted_ttl_s
                for lease in store.lease_leases().leases
            }
            self.leases.promote(member.node_id, now, held)
            self.stats.leaders_elected += 1
            self._trace(f"n{member.node_id} LEADER term={core.term}")
            self.on_leader(member.node_id)
        else:
            self.leases.demote(member.node_id)
            self._trace(f"n{member.node_id} {role.name.lower()} term={core.term}")

    # --- views for checkers and the nemesis -----------------------------------

    def live_cores(self) -> list[tuple[int, RaftNode]]:
        # Asked after every event; it changes only when a member boots or crashes.
        if self._live_cores is None:
            self._live_cores = [
                (m.node_id, m.core)
                for m in self.members.values()
                if m.core is not None and m.state is not MemberState.CRASHED
            ]
        return self._live_cores

    def touched_members(self) -> list[int]:
        """Members changed by the last event, including those with an fsync in
        flight: a core's invariants hold between ``ready()`` and ``advance()`` too."""
        return sorted(self.touched)

    def leader(self) -> int:
        """The live member that believes it leads in the highest term, or 0."""
        best, best_term = 0, -1
        for node_id, core in self.live_cores():
            if core.role is Role.LEADER and core.term > best_term:
                best, best_term = node_id, core.term
        return best


def _last_record_start(data: bytes) -> int:
    """Offset of the last intact record of a segment (its header size if none):
    zeros or a torn record after it do not count."""
    offset = last = SEGMENT_HEADER_SIZE_BYTES
    view = memoryview(data)
    while offset + RECORD_HEADER_SIZE_BYTES <= len(data):
        header = decode_record_header(view[offset : offset + RECORD_HEADER_SIZE_BYTES])
        if header is None or offset + RECORD_HEADER_SIZE_BYTES + header.length > len(data):
            break
        last = offset
        offset += RECORD_HEADER_SIZE_BYTES + header.length
    return last
