"""System adaptive protection for servers (BBR-style, as Kratos and Sentinel).

A server is past capacity when more requests are in flight than it can
complete: by Little's law its capacity is ``max_pass_per_s * min_rt_s``,
where ``max_pass_per_s`` is the best completion rate seen in any bucket of
the window and ``min_rt_s`` the lowest average response time of any bucket.
While the CPU trigger fires (``cpu_usage() >= cpu_threshold``), a request
is shed if::

    in_flight > 1 and in_flight > max_pass_per_s * min_rt_s

After a shed, the same check stays on for ``cooldown_s`` even if CPU drops,
so the system does not oscillate (# Kratos: aegis/ratelimit/bbr shouldDrop).

``cpu_usage`` is any callable returning a fraction in [0, 1]; combine load
average or other triggers into it as needed.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import OverloadedError, RuleError
from syndic.traffic.ratelimit._base import (
    PERIOD_S_MAX,
    check_count,
    check_non_negative,
    check_permits,
    check_positive,
    clock_reader,
)

#: Kratos defaults: a 10 s window of 100 buckets, CPU threshold 80 %.
WINDOW_S_DEFAULT = 10.0
BUCKETS_DEFAULT = 100
CPU_THRESHOLD_DEFAULT = 0.8
#: Kratos keeps shedding for one second after the last drop.
COOLDOWN_S_DEFAULT = 1.0
BUCKETS_MAX = 10_000


class SystemProtection:
    """Sheds requests when in-flight work exceeds the measured capacity.

    Use :meth:`admit` (measures response time) or ``try_acquire`` followed by
    ``release(latency_s=...)``.
    """

    __slots__ = (
        "_bucket_s",
        "_buckets",
        "_clock",
        "_cooldown_s",
        "_cpu",
        "_cpu_threshold",
        "_current",
        "_in_flight",
        "_max_in_flight",
        "_now",
        "_passes",
        "_prev_drop_s",
        "_rt_counts",
        "_rt_sums",
    )

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        cpu_usage: Callable[[], float],
        cpu_threshold: float = CPU_THRESHOLD_DEFAULT,
        window_s: float = WINDOW_S_DEFAULT,
        buckets: int = BUCKETS_DEFAULT,
        cooldown_s: float = COOLDOWN_S_DEFAULT,
    ) -> None:
        if not callable(cpu_usage):
            raise RuleError("cpu_usage", "must be a callable returning a fraction in [0, 1]")
        self._cpu = cpu_usage
        self._cpu_threshold = check_positive(cpu_threshold, "cpu_threshold", 1.0)
        window = check_positive(window_s, "window_s", PERIOD_S_MAX)
        self._buckets = check_count(buckets, "buckets", 2, BUCKETS_MAX)
        self._bucket_s = window / self._buckets
        self._cooldown_s = check_non_negative(cooldown_s, "cooldown_s", PERIOD_S_MAX)
        self._clock = clock = default_clock(clock)
        self._now = clock_reader(clock)
        self._passes = [0] * self._buckets
        self._rt_sums = [0.0] * self._buckets
        self._rt_counts = [0] * self._buckets
        self._current = math.floor(self._now() / self._bucket_s)
        self._in_flight = 0
        self._prev_drop_s: float | None = None
        self._max_in_flight = self._capacity()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def max_in_flight(self) -> float:
        """Estimated capacity, ``max_pass_per_s * min_rt_s`` (from completed buckets)."""
        self._advance()
        return self._max_in_flight

    def _capacity(self) -> float:
        # Completed buckets only: the current one is still filling (Kratos).
        cur = self._current % self._buckets
        max_pass = 0
        min_rt = math.inf
        for i in range(self._buckets):
            if i == cur:
                continue
            max_pass = max(max_pass, self._passes[i])
            if self._rt_counts[i]:
                min_rt = min(min_rt, self._rt_sums[i] / self._rt_counts[i])
        if max_pass == 0 or min_rt == math.inf:
            # No history yet: Kratos starts from one pass per bucket and a 1 ms RT.
            max_pass = max(max_pass, 1)
            min_rt = min(min_rt, 0.001)
        return max_pass / self._bucket_s * min_rt

    def _advance(self) -> int:
        index = math.floor(self._now() / self._bucket_s)
        if index != self._current:
            for i in range(self._current + 1, min(index, self._current + self._buckets) + 1):
                slot = i % self._buckets
                self._passes[slot] = 0
                self._rt_sums[slot] = 0.0
                self._rt_counts[slot] = 0
            self._current = index
            self._max_in_flight = self._capacity()
        return index % self._buckets

    def should_shed(self) -> bool:
        in_flight = self._in_flight
        if in_flight <= 1:
            return False
        self._advance()
        if in_flight <= self._max_in_flight:
            return False
        now = self._now()
        cpu = self._cpu()
        if not (isinstance(cpu, float | int) and 0.0 <= cpu <= 1.0):
            raise ValueError(f"cpu_usage() must return a fraction in [0, 1], got {cpu!r}")
        if cpu >= self._cpu_threshold:
            if self._prev_drop_s is None:
                self._prev_drop_s = now
            return True
        if self._prev_drop_s is not None and now - self._prev_drop_s <= self._cooldown_s:
            return True
        self._prev_drop_s = None
        return False

    def try_acquire(self, permits: int = 1) -> bool:
        if permits != 1:
            check_permits(permits, 1_000_000)
        if self.should_shed():
            return False
        self._in_flight += permits
        return True

    async def acquire(self, permits: int = 1) -> None:
        if not self.try_acquire(permits):
            raise OverloadedError(
                f"system protection: {self._in_flight} in flight exceeds capacity "
                f"{self._max_in_flight:.1f} while CPU is over {self._cpu_threshold:.0%}"
            )

    def release(self, permits: int = 1, latency_s: float | None = None) -> None:
        """A request finished; ``latency_s`` feeds the minimum response time."""
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise ValueError(f"permits must be an int >= 1, got {permits!r}")
        if permits > self._in_flight:
            raise ValueError(f"release of {permits} but only {self._in_flight} in flight")
        if latency_s is not None and not (
            isinstance(latency_s, float | int) and 0.0 <= latency_s <= PERIOD_S_MAX
        ):
            raise ValueError(f"latency_s must be in [0, {PERIOD_S_MAX:g}], got {latency_s!r}")
        slot = self._advance()
        self._in_flight -= permits
        self._passes[slot] += permits
        if latency_s is not None:
            self._rt_sums[slot] += latency_s
            self._rt_counts[slot] += 1

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """``async with protection.admit():`` sheds or admits, and times the call."""
        await self.acquire()
        start = self._now()
        try:
            yield
        finally:
            self.release(1, latency_s=max(0.0, self._now() - start))

    def check_invariants(self) -> None:
        assert self._in_flight >= 0
