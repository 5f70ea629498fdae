"""Policy: every traffic stage composed in one fixed, documented order.

From the outside in::

    fallback                      catches whatever the stages below raise
      degrade switch              cheapest check first: a switched-off feature costs nothing
        rate limit                admission: refuse before taking any resource
          bulkhead                one slot per *logical* call, held across its retries
            overall deadline      published through a ContextVar to nested calls
              retry (+ budget)    each try under a per-try timeout clipped to the deadline
                hedging           staggered parallel tries (idempotent calls only)
                  circuit breaker records every try, hedges included
                    the call

Why the breaker is *inside* the retry (as in Resilience4j, whose decorator
order is Retry(CircuitBreaker(RateLimiter(TimeLimiter(Bulkhead(fn)))))):
the breaker must see what the dependency actually does, i.e. every try. A
breaker outside the retry sees one outcome per logical call after retries
have hidden or multiplied the failures, so it trips late and lets each
logical call send ``max_attempts`` requests into a dependency that is
already down. Inside, the first tries that fail fill the window, the
breaker opens, and every further retry stops at once: an open breaker
raises :class:`~syndic.traffic.errors.CircuitOpenError`, a RejectedError,
which the retry never retries. Rate limit and bulkhead stay outside the
retry so that retries are paid for by the retry budget, not by taking
more permits or slots; the deadline is outside the retry so the retry loop
stops when the caller's time is up.

Rules are swapped atomically (:meth:`Policy.swap_rules`): a call reads the
current stack once when it starts and keeps it to the end, so in-flight
calls finish under the rules they started with. Components whose rule is
unchanged are carried over with their state (an open breaker stays open).

>>> import asyncio, random
>>> from syndic.traffic.clock import ManualClock
>>> from syndic.traffic.rules import parse_rules
>>> policy = Policy(
...     parse_rules({"retry": {"max_attempts": 2, "idempotent": True,
...                            "backoff": {"base_s": 0, "jitter": "none"}},
...                  "fallback": {"value": "cached"}}),
...     clock=ManualClock(), rng=random.Random(7),
... )
>>> async def fetch() -> str:
...     raise ConnectionError("down")
>>> asyncio.run(policy.call(fetch))
'cached'
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar, overload

from opentelemetry import trace as _otel_trace

from syndic.observability.tracing import tracing_enabled

# Calls run the tracing stages (syndic.traffic.tracing) only while an SDK
# provider is installed. With none ever installed, one module attribute read
# decides, written inline on the call path (a helper call costs more than it).
from syndic.traffic import deadline as _deadline
from syndic.traffic import drivers
from syndic.traffic import tracing as _tracing
from syndic.traffic.breaker import CircuitBreaker
from syndic.traffic.budget import RetryBudget
from syndic.traffic.bulkhead import Bulkhead
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.degrade import DegradeSwitches, Feature
from syndic.traffic.errors import RateLimitedError, RuleError
from syndic.traffic.fallback import MISSING, Fallback
from syndic.traffic.hedge import Hedge
from syndic.traffic.retry import Retry
from syndic.traffic.rules import PolicyRules, parse_rules
from syndic.traffic.stages import ASYNC, QUEUE, Admission, Stage, admission

T = TypeVar("T")


class Limiter(Protocol):
    """The rate limiter contract of ``syndic.traffic.ratelimit``."""

    def try_acquire(self, permits: int = 1) -> bool: ...

    async def acquire(self, permits: int = 1) -> None: ...

    def release(self, permits: int = 1) -> None: ...


class _RateLimit(Stage):
    """Take ``permits`` from a named limiter for the whole call; give them back after."""

    detours = True

    __slots__ = ("limiter", "name", "permits")

    def __init__(self, limiter: Limiter, permits: int, name: str) -> None:
        self.limiter = limiter
        self.permits = permits
        self.name = name

    def enter(self, admission: Admission = ASYNC) -> Any:
        if admission.can_wait:
            return QUEUE  # the limiter's own acquire decides whether and how long to wait
        if self.limiter.try_acquire(self.permits):
            return None
        raise RateLimitedError(f"policy {self.name!r}: rate limit reached")

    async def wait_turn(self, admission: Admission = ASYNC) -> None:
        await self.limiter.acquire(self.permits)

    def exit(self, ticket: object, result: Any, error: BaseException | None) -> None:
        self.limiter.release(self.permits)


class _Overall(Stage):
    """The call's overall deadline, published to everything inside it."""

    wraps = True

    __slots__ = ("_clock", "timeout_s")

    def __init__(self, timeout_s: float, clock: Clock) -> None:
        self.timeout_s = timeout_s
        self._clock = clock


