"""Policy: the composed order, rule swaps under load, guard, sync path, doctests."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import random
from typing import Any

import pytest

from syndic.traffic.breaker import State
from syndic.traffic.clock import ManualClock
from syndic.traffic.degrade import DegradeSwitches
from syndic.traffic.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    DegradedError,
    RateLimitedError,
    RuleError,
)
from syndic.traffic.policy import Policy

NO_WAIT = {"base_s": 0, "cap_s": 0, "jitter": "none"}


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class CountingLimiter:
    """A Limiter (syndic.traffic.ratelimit protocol) with a fixed number of permits."""

    def __init__(self, permits: int) -> None:
        self.permits = permits
        self.released = 0

    def try_acquire(self, permits: int = 1) -> bool:
        if self.permits >= permits:
            self.permits -= permits
            return True
        return False

    async def acquire(self, permits: int = 1) -> None:
        if not self.try_acquire(permits):
            raise RateLimitedError("no permits", retry_after_s=1.0)

    def release(self, permits: int = 1) -> None:
        self.released += permits


def make(doc: dict[str, Any], clock: ManualClock | None = None, **kw: Any) -> Policy:
    return Policy(doc, clock=clock or ManualClock(), rng=random.Random(0), **kw)


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"try {self.calls}")
        return "ok"


async def test_empty_policy_passes_through() -> None:
    assert await make({}).call(Flaky(0)) == "ok"


async def test_breaker_inside_retry_stops_retries_once_open() -> None:
    policy = make(
        {
            "breaker": {"window_size": 10, "minimum_calls": 2, "failure_ratio": 0.5},
            "retry": {"max_attempts": 5, "idempotent": True, "backoff": NO_WAIT},
        }
    )
    flaky = Flaky(100)
    with pytest.raises(CircuitOpenError):
        await policy.call(flaky)
    # Two tries filled the window and opened the breaker; the third was refused
    # by the breaker and CircuitOpenError is never retried.
    assert flaky.calls == 2
    assert policy.breaker is not None and policy.breaker.state is State.OPEN


async def test_retry_with_budget_and_fallback_around_everything() -> None:
    policy = make(
        {
            "retry": {"max_attempts": 3, "idempotent": True, "backoff": NO_WAIT},
            "budget": {"ratio": 0.0, "min_retries_per_s": 0.1, "window_s": 10},
            "fallback": {"value": "fallback"},
        }
    )
    first = Flaky(1)
    assert await policy.call(first) == "ok"  # the floor allows one retry in 10 s
    second = Flaky(1)
    assert await policy.call(second) == "fallback"  # budget spent: no retry
    assert second.calls == 1


async def test_non_idempotent_calls_are_not_retried_or_hedged() -> None:
    policy = make(
        {
            "retry": {"max_attempts": 3, "backoff": NO_WAIT},
            "hedge": {"delay_s": 0.01, "max_hedges": 2},
        }
    )
    flaky = Flaky(1)
    with pytest.raises(ConnectionError):
        await policy.call(flaky)
    assert flaky.calls == 1
    assert await policy.call(Flaky(1), idempotent=True) == "ok"


async def test_degrade_switch_first_then_rate_limit_then_bulkhead() -> None:
    switches = DegradeSwitches()
    limiter = CountingLimiter(permits=2)
    policy = make(
        {
            "degrade": {"feature": "orders.recs"},
            "rate_limit": {"limiter": "orders"},
            "bulkhead": {"max_concurrent": 1},
        },
        limiters={"orders": limiter},
        switches=switches,
    )
    switches.switch_off("orders.recs", reason="incident")
    with pytest.raises(DegradedError):
        await policy.call(Flaky(0))
    assert limiter.permits == 2  # degraded calls take no permit
    switches.switch_on("orders.recs")
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    first = asyncio.create_task(policy.call(held))
    await settle()
    with pytest.raises(BulkheadFullError):
        await policy.call(Flaky(0))
    with pytest.raises(RateLimitedError):
        await policy.call(Flaky(0))  # no permits left: refused before the bulkhead
    gate.set()
    assert await first == "held"
    assert limiter.released == 2  # permits go back to the limiter (no-op for rate limiters)


async def test_overall_deadline_bounds_retries() -> None:
    clock = ManualClock()
    policy = make(
        {
            "timeout": {"overall_s": 2.0},
            "retry": {
                "max_attempts": 10,
                "idempotent": True,
                "per_try_timeout_s": 0.5,
                "backoff": NO_WAIT,
            },
        },
        clock,
    )
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await clock.sleep(100)

    task = asyncio.create_task(policy.call(hangs))
    for _ in range(4):
        await settle()
        clock.advance(0.5)
    with pytest.raises(DeadlineExceededError):
        await task
    assert calls == 4


async def test_hedging_inside_retry_through_the_breaker() -> None:
    clock = ManualClock()
    policy = make(
        {
            "hedge": {"delay_s": 0.1, "max_hedges": 1},
            "retry": {"max_attempts": 1, "idempotent": True},
            "breaker": {"window_size": 10, "minimum_calls": 10},
        },
        clock,
    )
    started = 0

    async def slow_then_fast() -> str:
        nonlocal started
        started += 1
        await clock.sleep(5.0 if started == 1 else 0.1)
        return f"attempt {started}"

    task = asyncio.create_task(policy.call(slow_then_fast))
    await settle()
    clock.advance(0.1)
    await settle()
    clock.advance(0.1)
    assert await task == "attempt 2"
    assert policy.breaker is not None
    assert policy.breaker.metrics().calls == 1  # the cancelled loser is not recorded


async def test_swap_rules_keeps_in_flight_calls_on_their_rules() -> None:
    clock = ManualClock()
    policy = make({"retry": {"max_attempts": 3, "idempotent": True, "backoff": NO_WAIT}}, clock)
    gate = asyncio.Event()
    calls = 0

    async def fails_after_gate() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
        if calls < 3:
            raise ConnectionError
        return "ok"

    in_flight = asyncio.create_task(policy.call(fails_after_gate))
    await settle()
    policy.swap_rules({"retry": {"max_attempts": 1, "idempotent": True}})
    gate.set()
    assert await in_flight == "ok"  # finished under max_attempts=3
    assert calls == 3
    fresh = Flaky(1)
    with pytest.raises(ConnectionError):
        await policy.call(fresh)  # new calls use max_attempts=1
    assert fresh.calls == 1


async def test_swap_rules_keeps_unchanged_components_and_rejects_bad_rules() -> None:
    policy = make({"breaker": {"window_size": 4, "minimum_calls": 1}, "bulkhead": {}})
    breaker = policy.breaker
    assert breaker is not None
    with pytest.raises(ConnectionError):
        await policy.call(Flaky(1))
    assert breaker.state is State.OPEN
    before = policy.rules
    with pytest.raises(RuleError, match=r"breaker\.failure_ratio"):
        policy.swap_rules({"breaker": {"failure_ratio": 2}})
    with pytest.raises(RuleError, match=r"rate_limit\.limiter: no limiter named 'x'"):
        policy.swap_rules({"rate_limit": {"limiter": "x"}})
    assert policy.rules is before  # nothing changed
    policy.swap_rules(
        {"breaker": {"window_size": 4, "minimum_calls": 1}, "bulkhead": {"max_queue": 3}}
    )
    assert policy.breaker is breaker  # same rule: same breaker, still open
    assert breaker.state is State.OPEN
    policy.swap_rules({"breaker": {"window_size": 8, "minimum_calls": 1}})
    assert policy.breaker is not breaker and policy.breaker is not None
    assert policy.breaker.state is State.CLOSED
    assert policy.bulkhead is None


async def test_swap_rules_during_many_in_flight_calls() -> None:
    clock = ManualClock()
    policy = make({"bulkhead": {"max_concurrent": 50}}, clock)

    async def work(i: int) -> int:
        await clock.sleep(1.0)
        return i

    tasks = [asyncio.create_task(policy.call(work, i)) for i in range(20)]
    await settle()
    old_bulkhead = policy.bulkhead
    assert old_bulkhead is not None and old_bulkhead.in_use == 20
    policy.swap_rules({"bulkhead": {"max_concurrent": 5}})
    clock.advance(1.0)
    assert await asyncio.gather(*tasks) == list(range(20))  # none dropped
    assert old_bulkhead.in_use == 0  # every call released the slot it took


async def test_guard_applies_admission_breaker_and_deadline() -> None:
    clock = ManualClock()
    policy = make(
        {
            "breaker": {"window_size": 4, "minimum_calls": 2},
            "timeout": {"overall_s": 1.0},
            "bulkhead": {"max_concurrent": 1},
        },
        clock,
    )
    async with policy.guard():
        assert policy.bulkhead is not None and policy.bulkhead.in_use == 1
    with pytest.raises(ConnectionError):
        async with policy.guard():
            raise ConnectionError
    # 1 failure of 2 calls reaches the default 50% ratio.
    with pytest.raises(CircuitOpenError):
        async with policy.guard():
            pass
    policy.swap_rules({"timeout": {"overall_s": 1.0}})

    async def too_slow() -> None:
        async with policy.guard():
            await clock.sleep(5.0)

    task = asyncio.create_task(too_slow())
    await settle()
    clock.advance(1.0)
    with pytest.raises(DeadlineExceededError):
        await task


def test_call_sync_and_decorators() -> None:
    clock = ManualClock()
    slept: list[float] = []
    policy = make(
        {
            "retry": {
                "max_attempts": 3,
                "idempotent": True,
                "backoff": {"base_s": 0.5, "jitter": "none"},
            },
            "fallback": {"value": -1},
            "bulkhead": {"max_concurrent": 1},
        },
        clock,
        sync_sleep=lambda s: (slept.append(s), clock.advance(s)),
    )
    calls = 0

    @policy
    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return calls

    assert flaky() == 3
    assert slept == [0.5, 1.0]

    @policy(idempotent=False)
    def never_retried() -> int:
        raise ConnectionError

    assert never_retried() == -1
    assert policy.bulkhead is not None and policy.bulkhead.in_use == 0


async def test_async_decorator_and_feature_fallback() -> None:
    switches = DegradeSwitches()
    switches.register("recs", fallback=lambda: ["cached"])
    policy = make({"degrade": {"feature": "recs"}}, switches=switches)

    @policy
    async def recs() -> list[str]:
        return ["live"]

    assert await recs() == ["live"]
    switches.switch_off("recs")
    assert await recs() == ["cached"]
    assert policy.call_sync(lambda: ["live"]) == ["cached"]


async def test_cancellation_is_not_swallowed_by_the_fallback() -> None:
    clock = ManualClock()
    policy = make({"fallback": {"value": 1}, "retry": {"idempotent": True}}, clock)

    async def hangs() -> int:
        await clock.sleep(10)
        return 0

    task = asyncio.create_task(policy.call(hangs))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "module",
    [
        "syndic.traffic.breaker",
        "syndic.traffic.budget",
        "syndic.traffic.bulkhead",
        "syndic.traffic.cluster",
        "syndic.traffic.deadline",
        "syndic.traffic.degrade",
        "syndic.traffic.drivers",
        "syndic.traffic.fallback",
        "syndic.traffic.hedge",
        "syndic.traffic.policy",
        "syndic.traffic.retry",
        "syndic.traffic.rules",
        "syndic.traffic.stages",
    ],
)
def test_module_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
    assert result.attempted > 0


async def test_policy_works_as_written_on_the_monotonic_clock() -> None:
    policy = Policy({"retry": {"max_attempts": 2, "idempotent": True, "backoff": NO_WAIT}})
    flaky = Flaky(1)
    assert await policy.call(flaky) == "ok"
    assert flaky.calls == 2


async def test_swap_keeps_an_unchanged_budget_and_refreshes_a_changed_one() -> None:
    retry = {"max_attempts": 2, "idempotent": True, "backoff": NO_WAIT}
    budget = {"ratio": 0.0, "min_retries_per_s": 0.1, "window_s": 10}  # one retry per window
    policy = make({"retry": retry, "budget": budget})
    kept = policy.budget
    assert kept is not None
    assert await policy.call(Flaky(1)) == "ok"  # spends the one retry token
    policy.swap_rules({"retry": {**retry, "max_attempts": 3}, "budget": budget})
    assert policy.budget is kept  # same budget rule: the spent token stays spent
    with pytest.raises(ConnectionError):
        await policy.call(Flaky(1))
    policy.swap_rules({"retry": retry, "budget": {**budget, "min_retries_per_s": 0.2}})
    assert policy.budget is not kept
    assert await policy.call(Flaky(1)) == "ok"  # a fresh budget has tokens again


def test_swaps_from_many_threads_leave_one_whole_rule_set() -> None:
    import threading

    policy = make({})
    documents = [
        {"name": f"p{i}", "bulkhead": {"max_concurrent": i + 1}, "timeout": {"overall_s": i + 1}}
        for i in range(8)
    ]

    def swap(doc: dict[str, Any]) -> None:
        for _ in range(50):
            policy.swap_rules(doc)

    threads = [threading.Thread(target=swap, args=(doc,)) for doc in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rules = policy.rules
    i = int(rules.name[1:])
    assert rules.timeout_s == i + 1
    assert policy.bulkhead is not None and policy.bulkhead.config.max_concurrent == i + 1
