"""Concurrency limiter: at most ``max_concurrency`` permits held at once.

Unlike the rate limiters, permits are held until :meth:`ConcurrencyLimiter.release`.
Waiters queue in arrival order, at most ``queue_length_max`` of them, each for
at most ``max_wait_s`` (Sentinel's thread-count flow control with a queue, or
Resilience4j's SemaphoreBulkhead with maxWaitDuration).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError
from syndic.traffic.ratelimit._base import (
    PERIOD_S_MAX,
    check_count,
    check_non_negative,
    check_permits,
)

#: Default waiters queued at once. Each waiter is a parked task; beyond a
#: thousand the queue itself becomes the latency problem.
QUEUE_LENGTH_MAX_DEFAULT = 1024

#: Default longest wait for a permit, in seconds.
MAX_WAIT_S_DEFAULT = 1.0


class ConcurrencyLimiter:
    """Semaphore with a bounded FIFO wait queue and a bounded wait.

    >>> from syndic.traffic.clock import ManualClock
    >>> c = ConcurrencyLimiter(2, clock=ManualClock())
    >>> c.try_acquire(), c.try_acquire(), c.try_acquire()
    (True, True, False)
    >>> c.release(); c.in_flight
    1
    """

    __slots__ = ("_clock", "_in_flight", "_max", "_max_wait_s", "_queue_max", "_waiters")

    def __init__(
        self,
        max_concurrency: int,
        *,
        clock: Clock | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
        queue_length_max: int = QUEUE_LENGTH_MAX_DEFAULT,
    ) -> None:
        self._max = check_count(max_concurrency, "max_concurrency")
        self._max_wait_s = check_non_negative(max_wait_s, "max_wait_s", PERIOD_S_MAX)
        self._queue_max = check_count(queue_length_max, "queue_length_max", 0, 1_000_000)
        self._clock = clock = default_clock(clock)
        self._in_flight = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_concurrency(self) -> int:
        return self._max

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self, permits: int = 1) -> bool:
        if permits != 1:
            check_permits(permits, self._max)
        # Queued waiters come first: a newcomer must not overtake them.
        if self._waiters or self._in_flight + permits > self._max:
            return False
        self._in_flight += permits
        return True

    async def acquire(self, permits: int = 1) -> None:
        check_permits(permits, self._max)
        if self.try_acquire(permits):
            return
        if len(self._waiters) >= self._queue_max:
            raise RateLimitedError(
                f"concurrency limiter: {self._in_flight}/{self._max} in flight and "
                f"{len(self._waiters)} waiting (queue_length_max={self._queue_max})"
            )
        if self._max_wait_s <= 0.0:
            raise RateLimitedError(
                f"concurrency limiter: {self._in_flight}/{self._max} in flight, max_wait_s=0"
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (permits, granted)
        self._waiters.append(entry)
        timer = asyncio.ensure_future(self._clock.sleep(self._max_wait_s))
        try:
            await asyncio.wait((granted, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._abandon(entry)
            raise
        finally:
            timer.cancel()
        if granted.done():
            return
        self._abandon(entry)
        raise RateLimitedError(
            f"concurrency limiter: no permit within max_wait_s={self._max_wait_s}"
        )

    def _abandon(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        permits, granted = entry
        if granted.done() and not granted.cancelled():
            # Granted just as we gave up: hand the permits on.
            self.release(permits)
            return
        granted.cancel()
        with suppress(ValueError):
            self._waiters.remove(entry)
        self._wake()

    def release(self, permits: int = 1) -> None:
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise ValueError(f"permits must be an int >= 1, got {permits!r}")
        if permits > self._in_flight:
            raise ValueError(f"release of {permits} permit(s) but only {self._in_flight} are held")
        self._in_flight -= permits
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._in_flight + waiters[0][0] <= self._max:
            permits, granted = waiters.popleft()
            if granted.done():
                continue
            self._in_flight += permits
            granted.set_result(None)

    @asynccontextmanager
    async def hold(self, permits: int = 1) -> AsyncIterator[None]:
        """``async with limiter.hold():`` acquires, and releases on exit."""
        await self.acquire(permits)
        try:
            yield
        finally:
            self.release(permits)

    def check_invariants(self) -> None:
        assert 0 <= self._in_flight <= self._max, (self._in_flight, self._max)
        assert len(self._waiters) <= self._queue_max
