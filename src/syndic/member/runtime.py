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

import functools
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
from syndic.member.recent_requests import RecentRequests
from syndic.member.renewals import ForwardedRenewals
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
from syndic.server.entry_codec import (
    DecodedEntry,
    EntryCodecError,
    EntryKind,
    decode_entry,
    store_request,
)
from syndic.server.state_machine import DecodedState, StateMachine

# Planted bug (syndic.sim.buggify): a blind write is answered once it is in
# the leader's log, before it is durable on a quorum.
ACK_BEFORE_FSYNC = "ack-before-fsync"
STALE_LEADER_READ = "stale-leader-read"

# Called after each committed entry is applied: the entry, what it decoded
# to (None for a conf change or an empty entry) and what applying returned.
ApplyObserver = Callable[[Entry, DecodedEntry | None, Any], None]
# Called when this leader accepts a keep-alive: the lease id and this
# member's clock reading, from which the lease's TTL now runs.
RenewObserver = Callable[[int, int], None]


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
    # A follower's keep-alives waiting for the leader's answer, and its
    # batches of them on the way at once: one, as the server's requests to
    # the leader share one connection and go one after the other, so what
    # arrives meanwhile makes the next batch (a thousand leases fit in one).
    renewals_pending_max: int = 10_000
    renewal_batches_in_flight_max: int = 1


@dataclass(frozen=True, slots=True)
class ForwardedOutcome:
    """What a leader did with a forwarded batch: how many entries it
    proposed, refused as undecodable, and refused as copies of entries it
    proposed before (a forward delivered twice)."""

    proposed: int
    undecodable: int
    duplicates: int


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
        chance: Callable[[], float] | None = None,
    ) -> None:
        """``chance``: the driver's draws in [0, 1), which spread this
        member's snapshot thresholds (syndic.member.snapshots); without it
        every snapshot is due at the configured ones."""
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
        self.renewals = ForwardedRenewals(
            self._ids,
            pending_max=limits.renewals_pending_max,
            batches_in_flight_max=limits.renewal_batches_in_flight_max,
        )
        self.recent_forwarded = RecentRequests()
        self.membership = Membership(member_id)
        self.snapshots = SnapshotSchedule(
            limits.snapshot_every_entries, snapshot_index, draw=chance
        )
        self.leader_id = 0
        self.observer: ApplyObserver | None = None
        self.renew_observer: RenewObserver | None = None
        self._decode = decode
        self._ack_before_fsync = ACK_BEFORE_FSYNC in planted_bugs
        self._stale_leader_read = STALE_LEADER_READ in planted_bugs
        self._index_waiters: list[tuple[int, Completion]] = []

    # ------------------------------------------------------------ queries

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    @property
    def renews_leases(self) -> bool:
        """Whether this member renews keep-alives itself: it leads, and the
        driver has handled the Ready that said so (the lessor was promoted
        and the driver told, in :meth:`begin`)."""
        return self.raft.role is Role.LEADER and self.leader_id == self.id

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
        blind = kind is EntryKind.STORE and not isinstance(store_request(payload), TxnRequest)
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
        """Keep-alives on this leader, in memory (no log entry, no fsync):
        each lease's TTL in s, or -1 if unknown or expired here."""
        store = self.state.store
        now_ms = self.clock()
        # Raft may have made this member leader in a step the driver has not
        # handled yet; the lessor follows at once.
        self.leases.sync_role(store, self.is_leader, now_ms)
        ttls = self.leases.renew(store, lease_ids, now_ms)
        observer = self.renew_observer
        if observer is not None:
            for lease_id, ttl_s in zip(lease_ids, ttls, strict=True):
                if ttl_s >= 0:
                    observer(lease_id, now_ms)
        return ttls

    def keep_alive(self, lease_id: int, completion: Completion) -> None:
        """A caller's keep-alive: ``completion`` gets the lease's TTL in s, or
        -1 if the leader does not know it (etcd: lease not found). Renewed
        here when leading, else queued for the leader (the next cycle
        forwards the queue as one batch). Raises the etcd error and queues
        nothing when it is refused."""
        if self.renews_leases:
            self._renew_here([lease_id], _FirstTtl(completion))
            return
        self.renewals.add(lease_id, completion, self.deadline_ms())

    def renew_forwarded(self, lease_ids: list[int], completion: Completion) -> None:
        """Keep-alives a follower forwarded: ``completion`` gets one TTL per
        lease, in order. Raises etcd's "not leader" when this member does not
        lead (the follower asks the next leader)."""
        if not self.renews_leases:
            raise errors.not_leader()
        self._renew_here(lease_ids, completion)

    def _renew_here(self, lease_ids: list[int], completion: Completion) -> None:
        """Renew on this leader. A miss may be a grant this new leader has not
        applied yet, so misses are tried once more after a read barrier."""
        ttls = self.renew_leases(lease_ids)
        missed = [lease_id for lease_id, ttl in zip(lease_ids, ttls, strict=True) if ttl < 0]
        if not missed:
            completion.set_result(ttls)
            return
        self.read(_RenewAfterBarrier(self, lease_ids, ttls, missed, completion))

    def renewals_answered(self, batch_id: int, ttls: list[Any]) -> None:
        """The leader's answer to a forwarded batch of keep-alives."""
        self.renewals.answered(batch_id, ttls)

    def renewals_refused(self, batch_id: int, error: errors.ServerError | None) -> None:
        """A forwarded batch of keep-alives got ``error``, or no answer (None)."""
        self.renewals.refused(batch_id, error)

    def fail_expired(self) -> int:
        """Fail proposals, reads and keep-alives past the request timeout; how
        many proposals."""
        now_ms = self.clock()
        self.reads.fail_expired(now_ms)
        self.renewals.fail_expired(now_ms)
        return self.proposals.fail_expired(now_ms)

    def fail_all(self, error: BaseException) -> None:
        self.proposals.fail_all(error)
        self.reads.fail_all(error)
        self.renewals.fail_all(error)
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
        self.renewals.tick()
        if not self.is_leader:
            return []
        return self.leases.due(self.state.store, self.clock())

    def propose_forwarded(self, proposals: list[bytes]) -> ForwardedOutcome:
        """Propose entries a follower forwarded (the follower answers its caller
        when it applies them), each once: an entry whose request this leader
        proposed before is a copy of a forward delivered twice, and is
        dropped. Raises RaftError, and remembers nothing, if they cannot go."""
        recent = self.recent_forwarded
        sound: list[bytes] = []
        ids: list[tuple[int, int]] = []
        undecodable = 0
        for data in proposals:
            # Every member must be able to apply what is committed (an entry
            # it cannot decode stops it), so entry data from a peer is
            # checked before it enters the log, not after.
            try:
                decoded = self._decode(data)
            except (EntryCodecError, ValueError):
                undecodable += 1
                continue
            key = (decoded.proposer_id, decoded.request_id)
            if recent.seen(*key) or key in ids:
                continue
            sound.append(data)
            ids.append(key)
        if sound:
            self.raft.propose_batch(sound)
            for proposer_id, request_id in ids:
                recent.record(proposer_id, request_id)
        duplicates = len(proposals) - len(sound) - undecodable
        return ForwardedOutcome(len(sound), undecodable, duplicates)

    # ------------------------------------------------------------ Ready loop

    def flush(self) -> int:
        """Propose this cycle's outbox and send its keep-alives to the leader
        (step 1); how many proposals failed."""
        if self.renewals.ready_to_send:
            self._flush_renewals()
        return self.proposals.flush(self.raft, self.leader_id, self.peers)

    def _flush_renewals(self) -> None:
        if self.renews_leases:
            # Queued while following; this member now renews them itself.
            self.renewals.flush(self._renew_batch_here)
        elif not self.is_leader and self.leader_id and self.leader_id != self.id:
            self.renewals.flush(functools.partial(self.peers.forward_renewals, self.leader_id))

    def _renew_batch_here(self, batch_id: int, lease_ids: list[int]) -> bool:
        try:
            self._renew_here(lease_ids, _BatchAnswer(self.renewals, batch_id))
        except errors.ServerError as exc:
            self.renewals.refused(batch_id, exc)
        return True

    def has_work(self) -> bool:
        return (
            self.proposals.outbox_waiting
            or self.raft.has_ready()
            or (self.renewals.ready_to_send and bool(self.leader_id))
        )

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
        applied_bytes = 0
        for entry in entries:
            applied_bytes += len(entry.data)
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
        self.snapshots.applied_bytes += applied_bytes

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
        return self.snapshots.due(self.raft.applied_index, self.state.store.size_bytes)


