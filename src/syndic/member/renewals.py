"""Lease keep-alives a follower hands to its leader.

Lease time is the leader's alone (DESIGN): only the leader renews a lease,
in its memory, with no log entry. A follower's callers are queued here by
lease id; on the follower's next cycle the queue goes to the leader it knows
of as one batch through :meth:`PeerPort.forward_renewals` (etcd forwards each
keep-alive to the leader over HTTP; one batch per cycle keeps a thousand
leases to a few round trips). The driver carries the batch and hands the
leader's answer back by the batch's id: each caller gets its lease's TTL in
seconds (-1: unknown or expired there), or the leader's error.

A batch that finds no leader (the link is down, or the member asked is no
longer leader) goes back to the queue and leaves again after the next tick,
as the server once slept a heartbeat before asking the next leader; a caller
still waiting at its deadline is answered "request timed out", like a
proposal. Nothing here waits or reads a clock: the driver ticks and sweeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

from syndic.member.ports import Completion
from syndic.member.proposals import TooManyRequestsError
from syndic.server import backend as errors
from syndic.server.backend import ServerError

# Lease ids in one forwarded batch; more wait for the next batch. The leader
# refuses a larger one (a sound follower never sends it).
RENEWALS_PER_BATCH_MAX = 4096


class _Waiter:
    __slots__ = ("completion", "deadline_ms")

    def __init__(self, completion: Completion, deadline_ms: int) -> None:
        self.completion = completion
        # The driver's clock reading past which the caller is answered
        # "request timed out".
        self.deadline_ms = deadline_ms


class ForwardedRenewals:
    """A follower's keep-alives: queued by lease id, then in flight by batch id."""

    def __init__(
        self,
        ids: Iterator[int],
        *,
        pending_max: int,
        batches_in_flight_max: int,
        batch_leases_max: int = RENEWALS_PER_BATCH_MAX,
    ) -> None:
        if pending_max < 0 or batches_in_flight_max <= 0 or batch_leases_max <= 0:
            raise ValueError(
                f"renewal bounds must be positive: pending {pending_max}, "
                f"batches {batches_in_flight_max}, leases per batch {batch_leases_max}"
            )
        # Batch ids come from the runtime's ids, unique across restarts: an
        # answer to a batch a predecessor sent finds no batch here.
        self._ids = ids
        self.pending_max = pending_max
        self.batches_in_flight_max = batches_in_flight_max
        self.batch_leases_max = batch_leases_max
        self._queued: dict[int, list[_Waiter]] = {}
        self._in_flight: dict[int, dict[int, list[_Waiter]]] = {}
        self._waiting = 0
        # Set when a batch found no leader: the queue waits for the next tick.
        self._held = False

    def __len__(self) -> int:
        """Callers waiting, queued or in flight."""
        return self._waiting

    @property
    def batches_in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def ready_to_send(self) -> bool:
        return (
            bool(self._queued)
            and not self._held
            and len(self._in_flight) < self.batches_in_flight_max
        )

    def add(self, lease_id: int, completion: Completion, deadline_ms: int) -> None:
        """Queue a caller's keep-alive; "too many requests" (and nothing
        queued) past ``pending_max`` waiting callers."""
        if self._waiting >= self.pending_max:
            raise TooManyRequestsError("renewal")
        self._queued.setdefault(lease_id, []).append(_Waiter(completion, deadline_ms))
        self._waiting += 1

    def flush(self, send: Callable[[int, list[int]], bool]) -> int:
        """Hand queued keep-alives to ``send`` (the leader's port, or this
        member's own renewal once it leads), a batch each, while the
        in-flight bound allows; how many batches went. ``send`` takes the
        batch's id and its lease ids, and False sends the batch back to the
        queue until the next tick."""
        sent = 0
        while self.ready_to_send:
            lease_ids = list(itertools.islice(self._queued, self.batch_leases_max))
            batch = {lease_id: self._queued.pop(lease_id) for lease_id in lease_ids}
            batch_id = next(self._ids)
            self._in_flight[batch_id] = batch
            if not send(batch_id, lease_ids):
                self._requeue(batch_id)
                break
            sent += 1
        return sent

    def tick(self) -> None:
        """A tick passed: a batch that found no leader may be tried again."""
        self._held = False

    def answered(self, batch_id: int, ttls: Sequence[object]) -> None:
        """The leader's answer to ``batch_id``: one TTL in s per lease, in the
        order sent. A malformed answer fails the batch as etcd's timeout."""
        batch = self._in_flight.pop(batch_id, None)
        if batch is None:
            return  # timed out already, a duplicate, or a predecessor's
        sound = len(ttls) == len(batch) and all(
            isinstance(ttl, int) and not isinstance(ttl, bool) for ttl in ttls
        )
        if not sound:
            self._finish(batch.values(), error=errors.request_timed_out())
            return
        for waiters, ttl in zip(batch.values(), ttls, strict=True):
            self._finish((waiters,), result=ttl)

    def refused(self, batch_id: int, error: ServerError | None) -> None:
        """``batch_id`` got no answer (``error`` None: the leader could not be
        reached) or the leader's error. "Not leader" or no answer: the batch
        is queued again for the next leader after a tick; any other error is
        its callers'."""
        if error is None or (error.code, error.message) == _NOT_LEADER:
            self._requeue(batch_id)
            return
        batch = self._in_flight.pop(batch_id, None)
        if batch is not None:
            self._finish(batch.values(), error=error)

    def fail_expired(self, now_ms: int) -> int:
        """Answer "request timed out" to callers past their deadline; how many.
        A batch left with no caller stops counting against the bound."""
        failed = _expire(self._queued, now_ms)
        for batch_id in list(self._in_flight):
            batch = self._in_flight[batch_id]
            failed += _expire(batch, now_ms)
            if not batch:
                del self._in_flight[batch_id]
        self._waiting -= failed
        return failed

    def fail_all(self, error: BaseException) -> None:
        self._finish(self._queued.values(), error=error)
        self._queued.clear()
        for batch in self._in_flight.values():
            self._finish(batch.values(), error=error)
        self._in_flight.clear()

    def _requeue(self, batch_id: int) -> None:
        batch = self._in_flight.pop(batch_id, None)
        self._held = True
        if batch is None:
            return
        for lease_id, waiters in batch.items():
            self._queued.setdefault(lease_id, []).extend(waiters)

    def _finish(
        self,
        groups: Iterable[list[_Waiter]],
        *,
        result: object = None,
        error: BaseException | None = None,
    ) -> None:
        for waiters in groups:
            for waiter in waiters:
                self._waiting -= 1
                completion = waiter.completion
                if completion.done():
                    continue
                if error is not None:
                    completion.set_exception(error)
                else:
                    completion.set_result(result)


def _expire(waiting: dict[int, list[_Waiter]], now_ms: int) -> int:
    """Fail the waiters of ``waiting`` past their deadline, dropping emptied
    lease ids; how many."""
    failed = 0
    for lease_id in list(waiting):
        keep = []
        for waiter in waiting[lease_id]:
            if waiter.deadline_ms > now_ms:
                keep.append(waiter)
                continue
            failed += 1
            if not waiter.completion.done():
                waiter.completion.set_exception(errors.request_timed_out())
        if keep:
            waiting[lease_id] = keep
        else:
            del waiting[lease_id]
    return failed


_NOT_LEADER = (errors.not_leader().code, errors.not_leader().message)
