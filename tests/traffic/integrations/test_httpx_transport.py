"""PolicyTransport against a real aiohttp service on loopback, faults switched at runtime."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from syndic.traffic.breaker import State
from syndic.traffic.clock import ManualClock, MonotonicClock
from syndic.traffic.errors import CircuitOpenError, RuleError
from syndic.traffic.integrations._common import FALLBACK_HEADER, ResponseTooLargeError
from syndic.traffic.integrations.httpx_transport import PolicyTransport
from syndic.traffic.policy import Policy
from tests.traffic.integrations.downstream import Faults

NO_BACKOFF = {"base_s": 0, "cap_s": 0, "jitter": "none"}


def policy(rules: dict[str, Any], clock: Any = None) -> Policy:
    return Policy(rules, clock=clock or ManualClock(), rng=random.Random(7))


def client(p: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=PolicyTransport(p, **kwargs))


async def test_retries_recover_from_transient_500s(downstream: str, faults: Faults) -> None:
    p = policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}})
    faults.fail_next = 2
    async with client(p) as c:
        r = await c.get(f"{downstream}/items/tea")
    assert r.status_code == 200
    assert r.json()["item"] == "tea"
    assert faults.hits == 3


async def test_exhausted_retries_hand_back_the_last_failure_answer(
    downstream: str, faults: Faults
) -> None:
    p = policy({"retry": {"max_attempts": 2, "backoff": NO_BACKOFF}})
    faults.fail_next = 5
    faults.fail_status = 503
    async with client(p) as c:
        r = await c.get(f"{downstream}/items/tea")
    assert r.status_code == 503
    assert r.json() == {"error": "injected"}
    assert faults.hits == 2


async def test_post_is_not_retried_unless_marked(downstream: str, faults: Faults) -> None:
    p = policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}})
    async with client(p) as c:
        faults.fail_next = 1
        r = await c.post(f"{downstream}/items/order", json={"n": 1})
        assert (r.status_code, faults.hits) == (500, 1)

        faults.fail_next = 1
        r = await c.post(
            f"{downstream}/items/order", json={"n": 1}, extensions={"idempotent": True}
        )
        assert (r.status_code, faults.hits) == (200, 3)

        faults.fail_next = 1
        r = await c.post(
            f"{downstream}/items/order", json={"n": 1}, headers={"Idempotency-Key": "k-1"}
        )
        assert (r.status_code, faults.hits) == (200, 5)

        faults.fail_next = 1  # an explicit False mark wins over the method
        r = await c.get(f"{downstream}/items/tea", extensions={"idempotent": False})
        assert (r.status_code, faults.hits) == (500, 6)
    assert faults.methods == ["POST"] * 5 + ["GET"]


async def test_put_and_delete_are_retried(downstream: str, faults: Faults) -> None:
    p = policy({"retry": {"max_attempts": 2, "backoff": NO_BACKOFF}})
    async with client(p) as c:
        faults.fail_next = 1
        assert (await c.put(f"{downstream}/items/a", content=b"v")).status_code == 200
        faults.fail_next = 1
        assert (await c.delete(f"{downstream}/items/a")).status_code == 200
    assert faults.methods == ["PUT", "PUT", "DELETE", "DELETE"]


async def test_breaker_opens_after_configured_failures_then_fallback_answers(
    downstream: str, faults: Faults
) -> None:
    clock = ManualClock()
    p = policy(
        {
            "breaker": {
                "window_size": 4,
                "minimum_calls": 4,
                "failure_ratio": 0.5,
                "open_wait_s": 30,
            },
            "fallback": {"value": {"items": [], "stale": True}},
        },
        clock,
    )
    faults.fail_next = 1_000
    async with client(p) as c:
        for _ in range(4):
            r = await c.get(f"{downstream}/items/tea")
            assert r.json() == {"items": [], "stale": True}
            assert r.headers[FALLBACK_HEADER] == "1"
        assert p.breaker is not None and p.breaker.state is State.OPEN
        assert faults.hits == 4
        for _ in range(10):  # open: answered locally, nothing reaches the service
            r = await c.get(f"{downstream}/items/tea")
            assert r.status_code == 200 and r.json()["stale"] is True
        assert faults.hits == 4

        faults.fail_next = 0
        clock.advance(30)  # the wait elapses; the single probe succeeds
        r = await c.get(f"{downstream}/items/tea")
        assert r.json()["item"] == "tea"
        assert FALLBACK_HEADER not in r.headers
        assert p.breaker.state is State.CLOSED
        assert faults.hits == 5


async def test_open_breaker_without_fallback_raises_typed_rejection(
    downstream: str, faults: Faults
) -> None:
    p = policy({"breaker": {"window_size": 2, "minimum_calls": 2, "open_wait_s": 30}})
    faults.fail_next = 2
    async with client(p) as c:
        for _ in range(2):
            assert (await c.get(f"{downstream}/items/tea")).status_code == 500
        with pytest.raises(CircuitOpenError) as info:
            await c.get(f"{downstream}/items/tea")
    assert info.value.retry_after_s == pytest.approx(30)
    assert faults.hits == 2


async def test_connection_reset_is_a_failure_and_is_retried(
    downstream: str, faults: Faults
) -> None:
    p = policy(
        {
            "retry": {"max_attempts": 2, "backoff": NO_BACKOFF},
            "breaker": {"window_size": 10, "minimum_calls": 10},
        }
    )
    faults.reset_next = 1
    async with client(p) as c:
        r = await c.get(f"{downstream}/items/tea")
    assert r.status_code == 200
    assert faults.hits == 2
    assert p.breaker is not None and p.breaker.metrics().failures == 1


async def test_connection_reset_without_retry_reaches_the_caller(
    downstream: str, faults: Faults
) -> None:
    p = policy({"breaker": {"window_size": 10, "minimum_calls": 10}})
    faults.reset_next = 1
    async with client(p) as c:
        with pytest.raises(httpx.TransportError):
            await c.get(f"{downstream}/items/tea")
    assert p.breaker is not None and p.breaker.metrics().failures == 1


async def test_per_try_timeout_cuts_a_slow_answer_and_the_retry_is_fast(
    downstream: str, faults: Faults
) -> None:
    # A real socket: a short real timeout on a monotonic clock.
    p = policy(
        {"retry": {"max_attempts": 2, "per_try_timeout_s": 0.2, "backoff": NO_BACKOFF}},
        MonotonicClock(),
    )
    faults.slow_next, faults.latency_s = 1, 5.0
    start = time.monotonic()
    async with client(p) as c:
        r = await c.get(f"{downstream}/items/tea")
    assert r.status_code == 200
    assert time.monotonic() - start < 2.0
    assert faults.hits == 2


async def test_client_errors_are_neither_retried_nor_failures(
    downstream: str, faults: Faults
) -> None:
    p = policy(
        {
            "retry": {"max_attempts": 3, "backoff": NO_BACKOFF},
            "breaker": {"window_size": 2, "minimum_calls": 2},
        }
    )
    async with client(p) as c:
        for _ in range(3):
            assert (await c.get(f"{downstream}/missing")).status_code == 404
    assert faults.hits == 3
    assert p.breaker is not None and p.breaker.state is State.CLOSED


async def test_last_good_answer_is_replayed_and_marked(downstream: str, faults: Faults) -> None:
    p = policy({"fallback": {"last_good_max_age_s": 60}})
    async with client(p) as c:
        first = await c.get(f"{downstream}/items/tea")
        faults.fail_next = 1
        second = await c.get(f"{downstream}/items/tea")
        third = await c.get(f"{downstream}/items/tea")
    assert second.json() == first.json()
    assert second.headers[FALLBACK_HEADER] == "1"
    assert FALLBACK_HEADER not in first.headers and FALLBACK_HEADER not in third.headers


async def test_oversized_body_is_refused(downstream: str, faults: Faults) -> None:
    p = policy({})
    async with client(p, body_bytes_max=1_000) as c:
        with pytest.raises(ResponseTooLargeError, match="body_bytes_max=1000"):
            await c.get(f"{downstream}/big")
        # A failure status does not hide a size check, and the transport still works.
        assert (await c.get(f"{downstream}/items/tea")).status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"failure_statuses": [99]}, RuleError),
        ({"failure_statuses": [500, "502"]}, RuleError),
        ({"failure_statuses": "5xx"}, RuleError),
        ({"body_bytes_max": 0}, RuleError),
        ({"body_bytes_max": 1 << 40}, RuleError),
        ({"body_bytes_max": True}, RuleError),
        ({"inner": object()}, TypeError),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        PolicyTransport(policy({}), **kwargs)


def test_a_policy_without_call_is_refused() -> None:
    with pytest.raises(TypeError, match="call"):
        PolicyTransport(object())  # type: ignore[arg-type]
