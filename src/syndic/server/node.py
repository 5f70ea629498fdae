"""One member: the asyncio driver of the member runtime (``syndic.member``).

The runtime decides (the Ready contract of ``syndic.raft``, proposals,
reads, leases, membership, when to snapshot); this driver does the I/O: one
node loop that takes each Ready from the runtime, persists it (snapshot
file, then WAL records, one fsync for the whole cycle) in a worker thread,
and hands it back; the peer transport; the clock's timers; asyncio futures
for the callers, which the runtime finishes as its completions. Everything
proposed while a cycle's fsync runs lands in the next cycle's batch: group
commit falls out of the loop's shape.

Disk work runs in a worker thread so the loop keeps serving gRPC calls and
peer traffic while the fsync is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syndic import __version__
from syndic.kv.errors import KvError, LeaseNotFoundError
from syndic.kv.messages import (
    AlarmType,
    HashKVResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from syndic.kv.mvcc import StoreConfig
from syndic.kv.watch import WatchHub, WatchStream
from syndic.member.proposals import ENTRY_OVERHEAD_BYTES_MAX, ProposalLimits, TooManyRequestsError
from syndic.member.runtime import MemberRuntime, RuntimeLimits, UndecodableEntryError
from syndic.observability.tracing import stage_recorder
from syndic.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Message,
    PersistentState,
    RaftConfig,
    RaftError,
    RaftNode,
    Ready,
    Role,
    SoftState,
)
from syndic.server import backend as errors
from syndic.server import reconfig
from syndic.server.auth import AuthStore
from syndic.server.backend import (
    Header,
    Member,
    MemberStatus,
    ServerError,
    txn_is_read_only,
    txn_is_serializable,
)
from syndic.server.bootstrap import (
    derived_identity,
    initial_snapshot,
    join_cluster,
    settle_identity,
    write_initial_log,
)
from syndic.server.config import ServerConfig, member_id, parse_url
from syndic.server.entry_codec import EntryKind, decode_entry
from syndic.server.loop_lag import LoopLagProbe
from syndic.server.metrics import ServerMetrics
from syndic.server.peer_codec import (
    PeerCodecError,
    decode_member,
    encode_cluster_info,
    encode_member,
)
from syndic.server.peer_rtt import RoundTripCollector
from syndic.server.state_machine import MemberAttrs, StateMachine
from syndic.server.tls import peer_contexts
from syndic.server.transport import FrameLimits, PeerAddress, PeerRequester, PeerTransport
from syndic.storage import SnapshotStore, Wal, WalOptions, recover

log = logging.getLogger(__name__)

# The API version syndic implements, reported where etcd reports its own
# version (Status, /version): clients gate features on it.
ETCD_API_VERSION = "3.4.0"
# How often callers past the request timeout are failed: one timer for all
# of them instead of one armed and cancelled per call (a few per cent of a
# member's CPU under load); a caller may wait this much longer than the timeout.
REQUEST_TIMEOUT_SWEEP_MS = 100
# Keep-alives a follower hands to its leader in one peer request; more wait
# for the next one (etcd forwards each over HTTP; batching keeps a follower's
# thousand leases to a few round trips).
FORWARDED_RENEWALS_MAX = 4096
WAL_OPTIONS = WalOptions()
# More than a record's framing, an entry's index and term, a hard state or a
# snapshot marker take beside its data: a save this much short of a segment's
# end may cut it.
WAL_RECORD_SLACK_BYTES = 256
# Test-only: shifts this member's monotonic clock by this many seconds, so a
# process test can run members whose clocks differ by days, as members on
# different hosts do. Read by _member_clock() and nowhere else.
CLOCK_OFFSET_ENV = "SYNDIC_CLOCK_OFFSET_S"


def _member_clock() -> Callable[[], int]:
    """This member's clock in ms: monotonic, meaningful on this host only."""
    offset_ms = int(float(os.environ.get(CLOCK_OFFSET_ENV, "0")) * 1000)
    monotonic = time.monotonic
    return lambda: int(monotonic() * 1000) + offset_ms


__all__ = ["ENTRY_OVERHEAD_BYTES_MAX", "MemberNode", "UndecodableEntryError"]


# Request ids start from the wall clock, shifted so that a restarted member
# begins past every id its previous run could have used (fewer than this many
# proposals per millisecond of its life): an entry it proposed before the
# restart may apply after it (etcd: idutil.Generator). 2**20 keeps the ids
# within 62 bits until the year 2100.
REQUEST_ID_CLOCK_SHIFT = 20


