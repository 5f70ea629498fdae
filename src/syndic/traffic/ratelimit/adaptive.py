"""Adaptive client-side throttling (Google SRE book, "Handling Overload").

The client counts, over a sliding window, the ``requests`` its application
attempted and the ``accepts`` the backend accepted, and rejects a new
request locally with probability::

    p = max(0, (requests - k * accepts) / (requests + 1))

With ``k = 2`` the client lets through about twice what the backend has been
accepting, so the backend still sees enough traffic to signal recovery.
Requests rejected locally still count as ``requests``. Report each outcome
from the backend with :meth:`AdaptiveThrottle.record`.
"""

from __future__ import annotations

import math
import random

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RateLimitedError, RuleError
from syndic.traffic.ratelimit._base import (
    PERIOD_S_MAX,
    check_count,
    check_permits,
    check_positive,
    clock_reader,
)

#: SRE book: "K = 2" ...
K_DEFAULT = 2.0
#: ... over "the last two minutes".
WINDOW_S_DEFAULT = 120.0
#: Buckets in the sliding window; 60 buckets of 2 s each by default.
BUCKETS_DEFAULT = 60
BUCKETS_MAX = 10_000


class AdaptiveThrottle:
    """Client-side throttle that backs off as the backend rejects.

    >>> import random
    >>> from syndic.traffic.clock import ManualClock
    >>> t = AdaptiveThrottle(clock=ManualClock(), rng=random.Random(1))
    >>> t.try_acquire()
    True
    >>> t.record(accepted=False); t.rejection_probability()
    0.5
    """

    __slots__ = (
        "_accepts",
        "_bucket_s",
        "_buckets",
        "_current",
        "_k",
        "_now",
        "_requests",
        "_rng",
        "_total_accepts",
        "_total_requests",
    )

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        k: float = K_DEFAULT,
        window_s: float = WINDOW_S_DEFAULT,
        buckets: int = BUCKETS_DEFAULT,
    ) -> None:
        k_ = check_positive(k, "k", 1000.0)
        if k_ < 1.0:
            raise RuleError("k", f"must be >= 1 (below 1 healthy traffic is throttled), got {k!r}")
        self._k = k_
        window = check_positive(window_s, "window_s", PERIOD_S_MAX)
        self._buckets = check_count(buckets, "buckets", 1, BUCKETS_MAX)
        self._bucket_s = window / self._buckets
        self._requests = [0] * self._buckets
        self._accepts = [0] * self._buckets
        self._total_requests = 0
        self._total_accepts = 0
        self._now = clock_reader(default_clock(clock))
        self._current = math.floor(self._now() / self._bucket_s)
        self._rng = rng if rng is not None else random.Random()

    def _advance(self) -> int:
        index = math.floor(self._now() / self._bucket_s)
        current = self._current
        if index != current:
            # Clear the buckets that slid out; at most one full turn.
            for i in range(current + 1, min(index, current + self._buckets) + 1):
                slot = i % self._buckets
                self._total_requests -= self._requests[slot]
                self._total_accepts -= self._accepts[slot]
                self._requests[slot] = 0
                self._accepts[slot] = 0
            self._current = index
        return index % self._buckets

    @property
    def requests(self) -> int:
        self._advance()
        return self._total_requests

    @property
    def accepts(self) -> int:
        self._advance()
        return self._total_accepts

    def rejection_probability(self) -> float:
        self._advance()
        r = self._total_requests
        return max(0.0, (r - self._k * self._total_accepts) / (r + 1))

    def try_acquire(self, permits: int = 1) -> bool:
        if permits != 1:
            check_permits(permits, 1_000_000)
        slot = self._advance()
        r = self._total_requests
        p = (r - self._k * self._total_accepts) / (r + 1)
        self._requests[slot] += permits
        self._total_requests = r + permits
        return not (p > 0.0 and self._rng.random() < p)

    async def acquire(self, permits: int = 1) -> None:
        if not self.try_acquire(permits):
            raise RateLimitedError(
                f"adaptive throttle: backend accepted {self._total_accepts} of "
                f"{self._total_requests} recent requests"
            )

    def record(self, accepted: bool) -> None:
        """Report the backend's answer to a request that was let through."""
        if not isinstance(accepted, bool):
            raise ValueError(f"accepted must be bool, got {type(accepted).__name__}")
        slot = self._advance()
        if accepted:
            self._accepts[slot] += 1
            self._total_accepts += 1

    def release(self, permits: int = 1) -> None:
        """Rate limiters take nothing back."""

    def check_invariants(self) -> None:
        assert self._total_requests == sum(self._requests)
        assert self._total_accepts == sum(self._accepts)
