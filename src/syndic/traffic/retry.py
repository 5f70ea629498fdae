"""Retries with exponential backoff, jitter, a budget and the caller's deadline.

A retry is made only when all of these hold:

* the operation is idempotent (declared in the config or per call), because
  retrying a non-idempotent write can apply it twice;
* the error is retryable: an ``Exception`` (never ``asyncio.CancelledError``,
  ``KeyboardInterrupt``, ``SystemExit``: cancellation must propagate at once),
  of a type in ``retry_on`` or accepted by ``retry_if``, and not a
  :class:`~syndic.traffic.errors.RejectedError` (an open breaker or a full
  bulkhead says "stop", not "try again");
* attempts remain (``max_attempts`` counts the first try);
* the backoff delay ends before the propagated deadline (a retry that cannot
  finish in time only adds load);
* the retry budget grants a token.

Backoff follows "Exponential Backoff And Jitter" (AWS Architecture Blog,
2015): ``full`` draws uniformly from ``[0, min(cap, base * m**(n-1))]``;
``decorrelated`` draws from ``[base, 3 * previous]`` capped; ``none`` is the
plain exponential. The rng is injected so a seed replays a run.

>>> import asyncio, random
>>> from syndic.traffic.clock import ManualClock
>>> clock = ManualClock()
>>> retry = Retry(
...     RetryConfig(max_attempts=3, backoff=Backoff(base_s=0.0, jitter="none"), idempotent=True),
...     clock=clock, rng=random.Random(1),
... )
>>> calls = []
>>> async def flaky() -> str:
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("reset")
...     return "ok"
>>> asyncio.run(retry.call(flaky)), len(calls)
('ok', 3)
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar

from syndic.traffic import deadline as _deadline
from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import Clock
from syndic.traffic.errors import RejectedError, RuleError
from syndic.traffic.validation import check_number

P = ParamSpec("P")
T = TypeVar("T")

# Beyond ten attempts a retry loop is a load generator, not resilience;
# a hundred is the hard ceiling a rule document may ask for.
MAX_ATTEMPTS_MAX = 100
BACKOFF_S_MAX = 3_600.0
MULTIPLIER_MAX = 100.0

Jitter = Literal["none", "full", "decorrelated"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``n`` (n >= 1); see the module docstring."""

    base_s: float = 0.05
    cap_s: float = 2.0
    multiplier: float = 2.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        check_number("base_s", self.base_s, 0.0, BACKOFF_S_MAX, low_open=False)
        check_number("cap_s", self.cap_s, 0.0, BACKOFF_S_MAX, low_open=False)
        check_number("multiplier", self.multiplier, 1.0, MULTIPLIER_MAX, low_open=False)
        if self.cap_s < self.base_s:
            raise RuleError("cap_s", f"must be >= base_s ({self.base_s:g}), got {self.cap_s:g}")
        if self.jitter not in ("none", "full", "decorrelated"):
            raise RuleError(
                "jitter", f"must be 'none', 'full' or 'decorrelated', got {self.jitter!r}"
            )

    def ceiling_s(self, retry: int) -> float:
        """The un-jittered exponential delay for retry ``retry``, capped."""
        exponent = min(retry - 1, 1_000)  # bounded: no float overflow on long runs
        try:
            return min(self.cap_s, self.base_s * self.multiplier**exponent)
        except OverflowError:
            return self.cap_s

    def delay_s(self, retry: int, previous_s: float, rng: random.Random) -> float:
        """Delay before retry ``retry``; ``previous_s`` is the last delay (decorrelated)."""
        if self.jitter == "none":
            return self.ceiling_s(retry)
        if self.jitter == "full":
            return rng.uniform(0.0, self.ceiling_s(retry))
        upper = max(self.base_s, previous_s * 3.0)
        return min(self.cap_s, rng.uniform(self.base_s, upper))


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """``max_attempts`` counts the first try; ``per_try_timeout_s`` bounds each."""

    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    per_try_timeout_s: float | None = None
    idempotent: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise RuleError(
                "max_attempts", f"must be an integer, got {type(self.max_attempts).__name__}"
            )
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_MAX:
            raise RuleError(
                "max_attempts", f"must be in [1, {MAX_ATTEMPTS_MAX}], got {self.max_attempts}"
            )
        if self.per_try_timeout_s is not None:
            _deadline.check_timeout_s("per_try_timeout_s", self.per_try_timeout_s)
        if not isinstance(self.idempotent, bool):
            raise RuleError("idempotent", f"must be a boolean, got {self.idempotent!r}")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Emitted before each retry's backoff sleep."""

    retry: int
    delay_s: float
    error: BaseException