class _FirstTtl:
    """The one TTL a single keep-alive renewed here gets, from the list."""

    __slots__ = ("_completion",)

    def __init__(self, completion: Completion) -> None:
        self._completion = completion

    def done(self) -> bool:
        return self._completion.done()

    def set_result(self, result: Any, /) -> None:
        if not self._completion.done():
            self._completion.set_result(result[0])

    def set_exception(self, exception: BaseException, /) -> None:
        if not self._completion.done():
            self._completion.set_exception(exception)


class _BatchAnswer:
    """A queued batch of keep-alives renewed by this member, now leader."""

    __slots__ = ("_batch_id", "_finished", "_renewals")

    def __init__(self, renewals: ForwardedRenewals, batch_id: int) -> None:
        self._renewals = renewals
        self._batch_id = batch_id
        self._finished = False

    def done(self) -> bool:
        return self._finished

    def set_result(self, result: Any, /) -> None:
        self._finished = True
        self._renewals.answered(self._batch_id, result)

    def set_exception(self, exception: BaseException, /) -> None:
        self._finished = True
        error = exception if isinstance(exception, errors.ServerError) else None
        self._renewals.refused(self._batch_id, error)


class _RenewAfterBarrier:
    """Renews a keep-alive's missed leases again once a read barrier
    confirmed this leader applied everything committed before it."""

    __slots__ = ("_completion", "_finished", "_lease_ids", "_missed", "_runtime", "_ttls")

    def __init__(
        self,
        runtime: MemberRuntime,
        lease_ids: list[int],
        ttls: list[int],
        missed: list[int],
        completion: Completion,
    ) -> None:
        self._runtime = runtime
        self._lease_ids = lease_ids
        self._ttls = ttls
        self._missed = missed
        self._completion = completion
        self._finished = False

    def done(self) -> bool:
        return self._finished or self._completion.done()

    def set_result(self, result: Any, /) -> None:
        self._finished = True
        try:
            again = dict(zip(self._missed, self._runtime.renew_leases(self._missed), strict=True))
        except errors.ServerError as exc:
            self.set_exception(exc)
            return
        ttls = [again.get(lid, ttl) for lid, ttl in zip(self._lease_ids, self._ttls, strict=True)]
        if not self._completion.done():
            self._completion.set_result(ttls)

    def set_exception(self, exception: BaseException, /) -> None:
        self._finished = True
        if not self._completion.done():
            self._completion.set_exception(exception)
