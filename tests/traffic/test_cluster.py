"""Dubbo cluster modes: failover, failfast, failsafe, failback, forking, broadcast."""

from __future__ import annotations

import asyncio

import pytest

from syndic.traffic.clock import ManualClock
from syndic.traffic.cluster import Broadcast, Failback, Failfast, Failover, Failsafe, Forking
from syndic.traffic.errors import CircuitOpenError, NoEndpointError, RuleError


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Endpoints:
    def __init__(self, down: set[str], clock: ManualClock | None = None) -> None:
        self.down = set(down)
        self.calls: list[str] = []
        self.clock = clock
        self.delays: dict[str, float] = {}
        self.cancelled: list[str] = []

    async def __call__(self, endpoint: str) -> str:
        self.calls.append(endpoint)
        if self.clock is not None and endpoint in self.delays:
            try:
                await self.clock.sleep(self.delays[endpoint])
            except asyncio.CancelledError:
                self.cancelled.append(endpoint)
                raise
        if endpoint in self.down:
            raise ConnectionError(endpoint)
        return endpoint


ALL = ["a", "b", "c", "d"]


async def test_failover_tries_distinct_endpoints_up_to_retries() -> None:
    eps = Endpoints({"a", "b"})
    assert await Failover(retries=2).invoke(ALL, eps) == "c"
    assert eps.calls == ["a", "b", "c"]
    eps = Endpoints({"a", "b", "c"})
    with pytest.raises(ConnectionError, match="c"):
        await Failover(retries=2).invoke(ALL, eps)
    assert eps.calls == ["a", "b", "c"]
    eps = Endpoints({"a", "b"})
    with pytest.raises(ConnectionError):
        await Failover(retries=5).invoke(["a", "b"], eps)  # never the same endpoint twice
    assert eps.calls == ["a", "b"]


async def test_failover_does_not_retry_rejections_or_unlisted_errors() -> None:
    async def rejected(endpoint: str) -> str:
        raise CircuitOpenError("open")

    with pytest.raises(CircuitOpenError):
        await Failover().invoke(ALL, rejected)
    eps = Endpoints({"a"})
    with pytest.raises(ConnectionError):
        await Failover(retry_on=(TimeoutError,)).invoke(ALL, eps)
    assert eps.calls == ["a"]


async def test_failfast_and_failsafe() -> None:
    eps = Endpoints({"a"})
    with pytest.raises(ConnectionError):
        await Failfast().invoke(ALL, eps)
    assert eps.calls == ["a"]
    safe: Failsafe[str] = Failsafe(default="none")
    assert await safe.invoke(ALL, eps) == "none"
    assert safe.swallowed_total == 1


async def test_no_endpoints() -> None:
    with pytest.raises(NoEndpointError):
        await Failfast().invoke([], Endpoints(set()))


async def test_failback_retries_in_background_bounded() -> None:
    clock = ManualClock()
    eps = Endpoints({"a", "b"})
    failback: Failback[str | None] = Failback(
        None, clock=clock, interval_s=5.0, max_retries=2, max_pending=2
    )
    for _ in range(3):
        assert await failback.invoke(["a", "b"], eps) is None
    assert failback.pending == 2 and failback.dropped_total == 1
    failback.start()
    await settle()
    clock.advance(5.0)
    await settle()
    assert failback.pending == 2  # first retry failed (endpoint b is down too)
    eps.down.clear()
    clock.advance(5.0)
    await settle()
    assert failback.pending == 0 and failback.recovered_total == 2
    await failback.aclose()


async def test_failback_gives_up_after_max_retries() -> None:
    clock = ManualClock()
    eps = Endpoints({"a"})
    failback: Failback[None] = Failback(None, clock=clock, interval_s=1.0, max_retries=2)
    await failback.invoke(["a"], eps)
    for _ in range(3):
        clock.advance(1.0)
        await failback.retry_due()
    assert failback.pending == 0 and failback.gave_up_total == 1
    assert eps.calls == ["a", "a", "a"]


async def test_forking_first_success_wins_and_the_rest_are_cancelled() -> None:
    clock = ManualClock()
    eps = Endpoints({"a"}, clock)
    eps.delays = {"a": 0.1, "b": 5.0, "c": 1.0}
    task = asyncio.create_task(Forking(forks=3).invoke(ALL, eps))
    await settle()
    clock.advance(0.1)  # a fails
    await settle()
    clock.advance(0.9)  # c answers
    assert await task == "c"
    assert eps.cancelled == ["b"]
    assert "d" not in eps.calls


async def test_forking_all_fail_raises() -> None:
    with pytest.raises(ConnectionError):
        await Forking(forks=2).invoke(ALL, Endpoints(set(ALL)))


async def test_broadcast_calls_all_and_fails_if_any_fails() -> None:
    eps = Endpoints(set())
    assert await Broadcast().invoke(ALL, eps) == ALL
    eps = Endpoints({"b", "d"})
    with pytest.raises(ExceptionGroup) as info:
        await Broadcast().invoke(ALL, eps)
    assert len(info.value.exceptions) == 2
    assert sorted(eps.calls) == ALL


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Failover(retries=-1), "retries"),
        (lambda: Failover(retries=10**6), "retries"),
        (lambda: Forking(forks=0), "forks"),
        (lambda: Forking(forks="2"), "forks: must be an integer"),
        (lambda: Failback(None, clock=ManualClock(), interval_s=float("nan")), "interval_s"),
        (lambda: Failback(None, clock=ManualClock(), max_pending=0), "max_pending"),
    ],
)
def test_config_validation(factory: object, match: str) -> None:
    with pytest.raises(RuleError, match=match):
        factory()  # type: ignore[operator]
