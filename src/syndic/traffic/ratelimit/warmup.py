"""Token bucket with cold-start warm-up (Sentinel's WarmUpController, after
Guava's SmoothRateLimiter.SmoothWarmingUp).

A limiter that has been idle is "cold": it admits ``rate_per_s /
cold_factor`` at first and speeds up linearly (in stored permits) until it
reaches ``rate_per_s`` after ``warmup_s`` of saturating demand. This keeps a
cold cache, connection pool or JIT from being flooded at full rate.

Formulas (Guava, in seconds): with ``stable = 1 / rate_per_s`` and
``cold = stable * cold_factor``::

    threshold_permits = 0.5 * warmup_s / stable
    max_permits       = threshold_permits + 2 * warmup_s / (stable + cold)
    interval(p)       = stable + (p - threshold_permits) * slope   for p > threshold
    slope             = (cold - stable) / (max_permits - threshold_permits)

Stored permits refill while idle at ``max_permits / warmup_s`` per second.
Spending permits above the threshold costs the area under ``interval``; the
area from ``max_permits`` down to the threshold is exactly ``warmup_s``.

Invariant: every permit costs at least ``stable``, so over any interval of
length T at most ``rate_per_s * T + permits of one request`` are granted.
"""

from __future__ import annotations

import asyncio

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError, RuleError
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
from syndic.traffic.ratelimit.token_bucket import MAX_WAIT_S_DEFAULT

#: Sentinel's and Guava's default cold factor.
COLD_FACTOR_DEFAULT = 3.0

#: Largest cold factor: beyond it the cold rate is indistinguishable from closed.
COLD_FACTOR_MAX = 1000.0


class WarmUpBucket:
    """Starts at ``rate_per_s / cold_factor``, reaches ``rate_per_s`` after ``warmup_s``.

    >>> from syndic.traffic.clock import ManualClock
    >>> clock = ManualClock()
    >>> w = WarmUpBucket(rate_per_s=10, warmup_s=10, clock=clock)
    >>> round(w.current_interval_s(), 9)   # cold: 10/s divided by 3
    0.3
    """

    __slots__ = (
        "_clock",
        "_cold_factor",
        "_cooldown_s",
        "_max_permits",
        "_max_wait_s",
        "_next_free_s",
        "_now",
        "_slope",
        "_stable_s",
        "_stored",
        "_threshold",
        "_warmup_s",
    )

    def __init__(
        self,
        rate_per_s: float,
        warmup_s: float,
        *,
        clock: Clock | None = None,
        cold_factor: float = COLD_FACTOR_DEFAULT,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        rate = check_positive(rate_per_s, "rate_per_s", RATE_PER_S_MAX)
        self._warmup_s = check_positive(warmup_s, "warmup_s", PERIOD_S_MAX)
        cf = check_positive(cold_factor, "cold_factor", COLD_FACTOR_MAX)
        if cf <= 1.0:
            raise RuleError("cold_factor", f"must be > 1 (1 means no warm-up), got {cold_factor!r}")
        self._cold_factor = cf
        self._max_wait_s = check_non_negative(max_wait_s, "max_wait_s", PERIOD_S_MAX)
        self._clock = clock = default_clock(clock)
        self._now = clock_reader(clock)
        stable = 1.0 / rate
        cold = stable * cf
        self._stable_s = stable
        self._threshold = 0.5 * self._warmup_s / stable
        self._max_permits = self._threshold + 2.0 * self._warmup_s / (stable + cold)
        self._slope = (cold - stable) / (self._max_permits - self._threshold)
        self._cooldown_s = self._warmup_s / self._max_permits
        self._stored = self._max_permits  # Guava: a new warming-up limiter starts cold.
        self._next_free_s = clock.now_s()

    @property
    def rate_per_s(self) -> float:
        return 1.0 / self._stable_s

    @property
    def max_permits(self) -> float:
        return self._max_permits

    @property
    def stored_permits(self) -> float:
        self._resync(self._now())
        return self._stored

    def current_interval_s(self) -> float:
        """Spacing the next permit would cost (``stable`` when warm, up to ``cold``)."""
        self._resync(self._now())
        above = self._stored - self._threshold
        return self._stable_s + above * self._slope if above > 0 else self._stable_s

    def _resync(self, now: float) -> None:
        if now > self._next_free_s:
            stored = self._stored + (now - self._next_free_s) / self._cooldown_s
            self._stored = stored if stored < self._max_permits else self._max_permits
            self._next_free_s = now

    def _cost_s(self, permits: float) -> float:
        """Seconds the next ``permits`` permits cost, spending stored ones first."""
        stored = self._stored
        spend = permits if permits < stored else stored
        fresh = permits - spend
        cost = 0.0
        above = stored - self._threshold
        if above > 0.0:
            take = spend if spend < above else above
            # Area of the trapezoid under interval() between above-take and above.
            cost = take * (2.0 * self._stable_s + (2.0 * above - take) * self._slope) * 0.5
            spend -= take
        self._stored = stored - (permits - fresh)
        return cost + (spend + fresh) * self._stable_s

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        if self._next_free_s > now + EPSILON_S:
            return False
        if permits != 1:
            check_permits(permits, PERMITS_MAX)
        self._resync(now)
        # Guava: this request goes now; the next one pays for it.
        self._next_free_s = max(self._next_free_s, now) + self._cost_s(permits)
        return True

    async def acquire(self, permits: int = 1) -> None:
        check_permits(permits, PERMITS_MAX)
        now = self._now()
        self._resync(now)
        wait = self._next_free_s - now
        if wait > self._max_wait_s + EPSILON_S:
            raise RateLimitedError(
                f"warm-up bucket: would wait {wait:.6f}s, more than max_wait_s={self._max_wait_s}",
                retry_after_s=wait - self._max_wait_s,
            )
        moment = max(self._next_free_s, now)
        stored_before = self._stored
        cost = self._cost_s(permits)
        self._next_free_s = moment + cost
        if wait <= EPSILON_S:
            return
        try:
            await self._clock.sleep(wait)
        except asyncio.CancelledError:
            self._next_free_s -= cost
            self._stored = stored_before
            raise

    def release(self, permits: int = 1) -> None:
        """Rate limiters take nothing back."""
