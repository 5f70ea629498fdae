"""Dubbo's cluster fault-tolerance modes over a list of endpoints.

A cluster mode decides what one logical call does with several providers
(Apache Dubbo, ``org.apache.dubbo.rpc.cluster.support``):

==========  ==============================================================
failover    try one endpoint; on failure retry on a *different* one, up to
            ``retries`` more (Dubbo's default; for idempotent reads)
failfast    one attempt, errors surface at once (non-idempotent writes)
failsafe    one attempt, errors are logged and swallowed; returns a default
            (audit logs, metrics pushes)
failback    one attempt; on failure return a default and retry in the
            background every ``interval_s``, at most ``max_retries`` times,
            with at most ``max_pending`` calls queued (notifications)
forking     call ``forks`` endpoints in parallel, first success wins, the
            rest are cancelled (latency-critical reads)
broadcast   call every endpoint; fail if any fails (cache invalidation)
==========  ==============================================================

An invocation is ``call(endpoint) -> Awaitable[T]``; endpoints are any
values (addresses, clients). Which endpoint goes first is the caller's
choice: pass them ordered by a balancer.

>>> import asyncio
>>> async def call(endpoint: str) -> str:
...     if endpoint == "10.0.0.1":
...         raise ConnectionError("refused")
...     return f"served by {endpoint}"
>>> asyncio.run(Failover(retries=2).invoke(["10.0.0.1", "10.0.0.2"], call))
'served by 10.0.0.2'
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.errors import NoEndpointError, RejectedError, RuleError
from syndic.traffic.validation import check_int

E = TypeVar("E")
T = TypeVar("T")

log = logging.getLogger(__name__)

# Bounds: Dubbo's defaults are retries=2, forks=2, failbacktasks=100,
# retry period 5 s, 3 retries per failed call.
RETRIES_MAX = 100
FORKS_MAX = 64
ENDPOINTS_MAX = 10_000
FAILBACK_PENDING_MAX = 100_000
FAILBACK_RETRIES_MAX = 100

Invoke = Callable[[E], Awaitable[T]]


def _endpoints(endpoints: Sequence[E]) -> Sequence[E]:
    if len(endpoints) == 0:
        raise NoEndpointError("cluster: no endpoint to call")
    if len(endpoints) > ENDPOINTS_MAX:
        raise RuleError("endpoints", f"at most {ENDPOINTS_MAX} endpoints, got {len(endpoints)}")
    return endpoints


def _retryable(exc: BaseException, retry_on: tuple[type[BaseException], ...]) -> bool:
    # Cancellation and interrupts always propagate; a rejection is a verdict.
    return (
        isinstance(exc, Exception)
        and not isinstance(exc, RejectedError)
        and isinstance(exc, retry_on)
    )


class Failover:
    """Retry on another endpoint; each endpoint is tried at most once."""

    __slots__ = ("_retry_on", "retries")

    def __init__(
        self, *, retries: int = 2, retry_on: tuple[type[BaseException], ...] = (Exception,)
    ) -> None:
        self.retries = check_int("retries", retries, 0, RETRIES_MAX)
        self._retry_on = tuple(retry_on)

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> T:
        endpoints = _endpoints(endpoints)
        attempts = min(self.retries + 1, len(endpoints))
        for index in range(attempts):
            try:
                return await call(endpoints[index])
            except BaseException as exc:
                if index + 1 >= attempts or not _retryable(exc, self._retry_on):
                    raise
                log.debug(
                    "failover: %r failed (%r); trying the next endpoint", endpoints[index], exc
                )
        raise AssertionError("unreachable: the loop returns or raises")


class Failfast:
    """One attempt on the first endpoint."""

    __slots__ = ()

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> T:
        return await call(_endpoints(endpoints)[0])


class Failsafe(Generic[T]):
    """One attempt; an ``Exception`` is logged and ``default`` returned."""

    __slots__ = ("default", "swallowed_total")

    def __init__(self, default: T) -> None:
        self.default = default
        self.swallowed_total = 0

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> T:
        try:
            return await call(_endpoints(endpoints)[0])
        except Exception as exc:
            self.swallowed_total += 1
            log.warning("failsafe: call failed and was ignored: %r", exc)
            return self.default


@dataclass(slots=True)
class _FailedCall(Generic[E, T]):
    endpoints: Sequence[E]
    call: Invoke[E, T]
    retries_done: int
    due_at_s: float


class Failback(Generic[T]):
    """One attempt; failures are retried in the background, bounded.

    ``retry_due()`` runs one round (tests drive it directly); ``start()``
    runs rounds every ``interval_s`` on a background task until
    ``aclose()``.
    """

    __slots__ = (
        "_clock",
        "_pending",
        "_task",
        "default",
        "dropped_total",
        "gave_up_total",
        "interval_s",
        "max_pending",
        "max_retries",
        "recovered_total",
    )

    def __init__(
        self,
        default: T,
        *,
        clock: Clock | None = None,
        interval_s: float = 5.0,
        max_retries: int = 3,
        max_pending: int = 100,
    ) -> None:
        self.default = default
        self._clock = clock = default_clock(clock)
        check_timeout_s("interval_s", interval_s)
        self.interval_s = interval_s
        self.max_retries = check_int("max_retries", max_retries, 1, FAILBACK_RETRIES_MAX)
        self.max_pending = check_int("max_pending", max_pending, 1, FAILBACK_PENDING_MAX)
        self._pending: collections.deque[_FailedCall[Any, T]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped_total = 0
        self.gave_up_total = 0
        self.recovered_total = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> T:
        endpoints = _endpoints(endpoints)
        try:
            return await call(endpoints[0])
        except Exception as exc:
            self._enqueue(_FailedCall(endpoints, call, 0, self._clock.now_s() + self.interval_s))
            log.info("failback: call failed (%r); queued for a background retry", exc)
            return self.default

    def _enqueue(self, failed: _FailedCall[Any, T]) -> None:
        if len(self._pending) >= self.max_pending:
            # Dubbo logs and drops beyond failbacktasks; the queue stays bounded.
            self.dropped_total += 1
            log.warning("failback: %d calls pending; dropping a failed call", self.max_pending)
            return
        self._pending.append(failed)

    async def retry_due(self) -> int:
        """Retry every pending call that is due; returns how many succeeded."""
        now = self._clock.now_s()
        due = [f for f in self._pending if f.due_at_s <= now]
        if not due:
            return 0
        self._pending = collections.deque(f for f in self._pending if f.due_at_s > now)
        recovered = 0
        for failed in due:
            endpoint = failed.endpoints[(failed.retries_done + 1) % len(failed.endpoints)]
            try:
                await failed.call(endpoint)
            except Exception as exc:
                failed.retries_done += 1
                if failed.retries_done >= self.max_retries:
                    self.gave_up_total += 1
                    log.warning("failback: giving up after %d retries: %r", self.max_retries, exc)
                else:
                    failed.due_at_s = self._clock.now_s() + self.interval_s
                    self._enqueue(failed)
            else:
                recovered += 1
        self.recovered_total += recovered
        return recovered

    def start(self) -> None:
        """Run :meth:`retry_due` every ``interval_s`` on a background task."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._clock.sleep(self.interval_s)
            try:
                await self.retry_due()
            except Exception:
                log.exception("failback: background round failed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Forking:
    """Call ``forks`` endpoints in parallel; the first success wins."""

    __slots__ = ("forks",)

    def __init__(self, *, forks: int = 2) -> None:
        self.forks = check_int("forks", forks, 1, FORKS_MAX)

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> T:
        chosen = _endpoints(endpoints)[: self.forks]
        loop = asyncio.get_running_loop()
        running = {loop.create_task(_invoke(call, endpoint)) for endpoint in chosen}
        last_error: BaseException | None = None
        try:
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception() if not task.cancelled() else asyncio.CancelledError()
                    if error is None:
                        return task.result()
                    last_error = error
            assert last_error is not None
            raise last_error  # Dubbo: when every fork fails, the last error surfaces
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)


async def _invoke(call: Invoke[E, T], endpoint: E) -> T:
    return await call(endpoint)


class Broadcast:
    """Call every endpoint concurrently; raise if any failed."""

    __slots__ = ()

    async def invoke(self, endpoints: Sequence[E], call: Invoke[E, T]) -> list[T]:
        endpoints = _endpoints(endpoints)
        outcomes = await asyncio.gather(
            *(_invoke(call, endpoint) for endpoint in endpoints), return_exceptions=True
        )
        errors: list[Exception] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and interrupts are not "a failed endpoint"
                errors.append(outcome)
        if errors:
            raise ExceptionGroup(
                f"broadcast: {len(errors)} of {len(endpoints)} endpoints failed", errors
            )
        return outcomes  # type: ignore[return-value]
