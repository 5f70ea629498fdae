"""One member's Ready loop, apply and client entry points, behind ports.

The runtime honours the Ready contract of ``syndic.raft`` (etcd's order):

1. :meth:`MemberRuntime.flush` proposes the cycle's outbox as one batch (or
   forwards it to the leader), so everything proposed while the last fsync
   ran shares the next one (group commit);
2. :meth:`MemberRuntime.begin` takes a Ready's soft state and sends the
   leader's early appends, which may leave while its own disk writes them;
3. the driver persists the Ready (snapshot file, then entries and hard
   state, then one fsync) and installs a received snapshot into the state;
4. :meth:`MemberRuntime.finish` sends the messages, applies the committed
   entries (finishing this member's proposals), confirms read states, calls
   ``advance`` and serves the reads whose index is now applied.

The runtime never waits: a driver (``syndic.server.node`` on asyncio,
``syndic.sim.cluster`` on virtual time) runs the loop, the disk and the
timers, and finishes its callers through :class:`~syndic.member.ports.Completion`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syndic.kv.messages import TxnRequest
from syndic.member.leases import LeaderLeases
from syndic.member.membership import Membership
from syndic.member.ports import Clock, Completion, PeerPort
from syndic.member.proposals import ProposalLimits, Proposals, StageRecorder
from syndic.member.reads import Reads
from syndic.member.snapshots import SnapshotSchedule
from syndic.raft import (
    Entry,
    EntryType,
    Message,
    NotLeaderError,
    RaftError,
    RaftNode,
    Ready,
    Role,
    SoftState,
)
from syndic.server import backend as errors
from syndic.server.entry_codec import DecodedEntry, EntryCodecError, EntryKind, decode_entry
from syndic.server.state_machine import DecodedState, StateMachine

# Planted bug (syndic.sim.buggify): a blind write is answered once it is in
# the leader's log, before it is durable on a quorum.
ACK_BEFORE_FSYNC = "ack-before-fsync"
STALE_LEADER_READ = "stale-leader-read"

# Called after each committed entry is applied: the entry, what it decoded
# to (None for a conf change or an empty entry) and what applying returned.
ApplyObserver = Callable[[Entry, DecodedEntry | None, Any], None]


class UndecodableEntryError(RuntimeError):
    """A committed entry this member cannot decode: applying past it would let
    this member's state drift from the others', so the member stops (etcd
    panics). The message names the entry's index."""


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    proposals: ProposalLimits = field(default_factory=ProposalLimits)
    # Linearizable reads waiting for their ReadIndex round.
    reads_pending_max: int = 10_000
    # Entries applied between snapshots (etcd: --snapshot-count).
    snapshot_every_entries: int = 100_000
    # How long a caller waits before "request timed out".
    request_timeout_ms: int = 7_000


