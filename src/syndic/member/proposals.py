"""Proposals waiting for their entry to be applied on this member.

A caller's request becomes an entry (``syndic.server.entry_codec``) stamped
with this member's id and a request id; the entry waits in the outbox until
the next cycle, when the whole outbox is proposed as one batch on the leader
or forwarded to the leader as one frame (group commit). The caller is
finished when this member applies the entry, or fails when the proposal
cannot go, times out, or the member stops.

Overload is refused at admission with etcd's "too many requests" rather than
queued until the request timeout: a client backs off from that error.

A traced request carries a :data:`StageRecorder` from the driver; the stages
of its entry (propose, fsync, commit, apply) are handed to it as they happen.
An untraced one carries None, and nothing is looked up for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from syndic.member.ports import Completion, PeerPort
from syndic.raft import Entry, NotLeaderError, ProposalDroppedError, RaftNode, Role
from syndic.server import backend as errors
from syndic.server.backend import ServerError
from syndic.server.entry_codec import DecodedEntry, EntryKind, encode_entry, store_request

# Framing an entry adds its kind and ids to the request it carries.
ENTRY_OVERHEAD_BYTES_MAX = 1024

# Told each stage of a traced request's entry: the stage's name (propose,
# fsync, commit, apply) and the entry's Raft index (0 while it is not known:
# a proposal forwarded to the leader). The driver's callback timestamps it:
# the runtime reads no clock and knows no tracer.
StageRecorder = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class ProposalLimits:
    """Bounds on the waiting work. A thousand clients at etcd's request limit
    fit in the defaults; more only queue behind a disk or a quorum."""

    pending_max: int = 10_000
    pending_bytes_max: int = 256 * 1024 * 1024
    # etcd: maxGapBetweenApplyAndCommitIndex. Committed entries not yet
    # applied mean the apply loop is behind; new proposals would only wait longer.
    apply_gap_entries_max: int = 5000
    # The largest request a client may send (etcd: --max-request-bytes).
    request_bytes_max: int = 1536 * 1024

    def __post_init__(self) -> None:
        if self.pending_max < 0 or self.pending_bytes_max < 0 or self.request_bytes_max <= 0:
            raise ValueError(f"proposal limits must not be negative: {self}")


class TooManyRequestsError(ServerError):
    """etcd's "too many requests" (gRPC RESOURCE_EXHAUSTED); ``queue`` names
    the bound that refused it, for the driver's metrics."""

    def __init__(self, queue: str) -> None:
        refused = errors.too_many_requests()
        super().__init__(refused.code, refused.message)
        self.queue = queue


class _Pending:
    __slots__ = ("completion", "data", "deadline_ms", "trace")

    def __init__(
        self, completion: Completion, data: bytes, deadline_ms: int, trace: StageRecorder | None
    ) -> None:
        self.completion = completion
        self.data = data
        # The driver's clock reading past which the caller is answered
        # "request timed out".
        self.deadline_ms = deadline_ms
        self.trace = trace


