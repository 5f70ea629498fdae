"""``acquire`` paths: queueing rules, maximum waits and cancellation, on a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import OverloadedError, RateLimitedError
from syndic.traffic.ratelimit import (
    AdaptiveThrottle,
    ConcurrencyLimiter,
    FixedWindow,
    HotParamLimiter,
    LeakyBucket,
    SlidingWindowLog,
    SystemProtection,
    TokenBucket,
    WarmUpBucket,
)

# A bug that leaves a task parked on the manual clock must fail fast, not hang.
pytestmark = pytest.mark.timeout(10)

STEPS_MAX = 100_000  # bound on simulated clock steps in one test


async def _spin() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _timed(clock: ManualClock, make: Callable[[], Awaitable[None]]) -> float:
    await make()
    return clock.now_s()


async def _drive(clock: ManualClock, tasks: list[asyncio.Task[float]], step_s: float) -> None:
    for _ in range(STEPS_MAX):
        await _spin()
        if all(t.done() for t in tasks):
            return
        clock.advance(step_s)
    raise AssertionError("tasks did not finish")


async def test_leaky_bucket_queues_requests_one_interval_apart_up_to_max_queue() -> None:
    clock = ManualClock()
    # Binary-exact times (1/8 s) so the manual clock's float sums land on deadlines.
    lb = LeakyBucket(8, clock=clock, max_queue_s=0.4)
    tasks = [asyncio.create_task(_timed(clock, lb.acquire)) for _ in range(5)]
    await _spin()
    # The fifth would wait 0.5 s > 0.4 s: rejected at once with the time to retry.
    fifth = tasks.pop()
    assert fifth.done()
    with pytest.raises(RateLimitedError) as info:
        fifth.result()
    assert info.value.retry_after_s == pytest.approx(0.1)
    await _drive(clock, tasks, 0.03125)
    assert [t.result() for t in tasks] == [0.0, 0.125, 0.25, 0.375]


async def test_token_bucket_acquire_waits_for_refill_and_rejects_past_max_wait() -> None:
    clock = ManualClock()
    bucket = TokenBucket(8, 2, clock=clock, max_wait_s=0.3)
    tasks = [asyncio.create_task(_timed(clock, bucket.acquire)) for _ in range(4)]
    await _spin()
    await _drive(clock, tasks, 0.03125)
    assert [t.result() for t in tasks] == [0.0, 0.0, 0.125, 0.25]
    strict = TokenBucket(8, 1, clock=clock, max_wait_s=0.1)
    assert strict.try_acquire()
    with pytest.raises(RateLimitedError) as info:
        await strict.acquire()  # would wait 0.125 s
    assert info.value.retry_after_s == pytest.approx(0.025)
    assert strict.available() == pytest.approx(0.0), "a refused acquire reserves nothing"


async def test_cancelled_token_bucket_wait_gives_its_tokens_back() -> None:
    clock = ManualClock()
    bucket = TokenBucket(1, 1, clock=clock, max_wait_s=10)
    assert bucket.try_acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await _spin()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.advance(1.0)
    assert bucket.try_acquire(), "the cancelled reservation must not keep the token"


async def test_warm_up_acquire_spaces_cold_requests_at_the_cold_interval() -> None:
    clock = ManualClock()
    w = WarmUpBucket(10, 10.0, clock=clock)
    tasks = [asyncio.create_task(_timed(clock, w.acquire)) for _ in range(3)]
    await _drive(clock, tasks, 0.01)
    times = [t.result() for t in tasks]
    assert times[1] - times[0] == pytest.approx(0.3, abs=0.011)


async def test_window_acquire_waits_for_room() -> None:
    clock = ManualClock(0.25)
    w = FixedWindow(1, 1.0, clock=clock, max_wait_s=1.0)
    tasks = [asyncio.create_task(_timed(clock, w.acquire)) for _ in range(2)]
    await _drive(clock, tasks, 0.0625)
    assert [t.result() for t in tasks] == [0.25, 1.0]
    log = SlidingWindowLog(1, 1.0, clock=clock, max_wait_s=0.1)
    await log.acquire()
    with pytest.raises(RateLimitedError):
        await log.acquire()


async def test_concurrency_limiter_serves_waiters_in_order_and_times_out() -> None:
    clock = ManualClock()
    c = ConcurrencyLimiter(1, clock=clock, max_wait_s=1.0, queue_length_max=2)
    order: list[int] = []

    async def user(i: int) -> None:
        await c.acquire()
        order.append(i)

    await c.acquire()
    tasks = [asyncio.create_task(user(i)) for i in range(3)]
    await _spin()
    assert tasks[2].done() and isinstance(tasks[2].exception(), RateLimitedError)
    assert not c.try_acquire(), "no overtaking queued waiters"
    c.release()
    await _spin()
    assert order == [0]
    clock.advance(1.0)  # waiter 1 times out while 0 holds the permit
    await _spin()
    assert isinstance(tasks[1].exception(), RateLimitedError)
    c.release()
    assert c.in_flight == 0 and c.waiting == 0
    c.check_invariants()


async def test_concurrency_limiter_cancelled_waiter_leaves_the_queue() -> None:
    clock = ManualClock()
    c = ConcurrencyLimiter(1, clock=clock)
    async with c.hold():
        waiter = asyncio.create_task(c.acquire())
        await _spin()
        assert c.waiting == 1
        waiter.cancel()
        await _spin()
        assert c.waiting == 0
    assert c.in_flight == 0


async def test_rejections_carry_their_typed_errors() -> None:
    clock = ManualClock()
    hp = HotParamLimiter(1, 1, clock=clock)
    await hp.acquire_key("k")
    with pytest.raises(RateLimitedError) as info:
        await hp.acquire_key("k")
    assert info.value.retry_after_s == pytest.approx(1.0)
    sp = SystemProtection(clock=clock, cpu_usage=lambda: 1.0)
    async with sp.admit(), sp.admit():
        with pytest.raises(OverloadedError):
            await sp.acquire()
    assert sp.in_flight == 0
    throttle = AdaptiveThrottle(clock=clock)
    await throttle.acquire()