class Retry:
    """Runs a callable until it succeeds or a retry is not allowed."""

    __slots__ = (
        "_budget",
        "_clock",
        "_counts_requests",
        "_listeners",
        "_retry_if",
        "_retry_if_result",
        "_retry_on",
        "_rng",
        "_sync_sleep",
        "config",
    )

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        clock: Clock,
        rng: random.Random,
        budget: RetryBudget | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_if: Callable[[BaseException], bool] | None = None,
        retry_if_result: Callable[[Any], bool] | None = None,
        counts_requests: bool = True,
        sync_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config if config is not None else RetryConfig()
        self._clock = clock
        self._rng = rng
        self._budget = budget
        self._retry_on = tuple(retry_on)
        self._retry_if = retry_if
        self._retry_if_result = retry_if_result
        self._counts_requests = counts_requests
        self._sync_sleep = sync_sleep
        self._listeners: list[Callable[[RetryEvent], None]] = []

    def add_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        self._listeners.append(listener)

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the kind of failure a retry may fix."""
        if not isinstance(exc, Exception) or isinstance(exc, RejectedError):
            return False  # CancelledError, KeyboardInterrupt, SystemExit; or "stop" signals
        if isinstance(exc, self._retry_on):
            return True
        return self._retry_if is not None and self._retry_if(exc)

    def _next_delay_s(
        self, exc: BaseException | None, retry: int, previous_s: float, may_retry: bool
    ) -> float | None:
        """The delay before ``retry`` or None when no retry may be made."""
        if not may_retry or retry >= self.config.max_attempts:
            return None
        if exc is not None and not self.retryable(exc):
            return None
        delay_s = self.config.backoff.delay_s(retry, previous_s, self._rng)
        outer = _deadline.current()
        if outer is not None and outer.remaining_s() <= delay_s:
            return None  # the retry would start after the caller gave up
        if self._budget is not None and not self._budget.try_spend():
            if exc is not None:
                exc.add_note("syndic.traffic: retry budget exhausted; not retried")
            return None
        for listener in self._listeners:
            listener(RetryEvent(retry, delay_s, exc if exc is not None else ResultRejectedError()))
        return delay_s

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """Await ``fn(*args, **kwargs)``, retrying per the config."""
        may_retry = self.config.idempotent if idempotent is None else idempotent
        if self._budget is not None and self._counts_requests:
            self._budget.record_request()
        per_try_s = self.config.per_try_timeout_s
        clock = self._clock
        retry = 1
        previous_s = self.config.backoff.base_s
        while True:
            try:
                if per_try_s is None:
                    result = await fn(*args, **kwargs)
                else:
                    async with _deadline.timeout(per_try_s, clock=clock):
                        result = await fn(*args, **kwargs)
            except BaseException as exc:
                delay_s = self._next_delay_s(exc, retry, previous_s, may_retry)
                if delay_s is None:
                    raise
            else:
                if self._retry_if_result is None or not self._retry_if_result(result):
                    return result
                delay_s = self._next_delay_s(None, retry, previous_s, may_retry)
                if delay_s is None:
                    return result
            previous_s = delay_s
            retry += 1
            await clock.sleep(delay_s)

    def call_sync(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """The synchronous loop; a blocking callee cannot be interrupted, so
        ``per_try_timeout_s`` does not apply, but the deadline still stops retries."""
        may_retry = self.config.idempotent if idempotent is None else idempotent
        if self._budget is not None and self._counts_requests:
            self._budget.record_request()
        retry = 1
        previous_s = self.config.backoff.base_s
        while True:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                delay_s = self._next_delay_s(exc, retry, previous_s, may_retry)
                if delay_s is None:
                    raise
            else:
                if self._retry_if_result is None or not self._retry_if_result(result):
                    return result
                delay_s = self._next_delay_s(None, retry, previous_s, may_retry)
                if delay_s is None:
                    return result
            previous_s = delay_s
            retry += 1
            self._sync_sleep(delay_s)


class ResultRejectedError(Exception):
    """Stands for "the result was rejected by retry_if_result" in a RetryEvent."""