class _Stack:
    """The components of one rules version, and their stages in order; immutable once built."""

    __slots__ = (
        "breaker",
        "budget",
        "bulkhead",
        "fallback",
        "feature",
        "hedge",
        "limiter",
        "retry",
        "rules",
        "stages",
        "stages_hedged",
        "traced",
        "traced_hedged",
    )

    def __init__(self, rules: PolicyRules) -> None:
        self.rules = rules
        self.feature: Feature | None = None
        self.limiter: _RateLimit | None = None
        self.bulkhead: Bulkhead | None = None
        self.breaker: CircuitBreaker | None = None
        self.budget: RetryBudget | None = None
        self.retry: Retry | None = None
        self.hedge: Hedge | None = None
        self.fallback: Fallback[Any] | None = None
        self.stages: tuple[Stage, ...] = ()
        self.stages_hedged: tuple[Stage, ...] = ()
        # The same with the tracing stages, run while an SDK provider is installed.
        self.traced: tuple[Stage, ...] = ()
        self.traced_hedged: tuple[Stage, ...] = ()

    def seal(self, clock: Clock) -> None:
        """Lay the stages out in the documented order (module docstring)."""
        timeout_s = self.rules.timeout_s
        outer = (
            self.fallback,
            self.feature,
            self.limiter,
            self.bulkhead,
            None if timeout_s is None else _Overall(timeout_s, clock),
            self.retry,
        )
        head = tuple(stage for stage in outer if stage is not None)
        tail = () if self.breaker is None else (self.breaker,)
        # The drivers run at least one stage; an empty rule set passes through.
        self.stages = head + tail or (Stage(),)
        self.stages_hedged = self.stages if self.hedge is None else (*head, self.hedge, *tail)
        name, fallback, retry = self.rules.name, self.fallback, self.retry
        self.traced = _tracing.traced(self.stages, name, fallback, retry)
        self.traced_hedged = _tracing.traced(self.stages_hedged, name, fallback, retry)


