"""Fallback: a value, a handler given the error, the last good answer within its age."""

from __future__ import annotations

import asyncio

import pytest

from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import CircuitOpenError, RuleError
from syndic.traffic.fallback import Fallback


async def fails() -> str:
    raise ConnectionError("down")


async def test_value() -> None:
    assert await Fallback(value="default").call(fails) == "default"


async def test_handler_receives_the_error_sync_or_async() -> None:
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return f"handled {type(exc).__name__}"

    async def ahandler(exc: BaseException) -> str:
        return "async handled"

    assert await Fallback(handler=handler).call(fails) == "handled ConnectionError"
    assert isinstance(seen[0], ConnectionError)
    assert await Fallback(handler=ahandler).call(fails) == "async handled"


async def test_last_good_within_max_age_then_value() -> None:
    clock = ManualClock()
    fallback: Fallback[str] = Fallback(value="empty", last_good_max_age_s=60.0, clock=clock)
    answers = iter(["fresh"])

    async def flaky() -> str:
        try:
            return next(answers)
        except StopIteration:
            raise ConnectionError from None

    assert await fallback.call(flaky) == "fresh"
    clock.advance(60.0)
    assert await fallback.call(flaky) == "fresh"  # exactly at max age: still served
    clock.advance(0.001)
    assert await fallback.call(flaky) == "empty"


async def test_without_a_fresh_last_good_the_error_propagates() -> None:
    clock = ManualClock()
    fallback: Fallback[str] = Fallback(last_good_max_age_s=1.0, clock=clock)
    with pytest.raises(ConnectionError):
        await fallback.call(fails)


async def test_only_listed_errors_and_never_cancellation() -> None:
    fallback: Fallback[str] = Fallback(value="x", on=(CircuitOpenError,))
    with pytest.raises(ConnectionError):
        await fallback.call(fails)

    async def rejected() -> str:
        raise CircuitOpenError("open")

    assert await fallback.call(rejected) == "x"

    async def cancelled() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await Fallback(value="x").call(cancelled)


def test_sync_paths_and_decorator() -> None:
    fallback: Fallback[int] = Fallback(value=0)

    @fallback
    def parse(text: str) -> int:
        return int(text)

    assert parse("12") == 12
    assert parse("x") == 0

    async def ahandler(exc: BaseException) -> int:
        return 1

    with pytest.raises(TypeError, match="coroutine"):
        Fallback(handler=ahandler).call_sync(lambda: int("x"))


def test_construction_errors() -> None:
    with pytest.raises(RuleError, match="at least one"):
        Fallback()
    with pytest.raises(RuleError, match="last_good_max_age_s"):
        Fallback(last_good_max_age_s=float("nan"), clock=ManualClock())
    with pytest.raises(RuleError, match="handler"):
        Fallback(handler="not callable")  # type: ignore[arg-type]


def test_last_good_works_as_written_on_the_monotonic_clock() -> None:
    fallback: Fallback[int] = Fallback(last_good_max_age_s=60.0)
    assert fallback.call_sync(lambda: 7) == 7
    assert fallback.call_sync(lambda: int("x")) == 7  # remembered, and fresh
