"""Token bucket, kept as a GCRA theoretical arrival time.

A bucket of ``burst`` tokens refilled at ``rate_per_s`` is equivalent to the
Generic Cell Rate Algorithm (ITU-T I.371): keep one float, the theoretical
arrival time ``tat`` at which the bucket would be full again. Granting ``n``
permits moves it ``n / rate_per_s`` later; a grant is allowed while
``tat - now <= burst / rate_per_s``. One float of state, no refill loop, no
allocation on the hot path.

Invariant: over any interval of length T, at most ``rate_per_s * T + burst``
permits are granted.
"""

from __future__ import annotations

import asyncio
import math

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError
from syndic.traffic.ratelimit._base import (
    EPSILON_S,
    PERIOD_S_MAX,
    RATE_PER_S_MAX,
    check_count,
    check_non_negative,
    check_permits,
    check_positive,
    clock_reader,
)

#: Default longest wait inside ``acquire``, in seconds. A caller that would
#: queue longer than a second is better told when to retry: RPC deadlines
#: are typically of that order.
MAX_WAIT_S_DEFAULT = 1.0


class TokenBucket:
    """``rate_per_s`` permits per second with bursts of up to ``burst``.

    >>> from syndic.traffic.clock import ManualClock
    >>> clock = ManualClock()
    >>> bucket = TokenBucket(rate_per_s=2, burst=2, clock=clock)
    >>> [bucket.try_acquire() for _ in range(3)]
    [True, True, False]
    >>> clock.advance(0.5)
    >>> bucket.try_acquire()
    True
    """

    __slots__ = ("_burst", "_clock", "_interval_s", "_max_wait_s", "_now", "_tat_s", "_tau_s")

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Clock | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        rate = check_positive(rate_per_s, "rate_per_s", RATE_PER_S_MAX)
        self._burst = check_count(burst, "burst")
        self._max_wait_s = check_non_negative(max_wait_s, "max_wait_s", PERIOD_S_MAX)
        self._clock = clock = default_clock(clock)
        self._now = clock_reader(clock)
        self._interval_s = 1.0 / rate
        self._tau_s = self._burst * self._interval_s
        # Starts full: a fresh limiter admits a burst, as every token bucket does.
        self._tat_s = -math.inf

    @property
    def rate_per_s(self) -> float:
        return 1.0 / self._interval_s

    @property
    def burst(self) -> int:
        return self._burst

    def available(self) -> float:
        """Tokens in the bucket now (fractional)."""
        now = self._now()
        return max(0.0, (now + self._tau_s - max(self._tat_s, now)) / self._interval_s)

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        tat = self._tat_s
        if tat < now:  # noqa: PLR1730 -- a compare is cheaper than a max() call here
            tat = now
        if permits == 1:
            new = tat + self._interval_s
        else:
            new = tat + check_permits(permits, self._burst) * self._interval_s
        if new - now > self._tau_s + EPSILON_S:
            return False
        self._tat_s = new
        return True

    async def acquire(self, permits: int = 1) -> None:
        """Reserve permits now and wait until they fall due.

        Reservations are served in arrival order (each moves ``tat``). If the
        wait would exceed ``max_wait_s`` nothing is reserved and
        RateLimitedError says how long until it would fit.
        """
        # The permits == 1 case skips the check call and max(): this is the
        # per-request path of every asyncio caller.
        if permits == 1:
            cost = self._interval_s
        else:
            cost = check_permits(permits, self._burst) * self._interval_s
        now = self._now()
        tat = self._tat_s
        if tat < now:  # noqa: PLR1730 -- a compare is cheaper than a max() call here
            tat = now
        new = tat + cost
        wait = new - now - self._tau_s
        if wait <= EPSILON_S:
            self._tat_s = new
            return
        if wait > self._max_wait_s:
            raise RateLimitedError(
                f"token bucket: {permits} permit(s) need {wait:.6f}s, "
                f"more than max_wait_s={self._max_wait_s}",
                retry_after_s=wait - self._max_wait_s,
            )
        self._tat_s = new
        try:
            await self._clock.sleep(wait)
        except asyncio.CancelledError:
            # golang.org/x/time/rate: a cancelled reservation gives its tokens back.
            self._tat_s -= cost
            raise

    def release(self, permits: int = 1) -> None:
        """Rate limiters take nothing back."""
