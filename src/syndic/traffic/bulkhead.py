"""Bulkhead: a bound on concurrent calls, with a bounded, time-limited queue.

At most ``max_concurrent`` calls run at once. Further callers wait in a FIFO
queue of at most ``max_queue`` entries for at most ``max_wait_s``; a caller
that finds the queue full, or whose wait runs out, gets
:class:`BulkheadFullError` (Resilience4j's SemaphoreBulkhead with
``maxWaitDuration``; Hystrix's semaphore isolation with a queue). A released
slot is handed straight to the oldest waiter, so a newcomer can never jump
the queue.

The blocking path (``with bulkhead:``, :meth:`Bulkhead.call_sync`) never
waits: a blocking wait would stall the event loop thread. Not thread-safe:
one bulkhead per event loop.

>>> import asyncio
>>> bulkhead = Bulkhead(BulkheadConfig(max_concurrent=2, max_queue=0))
>>> async def main() -> int:
...     async with bulkhead:
...         return bulkhead.in_use
>>> asyncio.run(main())
1
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from syndic.traffic import drivers
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.errors import BulkheadFullError
from syndic.traffic.stages import ASYNC, BLOCKING, QUEUE, Admission, Stage
from syndic.traffic.validation import check_int

P = ParamSpec("P")
T = TypeVar("T")

# Bounds a rule document may ask for: 100k concurrent calls or queued
# waiters is past what one event loop can serve.
MAX_CONCURRENT_MAX = 100_000
MAX_QUEUE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class BulkheadConfig:
    max_concurrent: int = 25
    max_queue: int = 0
    max_wait_s: float | None = None

    def __post_init__(self) -> None:
        check_int("max_concurrent", self.max_concurrent, 1, MAX_CONCURRENT_MAX)
        check_int("max_queue", self.max_queue, 0, MAX_QUEUE_MAX)
        if self.max_wait_s is not None:
            check_timeout_s("max_wait_s", self.max_wait_s)


class Bulkhead(Stage):
    """See the module docstring.

    ``await bulkhead.call(fn, ...)``, ``bulkhead.call_sync(fn, ...)``,
    ``@bulkhead``, ``async with bulkhead:`` and ``with bulkhead:``. ``clock``
    (which times the queue wait) defaults to the monotonic clock.
    """

    detours = True

    __slots__ = ("_clock", "_in_use", "_stages", "_waiters", "config", "name", "rejected_total")

    def __init__(
        self,
        config: BulkheadConfig | None = None,
        *,
        clock: Clock | None = None,
        name: str = "bulkhead",
    ) -> None:
        self.config = config if config is not None else BulkheadConfig()
        self.name = name
        self._clock = default_clock(clock)
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.rejected_total = 0
        self._stages = (self,)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def rejection(self, why: str) -> BulkheadFullError:
        self.rejected_total += 1
        return BulkheadFullError(
            f"bulkhead {self.name!r} {why} "
            f"(max_concurrent={self.config.max_concurrent}, max_queue={self.config.max_queue})"
        )

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued ahead; never waits."""
        if self._in_use < self.config.max_concurrent and not self._waiters:
            self._in_use += 1
            return True
        return False

    # -- the stage: decide around one call; the drivers run it -------------------

    def enter(self, admission: Admission = ASYNC) -> Any:
        """A slot now, QUEUE (callers that can wait, while the queue has room), or a refusal."""
        if self.try_acquire():
            return None
        if not admission.can_wait:
            raise self.rejection("is full (synchronous callers do not queue)")
        self._prune()
        if len(self._waiters) >= self.config.max_queue:
            raise self.rejection("is full and its queue is full")
        return QUEUE

    async def wait_turn(self, admission: Admission = ASYNC) -> None:
        """Wait in the FIFO queue, at most ``max_wait_s``, for a slot handed over."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer: asyncio.Task[None] | None = None
        max_wait_s = self.config.max_wait_s
        if max_wait_s is not None:
            timer = loop.create_task(self._expire(waiter, max_wait_s))
        try:
            await waiter
        except BaseException:
            # A slot handed over just as we were cancelled (or timed out) is
            # passed on, or the bulkhead would leak it.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def exit(self, ticket: object, result: Any, error: BaseException | None) -> None:
        """Give the slot back, whatever the outcome (Stage protocol)."""
        self.release()

    async def _expire(self, waiter: asyncio.Future[None], max_wait_s: float) -> None:
        await self._clock.sleep(max_wait_s)
        if not waiter.done():
            waiter.set_exception(self.rejection(f"had no free slot within {max_wait_s:g}s"))

    def _prune(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()

    async def acquire(self) -> None:
        """Take a slot, queueing up to ``max_wait_s``; raises BulkheadFullError."""
        if self.enter(ASYNC) is QUEUE:
            await self.wait_turn(ASYNC)

    def release(self) -> None:
        """Return a slot; the oldest live waiter gets it directly."""
        if self._in_use <= 0:
            raise RuntimeError(f"bulkhead {self.name!r}: release() without acquire()")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves; in_use is unchanged
                return
        self._in_use -= 1

    # -- calling -----------------------------------------------------------------

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)`` in a slot, queueing for one if configured."""
        return drivers.run(self._stages, fn, args, kwargs)

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the blocking ``fn(*args, **kwargs)`` in a slot; never queues."""
        return drivers.run_sync(self._stages, fn, args, kwargs)  # type: ignore[no-any-return]

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a function or coroutine function."""
        return drivers.decorate_stages(self._stages, fn)

    async def __aenter__(self) -> Bulkhead:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __enter__(self) -> Bulkhead:
        self.enter(BLOCKING)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def check_invariants(self) -> None:
        assert 0 <= self._in_use <= self.config.max_concurrent
        assert self.waiting <= self.config.max_queue
        if self._in_use < self.config.max_concurrent:
            assert self.waiting == 0, "a free slot while callers wait"
