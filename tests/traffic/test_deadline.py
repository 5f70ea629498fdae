"""Deadlines: clipping, propagation to nested calls and tasks, expiry on a ManualClock."""

from __future__ import annotations

import asyncio
import math

import pytest

from syndic.traffic import deadline
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import DeadlineExceededError, RuleError


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_no_deadline_outside_a_scope() -> None:
    assert deadline.remaining_s() is None
    assert deadline.current() is None


async def test_nested_timeout_is_clipped_to_the_outer_deadline() -> None:
    clock = ManualClock()
    seen: list[float | None] = []

    async def nested() -> None:
        seen.append(deadline.remaining_s())
        async with deadline.timeout(30.0, clock=clock):
            seen.append(deadline.remaining_s())
        async with deadline.timeout(0.5, clock=clock):
            seen.append(deadline.remaining_s())

    async with deadline.timeout(2.0, clock=clock):
        clock.advance(0.5)
        await nested()
    assert seen == [1.5, 1.5, 0.5]
    assert deadline.remaining_s() is None


async def test_deadline_propagates_into_child_tasks_and_cancels_them() -> None:
    clock = ManualClock()
    child_saw: list[float | None] = []
    child_outcome: list[str] = []

    async def child() -> None:
        child_saw.append(deadline.remaining_s())
        try:
            async with deadline.timeout(100.0, clock=clock):  # asks for more than allowed
                await clock.sleep(50.0)
            child_outcome.append("finished")
        except DeadlineExceededError:
            child_outcome.append("deadline")

    async def parent() -> None:
        async with deadline.timeout(3.0, clock=clock):
            task = asyncio.create_task(child())
            await task

    run = asyncio.create_task(parent())
    await settle()
    assert child_saw == [3.0]
    clock.advance(3.0)
    with pytest.raises(DeadlineExceededError):
        await run
    # The child never outlived the parent's deadline.
    assert child_outcome in (["deadline"], [])
    assert clock.now_s() == 3.0


async def test_expiry_raises_deadline_exceeded_and_not_before() -> None:
    clock = ManualClock()

    async def slow() -> str:
        await clock.sleep(10.0)
        return "late"

    async def guarded() -> str:
        return await deadline.run_with_timeout(slow, 1.0, clock=clock)

    task = asyncio.create_task(guarded())
    await settle()
    clock.advance(0.99)
    await settle()
    assert not task.done()
    clock.advance(0.01)
    with pytest.raises(DeadlineExceededError):
        await task


async def test_outer_cancellation_stays_a_cancellation() -> None:
    clock = ManualClock()

    async def body() -> None:
        async with deadline.timeout(5.0, clock=clock):
            await clock.sleep(10.0)

    task = asyncio.create_task(body())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_passed_deadline_refuses_to_start() -> None:
    clock = ManualClock()
    async with deadline.timeout(1.0, clock=clock):
        clock.advance(1.0)
        with pytest.raises(DeadlineExceededError, match="before the call started"):
            async with deadline.timeout(5.0, clock=clock):
                pass


def test_sync_scope_publishes_and_restores() -> None:
    clock = ManualClock()
    with deadline.scope(2.0, clock=clock) as d:
        assert d is not None
        assert deadline.remaining_s() == 2.0
        with deadline.scope(None, clock=clock) as inner:
            assert inner is d
    assert deadline.current() is None


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, 10**9, "1", True, None])
def test_bad_timeouts_are_rejected(bad: object) -> None:
    if bad is None:
        deadline.timeout(None, clock=ManualClock())  # None means "inherit": allowed
        return
    with pytest.raises(RuleError, match="timeout_s"):
        deadline.timeout(bad, clock=ManualClock())  # type: ignore[arg-type]
    with pytest.raises(RuleError):
        deadline.Deadline.after(bad, ManualClock())  # type: ignore[arg-type]
