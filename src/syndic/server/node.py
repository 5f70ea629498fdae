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
import functools
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from syndic.kv.errors import KvError
from syndic.kv.messages import LeaseRevokeRequest
from syndic.kv.mvcc import StoreConfig
from syndic.kv.watch import WatchHub
from syndic.member.proposals import ENTRY_OVERHEAD_BYTES_MAX, ProposalLimits, TooManyRequestsError
from syndic.member.runtime import MemberRuntime, RuntimeLimits, UndecodableEntryError
from syndic.member.snapshots import snapshot_pays
from syndic.observability.tracing import stage_recorder
from syndic.raft import (
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
from syndic.server.backend import ServerError
from syndic.server.bootstrap import (
    derived_identity,
    initial_snapshot,
    join_cluster,
    settle_identity,
    write_initial_log,
)
from syndic.server.config import ServerConfig, parse_url
from syndic.server.entry_codec import EntryKind, decode_entry
from syndic.server.forked_serialization import ForkedSerialization
from syndic.server.loop_lag import LoopLagProbe
from syndic.server.member_api import ETCD_API_VERSION, MemberApi
from syndic.server.metrics import ServerMetrics
from syndic.server.peer_requests import PeerRequests, RuntimePeers
from syndic.server.peer_rtt import RoundTripCollector
from syndic.server.state_machine import MemberAttrs, StateMachine
from syndic.server.tls import peer_contexts
from syndic.server.transport import FrameLimits, PeerAddress, PeerRequester, PeerTransport
from syndic.storage import SnapshotStore, Wal, WalOptions, recover

log = logging.getLogger(__name__)

# How often callers past the request timeout are failed: one timer for all
# of them instead of one armed and cancelled per call (a few per cent of a
# member's CPU under load); a caller may wait this much longer than the timeout.
REQUEST_TIMEOUT_SWEEP_MS = 100
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


__all__ = ["ENTRY_OVERHEAD_BYTES_MAX", "ETCD_API_VERSION", "MemberNode", "UndecodableEntryError"]


# Request ids start from the wall clock, shifted so that a restarted member
# begins past every id its previous run could have used (fewer than this many
# proposals per millisecond of its life): an entry it proposed before the
# restart may apply after it (etcd: idutil.Generator). 2**20 keeps the ids
# within 62 bits until the year 2100.
REQUEST_ID_CLOCK_SHIFT = 20


def _request_id_base() -> int:
    return (time.time_ns() // 1_000_000) << REQUEST_ID_CLOCK_SHIFT


class MemberNode(MemberApi, PeerRequests):
    """A syndic member; implements :class:`syndic.server.backend.Backend`
    (the calls in :class:`MemberApi`, the peer requests in :class:`PeerRequests`)."""

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
        # Batches of keep-alives being handed to the leader (peer_requests.py).
        self._renewal_requests: set[asyncio.Task[None]] = set()
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
        # The child serialising the latest snapshot (forked_serialization.py).
        self._serialization: ForkedSerialization | None = None
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
            RuntimePeers(self._transport, self._forward_renewals),
            self._now_ms,
            self._limits(),
            snapshot_index,
            id_base=_request_id_base(),
            decode=decode_entry,
            chance=random.random,
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
        if self._serialization is not None:
            # A task cancelled before its first step never awaited its child.
            self._serialization.cancel()
            await self._serialization.ended()
        if self._disk_ops:
            await asyncio.wait(tuple(self._disk_ops))
        # A start() that failed part-way built only some of these.
        built = vars(self)
        if "_transport" in built:
            await self._transport.stop()
        # A batch of keep-alives waiting on the leader would hold the
        # requester's connection until its timeout: its callers are failed below.
        for request in tuple(self._renewal_requests):
            request.cancel()
        await self._leader_requests.close()
        if "_rt" in built:
            self._rt.fail_all(errors.server_stopped())
        if "_rt" in built and self._snapshot_at_stop_pays():
            # The restart then loads this state instead of replaying the log.
            await self._snapshot_now()
        if "_wal" in built:
            await asyncio.to_thread(self._wal.close)
        self.hub.close()

    def _snapshot_at_stop_pays(self) -> bool:
        return (
            not self.failure
            and not self.removed.is_set()
            and self.raft.applied_index > self._snapshot_index
            and snapshot_pays(self._wal.held_size_bytes(), self.state.store.size_bytes)
        )

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
        # The executor's own future, not a task running to_thread: each cycle's
        # fsync takes this hop, and at one caller each write takes it alone
        # (h2load 1x1: about 15% more puts/s, measured in alternating runs).
        call = functools.partial(fn, *args, **kwargs)
        op = asyncio.get_running_loop().run_in_executor(None, call)
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
        """Start a snapshot once the runtime's schedule says one is due (by
        entries or by log size, syndic.member.snapshots); it is serialised in
        the background (see _snapshot)."""
        rt = self._rt
        if not rt.snapshot_due():
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshot_now())

    def _snapshot_now(self) -> Coroutine[Any, Any, None]:
        """A snapshot of the state applied so far. The fork is the capture,
        here on the loop where entries are applied, so the child serialises
        the state at exactly the applied index."""
        serialization = ForkedSerialization(self.state.serialized_parts)
        self._serialization = serialization
        return self._snapshot(
            self.raft.applied_index, serialization, self._rt.snapshots.applied_bytes
        )

    async def _snapshot(
        self, index: int, serialization: ForkedSerialization, applied_bytes: int
    ) -> None:
        """Wait for the child serialising the state at ``index`` while the
        member goes on applying and serving, then compact the log to it.
        Failing leaves the log longer, never the member inconsistent."""
        try:
            data = await serialization.result()
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
            self._rt.snapshots.taken(index, applied_bytes)
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
            outcome = self._rt.propose_forwarded(proposals)
        except RaftError:
            self.metrics.proposals_failed.inc(len(proposals))
            return
        if outcome.undecodable:
            log.warning(
                "member %x: refused %d undecodable forwarded proposals",
                self.id,
                outcome.undecodable,
            )
            self.metrics.proposals_failed.inc(outcome.undecodable)
        if outcome.duplicates:
            # A forward delivered twice: its first copy is in the log already.
            log.info("member %x: dropped %d forwarded copies", self.id, outcome.duplicates)
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

    # ------------------------------------------------------------ client entry points

    @property
    def request_timeout_s(self) -> float:
        # etcd: 5 s plus two election timeouts.
        return 5.0 + 2 * self.config.election_timeout_ms / 1000

    async def _propose(self, kind: EntryKind, payload: Any) -> Any:
        """Propose an entry (on the leader, or forwarded to it) and wait until this
        member applies it; returns what applying it returned, raises it if it
        is an error (a store or auth refusal, reached through the log)."""
        if not self._rt.leader_id:  # the common case costs no coroutine
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
            result = await future
        finally:
            self._rt.proposals.discard(request_id)
        if isinstance(result, Exception):
            raise result
        return result

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

    def _wake_watchers(self) -> None:
        for wake in tuple(self._watch_listeners):
            wake()

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