class Proposals:
    """This member's waiting proposals, by request id, and the cycle's outbox."""

    def __init__(self, member_id: int, limits: ProposalLimits, ids: Iterator[int]) -> None:
        self.member_id = member_id
        self.limits = limits
        # Request ids never seen before by this member, in this run or an
        # earlier one (MemberRuntime's id_base).
        self._ids = ids
        self._pending: dict[int, _Pending] = {}
        # This member's own STORE proposals still waiting, by their entry
        # bytes: applying one of them needs no decoding (see take_decoded).
        self._own_entries: dict[bytes, DecodedEntry] = {}
        self._outbox: list[tuple[int, bytes]] = []
        # The traced proposals still waiting, by their entry bytes (unique:
        # they hold this member's id and the request id). Empty while tracing
        # is off, so each stage hook is one emptiness test per Ready.
        self._traced: dict[bytes, _Pending] = {}
        self.pending_bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def own_entries_waiting(self) -> int:
        return len(self._own_entries)

    @property
    def outbox_waiting(self) -> bool:
        return bool(self._outbox)

    def add(
        self,
        kind: EntryKind,
        payload: Any,
        completion: Completion,
        deadline_ms: int,
        apply_gap_entries: int,
        trace: StageRecorder | None = None,
    ) -> int:
        """Admit a request and queue its entry for the next cycle; its request id.
        Raises the etcd error (too large, too many requests) and changes nothing
        when it cannot be admitted. ``trace`` is told its entry's stages."""
        request_id = next(self._ids)
        data = encode_entry(kind, self.member_id, request_id, payload)
        limits = self.limits
        if len(data) > limits.request_bytes_max + ENTRY_OVERHEAD_BYTES_MAX:
            raise errors.request_too_large()
        if (
            len(self._pending) >= limits.pending_max
            or self.pending_bytes + len(data) > limits.pending_bytes_max
            or apply_gap_entries > limits.apply_gap_entries_max
        ):
            raise TooManyRequestsError("proposal")
        pending = _Pending(completion, data, deadline_ms, trace)
        self._pending[request_id] = pending
        if trace is not None:
            self._traced[data] = pending
        self.pending_bytes += len(data)
        self._outbox.append((request_id, data))
        if kind is EntryKind.STORE:
            # A store request is a frozen dataclass, validated when built, and
            # its bytes decode to an equal one (entry_codec's round trip):
            # whatever entry holds these bytes applies this very object.
            request = store_request(payload)  # a WireRequest applies its decoded form
            self._own_entries[data] = DecodedEntry(kind, self.member_id, request_id, request)
        return request_id

    def take_decoded(self, data: bytes) -> DecodedEntry | None:
        """The request this member proposed as ``data``, if it still waits."""
        return self._own_entries.pop(data, None)

    def complete(self, request_id: int, result: Any, index: int = 0) -> None:
        """The request's entry (at ``index``) applied here with ``result``."""
        pending = self._pop(request_id)
        if pending is None:
            return
        if pending.trace is not None:
            pending.trace("apply", index)
        if not pending.completion.done():
            pending.completion.set_result(result)

    def traced_stage(self, stage: str, entries: Iterable[Entry]) -> None:
        """Tell the traced requests among ``entries`` that they reached
        ``stage``: "fsync" once the Ready that holds them is durable here,
        "commit" once a Ready hands them over as committed."""
        traced = self._traced
        if not traced:
            return
        for entry in entries:
            pending = traced.get(entry.data)
            if pending is not None and pending.trace is not None:
                pending.trace(stage, entry.index)

    def fail(self, request_id: int, error: BaseException) -> None:
        pending = self._pop(request_id)
        if pending is not None and not pending.completion.done():
            pending.completion.set_exception(error)

    def discard(self, request_id: int) -> None:
        """The caller left (cancelled): forget it; its entry may still apply."""
        self._pop(request_id)

    def _pop(self, request_id: int) -> _Pending | None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self.pending_bytes -= len(pending.data)
            self._own_entries.pop(pending.data, None)
            if pending.trace is not None:
                self._traced.pop(pending.data, None)
        return pending

    def fail_expired(self, now_ms: int) -> int:
        """Fail the callers past their deadline; how many."""
        expired = []
        # Every caller gets the same timeout, so the oldest come first.
        for request_id, pending in self._pending.items():
            if pending.deadline_ms > now_ms:
                break
            expired.append(request_id)
        for request_id in expired:
            self.fail(request_id, errors.request_timed_out())
        return len(expired)

    def fail_all(self, error: BaseException) -> None:
        for request_id in list(self._pending):
            self.fail(request_id, error)
        self._outbox.clear()

    def flush(self, raft: RaftNode, leader_id: int, peers: PeerPort) -> int:
        """Propose the outbox as one batch, or forward it to the leader as one
        frame; a proposal that cannot go fails its caller now. How many failed."""
        if not self._outbox:
            return 0
        batch, self._outbox = self._outbox, []
        if raft.role is not Role.LEADER:
            to_leader = leader_id and leader_id != self.member_id
            if to_leader and peers.forward_proposals(leader_id, [data for _, data in batch]):
                # The leader picks the index.
                self._trace_proposed(batch, 0)
                return 0
            return self._fail_batch(batch, errors.not_leader())
        try:
            last_index = raft.propose_batch([data for _, data in batch])
        except NotLeaderError:
            return self._fail_batch(batch, errors.not_leader())
        except ProposalDroppedError:
            return self._propose_each(raft, batch)
        self._trace_proposed(batch, last_index - len(batch) + 1)
        return 0

    def _trace_proposed(self, batch: list[tuple[int, bytes]], first_index: int) -> None:
        """``propose`` for the traced entries of ``batch``, which occupy
        consecutive indexes from ``first_index`` (0: unknown, forwarded)."""
        traced = self._traced
        if not traced:
            return
        for offset, (_, data) in enumerate(batch):
            pending = traced.get(data)
            if pending is not None and pending.trace is not None:
                pending.trace("propose", first_index + offset if first_index else 0)

    def _propose_each(self, raft: RaftNode, batch: list[tuple[int, bytes]]) -> int:
        # Too many bytes as a whole (or leadership moving): each on its own.
        failed = 0
        for request_id, data in batch:
            try:
                index = raft.propose(data)
            except NotLeaderError:
                failed += self._fail_batch([(request_id, data)], errors.not_leader())
            except ProposalDroppedError as exc:
                error = ServerError("UNAVAILABLE", f"etcdserver: proposal dropped: {exc}")
                failed += self._fail_batch([(request_id, data)], error)
            else:
                self._trace_proposed([(request_id, data)], index)
        return failed

    def _fail_batch(self, batch: list[tuple[int, bytes]], error: ServerError) -> int:
        for request_id, _ in batch:
            self.fail(request_id, error)
        return len(batch)