def _request_id_base() -> int:
    return (time.time_ns() // 1_000_000) << REQUEST_ID_CLOCK_SHIFT


class MemberNode:
    """A syndic member; implements :class:`syndic.server.backend.Backend`."""

    def __init__(self, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ServerMetrics()
        # Settled by start(): derived from the flags, told by the cluster when
        # joining, or read back from the data directory.
        self.id = 0
        self.cluster_id = 0
        self._now_ms = _member_clock()
        # The member table arrives in the first snapshot (bootstrap.py).
        self.state = StateMachine(
            StoreConfig(quota_bytes=config.quota_bytes, request_bytes_max=config.max_request_bytes),
            {},
            clock_ms=self._now_ms,
        )
        # Lease deadlines are the leader's alone: a member decides none until
        # it leads (_on_soft_state promotes and demotes).
        self.state.store.lease_demote()
        self.hub = WatchHub(self.state.store)
        # The runtime, the WAL and the transport exist once start() recovered
        # the log: the member is complete from then on.
        self._rt: MemberRuntime
        self._wal: Wal
        self._snapshots: SnapshotStore
        self._transport: PeerTransport
        self._peer_client_ssl: ssl.SSLContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._timeout_sweeper: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        # Each watch stream's wake-up, called after every applied batch.
        self._watch_listeners: set[Callable[[], None]] = set()
        # Keep-alives waiting to be handed to the leader, by lease id.
        self._renewals: dict[int, list[asyncio.Future[int]]] = {}
        self._renewal_task: asyncio.Task[None] | None = None
        self._revokes: set[asyncio.Task[None]] = set()
        self._published = False
        # The leader last reported by the core, for the leader-change metric.
        self._leader_seen = 0
        # Set when this member applies its own removal (etcd: "permanently removed").
        self.removed = asyncio.Event()
        # Set when the node loop stopped on a fault (a failed fsync, an entry
        # it cannot decode); ``failure`` says which. The process exits.
        self.failed = asyncio.Event()
        self.failure = ""
        # Disk operations running in worker threads: stop() lets them finish
        # before closing the WAL under them.
        self._disk_ops: set[asyncio.Future[Any]] = set()
        # One writer of the WAL at a time, and one of the snapshot files: the
        # node loop's cycles and a snapshot taken in the background. Separate
        # locks, so the node loop never waits for a large snapshot file to be
        # written (its ticks, and so the leader's heartbeats, would wait too).
        self._disk_lock = asyncio.Lock()
        self._snapshot_files_lock = asyncio.Lock()
        self._snapshot_task: asyncio.Task[None] | None = None
        self._started_monotonic_s = time.monotonic()
        self._loop_lag = LoopLagProbe(self.metrics.loop_lag)
        # Requests handed to the leader (keep-alives, membership changes).
        self._leader_requests = PeerRequester()

    # ------------------------------------------------------------ lifecycle

    @property
    def data_dir(self) -> Path:
        return self.config.data_path / "member"

    async def start(self) -> None:
        """Open (or create) the data directory, restore, and join the cluster."""
        # TLS files are checked first: a bad one must stop the member before
        # it touches its data directory.
        peer_server_ssl, self._peer_client_ssl = peer_contexts(self.config)
        self._wal = await asyncio.to_thread(Wal.open, self.data_dir / "wal", WAL_OPTIONS)
        try:
            recovered = await self._open_log()
        except BaseException:
            await asyncio.to_thread(self._wal.close)
            raise
        snapshot_index = 0
        if recovered.snapshot is not None:
            self.state.restore(recovered.snapshot.data)
            self._reset_hub()
            snapshot_index = recovered.snapshot.meta.index
        fresh = not recovered.entries and recovered.snapshot is None
        raft_config = RaftConfig(
            node_id=self.id,
            election_timeout_ticks=self.config.election_timeout_ticks,
            heartbeat_interval_ticks=1,
        )
        # A joining member knows no configuration until the leader's snapshot
        # arrives; every other member's log starts with one.
        raft = RaftNode(
            raft_config, ConfState(frozenset()), random.Random(), None if fresh else recovered
        )
        host, port = parse_url(self.config.listen_peer_urls[0], "listen_peer_urls")
        self._transport = PeerTransport(
            self.id,
            host,
            port,
            self._on_peer_messages,
            self._on_unreachable,
            on_proposals=self._on_forwarded_proposals,
            on_request=self._on_peer_request,
            server_ssl=peer_server_ssl,
            client_ssl=self._peer_client_ssl,
            limits=FrameLimits.derive(
                self.config.max_request_bytes + ENTRY_OVERHEAD_BYTES_MAX,
                self.config.quota_bytes,
                raft_config,
            ),
        )
        # /metrics reads the member's registry; a restarted member that
        # reuses its metrics keeps the collector it registered first.
        with contextlib.suppress(ValueError):
            self.metrics.registry.register(RoundTripCollector(self._transport.round_trips))
        self._rt = MemberRuntime(
            self.id,
            raft,
            self.state,
            self._transport,
            self._now_ms,
            self._limits(),
            snapshot_index,
            id_base=_request_id_base(),
            decode=decode_entry,
        )
        await self._transport.start()
        self._leader_requests = PeerRequester(self._peer_client_ssl)
        self._loop_lag.start()
        self._refresh_peers()
        if raft.conf_state.voters == frozenset({self.id}):
            # A single-voter cluster need not wait an election timeout to lead.
            raft.campaign()
        self._task = asyncio.create_task(self._run(), name=f"node-{self.config.name}")
        self._sweep_timeouts()

    def _limits(self) -> RuntimeLimits:
        return RuntimeLimits(
            proposals=ProposalLimits(
                pending_max=self.config.max_pending_proposals,
                pending_bytes_max=self.config.max_pending_proposal_bytes,
                apply_gap_entries_max=self.config.max_apply_gap_entries,
                request_bytes_max=self.config.max_request_bytes,
            ),
            reads_pending_max=self.config.max_pending_reads,
            snapshot_every_entries=self.config.snapshot_count,
            request_timeout_ms=int(self.request_timeout_s * 1000),
        )

    @property
    def raft(self) -> RaftNode:
        return self._rt.raft

    @property
    def _snapshot_index(self) -> int:
        return self._rt.snapshots.index

    def _sweep_timeouts(self) -> None:
        """Fail the proposals and reads waiting past the request timeout, then
        come back in REQUEST_TIMEOUT_SWEEP_MS. A timer of its own, not the node
        loop's tick: a loop stuck on a disk must still answer its callers."""
        if self._stopping:
            return
        failed = self._rt.fail_expired()
        if failed:
            self.metrics.proposals_failed.inc(failed)
        self._timeout_sweeper = asyncio.get_running_loop().call_later(
            REQUEST_TIMEOUT_SWEEP_MS / 1000, self._sweep_timeouts
        )

    async def _open_log(self) -> PersistentState:
        """Settle this member's ids and recover its log; a founding member's
        first start writes the log's initial snapshot (bootstrap.py)."""
        self._snapshots = SnapshotStore(self.data_dir / "snap")
        recovered = recover(self._wal.read_all(), self._snapshots).state
        fresh = not recovered.entries and recovered.snapshot is None
        founding = self.config.initial_cluster_state == "new"
        claimed = derived_identity(self.config) if founding else None
        if fresh and not founding:
            claimed, members = await join_cluster(self.config, self._peer_client_ssl)
            # Until the snapshot arrives, these are the peers to talk to.
            self.state.members = {
                m.id: MemberAttrs(m.name, m.peer_urls, m.client_urls) for m in members
            }
        identity = settle_identity(self.data_dir, self.config, claimed)
        self.id, self.cluster_id = identity.member_id, identity.cluster_id
        if fresh and founding:
            snapshot = initial_snapshot(self.config)
            await asyncio.to_thread(write_initial_log, self._wal, self._snapshots, snapshot)
            recovered = recover(self._wal.read_all(), self._snapshots).state
        return recovered

    async def stop(self) -> None:
        """Stop serving, fail waiting callers, and close the WAL cleanly: a
        write or fsync in flight finishes first, so the WAL is never closed
        under a worker thread still writing to it."""
        self._stopping = True
        self._wake.set()
        self._loop_lag.stop()
        if self._timeout_sweeper is not None:
            self._timeout_sweeper.cancel()
        if self._task is not None:
            self._task.cancel()
            # A loop that failed has already logged why (see _run).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._snapshot_task
        if self._disk_ops:
            await asyncio.wait(tuple(self._disk_ops))
        # A start() that failed part-way built only some of these.
        built = vars(self)
        if "_transport" in built:
            await self._transport.stop()
        await self._leader_requests.close()
        if "_rt" in built:
            self._rt.fail_all(errors.server_stopped())
        if self._renewal_task is not None:
            self._renewal_task.cancel()
        for waiters in self._renewals.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(errors.server_stopped())
        self._renewals.clear()
        if "_wal" in built:
            await asyncio.to_thread(self._wal.close)
        self.hub.close()

    # ------------------------------------------------------------ node loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.config.heartbeat_interval_ms / 1000
        tick_due = False
        ticker: asyncio.TimerHandle | None = None

        # The clock is a repeating timer that marks a tick due and wakes the
        # loop; a timeout scope armed on every pass cost more than the pass
        # itself under load. A tick that falls due during a cycle's fsync is
        # taken right after it.
        def on_tick() -> None:
            nonlocal ticker, tick_due
            tick_due = True
            self._wake.set()
            ticker = loop.call_later(tick_s, on_tick)

        ticker = loop.call_later(tick_s, on_tick)
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if tick_due:
                    tick_due = False
                    self._on_tick()
                try:
                    await self._process_ready()
                except Exception as exc:
                    # A failure to persist leaves the member unable to promise
                    # durability, an undecodable entry unable to apply the log
                    # as the others do: stop rather than go on unsafely.
                    log.exception("member %x: node loop failed; stopping", self.id)
                    self._stopping = True
                    self.failure = f"member {self.id:x}: {exc}"
                    self.failed.set()
                    raise
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _process_ready(self) -> None:
        """One cycle: one Ready, and the commit it may have caused. Under a
        steady stream of writes there is always another; the loop comes back
        through ``_run`` for it, so the clock still ticks (heartbeats,
        elections, lease expiry) under load."""
        rt = self._rt
        # Proposals made while the last cycle's fsync ran join this cycle.
        failed = rt.flush()
        if failed:
            self.metrics.proposals_failed.inc(failed)
        if not rt.raft.has_ready():
            return
        await self._handle_ready(rt.raft.ready())
        # A leader counts its own copy only once it is persisted (in
        # advance), so the fsync just done may have committed the batch:
        # answer it now, before new proposals start the next fsync. This
        # Ready has nothing to fsync unless something was proposed meanwhile.
        if rt.raft.has_ready():
            await self._handle_ready(rt.raft.ready())
        self._maybe_snapshot()
        if rt.membership.peers_dirty:
            self._refresh_peers()
            self._check_removed()
        if rt.has_work():
            self._wake.set()

    async def _handle_ready(self, ready: Ready) -> None:
        rt = self._rt
        soft = rt.begin(ready)
        if soft is not None:
            self._on_soft_state(soft)
        await self._persist(ready)
        if ready.snapshot is not None:
            # Decoding a large state takes seconds: a worker thread does it,
            # building a new store beside the live one, which nothing else
            # changes meanwhile (this cycle applies nothing until it is in).
            decoded = await asyncio.to_thread(self.state.decode, ready.snapshot.data)
            rt.install_snapshot(decoded, ready.snapshot.meta.index)
            self._reset_hub()
        if ready.committed_entries:
            started = time.perf_counter()
            rt.finish(ready)
            self.metrics.apply_duration.observe(time.perf_counter() - started)
            self.metrics.proposals_applied.set(ready.committed_entries[-1].index)
            self._wake_watchers()
        else:
            rt.finish(ready)

    async def _persist(self, ready: Ready) -> None:
        async with self._disk_lock:
            await self._persist_locked(ready)

    async def _persist_locked(self, ready: Ready) -> None:
        if ready.snapshot is not None:
            async with self._snapshot_files_lock:
                await self._on_disk(self._snapshots.save, ready.snapshot)
        if ready.hard_state is None and not ready.entries and ready.snapshot is None:
            return
        snapshot = ready.snapshot.meta if ready.snapshot is not None else None
        if not ready.must_sync and not self._may_cut_segment(ready):
            # Nothing to fsync (a new commit index, say): the records are only
            # buffered, which costs less than the hop to a worker thread and
            # back, and that hop sits on the path of every replicated write.
            self._wal.save(ready.hard_state, ready.entries, snapshot=snapshot, must_sync=False)
            return
        started = time.perf_counter()
        await self._on_disk(
            self._wal.save, ready.hard_state, ready.entries, snapshot=snapshot, must_sync=True
        )
        self.metrics.fsync_duration.observe(time.perf_counter() - started)
        self._rt.proposals.traced_stage("fsync", ready.entries)

    def _may_cut_segment(self, ready: Ready) -> bool:
        """Whether saving ``ready`` may fill the WAL's segment: a cut fsyncs
        the old segment, creates the next and fsyncs the directory, which
        must not happen on the loop even when the save itself needs no fsync."""
        size_bytes = WAL_RECORD_SLACK_BYTES + sum(
            len(e.data) + WAL_RECORD_SLACK_BYTES for e in ready.entries
        )
        status = self._wal.status()
        return status.segment_size_bytes + size_bytes > WAL_OPTIONS.segment_size_bytes_max

    async def _on_disk(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a disk operation in a worker thread. Cancelling the caller (stop)
        does not cancel the thread, so the operation is shielded and kept
        where stop() can wait for it before closing the WAL."""
        op = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        self._disk_ops.add(op)
        op.add_done_callback(self._disk_ops.discard)
        return await asyncio.shield(op)

    def _on_soft_state(self, soft: SoftState) -> None:
        if soft.leader_id != self._leader_seen:
            self.metrics.leader_changes.inc()
        self._leader_seen = soft.leader_id
        self.metrics.has_leader.set(1 if soft.leader_id else 0)
        self.metrics.is_leader.set(1 if soft.role is Role.LEADER else 0)
        if soft.leader_id and not self._published:
            self._publish_attrs()

    def _on_tick(self) -> None:
        rt = self._rt
        for lease_id in rt.tick():
            self._revoke(lease_id)
        self.metrics.term.set(rt.raft.term)
        self.metrics.proposals_committed.set(rt.raft.commit_index)
        self.metrics.proposals_pending.set(len(rt.proposals))
        self.metrics.db_size.set(self.state.store.size_bytes)
        self.metrics.keys.set(len(self.state.store))
        if not self._published and rt.leader_id:
            self._publish_attrs()

    def _revoke(self, lease_id: int) -> None:
        """Revoke, through the log, a lease due on this leader's clock."""

        async def revoke() -> None:
            try:
                with contextlib.suppress(KvError, ServerError, RaftError):
                    await self.write(LeaseRevokeRequest(id=lease_id))
            finally:
                self._rt.leases.revoke_done(lease_id)

        task = asyncio.get_running_loop().create_task(revoke())
        self._revokes.add(task)
        task.add_done_callback(self._revokes.discard)

    def _publish_attrs(self) -> None:
        """Tell the cluster this member's name and client URLs (etcd: publish)."""
        self._published = True
        attrs = [
            self.id,
            self.config.name,
            list(self.config.initial_advertise_peer_urls),
            list(self.config.advertise_client_urls),
        ]

        async def publish() -> None:
            try:
                await self._propose(EntryKind.MEMBER_ATTRS, attrs)
            except (ServerError, RaftError):
                self._published = False

        asyncio.get_running_loop().create_task(publish())

    def _maybe_snapshot(self) -> None:
        """Start a snapshot once ``snapshot_count`` entries were applied since
        the last; it is serialised in the background (see _snapshot)."""
        rt = self._rt
        if not rt.snapshot_due():
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        # The capture is O(n) pointer copies, here on the loop where entries
        # are applied, so it is the state at exactly ``applied``.
        serialize = self.state.capture()
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._snapshot(rt.raft.applied_index, serialize)
        )

    async def _snapshot(self, index: int, serialize: Callable[[], bytes]) -> None:
        """Serialise the state captured at ``index`` in a worker thread while
        the member goes on applying and serving, then compact the log to it.
        Failing leaves the log longer, never the member inconsistent."""
        try:
            data = await asyncio.to_thread(serialize)
            try:
                snapshot = self.raft.compact(index, data)
            except RaftError as exc:
                # A leader's snapshot installed meanwhile is newer.
                log.info("member %x: snapshot at %d not taken: %s", self.id, index, exc)
                return
            # The file first: the WAL's marker must never name a snapshot
            # that is not on disk (syndic.storage.Wal.save).
            async with self._snapshot_files_lock:
                await self._on_disk(self._snapshots.save, snapshot)
            async with self._disk_lock:
                await self._on_disk(
                    self._wal.save, None, (), snapshot=snapshot.meta, must_sync=True
                )
                await self._on_disk(self._wal.release_before, snapshot.meta.index)
            self._rt.snapshots.taken(index)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("member %x: snapshot at %d failed", self.id, index)

    def _reset_hub(self) -> None:
        self.hub.close()
        self.hub = WatchHub(self.state.store)
        self._wake_watchers()  # their streams were closed

    # ------------------------------------------------------------ peers

    def _on_peer_messages(self, messages: list[Message]) -> None:
        for msg, exc in self._rt.step(messages):
            log.debug("member %x: dropped %s from %x: %s", self.id, msg.type, msg.from_id, exc)
        self._wake.set()

    def _on_forwarded_proposals(self, proposals: list[bytes]) -> None:
        """Propose entries a follower forwarded; the follower answers its caller
        when it applies them. Dropped (the caller times out) if not leader."""
        if not self._is_leader():
            return
        try:
            refused = self._rt.propose_forwarded(proposals)
        except RaftError:
            self.metrics.proposals_failed.inc(len(proposals))
            return
        if refused:
            log.warning("member %x: refused %d undecodable forwarded proposals", self.id, refused)
            self.metrics.proposals_failed.inc(refused)
        self._wake.set()

    def _on_unreachable(self, node_id: int) -> None:
        with contextlib.suppress(RaftError):
            self.raft.report_unreachable(node_id)

    def _check_removed(self) -> None:
        """Stop serving once this member applied its own removal, as etcd does:
        it can no longer take part, and its reads would only grow stale."""
        if self._rt.membership.check_removed(self.raft.conf_state):
            log.warning("member %x: removed from cluster %x; stopping", self.id, self.cluster_id)
            self.removed.set()

    def _refresh_peers(self) -> None:
        self._rt.membership.peers_dirty = False
        peers = []
        # A joining member has no configuration yet: it talks to every member
        # the cluster told it of until the leader's snapshot brings one.
        ids = self.raft.conf_state.all_ids() or frozenset(self.state.members)
        for mid in ids:
            attrs = self.state.members.get(mid)
            if mid != self.id and attrs is not None and attrs.peer_urls:
                host, port = parse_url(attrs.peer_urls[0], "peer_urls")
                peers.append(PeerAddress(mid, host, port))
        self._transport.set_peers(peers)

    # ------------------------------------------------------------ proposals

    @property
    def request_timeout_s(self) -> float:
        # etcd: 5 s plus two election timeouts.
        return 5.0 + 2 * self.config.election_timeout_ms / 1000

    async def _propose(self, kind: EntryKind, payload: Any) -> Any:
        """Propose an entry (on the leader, or forwarded to it) and wait until this
        member applies it; returns what applying it returned."""
        await self._await_leader()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            # Proposed by the node loop with the rest of this cycle's (one
            # append per follower, or one forwarded frame, for the whole batch).
            request_id = self._rt.propose(kind, payload, future, stage_recorder())
        except TooManyRequestsError as exc:
            self.metrics.too_many_requests.labels(exc.queue).inc()
            raise
        self._wake.set()
        try:
            # _sweep_timeouts fails it with "request timed out" past its deadline.
            return await future
        finally:
            self._rt.proposals.discard(request_id)

    async def _await_leader(self) -> int:
        """The current leader's id, waiting up to one election timeout for one
        to emerge. Every write and read passes here: with a leader known it
        returns at once, without building a Member."""
        deadline = time.monotonic() + self.config.election_timeout_ms / 1000
        while not self._rt.leader_id:
            if time.monotonic() > deadline:
                raise errors.not_leader()
            await asyncio.sleep(self.config.heartbeat_interval_ms / 1000)
        return self._rt.leader_id

    def _is_leader(self) -> bool:
        return self._rt.is_leader

    # ------------------------------------------------------------ Backend

    def header(self) -> Header:
        return Header(self.cluster_id, self.id, self.state.store.revision, self.raft.term)

    async def write(self, request: object) -> object:
        result = await self._propose(EntryKind.STORE, request)
        if isinstance(result, Exception):
            raise result
        return result

    async def range(self, request: RangeRequest) -> RangeResponse:
        if not request.serializable:
            await self._read_barrier()
        return self.state.store.range(request)

    async def read_txn(self, request: TxnRequest) -> TxnResponse:
        # A write slipped in here would change one member's store alone.
        if not txn_is_read_only(request):
            raise ValueError("read_txn takes a Txn of Range ops alone")
        if not txn_is_serializable(request):
            await self._read_barrier()
        # Nothing to write: the store evaluates it at its current revision
        # and leaves the revision where it was.
        return self.state.store.txn(request)

    async def _read_barrier(self) -> None:
        """Return once this member has applied everything committed before the call
        (ReadIndex, Raft thesis §6.4)."""
        await self._await_leader()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            ctx = self._rt.read(future)
        except TooManyRequestsError as exc:
            self.metrics.too_many_requests.labels(exc.queue).inc()
            raise
        self._wake.set()
        try:
            # _sweep_timeouts fails it with "request timed out" past its deadline.
            await future
        finally:
            self._rt.reads.discard(ctx)

    # ------------------------------------------------------------ leases
    # Deadlines live in the leader's memory alone (syndic.kv.lease): a
    # keep-alive costs no log entry and no fsync, and a follower hands its
    # keep-alives and TimeToLive questions to the leader (etcd does the same
    # over HTTP; here the peer port's request path carries them).

    async def lease_keep_alive(self, lease_id: int) -> int:
        if self._is_leader():
            (ttl_s,) = await self._renew_here([lease_id])
        else:
            ttl_s = await self._renew_via_leader(lease_id)
        if ttl_s < 0:
            raise LeaseNotFoundError(f"id={lease_id}")
        return ttl_s

    async def _renew_here(self, lease_ids: list[int]) -> list[int]:
        """Renew on this leader; each lease's TTL, or -1 if it is unknown or
        expired. A miss may be a grant this new leader has not applied yet,
        so misses are tried once more after a read barrier."""
        ttls = self._rt.renew_leases(lease_ids)
        missed = [lid for lid, ttl in zip(lease_ids, ttls, strict=True) if ttl < 0]
        if not missed:
            return ttls
        await self._read_barrier()
        again = dict(zip(missed, self._rt.renew_leases(missed), strict=True))
        return [again.get(lid, ttl) for lid, ttl in zip(lease_ids, ttls, strict=True)]

    async def _renew_via_leader(self, lease_id: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._renewals.setdefault(lease_id, []).append(future)
        if self._renewal_task is None or self._renewal_task.done():
            self._renewal_task = asyncio.get_running_loop().create_task(self._forward_renewals())
        return await future

    async def _forward_renewals(self) -> None:
        """Hand waiting keep-alives to the leader, a batch per request, until
        none wait; every caller gets the leader's answer or its error."""
        while self._renewals and not self._stopping:
            ids = list(itertools.islice(self._renewals, FORWARDED_RENEWALS_MAX))
            waiters = {lid: self._renewals.pop(lid) for lid in ids}
            try:
                ttls = await self._call_leader("lease_keep_alive", [ids])
                if not isinstance(ttls, list) or len(ttls) != len(ids):
                    raise errors.request_timed_out()
                outcome: list[int] | ServerError = ttls
            except ServerError as exc:
                outcome = exc
            except asyncio.CancelledError:
                # stop(): these callers were taken off the queue stop() fails.
                for future in itertools.chain.from_iterable(waiters.values()):
                    if not future.done():
                        future.set_exception(errors.server_stopped())
                raise
            for i, lease_id in enumerate(ids):
                for future in waiters[lease_id]:
                    if future.done():
                        continue
                    if isinstance(outcome, ServerError):
                        future.set_exception(outcome)
                    else:
                        future.set_result(int(outcome[i]))

    async def lease_ttl(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        if self._is_leader():
            return self.lease_time_to_live(request)
        answer = await self._call_leader("lease_time_to_live", [request.id, request.keys])
        if not _shaped(answer, int, int, list) or not all(isinstance(k, bytes) for k in answer[2]):
            raise errors.request_timed_out()
        ttl_s, granted_ttl_s, keys = answer
        return LeaseTimeToLiveResponse(
            revision=self.state.store.revision,
            id=request.id,
            ttl_s=ttl_s,
            granted_ttl_s=granted_ttl_s,
            keys=tuple(keys),
        )

    async def _serve_lease_request(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        """A follower's keep-alives or TimeToLive, answered by this leader."""
        try:
            if not self._is_leader():
                raise errors.not_leader()
            if op == "lease_keep_alive" and _shaped(args, list):
                ids = args[0]
                if len(ids) > FORWARDED_RENEWALS_MAX or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in ids
                ):
                    raise ServerError("INVALID_ARGUMENT", "lease_keep_alive: bad lease ids")
                return True, await self._renew_here(ids)
            if op == "lease_time_to_live" and _shaped(args, int, bool):
                resp = self.lease_time_to_live(LeaseTimeToLiveRequest(args[0], keys=args[1]))
                return True, [resp.ttl_s, resp.granted_ttl_s, list(resp.keys)]
        except ServerError as exc:
            return False, [exc.code, exc.message]
        return False, ["INVALID_ARGUMENT", f"bad {op} request with {len(args)} args"]

    def lease_time_to_live(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        return self.state.store.lease_time_to_live(request, self._now_ms())

    def lease_leases(self) -> LeaseLeasesResponse:
        return self.state.store.lease_leases()

    def open_watch_stream(self) -> WatchStream:
        return self.hub.open_stream()

    def watch_listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._watch_listeners.add(wake)
        return lambda: self._watch_listeners.discard(wake)

    def _wake_watchers(self) -> None:
        for wake in tuple(self._watch_listeners):
            wake()

    def hash_kv(self, revision: int) -> HashKVResponse:
        return self.state.store.hash_kv(revision)

    def status(self) -> MemberStatus:
        store = self.state.store
        return MemberStatus(
            version=ETCD_API_VERSION,
            db_size_bytes=store.size_bytes,
            db_size_in_use_bytes=store.size_bytes,
            leader_id=self._rt.leader_id,
            raft_index=self.raft.commit_index,
            raft_term=self.raft.term,
            raft_applied_index=self.raft.applied_index,
            errors=tuple(f"memberID:{self.id} alarm:{a.name}" for a in store.alarms),
            is_learner=self.id in self.raft.conf_state.learners,
        )

    def _member(self, mid: int) -> Member:
        attrs = self.state.members.get(mid, MemberAttrs("", (), ()))
        return Member(
            mid,
            attrs.name,
            attrs.peer_urls,
            attrs.client_urls,
            mid in self.raft.conf_state.learners,
        )

    def members(self) -> list[Member]:
        return [self._member(mid) for mid in sorted(self.raft.conf_state.all_ids())]

    async def _change_membership(self, change: ConfChange) -> None:
        index = self._rt.membership.propose(self.raft, change)
        self._wake.set()
        await self._wait_applied(index)

    async def _wait_applied(self, index: int) -> None:
        """Return once this member applied ``index``; etcd's timeout error after
        the request timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rt.wait_applied(index, future)
        try:
            async with asyncio.timeout(self.request_timeout_s):
                await future
        except TimeoutError:
            raise errors.request_timed_out() from None

    def _voters_for_reconfig(self) -> dict[int, reconfig.Voter]:
        """Each voter as the strict reconfiguration check sees it from here."""
        now = time.monotonic()
        connected_for_s = {
            mid: now - peer.connected_since_s
            for mid, peer in self._transport.stats().items()
            if peer.connected
        }
        return self._rt.membership.voters_for_reconfig(
            self.raft.conf_state, self.state.members, connected_for_s
        )

    # Membership changes are proposed by the leader, which alone knows which
    # peers it has heard from; a follower hands them over (etcd does too).

    async def member_add(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member:
        if not self._is_leader():
            return decode_member(
                await self._ask_leader("member_add", [list(peer_urls), is_learner])
            )
        return await self._member_add_here(peer_urls, is_learner)

    async def member_remove(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if self._is_leader():
            await self._member_remove_here(member_id_)
        else:
            await self._ask_leader("member_remove", [member_id_])

    async def member_promote(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if self._is_leader():
            await self._member_promote_here(member_id_)
        else:
            await self._ask_leader("member_promote", [member_id_])

    def _require_member(self, member_id_: int) -> None:
        self._rt.membership.require_member(self.raft.conf_state, member_id_)

    async def member_update(self, member_id_: int, peer_urls: tuple[str, ...]) -> None:
        self._require_member(member_id_)
        attrs = self.state.members.get(member_id_, MemberAttrs("", (), ()))
        await self._propose(
            EntryKind.MEMBER_ATTRS,
            [member_id_, attrs.name, list(peer_urls), list(attrs.client_urls)],
        )

    async def _member_add_here(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member:
        if not self._is_leader():
            raise errors.not_leader()
        reconfig.check_add(self._voters_for_reconfig(), is_learner)
        for mid, attrs in self.state.members.items():
            if set(attrs.peer_urls) & set(peer_urls) and mid in self.raft.conf_state.all_ids():
                raise errors.peer_url_exists()
        new_id = member_id(peer_urls, f"{self.config.initial_cluster_token}:{time.time_ns()}")
        await self._propose(EntryKind.MEMBER_ATTRS, [new_id, "", list(peer_urls), []])
        kind = ConfChangeType.ADD_LEARNER if is_learner else ConfChangeType.ADD_VOTER
        await self._change_membership(ConfChange(kind, new_id))
        self._refresh_peers()
        return self._member(new_id)

    async def _member_remove_here(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if not self._is_leader():
            raise errors.not_leader()
        reconfig.check_remove(self._voters_for_reconfig(), member_id_)
        await self._change_membership(ConfChange(ConfChangeType.REMOVE_NODE, member_id_))

    async def _member_promote_here(self, member_id_: int) -> None:
        self._rt.membership.check_promotable(self.raft, member_id_)
        reconfig.check_promote(self._voters_for_reconfig())
        await self._change_membership(ConfChange(ConfChangeType.ADD_VOTER, member_id_))

    async def _ask_leader(self, op: str, args: list[Any]) -> Any:
        """Hand a membership change to the leader; its answer once this
        member applied the change too."""
        payload = await self._call_leader(op, args)
        if not _shaped(payload, object, int):
            raise errors.request_timed_out()
        # Answer only once this member applied the change too, so what the
        # caller reads from it next (the member list) already shows it.
        result, applied = payload
        await self._wait_applied(applied)
        return result

    async def _call_leader(self, op: str, args: list[Any]) -> Any:
        """Hand a request to the leader over its peer port; its answer or its
        error. A leader that cannot be reached, or that is no longer leader,
        may be gone: ask the next one until the request timeout."""
        deadline = time.monotonic() + self.request_timeout_s
        while True:
            leader = self._member(await self._await_leader())
            if leader.id == self.id or not leader.peer_urls:
                raise errors.not_leader()
            host, port = parse_url(leader.peer_urls[0], "peer_urls")
            try:
                ok, payload = await self._leader_requests.call(
                    host, port, op, args, self.request_timeout_s + 1
                )
            except (OSError, TimeoutError, PeerCodecError) as exc:
                log.info("member %x: leader %x did not answer %s: %s", self.id, leader.id, op, exc)
                ok, payload = False, None
            if ok:
                return payload
            stale = payload is None or payload == [*_NOT_LEADER]
            if not stale:
                if not _shaped(payload, str, str):
                    raise errors.request_timed_out()
                raise ServerError(*payload)
            if time.monotonic() > deadline:
                raise errors.request_timed_out()
            await asyncio.sleep(self.config.heartbeat_interval_ms / 1000)

    async def _on_peer_request(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        """Answer a peer: the member table for a joining member, or a
        membership change a follower handed over (never handed on again),
        with the index this member had applied when it finished."""
        if op == "cluster":
            return True, encode_cluster_info(self.cluster_id, self.members())
        if op.startswith("lease_"):
            return await self._serve_lease_request(op, args)
        ok, result = await self._serve_member_change(op, args)
        return ok, [result, self.raft.applied_index] if ok else result

    async def _serve_member_change(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        try:
            if op == "member_add" and _shaped(args, list, bool):
                urls = args[0]
                if not urls or not all(isinstance(u, str) for u in urls):
                    raise ServerError("INVALID_ARGUMENT", "member_add: peer URLs must be strings")
                return True, encode_member(await self._member_add_here(tuple(urls), args[1]))
            if op == "member_remove" and _shaped(args, int):
                await self._member_remove_here(args[0])
                return True, None
            if op == "member_promote" and _shaped(args, int):
                await self._member_promote_here(args[0])
                return True, None
        except ServerError as exc:
            return False, [exc.code, exc.message]
        return False, ["INVALID_ARGUMENT", f"unknown peer request {op!r} with {len(args)} args"]

    async def move_leader(self, target_id: int) -> None:
        if target_id not in self.raft.conf_state.voters:
            raise errors.member_not_found()
        if not self._is_leader():
            raise errors.not_leader()
        try:
            self.raft.transfer_leadership(target_id)
        except RaftError as exc:
            raise ServerError("FAILED_PRECONDITION", f"etcdserver: {exc}") from exc
        self._wake.set()
        deadline = time.monotonic() + self.request_timeout_s
        while self._rt.leader_id != target_id:
            if time.monotonic() > deadline:
                raise errors.request_timed_out()
            await asyncio.sleep(self.config.heartbeat_interval_ms / 1000)

    def snapshot_bytes(self) -> bytes:
        return self.state.serialize()

    def snapshot_capture(self) -> Callable[[], bytes]:
        return self.state.capture()

    def alarms(self) -> list[tuple[int, str]]:
        return [(self.id, alarm.name) for alarm in sorted(self.state.store.alarms)]

    async def alarm_disarm(self, alarm: str) -> None:
        await self._propose(EntryKind.ALARM, (False, int(AlarmType[alarm])))

    async def alarm_activate(self, member_id: int, alarm: str) -> None:
        # The store's alarms are cluster-wide, so the member named does not
        # narrow them (etcd raises NOSPACE on every member alike).
        await self._propose(EntryKind.ALARM, (True, int(AlarmType[alarm])))

    async def auth_apply(self, op: list[Any]) -> Any:
        result = await self._propose(EntryKind.AUTH, op)
        if isinstance(result, Exception):
            raise result
        return result

    def auth_store(self) -> AuthStore:
        return self.state.auth

    def debug_status(self) -> dict[str, object]:
        """Raft status, members and transport statistics, for ``/debug``."""
        transport = self._transport.stats()
        return {
            "version": __version__,
            "member_id": f"{self.id:x}",
            "name": self.config.name,
            "raft": self.raft.status(),
            "members": [
                {
                    "id": f"{m.id:x}",
                    "name": m.name,
                    "peer_urls": list(m.peer_urls),
                    "client_urls": list(m.client_urls),
                    "is_learner": m.is_learner,
                }
                for m in self.members()
            ],
            "peers": {f"{k:x}": dataclasses.asdict(v) for k, v in transport.items()},
            "pending_proposals": len(self._rt.proposals),
            "pending_reads": len(self._rt.reads),
            "snapshot_index": self._snapshot_index,
        }


_NOT_LEADER = (errors.not_leader().code, errors.not_leader().message)


def _shaped(args: list[Any], *types: type) -> bool:
    """``args`` holds exactly one value of each of ``types``, in order."""
    return len(args) == len(types) and all(
        isinstance(a, t) and not (t is int and isinstance(a, bool))
        for a, t in zip(args, types, strict=True)
    )
