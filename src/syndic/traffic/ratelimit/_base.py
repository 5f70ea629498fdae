"""The limiter interface and the argument checks every limiter shares."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Protocol, runtime_checkable

from syndic.traffic.clock import Clock, MonotonicClock
from syndic.traffic.errors import RuleError

#: Largest rate accepted, in permits per second. Beyond this the spacing
#: between permits (1/rate) is below a nanosecond, which a float clock near
#: realistic monotonic readings cannot resolve.
RATE_PER_S_MAX = 1e9

#: Longest window or period accepted, in seconds (one week). Longer windows
#: are configuration mistakes (milliseconds typed as seconds).
PERIOD_S_MAX = 7 * 24 * 3600.0

#: Largest burst, limit or concurrency, in permits.
PERMITS_MAX = 1_000_000_000

#: Clock jitter tolerated when comparing a deadline with "now", in seconds.
#: Permits fall due at sums of float intervals; without a tolerance a due
#: time computed as 0.30000000000000004 would miss a poll at 0.3.
EPSILON_S = 1e-9


@runtime_checkable
class Limiter(Protocol):
    """What every rate or concurrency limiter offers.

    ``try_acquire`` never waits; ``acquire`` waits according to the
    limiter's own queueing rule and raises
    :class:`~syndic.traffic.errors.RateLimitedError` (with ``retry_after_s``
    where it is known) when it will not grant; ``release`` returns permits to
    concurrency-style limiters and is a no-op for rate limiters.
    """

    def try_acquire(self, permits: int = 1) -> bool: ...

    async def acquire(self, permits: int = 1) -> None: ...

    def release(self, permits: int = 1) -> None: ...


@runtime_checkable
class KeyedLimiter(Protocol):
    """A limiter with one budget per key (hot-parameter limiting)."""

    def try_acquire_key(self, key: Hashable, permits: int = 1) -> bool: ...

    async def acquire_key(self, key: Hashable, permits: int = 1) -> None: ...


def clock_reader(clock: Clock) -> Callable[[], float]:
    """The fastest zero-argument callable that reads ``clock``.

    For :class:`MonotonicClock` this is ``time.monotonic`` itself, which is
    exactly what its ``now_s`` returns, minus one Python call frame on the
    hot path of ``try_acquire``.
    """
    if type(clock) is MonotonicClock:
        return time.monotonic
    return clock.now_s


def check_positive(value: object, path: str, maximum: float) -> float:
    """A finite number in (0, maximum], as float; otherwise RuleError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise RuleError(path, "must not be NaN")
    if v <= 0.0:
        raise RuleError(path, f"must be > 0, got {value!r}")
    if v > maximum:
        raise RuleError(path, f"must be <= {maximum:g}, got {value!r}")
    return v


def check_non_negative(value: object, path: str, maximum: float) -> float:
    """A number in [0, maximum] (inf allowed only if maximum is inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise RuleError(path, "must not be NaN")
    if v < 0.0:
        raise RuleError(path, f"must be >= 0, got {value!r}")
    if v > maximum:
        raise RuleError(path, f"must be <= {maximum:g}, got {value!r}")
    return v


def check_count(value: object, path: str, minimum: int = 1, maximum: int = PERMITS_MAX) -> int:
    """An int in [minimum, maximum]; floats and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be an int, got {type(value).__name__}")
    if value < minimum or value > maximum:
        raise RuleError(path, f"must be in [{minimum}, {maximum}], got {value}")
    return value


def check_permits(permits: object, most: float) -> int:
    """Validate a ``permits`` argument; ``most`` is what could ever be granted.

    Raises ValueError for a non-int or < 1, and for more than the limiter
    could grant at once (asking for it would wait forever).
    """
    if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
        raise ValueError(f"permits must be an int >= 1, got {permits!r}")
    if permits > most:
        raise ValueError(
            f"permits={permits} exceeds what this limiter can grant at once ({most:g})"
        )
    return permits
