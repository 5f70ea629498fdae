"""Retry: what is retried, how long it waits, and when it stops."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.traffic import deadline
from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import CircuitOpenError, DeadlineExceededError, RuleError
from syndic.traffic.retry import Backoff, Retry, RetryConfig, RetryEvent

NO_WAIT = Backoff(base_s=0.0, cap_s=0.0, jitter="none")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def make(clock: ManualClock | None = None, **kw: object) -> Retry:
    cfg: dict[str, object] = {"max_attempts": 3, "backoff": NO_WAIT, "idempotent": True}
    cfg.update(kw.pop("cfg", {}))  # type: ignore[call-overload]
    return Retry(
        RetryConfig(**cfg),  # type: ignore[arg-type]
        clock=clock or ManualClock(),
        rng=random.Random(0),
        **kw,  # type: ignore[arg-type]
    )


class Flaky:
    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or ConnectionError("reset")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


async def test_retries_until_success_within_max_attempts() -> None:
    flaky = Flaky(2)
    assert await make().call(flaky) == "ok"
    assert flaky.calls == 3
    flaky = Flaky(5)
    with pytest.raises(ConnectionError):
        await make().call(flaky)
    assert flaky.calls == 3


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()],
)
async def test_never_retries_cancellation_or_interrupts(error: BaseException) -> None:
    flaky = Flaky(1, error)
    with pytest.raises(type(error)):
        await make().call(flaky)
    assert flaky.calls == 1


async def test_a_cancelled_caller_is_not_retried_even_mid_backoff() -> None:
    clock = ManualClock()
    retry = make(clock, cfg={"backoff": Backoff(base_s=1.0, cap_s=1.0, jitter="none")})
    flaky = Flaky(10)
    task = asyncio.create_task(retry.call(flaky))
    await settle()
    assert flaky.calls == 1 and clock.sleepers == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(5)
    await settle()
    assert flaky.calls == 1


async def test_non_idempotent_operations_are_not_retried_unless_told() -> None:
    retry = make(cfg={"idempotent": False})
    flaky = Flaky(1)
    with pytest.raises(ConnectionError):
        await retry.call(flaky)
    assert flaky.calls == 1
    assert await retry.call(flaky, idempotent=True) == "ok"


async def test_rejections_and_unlisted_errors_are_not_retried() -> None:
    retry = make(retry_on=(ConnectionError,), retry_if=lambda e: isinstance(e, KeyError))
    for error, calls in [
        (CircuitOpenError("open"), 1),
        (ValueError("bad"), 1),
        (KeyError("k"), 2),
        (ConnectionError("reset"), 2),
    ]:
        flaky = Flaky(1, error)
        if calls == 1:
            with pytest.raises(type(error)):
                await retry.call(flaky)
        else:
            await retry.call(flaky)
        assert flaky.calls == calls, error


async def test_retry_on_result_returns_last_result_when_attempts_run_out() -> None:
    results = iter([503, 503, 200])
    retry = make(retry_if_result=lambda r: r == 503)

    async def status() -> int:
        return next(results)

    assert await retry.call(status) == 200
    results = iter([503, 503, 503])
    assert await retry.call(status) == 503


async def test_backoff_sleeps_on_the_clock() -> None:
    clock = ManualClock()
    retry = make(clock, cfg={"backoff": Backoff(base_s=1.0, cap_s=3.0, jitter="none")})
    events: list[RetryEvent] = []
    retry.add_listener(events.append)
    flaky = Flaky(2)
    task = asyncio.create_task(retry.call(flaky))
    await settle()
    assert flaky.calls == 1
    clock.advance(1.0)
    await settle()
    assert flaky.calls == 2
    clock.advance(1.999)
    await settle()
    assert flaky.calls == 2
    clock.advance(0.001)
    assert await task == "ok"
    assert [e.delay_s for e in events] == [1.0, 2.0]


async def test_per_try_timeout_retries_a_hung_try() -> None:
    clock = ManualClock()
    retry = make(clock, cfg={"per_try_timeout_s": 1.0})
    calls = 0

    async def hangs_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.sleep(100)
        return "ok"

    task = asyncio.create_task(retry.call(hangs_once))
    await settle()
    clock.advance(1.0)
    assert await task == "ok"
    assert calls == 2


async def test_overall_deadline_stops_retries_and_bounds_per_try() -> None:
    clock = ManualClock()
    retry = make(
        clock,
        cfg={
            "max_attempts": 10,
            "per_try_timeout_s": 5.0,
            "backoff": Backoff(base_s=1.0, cap_s=1.0, jitter="none"),
        },
    )
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await clock.sleep(100)

    async def outer() -> None:
        async with deadline.timeout(3.0, clock=clock):
            await retry.call(hangs)

    task = asyncio.create_task(outer())
    await settle()
    clock.advance(3.0)  # the per-try timeout (5 s) is clipped to the 3 s deadline
    with pytest.raises(DeadlineExceededError):
        await task
    assert calls == 1


async def test_no_retry_whose_backoff_outlives_the_deadline() -> None:
    clock = ManualClock()
    retry = make(clock, cfg={"backoff": Backoff(base_s=2.0, cap_s=2.0, jitter="none")})
    flaky = Flaky(1)
    async with deadline.timeout(1.5, clock=clock):
        with pytest.raises(ConnectionError):
            await retry.call(flaky)
    assert flaky.calls == 1


async def test_budget_refusal_stops_retries_and_says_why() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=0.0, window_s=10.0, clock=clock)
    flaky = Flaky(1)
    with pytest.raises(ConnectionError) as info:
        await make(clock, budget=budget).call(flaky)
    assert flaky.calls == 1
    assert any("budget" in note for note in info.value.__notes__)


def test_sync_retry_uses_injected_sleep() -> None:
    clock = ManualClock()
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.advance(s)

    retry = make(
        clock, cfg={"backoff": Backoff(base_s=0.5, cap_s=4, jitter="none")}, sync_sleep=sleep
    )
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    assert retry.call_sync(flaky) == "ok"
    assert slept == [0.5, 1.0]
    with deadline.scope(0.1, clock=clock):
        calls = 0
        with pytest.raises(ConnectionError):
            retry.call_sync(flaky)
        assert calls == 1


@given(
    base=st.floats(0.0, 10.0),
    extra=st.floats(0.0, 100.0),
    multiplier=st.floats(1.0, 10.0),
    retry=st.integers(1, 5000),
    previous=st.floats(0.0, 200.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_within_bounds(
    base: float, extra: float, multiplier: float, retry: int, previous: float, seed: int
) -> None:
    cap = base + extra
    rng = random.Random(seed)
    none = Backoff(base_s=base, cap_s=cap, multiplier=multiplier, jitter="none")
    full = Backoff(base_s=base, cap_s=cap, multiplier=multiplier, jitter="full")
    deco = Backoff(base_s=base, cap_s=cap, multiplier=multiplier, jitter="decorrelated")
    ceiling = none.delay_s(retry, previous, rng)
    assert math.isfinite(ceiling)
    assert min(base, cap) <= ceiling <= cap
    assert 0.0 <= full.delay_s(retry, previous, rng) <= ceiling
    d = deco.delay_s(retry, previous, rng)
    assert base <= d <= cap or d == cap
    assert d <= max(base, previous * 3.0)


def test_backoff_grows_exponentially_until_the_cap() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0, multiplier=2.0, jitter="none")
    rng = random.Random(0)
    assert [round(b.delay_s(n, 0, rng), 6) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 10**6}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts: must be an integer"),
        ({"per_try_timeout_s": -1.0}, "per_try_timeout_s"),
        ({"per_try_timeout_s": math.nan}, "per_try_timeout_s"),
        ({"idempotent": "yes"}, "idempotent"),
    ],
)
def test_retry_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RuleError, match=match):
        RetryConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_s": -1.0}, "base_s"),
        ({"cap_s": 0.01, "base_s": 1.0}, "cap_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": math.inf}, "multiplier"),
        ({"jitter": "equal"}, "jitter"),
    ],
)
def test_backoff_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RuleError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_blocking_tries_see_the_per_try_deadline_and_none_starts_after_it() -> None:
    clock = ManualClock()
    retry = Retry(
        RetryConfig(max_attempts=3, per_try_timeout_s=1.0, backoff=NO_WAIT, idempotent=True),
        clock=clock,
        sync_sleep=lambda _: None,
    )
    seen: list[float | None] = []

    def slow_then_fails() -> None:
        seen.append(deadline.remaining_s())
        clock.advance(0.25)  # a blocking call cannot be cut short
        raise ConnectionError

    with pytest.raises(ConnectionError):
        retry.call_sync(slow_then_fails)
    assert seen == [1.0, 1.0, 1.0]  # each try has its own per-try deadline
    with deadline.scope(0.5, clock=clock):
        seen.clear()
        with pytest.raises(ConnectionError):
            retry.call_sync(slow_then_fails)
        # Clipped to the caller's 0.5 s; the third try would start at 0.5 s: not made.
        assert seen == [0.5, 0.25]