class MemberRuntime:
    """A member whose log is recovered: complete once built."""

    def __init__(
        self,
        member_id: int,
        raft: RaftNode,
        state: StateMachine,
        peers: PeerPort,
        clock: Clock,
        limits: RuntimeLimits,
        snapshot_index: int,
        *,
        id_base: int = 1,
        decode: Callable[[bytes], DecodedEntry] = decode_entry,
        planted_bugs: frozenset[str] = frozenset(),
    ) -> None:
        self.id = member_id
        self.raft = raft
        self.state = state
        self.peers = peers
        self.clock = clock
        self.limits = limits
        # Request ids and read contexts: an entry this member proposed before
        # a restart may apply after it, and a ReadIndex answer may arrive
        # after it, so a new runtime must not reuse its predecessor's ids
        # (etcd's idutil.Generator starts from the clock for the same reason).
        self._ids = itertools.count(id_base)
        self.proposals = Proposals(member_id, limits.proposals, self._ids)
        self.reads = Reads(limits.reads_pending_max, planted_bugs)
        self.leases = LeaderLeases()
        self.membership = Membership(member_id)
        self.snapshots = SnapshotSchedule(limits.snapshot_every_entries, snapshot_index)
        self.leader_id = 0
        self.observer: ApplyObserver | None = None
        self._decode = decode
        self._ack_before_fsync = ACK_BEFORE_FSYNC in planted_bugs
        self._stale_leader_read = STALE_LEADER_READ in planted_bugs
        self._index_waiters: list[tuple[int, Completion]] = []

    # ------------------------------------------------------------ queries

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    def deadline_ms(self) -> int:
        return self.clock() + self.limits.request_timeout_ms

    # ------------------------------------------------------------ client entry points

    def propose(
        self,
        kind: EntryKind,
        payload: Any,
        completion: Completion,
        trace: StageRecorder | None = None,
    ) -> int:
        """Queue an entry for the next cycle; ``completion`` gets what applying
        it returned on this member, ``trace`` (if any) its stages. Its request
        id (to :meth:`Proposals.discard` if the caller leaves). Raises the etcd
        error and changes nothing when it is refused."""
        raft = self.raft
        request_id = self.proposals.add(
            kind,
            payload,
            completion,
            self.deadline_ms(),
            raft.commit_index - raft.applied_index,
            trace,
        )
        blind = kind is EntryKind.STORE and not isinstance(payload, TxnRequest)
        if self._ack_before_fsync and blind and self.is_leader:
            # Planted bug: a blind write is acknowledged once it is queued.
            self.proposals.complete(request_id, None)
        return request_id

    def read(self, completion: Completion) -> bytes:
        """Start a ReadIndex round; ``completion`` gets None once this member
        may serve the read. Its context (to :meth:`Reads.discard`)."""
        ctx = next(self._ids).to_bytes(8, "big")
        if self._stale_leader_read and self.is_leader:
            # Planted bug: trust the belief of leadership instead of confirming it.
            completion.set_result(None)
            return ctx
        self.reads.add(ctx, completion, self.deadline_ms())
        try:
            self.raft.read_index(ctx)
        except NotLeaderError as exc:
            self.reads.discard(ctx)
            raise errors.not_leader() from exc
        return ctx

    def wait_applied(self, index: int, completion: Completion) -> None:
        """``completion`` gets None once this member applied ``index``."""
        if self.raft.applied_index >= index:
            completion.set_result(None)
            return
        self._index_waiters.append((index, completion))

    def renew_leases(self, lease_ids: list[int]) -> list[int]:
        """Keep-alives on this leader, in memory (no log entry, no fsync)."""
        store = self.state.store
        now_ms = self.clock()
        # Raft may have made this member leader in a step the driver has not
        # handled yet; the lessor follows at once.
        self.leases.sync_role(store, self.is_leader, now_ms)
        return self.leases.renew(store, lease_ids, now_ms)

    def fail_expired(self) -> int:
        """Fail proposals and reads past the request timeout; how many proposals."""
        now_ms = self.clock()
        self.reads.fail_expired(now_ms)
        return self.proposals.fail_expired(now_ms)

    def fail_all(self, error: BaseException) -> None:
        self.proposals.fail_all(error)
        self.reads.fail_all(error)
        for _, completion in self._index_waiters:
            if not completion.done():
                completion.set_exception(error)
        self._index_waiters.clear()

    # ------------------------------------------------------------ inputs

    def step(self, messages: list[Message]) -> list[tuple[Message, RaftError]]:
        """Feed peer messages to the core; those it refused, with why."""
        dropped = []
        for msg in messages:
            try:
                self.raft.step(msg)
            except RaftError as exc:
                dropped.append((msg, exc))
        return dropped

    def tick(self) -> list[int]:
        """One clock tick; on the leader, the leases now due for revocation."""
        self.raft.tick()
        if not self.is_leader:
            return []
        return self.leases.due(self.state.store, self.clock())

    def propose_forwarded(self, proposals: list[bytes]) -> int:
        """Propose entries a follower forwarded (the follower answers its caller
        when it applies them); how many were refused as undecodable. Raises
        RaftError if the rest cannot go."""
        # Every member must be able to apply what is committed (an entry it
        # cannot decode stops it), so entry data from a peer is checked
        # before it enters the log, not after.
        sound = [data for data in proposals if _decodes(self._decode, data)]
        if sound:
            self.raft.propose_batch(sound)
        return len(proposals) - len(sound)

    # ------------------------------------------------------------ Ready loop

    def flush(self) -> int:
        """Propose this cycle's outbox (step 1); how many proposals failed."""
        return self.proposals.flush(self.raft, self.leader_id, self.peers)

    def has_work(self) -> bool:
        return self.proposals.outbox_waiting or self.raft.has_ready()

    def begin(self, ready: Ready) -> SoftState | None:
        """Step 2: the soft state (returned when leader or role changed), and
        the early appends sent."""
        changed = None
        soft = ready.soft_state
        if soft is not None:
            changed = soft
            self.leader_id = soft.leader_id
            self.leases.sync_role(self.state.store, soft.role is Role.LEADER, self.clock())
        if ready.early_messages:
            self.peers.send(ready.early_messages)
        return changed

    def install_snapshot(self, decoded: DecodedState, index: int) -> None:
        """Step 3's last part: a snapshot received from the leader replaces the state."""
        self.state.install(decoded)
        self.snapshots.taken(index)
        self.membership.peers_dirty = True

    def finish(self, ready: Ready, *, sent: bool = False) -> None:
        """Step 4, once the Ready is durable. ``sent``: the driver already sent
        its messages (a planted bug)."""
        if not sent:
            self.peers.send(ready.messages)
        if ready.committed_entries:
            self.proposals.traced_stage("commit", ready.committed_entries)
            self.apply(ready.committed_entries)
        if ready.read_states:
            self.reads.confirm(ready.read_states)
        self.raft.advance(ready)
        applied = self.raft.applied_index
        self.reads.serve(applied)
        if self._index_waiters:
            self._wake_index_waiters(applied)

    def apply(self, entries: tuple[Entry, ...]) -> None:
        state, proposals, observer = self.state, self.proposals, self.observer
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE:
                self.membership.peers_dirty = True
                if observer is not None:
                    observer(entry, None, None)
                continue
            if not entry.data:
                if observer is not None:
                    observer(entry, None, None)
                continue
            decoded = proposals.take_decoded(entry.data)
            if decoded is None:
                decoded = self._decode_committed(entry)
            result = state.apply(decoded)
            if decoded.kind is EntryKind.MEMBER_ATTRS:
                self.membership.peers_dirty = True
            if decoded.proposer_id == self.id:
                proposals.complete(decoded.request_id, result, entry.index)
            if observer is not None:
                observer(entry, decoded, result)

    def _decode_committed(self, entry: Entry) -> DecodedEntry:
        try:
            return self._decode(entry.data)
        except (EntryCodecError, ValueError) as exc:
            # Skipping it would apply a different log than the other
            # members: stop here, naming the entry (etcd panics).
            raise UndecodableEntryError(
                f"committed entry {entry.index} (term {entry.term}) cannot be decoded: {exc}"
            ) from exc

    def _wake_index_waiters(self, applied: int) -> None:
        still = []
        for index, completion in self._index_waiters:
            if index > applied:
                still.append((index, completion))
            elif not completion.done():
                completion.set_result(None)
        self._index_waiters = still

    def retire(self) -> int:
        """The runtime is gone (its process stopped): the first id its
        successor may use."""
        return next(self._ids)

    def snapshot_due(self) -> bool:
        return self.snapshots.due(self.raft.applied_index)


def _decodes(decode: Callable[[bytes], DecodedEntry], data: bytes) -> bool:
    try:
        decode(data)
    except (EntryCodecError, ValueError):
        return False
    return True
