"""Time for traffic components: the monotonic clock, or one a test injects.

Components never call ``time`` themselves: they read a :class:`Clock`.
Constructed as written (``TokenBucket(100, 10)``, ``CircuitBreaker(config)``)
they use :class:`MonotonicClock`, as every peer library does; a test passes
``clock=ManualClock()`` and covers hours of traffic in milliseconds of wall
time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic source of seconds and a way to wait on it."""

    def now_s(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds of this clock's time."""
        ...


class MonotonicClock:
    """The process's monotonic clock; immune to wall-clock steps."""

    __slots__ = ()

    def now_s(self) -> float:
        return time.monotonic()

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(max(0.0, delay_s))


#: The clock every component uses unless given one; it holds no state.
MONOTONIC = MonotonicClock()


def default_clock(clock: Clock | None) -> Clock:
    """``clock``, or the process's monotonic clock when none was injected."""
    return MONOTONIC if clock is None else clock


class ManualClock:
    """A clock that moves only when told to, for tests and simulations.

    ``sleep`` parks the caller until :meth:`advance` moves time past its
    deadline, so code under test that waits (backoff, queueing) runs to
    completion without real delays.

    >>> clock = ManualClock()
    >>> clock.advance(1.5)
    >>> clock.now_s()
    1.5
    """

    __slots__ = ("_now_s", "_sleepers")

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_s(self) -> float:
        return self._now_s

    def advance(self, delta_s: float) -> None:
        """Move time forward by ``delta_s`` and wake every sleeper now due."""
        if delta_s < 0:
            raise ValueError(f"a clock cannot go backwards (delta_s={delta_s})")
        self._now_s += delta_s
        due = [f for deadline, f in self._sleepers if deadline <= self._now_s]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self._now_s]
        for future in due:
            if not future.done():
                future.set_result(None)

    async def sleep(self, delay_s: float) -> None:
        if delay_s <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now_s + delay_s, future))
        await future

    @property
    def sleepers(self) -> int:
        """How many callers are parked in :meth:`sleep`."""
        return sum(1 for _, f in self._sleepers if not f.done())
