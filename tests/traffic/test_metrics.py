"""Prometheus metrics for policies and server admission."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import CircuitOpenError, RateLimitedError
from syndic.traffic.integrations.asgi import AdmissionMiddleware
from syndic.traffic.metrics import MeteredPolicy, TrafficMetrics
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import TokenBucket

NO_BACKOFF = {"base_s": 0, "cap_s": 0, "jitter": "none"}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def make(
    rules: dict[str, Any], **kwargs: Any
) -> tuple[CollectorRegistry, MeteredPolicy, ManualClock]:
    registry = CollectorRegistry()
    clock = ManualClock()
    policy = Policy(rules, clock=clock, rng=random.Random(1), **kwargs)
    return registry, TrafficMetrics(registry).instrument(policy), clock


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise ConnectionError("down")


async def test_calls_and_tries_by_outcome() -> None:
    registry, metered, _ = make(
        {"name": "inv", "retry": {"max_attempts": 2, "idempotent": True, "backoff": NO_BACKOFF}}
    )
    assert await metered.call(ok) == "ok"
    with pytest.raises(ConnectionError):
        await metered.call(boom)
    assert value(registry, "syndic_traffic_calls_total", policy="inv", outcome="success") == 1
    assert value(registry, "syndic_traffic_calls_total", policy="inv", outcome="failure") == 1
    assert value(registry, "syndic_traffic_tries_total", policy="inv", outcome="failure") == 2
    assert value(registry, "syndic_traffic_tries_total", policy="inv", outcome="success") == 1
    assert value(registry, "syndic_traffic_call_duration_seconds_count", policy="inv") == 2


async def test_fallback_rejections_and_breaker_state() -> None:
    registry, metered, clock = make(
        {"name": "cat", "breaker": {"window_size": 2, "minimum_calls": 2, "open_wait_s": 5}}
    )
    state = "syndic_traffic_breaker_state"
    assert value(registry, state, policy="cat") == 0
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await metered.call(boom)
    assert value(registry, state, policy="cat") == 1
    with pytest.raises(CircuitOpenError):
        await metered.call(ok)
    assert value(registry, "syndic_traffic_calls_total", policy="cat", outcome="rejected") == 1
    assert (
        value(registry, "syndic_traffic_rejections_total", policy="cat", reason="circuit_open") == 1
    )
    assert (
        value(
            registry,
            "syndic_traffic_breaker_transitions_total",
            policy="cat",
            from_state="closed",
            to_state="open",
        )
        == 1
    )
    assert (
        value(
            registry, "syndic_traffic_component_rejected_total", policy="cat", component="breaker"
        )
        == 1
    )
    clock.advance(5)
    assert value(registry, state, policy="cat") == 2  # read at scrape time: half-open now


async def test_fallback_outcome_and_hidden_rejections() -> None:
    registry, metered, _ = make(
        {
            "name": "rec",
            "breaker": {"window_size": 1, "minimum_calls": 1, "open_wait_s": 60},
            "fallback": {"value": []},
        }
    )
    assert await metered.call(boom) == []
    assert await metered.call(ok) == []  # refused by the open breaker, answered by fallback
    assert value(registry, "syndic_traffic_calls_total", policy="rec", outcome="fallback") == 2
    assert (
        value(registry, "syndic_traffic_rejections_total", policy="rec", reason="circuit_open") == 0
    )
    assert (
        value(
            registry, "syndic_traffic_component_rejected_total", policy="rec", component="breaker"
        )
        == 1
    )


def test_sync_path_and_decorator() -> None:
    registry, metered, _ = make({"name": "s"})

    @metered
    def add(a: int, b: int) -> int:
        return a + b

    @metered
    async def add_async(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert asyncio.run(add_async(2, 2)) == 4
    assert metered.call_sync(lambda: 5) == 5
    assert value(registry, "syndic_traffic_calls_total", policy="s", outcome="success") == 3


async def test_swapped_breaker_is_followed() -> None:
    registry, metered, _ = make({"name": "sw", "breaker": {"window_size": 1, "minimum_calls": 1}})
    metered.policy.swap_rules(
        {"name": "sw", "breaker": {"window_size": 2, "minimum_calls": 2, "open_wait_s": 9}}
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await metered.call(boom)
    assert value(registry, "syndic_traffic_breaker_state", policy="sw") == 1
    assert (
        value(
            registry,
            "syndic_traffic_breaker_transitions_total",
            policy="sw",
            from_state="closed",
            to_state="open",
        )
        == 1
    )


async def test_rate_limit_rejection_reason() -> None:
    registry = CollectorRegistry()
    clock = ManualClock()
    bucket = TokenBucket(1, 1, clock=clock, max_wait_s=0)
    policy = Policy(
        {"name": "rl", "rate_limit": {"limiter": "api"}},
        clock=clock,
        rng=random.Random(1),
        limiters={"api": bucket},
    )
    metered = TrafficMetrics(registry).instrument(policy)
    await metered.call(ok)
    with pytest.raises(RateLimitedError):
        await metered.call(ok)
    assert (
        value(registry, "syndic_traffic_rejections_total", policy="rl", reason="rate_limited") == 1
    )
    assert value(registry, "syndic_traffic_breaker_state", policy="rl") == -1  # no breaker


async def test_admission_rejections_are_counted() -> None:
    import httpx

    registry = CollectorRegistry()
    clock = ManualClock()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = AdmissionMiddleware(
        app, clock=clock, rate_limiter=TokenBucket(1, 1, clock=clock, max_wait_s=0)
    )
    TrafficMetrics(registry).observe_admission(mw.admission, name="edge")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://x") as c:
        for _ in range(3):
            await c.get("/")
    assert (
        value(registry, "syndic_traffic_rejections_total", policy="edge", reason="rate_limited")
        == 2
    )


def test_uninstrumented_policy_is_untouched() -> None:
    clock = ManualClock()
    policy = Policy({"breaker": {}}, clock=clock, rng=random.Random(1))
    assert type(policy).call is Policy.call
    assert policy.breaker is not None and not policy.breaker._listeners


def test_bad_arguments_are_refused_and_register_nothing() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError):
        TrafficMetrics(registry, namespace="bad-name")
    with pytest.raises(ValueError):
        TrafficMetrics(registry, namespace="x" * 200)
    with pytest.raises(ValueError):
        TrafficMetrics(registry, latency_buckets_s=[1.0, 0.5])
    with pytest.raises(ValueError):
        TrafficMetrics(registry, latency_buckets_s=[float("nan")])
    with pytest.raises(TypeError):
        TrafficMetrics(object())  # type: ignore[arg-type]
    assert list(registry.collect()) == []
    metrics = TrafficMetrics(registry)
    with pytest.raises(TypeError):
        metrics.instrument(object())  # type: ignore[arg-type]
    policy = Policy({"name": "dup"}, clock=ManualClock(), rng=random.Random(1))
    metrics.instrument(policy)
    with pytest.raises(ValueError, match="already"):
        metrics.instrument(policy)
    with pytest.raises(ValueError):
        metrics.instrument(policy, name="")
    with pytest.raises(ValueError):
        metrics.instrument(policy, name="n" * 500)
    with pytest.raises(TypeError):
        metrics.observe_admission(object(), name="x")  # type: ignore[arg-type]
