"""RaftNode: the Raft consensus algorithm as a pure state machine.

Modelled on etcd-io/raft (raft.go, rawnode.go): time arrives as ``tick()``, peer
messages as ``step(msg)``, requests as method calls; everything the node wants
done comes back from ``ready()`` and is acknowledged with ``advance()``.

Example (a single-voter cluster elects itself and commits a proposal)::

    >>> import random
    >>> node = RaftNode(RaftConfig(node_id=1), ConfState(voters=frozenset({1})), random.Random(7))
    >>> node.campaign()
    >>> node.propose(b"hello")
    2
    >>> rd = node.ready()
    >>> [e.data for e in rd.committed_entries]
    [b'', b'hello']
    >>> node.advance(rd)

Sections cited are from the Raft paper (Ongaro & Ousterhout 2014) and Ongaro's
thesis (2014); "etcd:" names the etcd-io/raft counterpart of a rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndic.raft.config import PersistentState, RaftConfig
from syndic.raft.errors import (
    ConfChangeError,
    InvalidArgumentError,
    InvariantError,
    NotLeaderError,
    ProposalDroppedError,
    ReadyContractError,
    SnapshotOutOfDateError,
)
from syndic.raft.log import RaftLog
from syndic.raft.membership import (
    VoteResult,
    all_voters,
    apply_change,
    committed_index,
    decode_change_entry,
    encode_change_entry,
    is_quorum,
    validate_change,
    vote_result,
)
from syndic.raft.messages import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    check_node_id,
)
from syndic.raft.progress import Progress, ProgressState

if TYPE_CHECKING:
    import random

# Marks (PRE_)VOTE requests of an election forced by TIMEOUT_NOW, which must bypass
# leader stickiness (etcd: campaignTransfer).
CAMPAIGN_TRANSFER_CONTEXT = b"transfer"

# Pending ReadIndex requests a leader queues (confirmed by heartbeat rounds) or
# defers (until its first commit in the term). Beyond this, local reads are refused
# and forwarded ones dropped: a client retrying faster than rounds complete must
# not grow the leader's memory without bound.
READ_REQUESTS_PENDING_MAX = 4096

# Largest request context a read may carry; it rides on heartbeats to every peer.
READ_CONTEXT_BYTES_MAX = 4096

# Committed entries handed out in one Ready; bounds the work (and memory) of one
# apply step, the rest follows in the next Ready.
COMMITTED_ENTRIES_PER_READY_MAX = 4096
# What a leader may send before persisting the Ready that holds them. A tuple:
# `in` tests its two members by identity, where a set would hash an Enum
# member through a Python-level __hash__ for every message.
_EARLY_TYPES = (MessageType.APPEND, MessageType.HEARTBEAT)

# APPENDs sent to one follower in one burst after an acknowledgement; the inflight
# window bounds it too, this keeps one step's work finite whatever the config.
APPENDS_PER_BURST_MAX = 1024

# A follower stays in SNAPSHOT state at most this many election timeouts without
# hearing the outcome; then the leader probes again (and re-sends if still needed).
# Runtimes that call report_snapshot() never hit it; a lost message would otherwise
# stall the follower for ever. Long enough that a healthy transfer is not restarted.
SNAPSHOT_TIMEOUT_ELECTION_TIMEOUTS = 4

READ_SEQ_BYTES = 8
# Entries a snapshot dropped from the log that each advance() frees (about
# 1 µs each): a compaction of 100,000 entries is freed over some fifty
# cycles of a few ms instead of in one step of 60-120 ms.
DROPPED_ENTRIES_FREED_PER_ADVANCE = 2048


@dataclass(slots=True)
class _ReadRequest:
    seq: int
    index: int
    from_id: int
    ctx: bytes


class RaftNode:
    """One Raft member. See the module docstring for the driving loop."""

    def __init__(
        self,
        config: RaftConfig,
        peers_or_conf: ConfState,
        rng: random.Random,
        restored: PersistentState | None = None,
    ) -> None:
        if not isinstance(config, RaftConfig):
            raise InvalidArgumentError("config must be a RaftConfig")
        if not isinstance(peers_or_conf, ConfState):
            raise InvalidArgumentError("peers_or_conf must be a ConfState")
        if restored is not None and not isinstance(restored, PersistentState):
            raise InvalidArgumentError("restored must be a PersistentState or None")
        if not hasattr(rng, "randrange"):
            raise InvalidArgumentError("rng must be a random.Random")
        self._cfg = config
        self.id = config.node_id
        self._rng = rng
        self._lease_ticks = config.effective_lease_ticks()

        hard = HardState()
        conf = peers_or_conf
        if restored is not None:
            hard = restored.hard_state
            snapshot = restored.snapshot
            last_term = restored.entries[-1].term if restored.entries else 0
            if snapshot is not None:
                last_term = max(last_term, snapshot.meta.term)
                conf = snapshot.meta.conf_state
            if last_term > hard.term:
                raise InvalidArgumentError(
                    f"restored log holds term {last_term} beyond hard state term {hard.term}"
                )
            self._log = RaftLog(snapshot, restored.entries)
            self._log.committed = max(hard.commit, self._log.offset)
        else:
            self._log = RaftLog()

        self.term = hard.term
        self.vote = hard.vote
        self.role = Role.FOLLOWER
        self.lead = 0
        self._conf = conf
        # (index, conf) for every configuration in force since the log offset, so
        # compact() can record the configuration as of the compaction index.
        self._conf_history: list[tuple[int, ConfState]] = [(self._log.offset, conf)]
        self._conf_applied_index = self._log.offset
        self._progress: dict[int, Progress] = {}
        self._sync_progress_with_conf()
        # Restart: changes committed before the crash are in force again (the runtime
        # re-applies those entries; _conf_applied_index makes that a no-op).
        for entry in self._log.slice(self._log.offset + 1, self._log.committed + 1):
            if entry.type is EntryType.CONF_CHANGE:
                self._apply_conf_change_entry(entry)

        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = config.election_timeout_ticks
        self._votes: dict[int, bool] = {}
        self._lead_transferee = 0
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._leader_commit_floor = 0
        # A logical clock starting at 1 so that stamp 0 means "never" (lease reads).
        self._clock_ticks = 1
        self._lease_stamps: dict[int, int] = {}
        self._lease_revoked = False
        # A restarted node forgot which leader it heard from last, so leader stickiness
        # cannot protect a lease it may have helped grant: with lease reads on, it
        # ignores (pre-)votes for one election timeout after a restart.
        self._restart_quiet_ticks = (
            config.election_timeout_ticks if config.lease_read and restored is not None else 0
        )
        self._read_seq = 0
        self._read_acks: dict[int, int] = {}
        self._reads: deque[_ReadRequest] = deque()
        # Reads registered since the last Ready wait for one heartbeat round,
        # sent when that Ready is built: one round per batch, not per read.
        self._read_heartbeat_due = False
        # The read sequence number the read round in flight carries (0: none).
        # One round at a time: reads arriving meanwhile join the next round,
        # sent when this one is answered, so a busy leader's rounds grow with
        # its load instead of multiplying (each round wakes every follower).
        self._read_round_seq = 0
        self._deferred_reads: deque[tuple[int, bytes]] = deque()

        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._prev_soft = SoftState(leader_id=0, role=Role.FOLLOWER)
        self._prev_hard = hard
        self._outstanding: Ready | None = None
        self._violation: str | None = None
        self._checked_term = self.term
        self._checked_commit = self._log.committed
        self._members_conf: ConfState | None = None
        self._members: frozenset[int] = frozenset()
        self._become_follower(self.term, 0)

    # -- read-only views -----------------------------------------------------

    @property
    def leader_id(self) -> int:
        return self.lead

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def conf_state(self) -> ConfState:
        return self._conf

    @property
    def lead_transferee(self) -> int:
        return self._lead_transferee

    def match_index(self, node_id: int) -> int:
        """The highest index known replicated on ``node_id``; 0 unless this node leads."""
        pr = self._progress.get(node_id) if self.role is Role.LEADER else None
        return pr.match if pr is not None else 0

    def entries_between(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Log entries ``[lo, hi)`` this node still holds (compacted ones are omitted)."""
        for name, value in (("lo", lo), ("hi", hi)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"entries_between: {name} must be an int >= 0")
        return self._log.slice(lo, hi)

    def status(self) -> dict[str, object]:
        progress = {}
        if self.role is Role.LEADER:
            progress = {node_id: pr.describe() for node_id, pr in sorted(self._progress.items())}
        return {
            "id": self.id,
            "term": self.term,
            "vote": self.vote,
            "role": self.role.name.lower(),
            "leader": self.lead,
            "commit": self._log.committed,
            "applied": self._log.applied,
            "first_index": self._log.first_index(),
            "last_index": self._log.last_index(),
            "voters": sorted(self._conf.voters),
            "learners": sorted(self._conf.learners),
            "lead_transferee": self._lead_transferee,
            "progress": progress,
        }

    # -- driving inputs --------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time (etcd: Tick)."""
        self._clock_ticks += 1
        if self._restart_quiet_ticks:
            self._restart_quiet_ticks -= 1
        if self.role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round when configured)."""
        self._hup(transfer=False)

    def step(self, msg: Message) -> None:
        """Handle one peer message; stale, misrouted or nonsensical ones are ignored."""
        if not isinstance(msg, Message):
            raise InvalidArgumentError("step() needs a Message")
        if msg.to_id != self.id or msg.from_id == self.id:
            return
        if msg.term > self.term:
            if not self._step_higher_term(msg):
                return
        elif msg.term < self.term:
            self._step_lower_term(msg)
            return

        if msg.type in (MessageType.PRE_VOTE, MessageType.VOTE):
            self._handle_vote_request(msg)
        elif self.role is Role.LEADER:
            self._step_leader(msg)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a normal entry; returns the index it will occupy if committed."""
        return self.propose_batch((data,))

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        """Append each of ``datas`` as a normal entry, in order, all or none;
        returns the index of the last. One call sends each follower one append
        for the whole batch, where proposing them one by one would send one each."""
        if not datas:
            raise InvalidArgumentError("propose_batch needs at least one proposal")
        for data in datas:
            if not isinstance(data, bytes):
                raise InvalidArgumentError(
                    f"proposal data must be bytes, got {type(data).__name__}"
                )
        self._check_can_propose(sum(len(data) for data in datas))
        index = self._append_entries(*((EntryType.NORMAL, data) for data in datas))
        self._bcast_append()
        return index

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change (see membership.py for the safety rules)."""
        if not isinstance(change, ConfChange):
            raise InvalidArgumentError("propose_conf_change() needs a ConfChange")
        data = change.encode()
        self._check_can_propose(len(data))
        if not self._committed_in_term():
            # Ongaro's fix to single-server changes (raft-dev, 2015): a new leader first
            # commits an entry of its own term, so no change of an older term that it
            # does not know about can still be in flight.
            raise ConfChangeError(
                f"no entry of term {self.term} is committed yet (commit {self._log.committed})"
            )
        if self._pending_conf_index > self._log.applied:
            # Thesis §4.1: one change at a time, applied before the next is proposed
            # (pending_conf_index starts at the last index of the election, so any
            # change of an earlier term is applied first). etcd: "possible unapplied
            # conf change".
            raise ConfChangeError(
                f"a configuration change is pending (index {self._pending_conf_index}, "
                f"applied {self._log.applied})"
            )
        validate_change(self._conf, change)
        data = encode_change_entry(change, apply_change(self._conf, change))
        index = self._append_entries((EntryType.CONF_CHANGE, data))
        self._pending_conf_index = index
        self._bcast_append()
        return index

    def read_index(self, request_ctx: bytes) -> None:
        """Request a linearizable read point (thesis §6.4); answered by a ReadState."""
        if not isinstance(request_ctx, bytes):
            raise InvalidArgumentError("read_index: request_ctx must be bytes")
        if len(request_ctx) > READ_CONTEXT_BYTES_MAX:
            raise InvalidArgumentError(
                f"read_index: request_ctx is {len(request_ctx)} bytes, max {READ_CONTEXT_BYTES_MAX}"
            )
        if self.role is Role.LEADER:
            if len(self._reads) + len(self._deferred_reads) >= READ_REQUESTS_PENDING_MAX:
                raise ProposalDroppedError("read-backlog", f"{READ_REQUESTS_PENDING_MAX} pending")
            self._leader_read(self.id, request_ctx)
            return
        if self.lead == 0:
            raise NotLeaderError(0)
        self._send(MessageType.READ_INDEX, self.lead, context=request_ctx)

    def transfer_leadership(self, target_id: int) -> None:
        """Hand leadership to ``target_id`` (thesis §3.10)."""
        check_node_id("transfer target", target_id)
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if target_id == self.id:
            return
        if target_id not in self._conf.voters:
            raise InvalidArgumentError(f"transfer target {target_id} is not a voter")
        if self._lead_transferee == target_id:
            return
        self._lead_transferee = target_id
        # The transfer aborts after one election timeout (thesis §3.10).
        self._election_elapsed = 0
        if self._progress[target_id].match == self._log.last_index():
            self._send_timeout_now(target_id)
        else:
            self._maybe_send_append(target_id)

    def compact(self, index: int, snapshot_data: bytes) -> Snapshot:
        """Drop the log up to ``index`` (<= applied), replacing it by a snapshot."""
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            raise InvalidArgumentError(f"compact: index must be an int >= 1, got {index!r}")
        if not isinstance(snapshot_data, bytes):
            raise InvalidArgumentError("compact: snapshot_data must be bytes")
        if index <= self._log.offset:
            # etcd: ErrCompacted / ErrSnapOutOfDate.
            raise SnapshotOutOfDateError(
                f"compact: index {index} is not past the current snapshot {self._log.offset}"
            )
        if index > self._log.applied:
            raise InvalidArgumentError(
                f"compact: index {index} is beyond the applied index {self._log.applied}"
            )
        term = self._log.term(index)
        if term is None:
            raise InvariantError(f"compact: no term for held index {index}")
        conf = self._conf_at(index)
        snapshot = Snapshot(SnapshotMeta(index=index, term=term, conf_state=conf), snapshot_data)
        self._log.compact(snapshot)
        self._conf_history = [(index, conf)] + [h for h in self._conf_history if h[0] > index]
        return snapshot

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to deliver to ``node_id``: stop streaming, probe instead."""
        check_node_id("report_unreachable node_id", node_id)
        pr = self._progress.get(node_id)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The runtime finished (``ok``) or failed sending a snapshot to ``node_id``."""
        check_node_id("report_snapshot node_id", node_id)
        if not isinstance(ok, bool):
            raise InvalidArgumentError("report_snapshot: ok must be a bool")
        pr = self._progress.get(node_id)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the next heartbeat response before probing (etcd: MsgSnapStatus).
        pr.msg_app_flow_paused = True

    # -- Ready / advance ---------------------------------------------------------

    def _soft_state(self) -> SoftState:
        prev = self._prev_soft
        if self.lead == prev.leader_id and self.role is prev.role:
            return prev  # unchanged: the value already handed out (immutable)
        return SoftState(leader_id=self.lead, role=self.role)

    def _hard_state(self) -> HardState:
        prev = self._prev_hard
        if self.term == prev.term and self.vote == prev.vote and self._log.committed == prev.commit:
            return prev  # unchanged: no new value to build and validate
        return HardState(term=self.term, vote=self.vote, commit=self._log.committed)

    def _committed_to_apply(self) -> tuple[Entry, ...]:
        lo = self._log.applied + 1
        if self._log.unstable_snapshot is not None:
            lo = max(lo, self._log.unstable_snapshot.meta.index + 1)
        hi = min(self._log.committed + 1, lo + COMMITTED_ENTRIES_PER_READY_MAX)
        return self._log.slice(lo, hi)

    def has_ready(self) -> bool:
        """True when ready() has something to hand out (False while one is outstanding)."""
        if self._outstanding is not None:
            return False
        # Field by field rather than building a SoftState and a HardState: this
        # is asked after every input, and the answer is usually False.
        log = self._log
        soft = self._prev_soft
        hard = self._prev_hard
        return bool(
            self._msgs
            or self._read_states
            or self.lead != soft.leader_id
            or self.role is not soft.role
            or self.term != hard.term
            or self.vote != hard.vote
            or log.committed != hard.commit
            or log.unstable_snapshot is not None
            or log.unstable_from <= log.last_index()
            or log.committed > log.applied
            or self._read_heartbeat_due
        )

    def ready(self) -> Ready:
        """Collect the work for the runtime; call advance() with the result before the next."""
        if self._outstanding is not None:
            raise ReadyContractError("ready() called again before advance() of the previous")
        if self._read_heartbeat_due:
            self._read_heartbeat_due = False
            if self.role is Role.LEADER and self._reads:
                self._bcast_heartbeat()
                self._read_round_seq = self._read_seq
        soft = self._soft_state()
        hard = self._hard_state()
        entries = self._log.unstable_entries()
        snapshot = self._log.unstable_snapshot
        must_sync = (
            bool(entries)
            or snapshot is not None
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote
        )
        early, late = self._split_early(hard)
        rd = Ready(
            # _soft_state() and _hard_state() hand back the previous value itself
            # when nothing changed, so identity is equality here.
            soft_state=soft if soft is not self._prev_soft else None,
            hard_state=hard if hard is not self._prev_hard else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=self._committed_to_apply(),
            early_messages=early,
            messages=late,
            read_states=tuple(self._read_states),
            must_sync=must_sync,
        )
        self._msgs = []
        self._read_states = []
        self._outstanding = rd
        return rd

    def _split_early(self, hard: HardState) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
        """(messages that may leave before this Ready is persisted, the rest).

        A leader's appends and heartbeats promise nothing about its own disk,
        so they may go while it fsyncs the same entries (Raft thesis
        §10.2.1), provided its term and vote are already durable: a leader
        must not speak for a term it could forget it voted in.
        """
        msgs = tuple(self._msgs)
        if (
            self.role is not Role.LEADER
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote
        ):
            return (), msgs
        early = tuple([m for m in msgs if m.type in _EARLY_TYPES])
        if not early:
            return (), msgs
        return early, tuple([m for m in msgs if m.type not in _EARLY_TYPES])

    def advance(self, ready: Ready) -> None:
        """The runtime persisted, sent and applied ``ready`` (the last one handed out)."""
        if self._outstanding is None or ready is not self._outstanding:
            raise ReadyContractError("advance() needs the Ready returned by the last ready()")
        self._outstanding = None
        self._log.release_dropped(DROPPED_ENTRIES_FREED_PER_ADVANCE)
        if ready.soft_state is not None:
            self._prev_soft = ready.soft_state
        if ready.hard_state is not None:
            self._prev_hard = ready.hard_state
        if ready.snapshot is not None:
            index = ready.snapshot.meta.index
            self._log.stable_snapshot_to(index)
            if index > self._log.applied:
                self._log.applied_to(index)
        if ready.entries:
            last = ready.entries[-1]
            self._log.stable_to(last.index, last.term)
            own = self._progress.get(self.id)
            if self.role is Role.LEADER and own is not None:
                own.maybe_update(self._log.stable_last_index())
                if self._maybe_commit():
                    # Followers answer forwarded writes when they apply, so
                    # they hear of the commit now, not at the next heartbeat.
                    self._bcast_append()
        if ready.committed_entries:
            last_index = ready.committed_entries[-1].index
            if last_index > self._log.applied:
                self._log.applied_to(last_index)
            for entry in ready.committed_entries:
                if entry.type is EntryType.CONF_CHANGE:
                    self._apply_conf_change_entry(entry)

    # -- invariants ----------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise InvariantError if internal state is inconsistent (cheap; call often)."""
        if self._violation is not None:
            raise InvariantError(self._violation)
        log = self._log
        log.check()
        if log.unstable_snapshot is None and log.applied < log.offset:
            raise InvariantError(f"applied {log.applied} behind snapshot {log.offset}")
        if self.term < self._checked_term:
            raise InvariantError(f"term went back from {self._checked_term} to {self.term}")
        if log.committed < self._checked_commit:
            raise InvariantError(f"commit went back from {self._checked_commit} to {log.committed}")
        self._checked_term = self.term
        self._checked_commit = log.committed
        conf = self._conf
        if conf is not self._members_conf:
            # The member set is worked out once per configuration, not per call.
            self._members_conf = conf
            self._members = conf.voters | conf.learners | conf.voters_outgoing
        members = self._members
        if self._progress.keys() != members:
            raise InvariantError(
                f"progress tracks {sorted(self._progress)} but members are {sorted(members)}"
            )
        if self.role in (Role.CANDIDATE, Role.LEADER) and self.vote != self.id:
            raise InvariantError(f"{self.role.name} {self.id} did not vote for itself")
        if self.role is not Role.LEADER:
            if self.lead == self.id:
                raise InvariantError(f"{self.role.name} {self.id} names itself leader")
            return
        if self.lead != self.id:
            raise InvariantError(f"leader {self.id} names {self.lead} as leader")
        own = self._progress.get(self.id)
        if own is not None and own.match != log.stable_last_index():
            raise InvariantError("leader's own progress does not match its persisted index")
        last_index = log.last_index()
        for node_id, pr in self._progress.items():
            pr.check(node_id, last_index)
        # A commit at or below the floor is allowed whatever the quorum holds,
        # so the quorum is only worked out when it decides the outcome, and
        # then only counted; the quorum's index is computed for the message.
        if log.committed > self._leader_commit_floor and not self._quorum_holds(log.committed):
            match = {node_id: pr.match for node_id, pr in self._progress.items()}
            quorum_holds = committed_index(self._conf, match)
            if log.committed > quorum_holds:
                raise InvariantError(
                    f"leader committed {log.committed} but a quorum holds only {quorum_holds}"
                )
        if self._pending_conf_index > last_index:
            raise InvariantError("pending conf index beyond the log")
        if self._uncommitted_bytes < 0:
            raise InvariantError("negative uncommitted bytes")

    def _quorum_holds(self, index: int) -> bool:
        """Whether a majority of the voters (of both halves, in a joint
        configuration) hold ``index``: ``committed_index() >= index``, counted."""
        progress = self._progress
        conf = self._conf
        halves = (conf.voters, conf.voters_outgoing) if conf.voters_outgoing else (conf.voters,)
        for voters in halves:
            held = 0
            for node_id in voters:
                pr = progress.get(node_id)
                if pr is not None and pr.match >= index:
                    held += 1
            if held <= len(voters) // 2:
                return False
        return True

    # -- roles -------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        et = self._cfg.election_timeout_ticks
        # Raft §5.2: randomized timeouts split votes rarely.
        self._randomized_election_timeout = self._rng.randrange(et, 2 * et)
        self._lead_transferee = 0
        self._votes = {}
        last = self._log.last_index()
        for node_id, pr in self._progress.items():
            fresh = Progress(
                last + 1, self._cfg.max_inflight_messages, self._cfg.max_inflight_bytes
            )
            fresh.is_learner = pr.is_learner
            if node_id == self.id:
                # A leader counts itself only for what it has persisted.
                fresh.match = self._log.stable_last_index()
            self._progress[node_id] = fresh
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._lease_stamps = {}
        self._lease_revoked = False
        self._read_acks = {}
        self._read_round_seq = 0
        self._reads.clear()
        self._deferred_reads.clear()

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote (thesis §9.6).
        self._votes = {}
        self.lead = 0
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        own = self._progress.get(self.id)
        if own is not None:
            own.become_replicate()
            own.recent_active = True
        self._leader_commit_floor = self._log.committed
        # Everything up to here may hold an unapplied change of an earlier term.
        self._pending_conf_index = self._log.last_index()
        # Raft §5.4.2 / §8: an entry of the new term lets older ones commit.
        self._append_entries((EntryType.NORMAL, b""))

    def _promotable(self) -> bool:
        return self.id in all_voters(self._conf)

    def _has_unapplied_conf_change(self) -> bool:
        lo = max(self._conf_applied_index, self._log.applied) + 1
        return any(
            e.type is EntryType.CONF_CHANGE for e in self._log.slice(lo, self._log.committed + 1)
        )

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self._promotable():
            return
        if self._has_unapplied_conf_change():
            # etcd: "cannot campaign ... since there are still pending configuration changes".
            return
        if self._cfg.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            request, term = MessageType.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            request, term = MessageType.VOTE, self.term
        if self._record_vote(self.id, granted=True):
            return
        context = CAMPAIGN_TRANSFER_CONTEXT if transfer else b""
        for node_id in sorted(all_voters(self._conf)):
            if node_id == self.id:
                continue
            self._send(
                request,
                node_id,
                term=term,
                index=self._log.last_index(),
                log_term=self._log.last_term(),
                context=context,
            )

    def _record_vote(self, node_id: int, *, granted: bool) -> bool:
        """Count a (pre-)vote; True when the election was decided by it."""
        self._votes.setdefault(node_id, granted)
        result = vote_result(self._conf, self._votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
                self._bcast_append()
            return True
        if result is VoteResult.LOST:
            self._become_follower(self.term, 0)
            return True
        return False

    # -- ticks -------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_election_timeout:
            self._election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self._tick_snapshots()
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._cfg.election_timeout_ticks:
            self._election_elapsed = 0
            if self._cfg.check_quorum and not self._quorum_active():
                # Thesis §6.2: a leader cut off from a quorum steps down.
                self._become_follower(self.term, 0)
                return
            # Thesis §3.10: a transfer that did not finish in an election timeout aborts.
            self._lead_transferee = 0
        if self._heartbeat_elapsed >= self._cfg.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _tick_snapshots(self) -> None:
        limit = SNAPSHOT_TIMEOUT_ELECTION_TIMEOUTS * self._cfg.election_timeout_ticks
        for pr in self._progress.values():
            if pr.state is not ProgressState.SNAPSHOT:
                continue
            pr.snapshot_elapsed_ticks += 1
            if pr.snapshot_elapsed_ticks >= limit:
                pr.pending_snapshot = 0
                pr.become_probe()

    def _quorum_active(self) -> bool:
        active = [n for n, pr in self._progress.items() if n == self.id or pr.recent_active]
        for node_id, pr in self._progress.items():
            pr.recent_active = node_id == self.id
        return is_quorum(self._conf, active)

    # -- step by term ---------------------------------------------------------------

    def _in_lease(self) -> bool:
        # Leader stickiness (thesis §4.2.3): we heard from a live leader recently.
        if self._restart_quiet_ticks:
            return True
        return (
            self._cfg.check_quorum
            and self.lead != 0
            and self._election_elapsed < self._cfg.election_timeout_ticks
        )

    def _step_higher_term(self, msg: Message) -> bool:
        """Adopt a higher term where the rules say so; False to drop ``msg``."""
        if msg.type in (MessageType.PRE_VOTE, MessageType.VOTE):
            forced = msg.context == CAMPAIGN_TRANSFER_CONTEXT
            if not forced and self._in_lease():
                return False
        if msg.type is MessageType.PRE_VOTE:
            # A pre-vote never changes our term (thesis §9.6).
            return True
        if msg.type is MessageType.PRE_VOTE_RESP and not msg.reject:
            # Granted pre-votes carry the future term; we bump it when we win.
            return True
        if msg.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            self._become_follower(msg.term, msg.from_id)
        else:
            self._become_follower(msg.term, 0)
        return True

    def _step_lower_term(self, msg: Message) -> None:
        if msg.type in (MessageType.APPEND, MessageType.HEARTBEAT) and (
            self._cfg.check_quorum or self._cfg.pre_vote
        ):
            # A stale leader cut off by pre-vote/check-quorum would never learn the new
            # term otherwise (etcd: respond so it steps down).
            self._send(MessageType.APPEND_RESP, msg.from_id)
        elif msg.type is MessageType.PRE_VOTE:
            self._send(MessageType.PRE_VOTE_RESP, msg.from_id, reject=True)

    def _handle_vote_request(self, msg: Message) -> None:
        pre = msg.type is MessageType.PRE_VOTE
        response = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        can_vote = (
            self.vote == msg.from_id
            or (self.vote == 0 and self.lead == 0)
            or (pre and msg.term > self.term)
        )
        # Raft §5.4.1: only a candidate whose log is at least as up to date.
        if can_vote and self._log.is_up_to_date(msg.index, msg.log_term):
            self._send(response, msg.from_id, term=msg.term)
            if not pre:
                self._election_elapsed = 0
                self.vote = msg.from_id
        else:
            self._send(response, msg.from_id, reject=True)

    # -- step by role ---------------------------------------------------------------

    def _step_follower(self, msg: Message) -> None:
        kind = msg.type
        if kind in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            self._election_elapsed = 0
            self.lead = msg.from_id
            if kind is MessageType.APPEND:
                self._handle_append(msg)
            elif kind is MessageType.HEARTBEAT:
                self._handle_heartbeat(msg)
            else:
                self._handle_snapshot(msg)
        elif kind is MessageType.TIMEOUT_NOW:
            # Thesis §3.10: campaign at once, skipping pre-vote and stickiness.
            self._hup(transfer=True)
        elif kind is MessageType.READ_INDEX_RESP:
            self._read_states.append(ReadState(index=msg.index, request_ctx=msg.context))

    def _step_candidate(self, msg: Message) -> None:
        kind = msg.type
        if kind in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
            # A leader of our term exists (Raft §5.2).
            self._become_follower(msg.term, msg.from_id)
            self._step_follower(msg)
            return
        expected = (
            MessageType.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        )
        if kind is expected:
            self._record_vote(msg.from_id, granted=not msg.reject)

    def _step_leader(self, msg: Message) -> None:
        kind = msg.type
        if kind is MessageType.READ_INDEX:
            if len(self._reads) + len(self._deferred_reads) < READ_REQUESTS_PENDING_MAX:
                self._leader_read(msg.from_id, msg.context)
            return
        pr = self._progress.get(msg.from_id)
        if pr is None:
            return
        if kind is MessageType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_response(msg, pr)
        elif kind is MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            self._handle_heartbeat_response(msg, pr)

    # -- follower handlers ----------------------------------------------------------

    def _conflicts_with_committed(self, msg: Message) -> str | None:
        """Describe how ``msg`` contradicts our committed prefix, if it does.

        Leader Completeness (Raft §5.4) puts every committed entry, with its term, in
        the log of every later leader; a leader of our term claiming another term at
        a committed index proves that some node broke safety.
        """
        log = self._log
        claims = [(msg.index, msg.log_term)] + [(e.index, e.term) for e in msg.entries]
        for index, term in claims:
            if index > log.committed:
                break
            held = log.term(index)
            if held is not None and index > 0 and held != term:
                return f"index {index} committed with term {held}, leader claims term {term}"
        return None

    def _handle_append(self, msg: Message) -> None:
        log = self._log
        conflict = self._conflicts_with_committed(msg)
        if conflict is not None:
            self._violation = (
                f"node {self.id}: APPEND from {msg.from_id} at term {msg.term}: {conflict}"
            )
            return
        if msg.index < log.committed:
            self._send(MessageType.APPEND_RESP, msg.from_id, index=log.committed)
            return
        try:
            last_new = log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        except InvariantError as exc:
            # Committed entries never change (Raft §5.4, Leader Completeness); a message
            # that rewrites them proves a safety violation somewhere in the cluster.
            self._violation = f"node {self.id}: APPEND from {msg.from_id} at term {msg.term}: {exc}"
            return
        if last_new is not None:
            self._send(MessageType.APPEND_RESP, msg.from_id, index=last_new)
            return
        # Fast back-off (thesis §5.3 / etcd findConflictByTerm): point the leader at the
        # last index that could match, skipping our entries of terms above its prev term.
        hint_index = log.find_conflict_by_term(min(msg.index, log.last_index()), msg.log_term)
        hint_term = log.term(hint_index) or 0
        self._send(
            MessageType.APPEND_RESP,
            msg.from_id,
            index=msg.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, msg: Message) -> None:
        self._log.commit_to(min(msg.commit, self._log.last_index()))
        self._send(MessageType.HEARTBEAT_RESP, msg.from_id, index=msg.index, context=msg.context)

    def _handle_snapshot(self, msg: Message) -> None:
        assert msg.snapshot is not None  # validated by Message
        if self._restore(msg.snapshot):
            self._send(MessageType.APPEND_RESP, msg.from_id, index=self._log.last_index())
        else:
            self._send(MessageType.APPEND_RESP, msg.from_id, index=self._log.committed)

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.meta
        if meta.index <= self._log.committed:
            return False
        if self._log.match_term(meta.index, meta.term):
            # We already hold the snapshot's last entry: just learn it is committed.
            self._log.commit_to(meta.index)
            return False
        self._log.restore(snapshot)
        self._conf = meta.conf_state
        self._conf_history = [(meta.index, meta.conf_state)]
        self._conf_applied_index = meta.index
        self._sync_progress_with_conf()
        return True

    # -- leader handlers ------------------------------------------------------------

    def _handle_append_response(self, msg: Message, pr: Progress) -> None:
        if msg.reject:
            hint = msg.reject_hint
            if msg.log_term > 0:
                hint = self._log.find_conflict_by_term(msg.reject_hint, msg.log_term)
            if pr.maybe_decrease_to(msg.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(msg.from_id)
            return
        if msg.index > self._log.last_index():
            return  # acknowledges entries we never had: not from a sound follower
        was_paused = pr.is_paused()
        if not pr.maybe_update(msg.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self._log.first_index():
            # The snapshot (or a later append) caught it up: replicate from match.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(msg.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._maybe_send_append(msg.from_id)
        for _ in range(APPENDS_PER_BURST_MAX):
            if not self._maybe_send_append(msg.from_id, send_if_empty=False):
                break
        if msg.from_id == self._lead_transferee and pr.match == self._log.last_index():
            self._send_timeout_now(msg.from_id)

    def _handle_heartbeat_response(self, msg: Message, pr: Progress) -> None:
        pr.msg_app_flow_paused = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            # Lost APPENDs would otherwise stall a full window forever.
            pr.inflights.free_first_one()
        if pr.match < self._log.last_index() or pr.state is ProgressState.PROBE:
            self._maybe_send_append(msg.from_id)
        if 0 < msg.index <= self._clock_ticks:
            self._lease_stamps[msg.from_id] = max(self._lease_stamps.get(msg.from_id, 0), msg.index)
        seq = int.from_bytes(msg.context, "big") if len(msg.context) == READ_SEQ_BYTES else 0
        if 0 < seq <= self._read_seq:
            self._read_acks[msg.from_id] = max(self._read_acks.get(msg.from_id, 0), seq)
            self._release_reads()

    # -- replication -----------------------------------------------------------------

    def _check_can_propose(self, size_bytes: int) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)
        if self.id not in self._progress:
            raise ProposalDroppedError("removed", f"node {self.id} is no longer a member")
        if self._lead_transferee:
            raise ProposalDroppedError(
                "transferring", f"leadership is moving to {self._lead_transferee}"
            )
        limit = self._cfg.max_uncommitted_bytes
        if size_bytes > limit:
            raise ProposalDroppedError("too-large", f"{size_bytes} bytes > {limit}")
        if self._uncommitted_bytes > 0 and self._uncommitted_bytes + size_bytes > limit:
            raise ProposalDroppedError(
                "uncommitted-bytes",
                f"{self._uncommitted_bytes} uncommitted + {size_bytes} > {limit}",
            )

    def _append_entries(self, *items: tuple[EntryType, bytes]) -> int:
        start = self._log.last_index() + 1
        entries = tuple(
            Entry(term=self.term, index=start + i, type=kind, data=data)
            for i, (kind, data) in enumerate(items)
        )
        last = self._log.append(entries)
        self._uncommitted_bytes += sum(e.size_bytes() for e in entries)
        # The leader's own match moves in advance(), once these are persisted:
        # its appends may leave before its fsync ends (Raft thesis §10.2.1),
        # so counting itself now could commit an entry only one member holds.
        return last

    def _maybe_commit(self) -> bool:
        match = {node_id: pr.match for node_id, pr in self._progress.items()}
        candidate = committed_index(self._conf, match)
        old = self._log.committed
        if candidate <= old:
            return False
        if "old-term-commit" in self._cfg.planted_bugs:
            # Negative control: count replicas for any term, violating Raft §5.4.2.
            changed = self._log.commit_to(candidate)
        else:
            # Raft §5.4.2: only entries of the current term commit by counting replicas.
            changed = self._log.maybe_commit(candidate, self.term)
        if changed:
            self._on_leader_commit(old)
        return changed

    def _on_leader_commit(self, old_commit: int) -> None:
        newly = self._log.slice(old_commit + 1, self._log.committed + 1)
        released = sum(e.size_bytes() for e in newly if e.term == self.term)
        self._uncommitted_bytes = max(0, self._uncommitted_bytes - released)
        if self._committed_in_term():
            while self._deferred_reads:
                from_id, ctx = self._deferred_reads.popleft()
                self._leader_read(from_id, ctx)

    def _committed_in_term(self) -> bool:
        return self._log.term(self._log.committed) == self.term

    def _bcast_append(self) -> None:
        for node_id in sorted(self._progress):
            if node_id != self.id:
                self._maybe_send_append(node_id)

    def _maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self._progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self._log.term(prev_index)
        if prev_term is None:
            return self._maybe_send_snapshot(to, pr)
        entries = self._log.slice(
            pr.next,
            self._log.last_index() + 1,
            self._cfg.max_bytes_per_message,
            self._cfg.max_entries_per_message,
        )
        if not entries and not send_if_empty:
            return False
        self._send(
            MessageType.APPEND,
            to,
            index=prev_index,
            log_term=prev_term,
            entries=entries,
            commit=self._log.committed,
        )
        pr.sent_entries(
            # Entry.size_bytes() summed without a call per entry: this runs per APPEND.
            entries[-1].index if entries else None,
            sum([len(e.data) for e in entries]),
        )
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            # etcd: do not ship a snapshot to a peer we have not heard from.
            return False
        snapshot = self._log.snapshot
        if snapshot is None:
            raise InvariantError(f"entries before {self._log.first_index()} gone without snapshot")
        pr.become_snapshot(snapshot.meta.index)
        self._send(
            MessageType.SNAPSHOT,
            to,
            index=snapshot.meta.index,
            log_term=snapshot.meta.term,
            snapshot=snapshot,
        )
        return True

    def _bcast_heartbeat(self) -> None:
        context = self._read_seq.to_bytes(READ_SEQ_BYTES, "big") if self._read_seq else b""
        for node_id in sorted(self._progress):
            if node_id == self.id:
                continue
            pr = self._progress[node_id]
            # Never tell a follower to commit past what it is known to hold.
            self._send(
                MessageType.HEARTBEAT,
                node_id,
                commit=min(pr.match, self._log.committed),
                index=self._clock_ticks,
                context=context,
            )

    def _send_timeout_now(self, to: int) -> None:
        # The target will campaign bypassing stickiness: our lease is void from now on.
        self._lease_revoked = True
        self._send(MessageType.TIMEOUT_NOW, to)

    # -- reads -------------------------------------------------------------------------

    def _leader_read(self, from_id: int, ctx: bytes) -> None:
        if not self._committed_in_term():
            # Thesis §6.4 step 1: until an entry of this term commits, our commit index
            # may lag the true one; wait for the election's empty entry.
            self._deferred_reads.append((from_id, ctx))
            return
        if self._lease_valid():
            self._answer_read(from_id, self._log.committed, ctx)
            return
        self._read_seq += 1
        self._reads.append(_ReadRequest(self._read_seq, self._log.committed, from_id, ctx))
        self._release_reads()

    def _release_reads(self) -> None:
        """Answer the reads a quorum's heartbeat acks confirm; if reads are
        left and no round is in flight, have the next Ready start one."""
        if not self._reads:
            # Nothing waits: the quorum below would release nothing, and a
            # round in flight has no one left to answer.
            self._read_round_seq = 0
            return
        acks = dict(self._read_acks)
        acks[self.id] = self._read_seq
        # A quorum answered a heartbeat sent after every request with seq <= confirmed
        # was registered: leadership was confirmed after they arrived (thesis §6.4).
        confirmed = committed_index(self._conf, acks)
        while self._reads and self._reads[0].seq <= confirmed:
            request = self._reads.popleft()
            self._answer_read(request.from_id, request.index, request.ctx)
        if self._read_round_seq <= confirmed:
            self._read_round_seq = 0
        if self._reads and not self._read_round_seq:
            self._read_heartbeat_due = True

    def _answer_read(self, from_id: int, index: int, ctx: bytes) -> None:
        if from_id == self.id:
            self._read_states.append(ReadState(index=index, request_ctx=ctx))
        else:
            self._send(MessageType.READ_INDEX_RESP, from_id, index=index, context=ctx)

    def _lease_valid(self) -> bool:
        if not self._cfg.lease_read or self._lead_transferee or self._lease_revoked:
            return False
        stamps = dict(self._lease_stamps)
        stamps[self.id] = self._clock_ticks
        # Followers reject votes for an election timeout after hearing from us
        # (stickiness), and the lease is strictly shorter (thesis §6.4.1).
        quorum_stamp = committed_index(self._conf, stamps)
        return quorum_stamp > 0 and quorum_stamp + self._lease_ticks > self._clock_ticks

    # -- membership --------------------------------------------------------------------

    def _sync_progress_with_conf(self) -> None:
        members = self._conf.voters | self._conf.learners | self._conf.voters_outgoing
        last = self._log.last_index()
        for node_id in list(self._progress):
            if node_id not in members:
                del self._progress[node_id]
        for node_id in sorted(members):
            pr = self._progress.get(node_id)
            if pr is None:
                pr = Progress(
                    last + 1, self._cfg.max_inflight_messages, self._cfg.max_inflight_bytes
                )
                # A new member has not had a chance to answer: do not count it as
                # silent at the next check-quorum (etcd does the same).
                pr.recent_active = True
                if node_id == self.id:
                    pr.match = last
                self._progress[node_id] = pr
            pr.is_learner = node_id in self._conf.learners

    def _conf_at(self, index: int) -> ConfState:
        conf = self._conf_history[0][1]
        for applied_at, candidate in self._conf_history:
            if applied_at <= index:
                conf = candidate
        return conf

    def _apply_conf_change_entry(self, entry: Entry) -> None:
        if entry.index <= self._conf_applied_index:
            return
        self._conf_applied_index = entry.index
        try:
            change, result = decode_change_entry(entry.data)
        except ConfChangeError:
            # Every member must treat a committed entry the same way; an undecodable
            # one (never proposed by a sound leader) is a no-op everywhere.
            return
        known = set(self._progress)
        self._conf = result if result is not None else apply_change(self._conf, change)
        self._conf_history.append((entry.index, self._conf))
        self._sync_progress_with_conf()
        if self.role is not Role.LEADER:
            return
        if self.id not in self._conf.voters:
            # A removed leader steps down once the change is applied (etcd:
            # stepDownOnRemoval); the rest elect a leader among themselves.
            self._become_follower(self.term, 0)
            return
        # What we committed was counted under the old quorum, which the new one may
        # not hold yet (a promoted learner far behind): restart the commit check here.
        self._leader_commit_floor = self._log.committed
        if self._lead_transferee and self._lead_transferee not in self._conf.voters:
            self._lead_transferee = 0
        # The quorum changed (commit may move); a new member should hear from us now
        # rather than at the next heartbeat.
        self._maybe_commit()
        for node_id in sorted(self._progress):
            if node_id != self.id:
                self._maybe_send_append(node_id, send_if_empty=node_id not in known)

    # -- outbox ------------------------------------------------------------------------

    def _send(
        self,
        kind: MessageType,
        to: int,
        *,
        term: int | None = None,
        index: int = 0,
        log_term: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        snapshot: Snapshot | None = None,
        context: bytes = b"",
    ) -> None:
        # Positional, in Message's field order: this runs once per peer message.
        self._msgs.append(
            Message(
                kind,
                self.id,
                to,
                self.term if term is None else term,
                log_term,
                index,
                entries,
                commit,
                reject,
                reject_hint,
                snapshot,
                context,
            )
        )
