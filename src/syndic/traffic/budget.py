"""A retry budget: retries may be at most a fraction of requests.

Retries multiply load exactly when a dependency is weakest. A budget caps
them: over a sliding window, retries may not exceed ``ratio`` times the
requests seen plus a floor of ``min_retries_per_s * window_s``, so a service
with little traffic can still retry at all (Finagle's RetryBudget,
Envoy's ``retry_budget.budget_percent`` and ``min_retry_concurrency``).

Invariant: whenever a retry is granted, the retries counted in the window
(including it) are ``<= ratio * requests + min_retries_per_s * window_s``.
The window is a ring of buckets, so the counted span is between
``window_s - bucket_s`` and ``window_s`` long.

>>> from syndic.traffic.clock import ManualClock
>>> budget = RetryBudget(ratio=0.1, min_retries_per_s=0.0, window_s=10.0, clock=ManualClock())
>>> for _ in range(20):
...     budget.record_request()
>>> [budget.try_spend() for _ in range(3)]
[True, True, False]
"""

from __future__ import annotations

import math

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RuleError
from syndic.traffic.validation import check_number

# Ten buckets keep the window error at 10% of its length, as Finagle's
# WindowedAdder defaults to.
BUDGET_BUCKETS_DEFAULT = 10
# More buckets than this buys no accuracy and costs memory per budget.
BUDGET_BUCKETS_MAX = 1_000
BUDGET_WINDOW_S_MAX = 3_600.0
BUDGET_MIN_RETRIES_PER_S_MAX = 1_000_000.0


class RetryBudget:
    """Windowed counts of requests and retries, with O(1) record and check."""

    __slots__ = (
        "_bucket_s",
        "_clock",
        "_epoch",
        "_floor",
        "_ratio",
        "_requests",
        "_requests_total",
        "_retries",
        "_retries_total",
        "min_retries_per_s",
        "ratio",
        "window_s",
    )

    def __init__(
        self,
        *,
        ratio: float,
        min_retries_per_s: float,
        window_s: float,
        clock: Clock | None = None,
        buckets: int = BUDGET_BUCKETS_DEFAULT,
    ) -> None:
        self.ratio = check_number("ratio", ratio, 0.0, 1.0, low_open=False)
        self.min_retries_per_s = check_number(
            "min_retries_per_s",
            min_retries_per_s,
            0.0,
            BUDGET_MIN_RETRIES_PER_S_MAX,
            low_open=False,
        )
        self.window_s = check_number("window_s", window_s, 0.0, BUDGET_WINDOW_S_MAX, low_open=True)
        if isinstance(buckets, bool) or not isinstance(buckets, int):
            raise RuleError("buckets", f"must be an integer, got {type(buckets).__name__}")
        if not 1 <= buckets <= BUDGET_BUCKETS_MAX:
            raise RuleError("buckets", f"must be in [1, {BUDGET_BUCKETS_MAX}], got {buckets}")
        self._clock = clock = default_clock(clock)
        self._bucket_s = self.window_s / buckets
        self._ratio = self.ratio
        self._floor = self.min_retries_per_s * self.window_s
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._requests_total = 0
        self._retries_total = 0
        self._epoch = math.floor(clock.now_s() / self._bucket_s)

    def _roll(self) -> int:
        """Clear buckets that fell out of the window; return the current slot."""
        epoch = math.floor(self._clock.now_s() / self._bucket_s)
        size = len(self._requests)
        if epoch != self._epoch:
            # Bound: at most `size` buckets are cleared however long we were idle.
            stale = min(epoch - self._epoch, size)
            for step in range(1, stale + 1):
                slot = (self._epoch + step) % size
                self._requests_total -= self._requests[slot]
                self._retries_total -= self._retries[slot]
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._epoch = epoch
        return epoch % size

    def record_request(self) -> None:
        """Count one original request (not a retry); it earns ``ratio`` retries."""
        slot = self._roll()
        self._requests[slot] += 1
        self._requests_total += 1

    def allowed(self) -> float:
        """Retries the window allows in total right now."""
        self._roll()
        return self._ratio * self._requests_total + self._floor

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when the budget is spent."""
        slot = self._roll()
        if self._retries_total + 1 > self._ratio * self._requests_total + self._floor:
            return False
        self._retries[slot] += 1
        self._retries_total += 1
        return True

    @property
    def requests(self) -> int:
        self._roll()
        return self._requests_total

    @property
    def retries(self) -> int:
        self._roll()
        return self._retries_total

    def check_invariants(self) -> None:
        assert self._requests_total == sum(self._requests)
        assert self._retries_total == sum(self._retries)
        assert self._retries_total >= 0
        assert self._requests_total >= 0
