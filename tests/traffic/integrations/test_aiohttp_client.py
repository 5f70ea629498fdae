"""PolicySession (aiohttp) against a real aiohttp service on loopback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from syndic.traffic.breaker import State
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import RuleError
from syndic.traffic.integrations.aiohttp_client import HTTPReply, PolicySession
from syndic.traffic.policy import Policy
from tests.traffic.integrations.downstream import Faults

NO_BACKOFF = {"base_s": 0, "cap_s": 0, "jitter": "none"}


def policy(rules: dict[str, Any], clock: Any = None) -> Policy:
    return Policy(rules, clock=clock or ManualClock(), rng=random.Random(7))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_retries_recover_from_transient_500s(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    client = PolicySession(session, policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}}))
    faults.fail_next = 2
    reply = await client.get(f"{downstream}/items/tea")
    assert reply.status == 200 and reply.ok and not reply.fallback
    assert reply.json()["item"] == "tea"
    assert faults.hits == 3


async def test_post_is_not_retried_unless_marked(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    client = PolicySession(session, policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}}))
    faults.fail_next = 1
    reply = await client.post(f"{downstream}/items/order", json={"n": 1})
    assert (reply.status, faults.hits) == (500, 1)
    faults.fail_next = 1
    reply = await client.post(f"{downstream}/items/order", json={"n": 1}, idempotent=True)
    assert (reply.status, faults.hits) == (200, 3)
    faults.fail_next = 1
    reply = await client.post(
        f"{downstream}/items/order", data=b"x", headers={"Idempotency-Key": "abc"}
    )
    assert (reply.status, faults.hits) == (200, 5)


async def test_breaker_opens_and_fallback_answers(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    p = policy(
        {
            "breaker": {
                "window_size": 3,
                "minimum_calls": 3,
                "failure_ratio": 1.0,
                "open_wait_s": 5,
            },
            "fallback": {"value": ["cached"]},
        },
        clock,
    )
    client = PolicySession(session, p)
    faults.fail_next = 3
    replies = [await client.get(f"{downstream}/items/tea") for _ in range(6)]
    assert all(r.fallback and r.json() == ["cached"] for r in replies)
    assert replies[0].headers["x-syndic-fallback"] == "1"
    assert faults.hits == 3
    assert p.breaker is not None and p.breaker.state is State.OPEN
    clock.advance(5)
    reply = await client.get(f"{downstream}/items/tea")
    assert not reply.fallback and reply.json()["item"] == "tea"
    assert p.breaker.state is State.CLOSED


async def test_connection_reset_is_a_failure(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    # A POST: aiohttp itself re-sends an idempotent request once when the
    # server drops the connection, which would hide a single reset.
    p = policy({"breaker": {"window_size": 5, "minimum_calls": 5}})
    client = PolicySession(session, p)
    faults.reset_next = 1
    with pytest.raises(aiohttp.ClientError):
        await client.post(f"{downstream}/items/order", data=b"x")
    assert p.breaker is not None and p.breaker.metrics().failures == 1
    assert faults.hits == 1


async def test_last_good_reply_is_replayed_as_fallback(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    client = PolicySession(session, policy({"fallback": {"last_good_max_age_s": 10}}))
    good = await client.get(f"{downstream}/items/tea")
    faults.fail_next = 1
    replayed = await client.get(f"{downstream}/items/tea")
    assert replayed.body == good.body and replayed.fallback and not good.fallback


async def test_reply_is_a_value(downstream: str, session: aiohttp.ClientSession) -> None:
    reply = await PolicySession(session, policy({})).get(f"{downstream}/missing")
    assert isinstance(reply, HTTPReply)
    assert reply.status == 404 and not reply.ok
    assert reply.text().startswith("{")
    with pytest.raises(AttributeError):
        reply.status = 200  # type: ignore[misc]


async def test_hostile_method_is_refused_before_anything_is_sent(
    downstream: str, faults: Faults, session: aiohttp.ClientSession
) -> None:
    client = PolicySession(session, policy({}))
    for method in ("GET\r\nX: y", "", "G E T", 7):
        with pytest.raises(ValueError, match="method"):
            await client.request(method, f"{downstream}/items/tea")  # type: ignore[arg-type]
    assert faults.hits == 0


async def test_bad_arguments_are_refused(session: aiohttp.ClientSession) -> None:
    with pytest.raises(TypeError):
        PolicySession(object(), policy({}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PolicySession(session, object())  # type: ignore[arg-type]
    with pytest.raises(RuleError):
        PolicySession(session, policy({}), failure_statuses=[700])
    with pytest.raises(RuleError):
        PolicySession(session, policy({}), body_bytes_max=-1)
