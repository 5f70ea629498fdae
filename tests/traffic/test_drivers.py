"""Stages and drivers: one decision, carried out alike by the asyncio and blocking drivers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.traffic import deadline
from syndic.traffic.breaker import BreakerConfig, CircuitBreaker, State
from syndic.traffic.budget import RetryBudget
from syndic.traffic.bulkhead import Bulkhead, BulkheadConfig
from syndic.traffic.clock import MONOTONIC, ManualClock, MonotonicClock
from syndic.traffic.drivers import run, run_sync
from syndic.traffic.errors import DeadlineExceededError, RateLimitedError
from syndic.traffic.fallback import Fallback
from syndic.traffic.hedge import Hedge, HedgeConfig
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import TokenBucket
from syndic.traffic.retry import Backoff, Retry, RetryConfig
from syndic.traffic.stages import (
    ASYNC,
    BLOCKING,
    QUEUE,
    Admission,
    DoAnswer,
    DoReturn,
    DoSleep,
    Stage,
    admission,
)


class Recorder(Stage):
    """A stage that logs what the driver asks it and replies from a script."""

    __slots__ = ("_clock", "log", "name", "replies")

    def __init__(self, name: str, log: list[str], replies: list[Any] | None = None) -> None:
        self.name = name
        self.log = log
        self.replies = replies if replies is not None else []
        self._clock = ManualClock()

    def enter(self, admission: Admission) -> Any:
        self.log.append(f"{self.name}.enter")
        return self.name

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> Any:
        assert ticket == self.name
        outcome = repr(error) if error is not None else repr(result)
        self.log.append(f"{self.name}.exit({outcome})")
        return self.replies.pop(0) if self.replies else None

    def sleep_sync(self, delay_s: float) -> None:
        self.log.append(f"sleep({delay_s})")


def both(
    make: Callable[[], tuple[Stage, ...]], fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[Any, Any]:
    """Run fresh, alike stages around a blocking fn and around its coroutine twin."""

    async def afn(*a: Any, **kw: Any) -> Any:
        return fn(*a, **kw)

    def outcome(thunk: Callable[[], Any]) -> Any:
        try:
            return ("ok", thunk())
        except Exception as exc:
            return ("error", repr(exc))

    blocking = outcome(lambda: run_sync(make(), fn, args, kwargs))
    awaited = outcome(lambda: asyncio.run(run(make(), afn, args, kwargs)))
    return blocking, awaited


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_stages_nest_outermost_first_and_see_every_outcome(driver: str) -> None:
    log: list[str] = []
    stages = (Recorder("outer", log), Recorder("inner", log))

    def fn(x: int) -> int:
        log.append("fn")
        return x + 1

    async def afn(x: int) -> int:
        return fn(x)

    if driver == "sync":
        assert run_sync(stages, fn, (1,), {}) == 2
    else:
        assert asyncio.run(run(stages, afn, (1,), {})) == 2
    assert log == ["outer.enter", "inner.enter", "fn", "inner.exit(2)", "outer.exit(2)"]


def test_do_sleep_tries_the_inner_part_again_in_both_drivers() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) % 3:
            raise ConnectionError("reset")
        return "ok"

    log: list[str] = []
    stage = Recorder("retry", log, [DoSleep(0.0), DoSleep(0.0), None])
    assert run_sync((stage,), flaky, (), {}) == "ok"
    assert log.count("retry.enter") == 1 and log.count("sleep(0.0)") == 2
    stage.replies = [DoSleep(0.0), DoSleep(0.0), None]

    async def aflaky() -> str:
        return flaky()

    assert asyncio.run(run((stage,), aflaky, (), {})) == "ok"
    assert len(calls) == 6


def test_answers_replace_outcomes_and_short_circuit_entry() -> None:
    log: list[str] = []
    blocking, awaited = both(lambda: (Recorder("fb", log, [DoReturn("cached")]),), int, "x")
    assert blocking == awaited == ("ok", "cached")

    class Closed(Stage):
        __slots__ = ()
        detours = True

        def enter(self, admission: Admission) -> Any:
            return DoAnswer(lambda: "degraded")

    def never() -> None:
        raise AssertionError("a stage that answers on entry must not call in")

    assert both(lambda: (Closed(),), never) == (("ok", "degraded"), ("ok", "degraded"))


def test_a_coroutine_answer_is_awaited_or_refused_for_blocking_callers() -> None:
    async def handler() -> str:
        return "from a coroutine"

    stage = Recorder("fb", [], [DoAnswer(handler)])

    async def fails() -> None:
        raise ConnectionError

    assert asyncio.run(run((stage,), fails, (), {})) == "from a coroutine"
    stage.replies = [DoAnswer(handler)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "never awaited" warning on top of the error
        with pytest.raises(TypeError, match="coroutine fallback"):
            run_sync((stage,), int, ("x",), {})


def test_queue_is_awaited_by_the_asyncio_driver_and_never_asked_of_blocking_callers() -> None:
    class Gate(Stage):
        __slots__ = ("waited",)
        detours = True

        def __init__(self) -> None:
            self.waited = 0

        def enter(self, admission: Admission) -> Any:
            return QUEUE

        async def wait_turn(self, admission: Admission) -> Any:
            self.waited += 1
            return "slot"

    gate = Gate()

    async def answer() -> int:
        return 42

    assert asyncio.run(run((gate,), answer, (), {})) == 42
    assert gate.waited == 1
    with pytest.raises(RuntimeError, match="asked a blocking caller to queue"):
        run_sync((gate,), lambda: 42, (), {})


def test_passive_tickets_skip_enter_and_a_successful_exit() -> None:
    class Passive(Stage):
        __slots__ = ("log", "passive")

        def __init__(self) -> None:
            self.passive = 7
            self.log: list[str] = []

        def enter(self, admission: Admission) -> Any:
            self.log.append("enter")
            return 7

        def exit(self, ticket: Any, result: Any, error: BaseException | None) -> None:
            self.log.append(f"exit({ticket}, {type(error).__name__})")

    stage = Passive()
    assert run_sync((stage,), lambda: 1, (), {}) == 1
    assert stage.log == []
    with pytest.raises(ZeroDivisionError):
        run_sync((stage,), lambda: 1 / 0, (), {})
    assert stage.log == ["exit(7, ZeroDivisionError)"]  # errors still reach exit


async def test_stage_timeouts_cancel_async_tries_and_bound_blocking_ones() -> None:
    clock = ManualClock()

    class Bounded(Stage):
        __slots__ = ("_clock", "timeout_s", "wraps")

        def __init__(self) -> None:
            self._clock = clock
            self.timeout_s = 1.0
            self.wraps = True

    async def hangs() -> None:
        await clock.sleep(60)

    task = asyncio.create_task(run((Bounded(),), hangs, (), {}))
    for _ in range(20):
        await asyncio.sleep(0)
    clock.advance(1.0)
    with pytest.raises(DeadlineExceededError):
        await task
    # Blocking: the deadline is published to the callee...
    assert run_sync((Bounded(),), deadline.remaining_s, (), {}) == 1.0
    # ...and a try does not start once the enclosing deadline has passed.
    with deadline.scope(0.5, clock=clock):
        clock.advance(0.5)
        with pytest.raises(DeadlineExceededError, match="before the try started"):
            run_sync((Bounded(),), lambda: "never", (), {})


async def test_cancellation_reaches_exit_so_stages_give_back_what_they_took() -> None:
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1))
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(bulkhead.call(forever))
    await started.wait()
    assert bulkhead.in_use == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.in_use == 0


def test_admissions_are_shared_values() -> None:
    assert admission(True) is ASYNC and admission(False) is BLOCKING
    assert admission(True, True) is admission(True, True)
    assert admission(False, True) == Admission(can_wait=False, idempotent=True)


# -- one convention for every component ---------------------------------------------


def components() -> dict[str, Any]:
    return {
        "breaker": CircuitBreaker(BreakerConfig()),
        "retry": Retry(RetryConfig(max_attempts=2, backoff=Backoff(base_s=0, jitter="none"))),
        "fallback": Fallback(value=0),
        "bulkhead": Bulkhead(),
        "policy": Policy({"breaker": {}, "retry": {"max_attempts": 2}}),
    }


@pytest.mark.parametrize("name", sorted(components()))
def test_call_is_the_coroutine_call_sync_blocks_and_decorators_keep_the_kind(name: str) -> None:
    component = components()[name]

    async def answer(x: int) -> int:
        return x * 2

    def answer_sync(x: int) -> int:
        return x * 2

    awaitable = component.call(answer, 21)
    assert inspect.isawaitable(awaitable)
    assert asyncio.run(awaitable) == 42
    assert component.call_sync(answer_sync, 21) == 42
    decorated_async = component(answer)
    decorated_sync = component(answer_sync)
    assert inspect.iscoroutinefunction(decorated_async)
    assert not inspect.iscoroutinefunction(decorated_sync)
    assert asyncio.run(decorated_async(21)) == 42 and decorated_sync(21) == 42
    assert decorated_sync.__name__ == "answer_sync"


def test_hedge_has_only_the_coroutine_form() -> None:
    hedge = Hedge(HedgeConfig(delay_s=1.0))

    async def answer() -> str:
        return "ok"

    assert asyncio.run(hedge.call(answer)) == "ok"
    assert inspect.iscoroutinefunction(hedge(answer))
    with pytest.raises(TypeError, match="coroutine function"):
        hedge(lambda: "ok")  # type: ignore[arg-type]
    assert not hasattr(hedge, "call_sync")


# -- defaults that work as written ---------------------------------------------------


def test_components_work_as_written_on_the_monotonic_clock() -> None:
    bucket = TokenBucket(100, 10)
    assert [bucket.try_acquire() for _ in range(11)].count(True) == 10
    breaker = CircuitBreaker(BreakerConfig(window_size=2, minimum_calls=2))
    assert breaker.call_sync(lambda: "ok") == "ok"
    assert Policy({"timeout": {"overall_s": 5}}).call_sync(deadline.remaining_s) > 4
    budget = RetryBudget(ratio=0.5, min_retries_per_s=0, window_s=1)
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()
    for component in (breaker, Bulkhead(), Fallback(value=1), Hedge(HedgeConfig(delay_s=1))):
        assert component._clock is MONOTONIC
    assert isinstance(MONOTONIC, MonotonicClock)


def test_each_retry_gets_its_own_fresh_random_source() -> None:
    a, b = Retry(), Retry()
    assert a._rng is not b._rng and isinstance(a._rng, random.Random)
    seeded = Retry(rng=random.Random(5))
    assert seeded._rng.random() == random.Random(5).random()


# -- listeners ------------------------------------------------------------------------


def test_a_retry_listener_that_raises_does_not_break_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retry = Retry(
        RetryConfig(max_attempts=3, idempotent=True, backoff=Backoff(base_s=0, jitter="none")),
        sync_sleep=lambda _: None,
    )
    seen: list[int] = []

    def broken(event: Any) -> None:
        raise RuntimeError("listener bug")

    retry.add_listener(broken)
    retry.add_listener(lambda event: seen.append(event.retry))
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    with caplog.at_level(logging.ERROR, logger="syndic.traffic.retry"):
        assert retry.call_sync(flaky) == "ok"
    assert seen == [1, 2]  # the listener after the broken one still hears every retry
    assert sum("listener failed" in r.getMessage() for r in caplog.records) == 2
    retry.remove_listener(broken)
    calls.clear()
    assert retry.call_sync(flaky) == "ok"


# -- the breaker's passive hot path keeps stale outcomes out ----------------------------


@pytest.mark.parametrize("driver", ["sync", "async", "decorated"])
def test_breaker_ignores_a_failure_admitted_on_the_hot_path_before_a_transition(
    driver: str,
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(window_size=2, minimum_calls=2, failure_ratio=0.5, open_wait_s=10),
        clock=clock,
    )
    breaker.call_sync(lambda: 1)
    breaker.call_sync(lambda: 1)
    assert breaker.passive is not None  # a window of plain successes: the hot path

    def late_failure() -> None:
        # While this call runs, another trips the breaker and the wait elapses.
        with pytest.raises(ConnectionError):
            breaker.call_sync(_refuse)
        assert breaker.state is State.OPEN
        clock.advance(10)
        assert breaker.state is State.HALF_OPEN
        raise ConnectionError("the slow call fails at last")

    async def alate_failure() -> None:
        late_failure()

    with pytest.raises(ConnectionError, match="at last"):
        if driver == "sync":
            breaker.call_sync(late_failure)
        elif driver == "async":
            asyncio.run(_awaited(breaker.call(alate_failure)))
        else:
            asyncio.run(breaker(alate_failure)())
    assert breaker.state is State.HALF_OPEN  # not a probe: admitted under an earlier state
    breaker.check_invariants()


def _refuse() -> None:
    raise ConnectionError("refused")


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def test_a_policy_never_queues_a_blocking_caller_on_its_limiter() -> None:
    class NoPermits:
        def try_acquire(self, permits: int = 1) -> bool:
            return False

        async def acquire(self, permits: int = 1) -> None:
            raise AssertionError("a blocking caller must not wait")

        def release(self, permits: int = 1) -> None:
            raise AssertionError("nothing was taken")

    policy = Policy({"rate_limit": {"limiter": "x"}}, limiters={"x": NoPermits()})
    with pytest.raises(RateLimitedError):
        policy.call_sync(lambda: 1)


# -- the same decisions, whichever driver runs them -----------------------------------


def _stack(clock: ManualClock, attempts: int, with_fallback: bool) -> tuple[Any, ...]:
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, failure_ratio=0.5, open_wait_s=5),
        clock=clock,
    )
    retry = Retry(
        RetryConfig(max_attempts=attempts, idempotent=True, backoff=Backoff(0, 0, 1, "none")),
        clock=clock,
        rng=random.Random(0),
        sync_sleep=lambda _: None,
    )
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1), clock=clock)
    fallback = Fallback(value="fallback")
    outer = (fallback,) if with_fallback else ()
    return (*outer, bulkhead, retry, breaker)


def _outcomes(
    script: list[int], calls: int, attempts: int, with_fallback: bool, driver: str
) -> Any:
    clock = ManualClock()
    stages = _stack(clock, attempts, with_fallback)
    tries = iter(script * (calls * attempts + 1))

    def fn() -> int:
        value = next(tries)
        if value < 0:
            raise ConnectionError(value)
        return value

    async def afn() -> int:
        return fn()

    seen: list[Any] = []
    for _ in range(calls):
        try:
            if driver == "sync":
                seen.append(run_sync(stages, fn, (), {}))
            else:
                seen.append(asyncio.run(run(stages, afn, (), {})))
        except Exception as exc:
            seen.append(repr(exc))
        clock.advance(1.0)
    breaker, bulkhead = stages[-1], stages[-3]
    assert bulkhead.in_use == 0
    breaker.check_invariants()
    return seen, breaker.metrics(), stages[0].used_total if with_fallback else None


@settings(max_examples=60, deadline=None)
@given(
    script=st.lists(st.integers(min_value=-1, max_value=3), min_size=1, max_size=6),
    calls=st.integers(min_value=1, max_value=8),
    attempts=st.integers(min_value=1, max_value=3),
    with_fallback=st.booleans(),
)
def test_both_drivers_reach_the_same_outcomes_and_state(
    script: list[int], calls: int, attempts: int, with_fallback: bool
) -> None:
    assert _outcomes(script, calls, attempts, with_fallback, "sync") == _outcomes(
        script, calls, attempts, with_fallback, "async"
    )
