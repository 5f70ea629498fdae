"""ManualClock: time moves only when told, and sleepers wake exactly when due."""

from __future__ import annotations

import asyncio

import pytest

from syndic.traffic.clock import ManualClock


async def test_sleep_wakes_only_when_time_passes_its_deadline() -> None:
    clock = ManualClock()
    woke: list[float] = []

    async def sleeper(delay_s: float) -> None:
        await clock.sleep(delay_s)
        woke.append(clock.now_s())

    tasks = [asyncio.create_task(sleeper(d)) for d in (1.0, 2.0)]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(1.5)
    await asyncio.sleep(0)
    assert woke == [1.5]
    clock.advance(0.5)
    await asyncio.gather(*tasks)
    assert woke == [1.5, 2.0]


def test_clock_refuses_to_go_backwards() -> None:
    clock = ManualClock(10.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.now_s() == 10.0
