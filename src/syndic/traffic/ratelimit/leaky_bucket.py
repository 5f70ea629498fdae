"""Leaky bucket with uniform queueing (Sentinel's RateLimiterController).

Requests leave the bucket evenly spaced, ``permits / rate_per_s`` apart. A
request that finds the line moving waits its turn; one whose turn is more
than ``max_queue_s`` away is rejected at once, so no caller waits longer than
that. There is no burst: after idleness one request passes at once, the next
one a full spacing later.

# Sentinel: RateLimiterController.checkQps, latestPassedTime + costTime.
"""

from __future__ import annotations

import asyncio
import math

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError
from syndic.traffic.ratelimit._base import (
    EPSILON_S,
    PERIOD_S_MAX,
    PERMITS_MAX,
    RATE_PER_S_MAX,
    check_non_negative,
    check_permits,
    check_positive,
    clock_reader,
)

#: Sentinel's default maxQueueingTimeMs is 500 ms.
MAX_QUEUE_S_DEFAULT = 0.5


class LeakyBucket:
    """Evenly spaced admission at ``rate_per_s``, queueing at most ``max_queue_s``.

    >>> from syndic.traffic.clock import ManualClock
    >>> clock = ManualClock()
    >>> bucket = LeakyBucket(rate_per_s=10, clock=clock)
    >>> bucket.try_acquire(), bucket.try_acquire()
    (True, False)
    >>> clock.advance(0.1)
    >>> bucket.try_acquire()
    True
    """

    __slots__ = ("_clock", "_interval_s", "_latest_s", "_max_queue_s", "_now")

    def __init__(
        self,
        rate_per_s: float,
        *,
        clock: Clock | None = None,
        max_queue_s: float = MAX_QUEUE_S_DEFAULT,
    ) -> None:
        rate = check_positive(rate_per_s, "rate_per_s", RATE_PER_S_MAX)
        self._max_queue_s = check_non_negative(max_queue_s, "max_queue_s", PERIOD_S_MAX)
        self._clock = clock = default_clock(clock)
        self._now = clock_reader(clock)
        self._interval_s = 1.0 / rate
        self._latest_s = -math.inf  # when the last admitted request passed (or will)

    @property
    def rate_per_s(self) -> float:
        return 1.0 / self._interval_s

    def queued_s(self) -> float:
        """How long a request arriving now would wait (0 if it passes at once)."""
        return max(0.0, self._latest_s + self._interval_s - self._now())

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        if permits == 1:
            expected = self._latest_s + self._interval_s
        else:
            expected = self._latest_s + check_permits(permits, PERMITS_MAX) * self._interval_s
        if expected <= now + EPSILON_S:
            self._latest_s = now
            return True
        return False

    async def acquire(self, permits: int = 1) -> None:
        cost = check_permits(permits, PERMITS_MAX) * self._interval_s
        now = self._now()
        expected = self._latest_s + cost
        if expected <= now + EPSILON_S:
            self._latest_s = now
            return
        wait = expected - now
        if wait > self._max_queue_s + EPSILON_S:
            raise RateLimitedError(
                f"leaky bucket: would queue {wait:.6f}s, more than max_queue_s={self._max_queue_s}",
                retry_after_s=wait - self._max_queue_s,
            )
        self._latest_s = expected
        try:
            await self._clock.sleep(wait)
        except asyncio.CancelledError:
            self._latest_s -= cost
            raise

    def release(self, permits: int = 1) -> None:
        """Rate limiters take nothing back."""
