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
plain exponential. The rng is a fresh ``random.Random()`` unless a test
injects a seeded one, so a seed replays a run.

>>> import asyncio
>>> retry = Retry(
...     RetryConfig(max_attempts=3, backoff=Backoff(base_s=0.0, jitter="none"), idempotent=True)
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

import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar

from syndic.traffic import deadline as _deadline
from syndic.traffic import drivers
from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import RejectedError, RuleError
from syndic.traffic.stages import ASYNC, Admission, DoSleep, Stage, admission
from syndic.traffic.validation import check_number

log = logging.getLogger(__name__)

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


class _Tries:
    """One call's progress through its tries (the Retry stage's ticket)."""

    __slots__ = ("may_retry", "previous_s", "retry")

    def __init__(self, may_retry: bool, previous_s: float) -> None:
        self.may_retry = may_retry
        self.retry = 1  # the number the next retry will have
        self.previous_s = previous_s


class Retry(Stage):
    """Runs a callable until it succeeds or a retry is not allowed.

    ``await retry.call(fn, ...)`` for coroutines, ``retry.call_sync(fn, ...)``
    for blocking functions, ``@retry`` on either. ``clock`` defaults to the
    monotonic clock and ``rng`` to a fresh ``random.Random()``; tests inject
    both. A blocking call cannot be interrupted, so there
    ``per_try_timeout_s`` is published as the deadline of each try (nested
    calls and retries see it) and a try does not start once it has passed.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_counts_requests",
        "_listeners",
        "_retry_if",
        "_retry_if_result",
        "_retry_on",
        "_rng",
        "_stages",
        "_sync_sleep",
        "config",
        "timeout_s",
        "wraps",
    )

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_if: Callable[[BaseException], bool] | None = None,
        retry_if_result: Callable[[Any], bool] | None = None,
        counts_requests: bool = True,
        sync_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config if config is not None else RetryConfig()
        self.timeout_s = self.config.per_try_timeout_s
        self.wraps = self.timeout_s is not None
        self._clock = default_clock(clock)
        self._rng = rng if rng is not None else random.Random()
        self._budget = budget
        self._retry_on = tuple(retry_on)
        self._retry_if = retry_if
        self._retry_if_result = retry_if_result
        self._counts_requests = counts_requests
        self._sync_sleep = sync_sleep
        self._listeners: list[Callable[[RetryEvent], None]] = []
        self._stages = (self,)

    def add_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        """Call ``listener`` with a :class:`RetryEvent` before each retry.

        A listener that raises is logged and skipped: it never breaks the
        call, as with the circuit breaker's listeners.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[RetryEvent], None]) -> None:
        self._listeners.remove(listener)

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
        if self._listeners:
            self._notify(
                RetryEvent(retry, delay_s, exc if exc is not None else ResultRejectedError())
            )
        return delay_s

    def _notify(self, event: RetryEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                # A broken listener (a metrics hook, a log line) must not turn
                # a retry into a failure.
                log.exception("retry: listener failed on retry %d", event.retry)

    # -- the stage: decide around one call; the drivers run it -------------------

    def enter(self, admission: Admission = ASYNC) -> _Tries:
        """Start a call's tries (Stage protocol); the call may repeat if idempotent."""
        may_retry = self.config.idempotent if admission.idempotent is None else admission.idempotent
        if self._budget is not None and self._counts_requests:
            self._budget.record_request()
        return _Tries(may_retry, self.config.backoff.base_s)

    def exit(self, ticket: _Tries, result: Any, error: BaseException | None) -> DoSleep | None:
        """After a try: None to let its outcome stand, or DoSleep to try again."""
        if error is None and (self._retry_if_result is None or not self._retry_if_result(result)):
            return None
        delay_s = self._next_delay_s(error, ticket.retry, ticket.previous_s, ticket.may_retry)
        if delay_s is None:
            return None
        ticket.previous_s = delay_s
        ticket.retry += 1
        return DoSleep(delay_s)

    def sleep_sync(self, delay_s: float) -> None:
        self._sync_sleep(delay_s)

    # -- calling -----------------------------------------------------------------

    def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)``, retrying per the config."""
        return drivers.run(self._stages, fn, args, kwargs, admission(True, idempotent))

    def call_sync(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """Call the blocking ``fn(*args, **kwargs)``, retrying per the config."""
        return drivers.run_sync(  # type: ignore[no-any-return]
            self._stages, fn, args, kwargs, admission(False, idempotent)
        )

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a function or coroutine function."""
        return drivers.decorate_stages(self._stages, fn)


class ResultRejectedError(Exception):
    """Stands for "the result was rejected by retry_if_result" in a RetryEvent."""
