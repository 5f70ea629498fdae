"""Window counters: fixed window, sliding log and sliding window counter.

All three admit at most ``limit`` permits per ``window_s``; they differ in
how they treat window edges:

* :class:`FixedWindow` counts per aligned window. Cheap, but a client can
  spend a whole window's limit at the end of one window and again at the
  start of the next: up to ``2 * limit`` in a moment.
* :class:`SlidingWindowLog` remembers each admitted permit's time: exactly
  ``limit`` in every window of length ``window_s``, at a memory cost of
  ``limit`` timestamps.
* :class:`SlidingWindowCounter` keeps two counters and weights the previous
  window by how much of it still overlaps the sliding window (Cloudflare's
  approach): estimate = previous * (1 - elapsed / window_s) + current.

``acquire`` polls again at the earliest time a grant could be possible, until
``max_wait_s`` runs out; waiters are not served in arrival order.
"""

from __future__ import annotations

import abc
import math
from collections import deque

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError
from syndic.traffic.ratelimit._base import (
    EPSILON_S,
    PERIOD_S_MAX,
    check_count,
    check_non_negative,
    check_permits,
    check_positive,
    clock_reader,
)
from syndic.traffic.ratelimit.token_bucket import MAX_WAIT_S_DEFAULT

#: Most permits a sliding log may hold (one float each, ~8 MB of deque at the
#: maximum). Larger limits should use SlidingWindowCounter, which is O(1).
LOG_LIMIT_MAX = 1_000_000

#: Most polls one ``acquire`` makes; each poll is at a later clock time, so
#: the bound only matters for a clock that does not move.
POLLS_MAX = 10_000


class _Windowed(abc.ABC):
    __slots__ = ("_clock", "_limit", "_max_wait_s", "_now", "_window_s")

    def __init__(
        self, limit: int, window_s: float, clock: Clock, max_wait_s: float, limit_max: int
    ) -> None:
        self._limit = check_count(limit, "limit", 1, limit_max)
        self._window_s = check_positive(window_s, "window_s", PERIOD_S_MAX)
        self._max_wait_s = check_non_negative(max_wait_s, "max_wait_s", PERIOD_S_MAX)
        self._clock = clock
        self._now = clock_reader(clock)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window_s(self) -> float:
        return self._window_s

    @abc.abstractmethod
    def try_acquire(self, permits: int = 1) -> bool:
        """Grant ``permits`` now if the window has room; never waits."""

    @abc.abstractmethod
    def _next_chance_s(self, permits: int, now: float) -> float:
        """The earliest time at which ``permits`` could be granted."""

    async def acquire(self, permits: int = 1) -> None:
        check_permits(permits, self._limit)
        deadline = self._now() + self._max_wait_s
        for _ in range(POLLS_MAX):
            if self.try_acquire(permits):
                return
            now = self._now()
            at = self._next_chance_s(permits, now)
            if at > deadline + EPSILON_S:
                raise RateLimitedError(
                    f"{type(self).__name__}: no room for {permits} permit(s) "
                    f"within max_wait_s={self._max_wait_s}",
                    retry_after_s=at - now,
                )
            await self._clock.sleep(at - now)
        raise RateLimitedError(f"{type(self).__name__}: gave up after {POLLS_MAX} polls")

    def release(self, permits: int = 1) -> None:
        """Rate limiters take nothing back."""
        return


class FixedWindow(_Windowed):
    """At most ``limit`` permits per window aligned to multiples of ``window_s``.

    >>> from syndic.traffic.clock import ManualClock
    >>> clock = ManualClock()
    >>> w = FixedWindow(limit=2, window_s=1.0, clock=clock)
    >>> [w.try_acquire() for _ in range(3)]
    [True, True, False]
    """

    __slots__ = ("_count", "_end_s")

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Clock | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        super().__init__(limit, window_s, default_clock(clock), max_wait_s, 10**9)
        self._count = 0
        self._end_s = -math.inf

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        if now >= self._end_s:
            self._end_s = (math.floor(now / self._window_s) + 1) * self._window_s
            self._count = 0
        count = self._count + (permits if permits == 1 else check_permits(permits, self._limit))
        if count > self._limit:
            return False
        self._count = count
        return True

    def _next_chance_s(self, permits: int, now: float) -> float:
        return self._end_s if now < self._end_s else now


class SlidingWindowLog(_Windowed):
    """Exactly ``limit`` permits in every window of length ``window_s``."""

    __slots__ = ("_log",)

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Clock | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        super().__init__(limit, window_s, default_clock(clock), max_wait_s, LOG_LIMIT_MAX)
        # Bounded: entries are only added while len(log) < limit.
        self._log: deque[float] = deque()

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        log = self._log
        cutoff = now - self._window_s
        # The window is (now - window_s, now]; entries at the cutoff have left it.
        while log and log[0] <= cutoff + EPSILON_S:
            log.popleft()
        if permits != 1:
            check_permits(permits, self._limit)
        if len(log) + permits > self._limit:
            return False
        if permits == 1:
            log.append(now)
        else:
            log.extend([now] * permits)
        return True

    def _next_chance_s(self, permits: int, now: float) -> float:
        excess = len(self._log) + permits - self._limit
        if excess <= 0:
            return now
        return self._log[excess - 1] + self._window_s


class SlidingWindowCounter(_Windowed):
    """Two counters; the previous window counts in proportion to its overlap."""

    __slots__ = ("_current", "_previous", "_start_s")

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Clock | None = None,
        max_wait_s: float = MAX_WAIT_S_DEFAULT,
    ) -> None:
        super().__init__(limit, window_s, default_clock(clock), max_wait_s, 10**9)
        self._previous = 0
        self._current = 0
        self._start_s = -math.inf

    def _roll(self, now: float) -> None:
        w = self._window_s
        if now >= self._start_s + 2 * w:
            self._previous = 0
        else:
            self._previous = self._current
        self._current = 0
        self._start_s = math.floor(now / w) * w

    def estimate(self) -> float:
        """Permits the sliding window is estimated to hold now."""
        now = self._now()
        if now >= self._start_s + self._window_s:
            self._roll(now)
        weight = 1.0 - (now - self._start_s) / self._window_s
        return self._previous * weight + self._current

    def try_acquire(self, permits: int = 1) -> bool:
        now = self._now()
        w = self._window_s
        if now >= self._start_s + w:
            self._roll(now)
        if permits != 1:
            check_permits(permits, self._limit)
        current = self._current + permits
        if current > self._limit:
            return False
        if self._previous and (
            self._previous * (1.0 - (now - self._start_s) / w) + current > self._limit + 1e-9
        ):
            return False
        self._current = current
        return True

    def _next_chance_s(self, permits: int, now: float) -> float:
        end = self._start_s + self._window_s
        room = self._limit - self._current - permits
        if room < 0 or self._previous == 0:
            return end
        # previous * (1 - (t - start) / w) <= room  =>  t >= start + w * (1 - room / previous)
        return min(end, self._start_s + self._window_s * (1.0 - room / self._previous))
