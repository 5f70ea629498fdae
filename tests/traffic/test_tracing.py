"""Policy calls as spans: one per call, one per attempt, decisions as events
(spans from the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import BulkheadFullError, CircuitOpenError, RateLimitedError
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import TokenBucket
from syndic.traffic.tracing import ATTEMPT_SPAN, CALL_SPAN, refusal_event
from tests.observability.spans import spans

__all__ = ["spans"]  # a fixture, used by name

NO_BACKOFF: dict[str, Any] = {"base_s": 0, "jitter": "none"}


def policy(rules: dict[str, Any], **kwargs: Any) -> Policy:
    return Policy(
        rules, clock=ManualClock(), rng=random.Random(1), sync_sleep=lambda _s: None, **kwargs
    )


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def events(span: ReadableSpan) -> list[str]:
    """The span's decision events (the SDK's own "exception" events left out)."""
    return [e.name for e in span.events if e.name != "exception"]


def exception_types(span: ReadableSpan) -> list[str]:
    return [str(e.attributes["exception.type"]) for e in span.events if e.name == "exception"]  # type: ignore[index]


class Flaky:
    """Fails ``failures`` times, then answers "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("down")
        return "ok"


def test_each_attempt_is_a_span_and_each_retry_an_event(spans: InMemorySpanExporter) -> None:
    p = policy(
        {"name": "orders", "retry": {"max_attempts": 3, "idempotent": True, "backoff": NO_BACKOFF}}
    )
    assert p.call_sync(Flaky(2)) == "ok"
    (call,) = finished(spans, CALL_SPAN)
    attempts = finished(spans, ATTEMPT_SPAN)
    assert [a.attributes["traffic.attempt"] for a in attempts] == [1, 2, 3]  # type: ignore[index]
    assert all(a.parent is not None and a.parent.span_id == call.context.span_id for a in attempts)
    assert [a.status.is_ok for a in attempts] == [False, False, True]
    assert events(call) == ["retry", "retry"]
    assert [e.attributes["traffic.attempt"] for e in call.events] == [2, 3]  # type: ignore[index]
    assert call.attributes["traffic.policy"] == "orders"  # type: ignore[index]
    assert call.attributes["traffic.attempts"] == 3  # type: ignore[index]
    assert call.status.is_ok


async def test_the_callees_own_spans_nest_in_the_attempt(spans: InMemorySpanExporter) -> None:
    async def fetch() -> str:
        with trace.get_tracer("user").start_as_current_span("user.fetch"):
            await asyncio.sleep(0)
        return "ok"

    p = policy({"retry": {"max_attempts": 2, "idempotent": True, "backoff": NO_BACKOFF}})
    assert await p.call(fetch) == "ok"
    (attempt,) = finished(spans, ATTEMPT_SPAN)
    (user,) = finished(spans, "user.fetch")
    assert user.parent is not None and user.parent.span_id == attempt.context.span_id


def test_breaker_opening_and_rejecting_are_events(spans: InMemorySpanExporter) -> None:
    p = policy(
        {"breaker": {"window_size": 2, "minimum_calls": 2, "failure_count": 2, "open_wait_s": 30}}
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            p.call_sync(Flaky(1))
    with pytest.raises(CircuitOpenError):
        p.call_sync(Flaky(0))
    attempts = finished(spans, ATTEMPT_SPAN)
    changes = [e for a in attempts for e in a.events if e.name == "breaker.state_change"]
    assert [(e.attributes["from"], e.attributes["to"]) for e in changes] == [  # type: ignore[index]
        ("closed", "open")
    ]
    assert "breaker.rejected" in events(attempts[-1])
    last_call = finished(spans, CALL_SPAN)[-1]
    assert "breaker.rejected" in events(last_call)
    assert not last_call.status.is_ok


def test_a_fallback_answer_is_an_event_on_a_successful_call(spans: InMemorySpanExporter) -> None:
    p = policy(
        {
            "retry": {"max_attempts": 2, "idempotent": True, "backoff": NO_BACKOFF},
            "fallback": {"value": "cached"},
        }
    )
    assert p.call_sync(Flaky(5)) == "cached"
    (call,) = finished(spans, CALL_SPAN)
    assert events(call) == ["retry", "fallback"]
    assert call.events[-1].attributes["error.type"] == "ConnectionError"  # type: ignore[index]
    assert call.status.is_ok


def test_rate_limit_rejection_is_an_event(spans: InMemorySpanExporter) -> None:
    clock = ManualClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    p = Policy({"rate_limit": {"limiter": "one"}}, clock=clock, limiters={"one": bucket})
    assert p.call_sync(Flaky(0)) == "ok"
    with pytest.raises(RateLimitedError):
        p.call_sync(Flaky(0))
    first, second = finished(spans, CALL_SPAN)
    assert events(first) == []
    assert events(second) == ["rate_limit.rejected"]
    assert exception_types(second) == ["syndic.traffic.errors.RateLimitedError"]
    assert not second.status.is_ok
    assert len(finished(spans, ATTEMPT_SPAN)) == 1  # the refused call never tried


async def test_bulkhead_rejection_is_an_event(spans: InMemorySpanExporter) -> None:
    p = policy({"bulkhead": {"max_concurrent": 1, "max_queue": 0}})
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "ok"

    first = asyncio.create_task(p.call(hold))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError):
        await p.call(hold)
    release.set()
    assert await first == "ok"
    calls = finished(spans, CALL_SPAN)
    assert [events(c) for c in calls] == [["bulkhead.rejected"], []]
    # A refused call never reached the dependency: one attempt span in all.
    assert len(finished(spans, ATTEMPT_SPAN)) == 1


def test_refusal_events_are_named_by_the_most_specific_class() -> None:
    assert refusal_event(CircuitOpenError("x")) == "breaker.rejected"
    assert refusal_event(RateLimitedError("x")) == "rate_limit.rejected"
    assert refusal_event(ConnectionError("x")) is None


def test_tracing_stages_sit_around_the_policys_own() -> None:
    p = policy(
        {
            "retry": {"max_attempts": 2, "idempotent": True, "backoff": NO_BACKOFF},
            "breaker": {"window_size": 2, "minimum_calls": 2},
            "fallback": {"value": 1},
        }
    )
    stack: Any = p._stack
    assert [type(s).__name__ for s in stack.stages] == ["Fallback", "Retry", "CircuitBreaker"]
    assert [type(s).__name__ for s in stack.traced] == [
        "CallSpan",
        "Fallback",
        "Observe",
        "Retry",
        "AttemptSpan",
        "CircuitBreaker",
    ]
