"""Linearizable reads: ReadIndex rounds waiting to be served (Raft thesis §6.4).

A read asks the core for a ReadIndex; once the leader confirmed it still
leads, the core hands back a ReadState with the commit index at that moment,
and the read is served as soon as this member applied up to it. Nothing is
written to the log.
"""

from __future__ import annotations

from syndic.member.ports import Completion
from syndic.member.proposals import TooManyRequestsError
from syndic.raft import ReadState
from syndic.server import backend as errors

# Planted bug (syndic.sim.buggify): serve a read once its index is confirmed,
# before the member applied up to it.
READ_BEFORE_APPLY = "read-before-apply"
_APPLIED_EVERYTHING = 1 << 62


class _PendingRead:
    __slots__ = ("completion", "deadline_ms")

    def __init__(self, completion: Completion, deadline_ms: int) -> None:
        self.completion = completion
        self.deadline_ms = deadline_ms


class Reads:
    """Reads by their ReadIndex context; each completes with ``None`` once it
    may be served from this member's state."""

    def __init__(self, pending_max: int, planted_bugs: frozenset[str] = frozenset()) -> None:
        if pending_max < 0:
            raise ValueError(f"reads pending_max must not be negative: {pending_max}")
        self.pending_max = pending_max
        self._pending: dict[bytes, _PendingRead] = {}
        # (read index, context) confirmed by the leader, not yet applied here.
        self._confirmed: list[tuple[int, bytes]] = []
        self._read_before_apply = READ_BEFORE_APPLY in planted_bugs

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, ctx: bytes, completion: Completion, deadline_ms: int) -> None:
        if len(self._pending) >= self.pending_max:
            raise TooManyRequestsError("read")
        self._pending[ctx] = _PendingRead(completion, deadline_ms)

    def discard(self, ctx: bytes) -> None:
        self._pending.pop(ctx, None)

    def confirm(self, read_states: tuple[ReadState, ...]) -> None:
        for state in read_states:
            if state.request_ctx in self._pending:
                self._confirmed.append((state.index, state.request_ctx))

    def serve(self, applied_index: int) -> None:
        """Finish every confirmed read whose index this member has applied."""
        if not self._confirmed:
            return
        if self._read_before_apply:
            applied_index = _APPLIED_EVERYTHING
        waiting = []
        for index, ctx in self._confirmed:
            if index > applied_index:
                waiting.append((index, ctx))
                continue
            pending = self._pending.pop(ctx, None)
            if pending is not None and not pending.completion.done():
                pending.completion.set_result(None)
        self._confirmed = waiting

    def fail(self, ctx: bytes, error: BaseException) -> None:
        pending = self._pending.pop(ctx, None)
        if pending is not None and not pending.completion.done():
            pending.completion.set_exception(error)

    def fail_expired(self, now_ms: int) -> int:
        # Every read gets the same timeout, so the oldest come first.
        expired = []
        for ctx, pending in self._pending.items():
            if pending.deadline_ms > now_ms:
                break
            expired.append(ctx)
        for ctx in expired:
            self.fail(ctx, errors.request_timed_out())
        return len(expired)

    def fail_all(self, error: BaseException) -> None:
        for ctx in list(self._pending):
            self.fail(ctx, error)
        self._confirmed.clear()
