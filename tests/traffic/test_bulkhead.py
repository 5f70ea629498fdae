"""Bulkhead: the concurrency bound, the bounded FIFO queue, the max wait."""

from __future__ import annotations

import asyncio

import pytest

from syndic.traffic.bulkhead import Bulkhead, BulkheadConfig
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import BulkheadFullError, RuleError


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_never_more_than_max_concurrent_and_queue_bounded() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=2, max_queue=3), clock=clock)
    gate = asyncio.Event()
    inside = peak = 0

    async def work() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1

    tasks = [asyncio.create_task(bulkhead.call(work)) for _ in range(8)]
    await settle()
    assert inside == 2 and bulkhead.waiting == 3
    bulkhead.check_invariants()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2
    assert sum(isinstance(r, BulkheadFullError) for r in results) == 3
    assert bulkhead.in_use == 0 and bulkhead.rejected_total == 3


async def test_waiters_are_served_fifo_and_time_out_on_the_clock() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1, max_queue=5, max_wait_s=2.0), clock=clock)
    order: list[int] = []
    await bulkhead.acquire()

    async def waiter(i: int) -> None:
        await bulkhead.acquire()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await settle()
    clock.advance(1.0)
    bulkhead.release()  # -> waiter 0
    await settle()
    bulkhead.release()  # -> waiter 1
    await settle()
    assert order == [0, 1]
    clock.advance(1.0)  # waiter 2 has now waited 2 s
    with pytest.raises(BulkheadFullError, match="within 2s"):
        await tasks[2]
    await asyncio.gather(*tasks[:2])
    bulkhead.release()
    assert bulkhead.in_use == 0
    bulkhead.check_invariants()


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1, max_queue=2), clock=clock)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await settle()
    bulkhead.release()  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.in_use == 0
    assert bulkhead.try_acquire()


def test_sync_callers_never_queue() -> None:
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1, max_queue=10), clock=ManualClock())
    with bulkhead, pytest.raises(BulkheadFullError, match="synchronous"):
        bulkhead.call_sync(lambda: 1)
    assert bulkhead.call_sync(lambda: 7) == 7

    @bulkhead
    def decorated() -> int:
        return bulkhead.in_use

    assert decorated() == 1
    assert bulkhead.in_use == 0


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without acquire"):
        Bulkhead(clock=ManualClock()).release()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 10**9}, "max_concurrent"),
        ({"max_queue": -1}, "max_queue"),
        ({"max_wait_s": -1.0}, "max_wait_s"),
        ({"max_wait_s": float("nan")}, "max_wait_s"),
        ({"max_concurrent": "5"}, "max_concurrent: must be an integer"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RuleError, match=match):
        BulkheadConfig(**kwargs)  # type: ignore[arg-type]