class Policy:
    """Degrade, rate limit, bulkhead, deadline, retry, hedge, breaker, fallback.

    ``await policy.call(fn, ...)`` for coroutines, ``policy.call_sync(fn,
    ...)`` for blocking functions, ``@policy`` on either, ``async with
    policy.guard():`` around a block. ``Policy(rules)`` runs on the
    monotonic clock with a fresh ``random.Random()``; tests inject both.
    """

    __slots__ = (
        "_breaker_kwargs",
        "_clock",
        "_fallback_handler",
        "_hedge_on",
        "_limiters",
        "_retry_if",
        "_retry_on",
        "_rng",
        "_stack",
        "_swap_lock",
        "_switches",
        "_sync_sleep",
    )

    def __init__(
        self,
        rules: PolicyRules | Mapping[str, Any] | str | bytes,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        limiters: Mapping[str, Limiter] | None = None,
        switches: DegradeSwitches | None = None,
        record_exceptions: tuple[type[BaseException], ...] = (Exception,),
        ignore_exceptions: tuple[type[BaseException], ...] = (),
        failure_if: Callable[[Any], bool] | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        retry_if: Callable[[BaseException], bool] | None = None,
        hedge_on: tuple[type[BaseException], ...] = (Exception,),
        fallback_handler: Callable[[BaseException], Any] | None = None,
        sync_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Defaults are what production wants; tests inject a ManualClock and a seeded rng.
        clock = default_clock(clock)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._swap_lock = threading.Lock()
        self._limiters = dict(limiters or {})
        self._switches = switches if switches is not None else DegradeSwitches(clock=clock)
        self._breaker_kwargs: dict[str, Any] = {
            "record_exceptions": record_exceptions,
            "ignore_exceptions": ignore_exceptions,
            "failure_if": failure_if,
        }
        self._retry_on = retry_on
        self._retry_if = retry_if
        self._hedge_on = hedge_on
        self._fallback_handler = fallback_handler
        self._sync_sleep = sync_sleep
        parsed = rules if isinstance(rules, PolicyRules) else parse_rules(rules)
        self._stack = self._build(parsed, None)

    # -- rules -------------------------------------------------------------------

    @property
    def rules(self) -> PolicyRules:
        return self._stack.rules

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._stack.breaker

    @property
    def bulkhead(self) -> Bulkhead | None:
        return self._stack.bulkhead

    @property
    def budget(self) -> RetryBudget | None:
        return self._stack.budget

    @property
    def switches(self) -> DegradeSwitches:
        return self._switches

    def swap_rules(self, new: PolicyRules | Mapping[str, Any] | str | bytes) -> PolicyRules:
        """Replace the whole rule set at once for new calls; returns the rules now in force.

        ``new`` is a :class:`PolicyRules` or anything :func:`parse_rules`
        reads (a mapping, JSON or YAML text). Invalid rules raise
        :class:`RuleError` naming the bad field, and change nothing.

        Calls already running keep the stack they started with and finish
        on the old rules. A component whose rule is equal to the old one is
        carried over with its state (an open breaker stays open, the retry
        budget keeps its tokens, the fallback its last good answer); a
        component whose rule changed starts fresh, because state gathered
        under other thresholds (a window of 100 calls read against a new
        window of 10) would mean something else under the new ones.

        Safe to call from any thread (a configuration listener's, say):
        swaps are serialised, and a call sees either the old or the new
        set, never a mix.
        """
        rules = new if isinstance(new, PolicyRules) else parse_rules(new)
        with self._swap_lock:
            self._stack = self._build(rules, self._stack)
        return rules

    def _build(self, rules: PolicyRules, old: _Stack | None) -> _Stack:
        # Validate everything that can fail before touching shared state.
        limiter: Limiter | None = None
        if rules.rate_limit is not None:
            limiter = self._limiters.get(rules.rate_limit.limiter)
            if limiter is None:
                known = ", ".join(sorted(self._limiters)) or "none"
                raise RuleError(
                    "rate_limit.limiter",
                    f"no limiter named {rules.rate_limit.limiter!r} (known: {known})",
                )
        stack = _Stack(rules)
        if limiter is not None and rules.rate_limit is not None:
            stack.limiter = _RateLimit(limiter, rules.rate_limit.permits, rules.name)
        clock = self._clock
        name = rules.name
        if rules.bulkhead is not None:
            if (
                old is not None
                and old.bulkhead is not None
                and old.rules.bulkhead == rules.bulkhead
            ):
                stack.bulkhead = old.bulkhead
            else:
                stack.bulkhead = Bulkhead(rules.bulkhead, clock=clock, name=name)
        if rules.breaker is not None:
            if old is not None and old.breaker is not None and old.rules.breaker == rules.breaker:
                stack.breaker = old.breaker
            else:
                stack.breaker = CircuitBreaker(
                    rules.breaker, clock=clock, name=name, **self._breaker_kwargs
                )
        if rules.budget is not None:
            if old is not None and old.budget is not None and old.rules.budget == rules.budget:
                stack.budget = old.budget
            else:
                stack.budget = RetryBudget(
                    ratio=rules.budget.ratio,
                    min_retries_per_s=rules.budget.min_retries_per_s,
                    window_s=rules.budget.window_s,
                    clock=clock,
                )
        if rules.retry is not None:
            stack.retry = Retry(
                rules.retry,
                clock=clock,
                rng=self._rng,
                budget=stack.budget,
                retry_on=self._retry_on,
                retry_if=self._retry_if,
                sync_sleep=self._sync_sleep,
            )
        if rules.hedge is not None:
            stack.hedge = Hedge(
                rules.hedge,
                clock=clock,
                budget=stack.budget,
                hedge_on=self._hedge_on,
                counts_requests=stack.retry is None,
            )
        if rules.fallback is not None or self._fallback_handler is not None:
            fb = rules.fallback
            last_good_s = fb.last_good_max_age_s if fb is not None else None
            if old is not None and old.fallback is not None and old.rules.fallback == fb:
                stack.fallback = old.fallback  # keep the remembered last good answer
            else:
                stack.fallback = Fallback(
                    value=fb.value if fb is not None else MISSING,
                    handler=self._fallback_handler,
                    last_good_max_age_s=last_good_s,
                    clock=clock,
                )
        if rules.degrade_feature is not None:
            stack.feature = self._switches.register(rules.degrade_feature)
        stack.seal(clock)
        return stack

    # -- calling -------------------------------------------------------------------

    def stages(self, idempotent: bool | None = None, *, can_wait: bool = True) -> tuple[Stage, ...]:
        """The stages a call started now would run through, outermost first.

        ``can_wait`` false: the blocking form, which never hedges. For a
        wrapper that adds stages of its own around the policy's
        (:class:`~syndic.traffic.metrics.MeteredPolicy`).
        """
        stack = self._stack
        if not can_wait:
            return (
                stack.traced
                if (_otel_trace._TRACER_PROVIDER is not None and tracing_enabled())
                else stack.stages
            )
        return self._stages(stack, idempotent)

    def _stages(self, stack: _Stack, idempotent: bool | None) -> tuple[Stage, ...]:
        # Hedging sends a call twice: only calls that may repeat are hedged.
        if idempotent is None:
            retry = stack.rules.retry
            idempotent = retry is not None and retry.idempotent
        if _otel_trace._TRACER_PROVIDER is not None and tracing_enabled():
            return stack.traced_hedged if idempotent else stack.traced
        return stack.stages_hedged if idempotent else stack.stages

    def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)`` through every configured stage."""
        stack = self._stack  # one read: the call keeps these rules to the end
        return drivers.run(
            self._stages(stack, idempotent), fn, args, kwargs, admission(True, idempotent)
        )

    def call_sync(
        self, fn: Callable[..., T], /, *args: Any, idempotent: bool | None = None, **kwargs: Any
    ) -> T:
        """Run a blocking ``fn`` through the stages that apply to blocking code.

        A blocking callee cannot be interrupted, so the overall deadline does
        not cut the call short; it stops further retries. Callers never
        queue (bulkhead, limiter): a blocking wait would stall the thread.
        Hedging needs concurrency and is skipped.
        """
        stack = self._stack
        return drivers.run_sync(  # type: ignore[no-any-return]
            stack.traced
            if (_otel_trace._TRACER_PROVIDER is not None and tracing_enabled())
            else stack.stages,
            fn,
            args,
            kwargs,
            admission(False, idempotent),
        )

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``async with policy.guard():`` — admission, breaker and deadline for a block.

        A block cannot be re-run or replaced, so retry, hedging and fallback
        do not apply; a switched-off feature raises DegradedError.
        """
        stack = self._stack
        if stack.feature is not None:
            stack.feature.check()
        limiter = stack.limiter
        if limiter is not None:
            await limiter.wait_turn(ASYNC)
        try:
            bulkhead = stack.bulkhead
            if bulkhead is not None:
                await bulkhead.acquire()
            try:
                async with _deadline.timeout(stack.rules.timeout_s, clock=self._clock):
                    if stack.breaker is None:
                        yield
                    else:
                        async with stack.breaker:
                            yield
            finally:
                if bulkhead is not None:
                    bulkhead.release()
        finally:
            if limiter is not None:
                limiter.exit(None, None, None)

    # -- decorator -------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[..., T], /) -> Callable[..., T]: ...

    @overload
    def __call__(
        self, fn: None = None, /, *, idempotent: bool | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]: ...

    def __call__(
        self, fn: Callable[..., Any] | None = None, /, *, idempotent: bool | None = None
    ) -> Any:
        """``@policy`` or ``@policy(idempotent=True)`` on a function or coroutine function."""

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            return drivers.decorate(
                functools.partial(self.call, idempotent=idempotent),
                functools.partial(self.call_sync, idempotent=idempotent),
                func,
            )

        return decorate if fn is None else decorate(fn)
