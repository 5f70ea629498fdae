"""Hedging: a second attempt after the delay, first success wins, losers cancelled."""

from __future__ import annotations

import asyncio

import pytest

from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import RuleError
from syndic.traffic.hedge import Hedge, HedgeConfig


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Backend:
    """Attempt i answers after delays[i] seconds of clock time, or fails."""

    def __init__(self, clock: ManualClock, delays: list[float], fail: set[int] | None = None):
        self.clock = clock
        self.delays = delays
        self.fail = fail or set()
        self.started = 0
        self.cancelled: list[int] = []
        self.finished: list[int] = []

    async def __call__(self) -> str:
        index = self.started
        self.started += 1
        try:
            await self.clock.sleep(self.delays[index])
        except asyncio.CancelledError:
            self.cancelled.append(index)
            raise
        self.finished.append(index)
        if index in self.fail:
            raise ConnectionError(f"attempt {index} failed")
        return f"attempt {index}"


async def test_fast_first_attempt_sends_no_hedge() -> None:
    clock = ManualClock()
    backend = Backend(clock, [0.01, 1.0])
    hedge = Hedge(HedgeConfig(delay_s=0.05, max_hedges=1), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.01)
    assert await task == "attempt 0"
    assert backend.started == 1
    assert clock.sleepers == 0  # the hedge timer was cancelled too


async def test_slow_first_attempt_is_hedged_and_the_loser_cancelled() -> None:
    clock = ManualClock()
    backend = Backend(clock, [10.0, 0.1])
    hedge = Hedge(HedgeConfig(delay_s=0.05, max_hedges=1), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.05)
    await settle()
    assert backend.started == 2
    clock.advance(0.1)
    assert await task == "attempt 1"
    assert backend.cancelled == [0]
    assert hedge.hedges_sent == 1


async def test_hedges_are_bounded() -> None:
    clock = ManualClock()
    backend = Backend(clock, [10.0] * 10)
    hedge = Hedge(HedgeConfig(delay_s=1.0, max_hedges=2), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    for _ in range(8):
        await settle()
        clock.advance(1.0)
    await settle()
    assert backend.started == 3  # started at t=0, 1, 2; due at 10, 11, 12
    clock.advance(2.0)
    assert await task == "attempt 0"
    assert sorted(backend.cancelled) == [1, 2]


async def test_non_fatal_failure_sends_the_next_hedge_at_once() -> None:
    clock = ManualClock()
    backend = Backend(clock, [0.01, 0.02], fail={0})
    hedge = Hedge(HedgeConfig(delay_s=5.0, max_hedges=1), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.01)
    await settle()
    assert backend.started == 2  # no 5 s wait after a failure
    clock.advance(0.02)
    assert await task == "attempt 1"


async def test_fatal_error_ends_the_call_and_cancels_the_rest() -> None:
    clock = ManualClock()
    backend = Backend(clock, [10.0, 0.5], fail={1})
    hedge = Hedge(HedgeConfig(delay_s=0.1, max_hedges=1), clock=clock, hedge_on=(TimeoutError,))
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.1)
    await settle()
    clock.advance(0.5)
    with pytest.raises(ConnectionError, match="attempt 1"):
        await task
    assert backend.cancelled == [0]


async def test_every_attempt_failing_raises_the_last_error() -> None:
    clock = ManualClock()
    backend = Backend(clock, [0.1, 0.1], fail={0, 1})
    hedge = Hedge(HedgeConfig(delay_s=1.0, max_hedges=1), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.1)
    await settle()
    clock.advance(0.1)
    with pytest.raises(ConnectionError, match="attempt 1"):
        await task


async def test_budget_refuses_hedges() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=0.0, window_s=10.0, clock=clock)
    backend = Backend(clock, [2.0, 0.1])
    hedge = Hedge(HedgeConfig(delay_s=0.5, max_hedges=1), clock=clock, budget=budget)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.5)
    await settle()
    assert backend.started == 1
    clock.advance(1.5)
    assert await task == "attempt 0"
    assert budget.requests == 1


async def test_cancelling_the_caller_cancels_every_attempt() -> None:
    clock = ManualClock()
    backend = Backend(clock, [10.0, 10.0])
    hedge = Hedge(HedgeConfig(delay_s=0.5, max_hedges=1), clock=clock)
    task = asyncio.create_task(hedge.call(backend))
    await settle()
    clock.advance(0.5)
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(backend.cancelled) == [0, 1]
    assert clock.sleepers == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delay_s": 0}, "delay_s"),
        ({"delay_s": float("nan")}, "delay_s"),
        ({"delay_s": 0.1, "max_hedges": 0}, "max_hedges"),
        ({"delay_s": 0.1, "max_hedges": 99}, "max_hedges"),
        ({"delay_s": 0.1, "max_hedges": "2"}, "max_hedges: must be an integer"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RuleError, match=match):
        HedgeConfig(**kwargs)  # type: ignore[arg-type]
