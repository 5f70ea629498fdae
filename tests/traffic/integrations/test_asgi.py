"""AdmissionMiddleware on an ASGI app, driven through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from syndic.traffic.bulkhead import Bulkhead, BulkheadConfig
from syndic.traffic.clock import ManualClock
from syndic.traffic.degrade import DegradeSwitches
from syndic.traffic.errors import RuleError
from syndic.traffic.integrations._common import Rejection
from syndic.traffic.integrations.asgi import AdmissionMiddleware, Message, Receive, Scope, Send
from syndic.traffic.ratelimit import (
    ConcurrencyLimiter,
    HotParamLimiter,
    SystemProtection,
    TokenBucket,
)


class App:
    """A tiny ASGI app that counts calls and can hold requests open."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        self.calls += 1
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def wait_for(predicate: Any, polls_max: int = 1_000) -> None:
    for _ in range(polls_max):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_burst_gets_429_with_retry_after_from_the_bucket() -> None:
    clock = ManualClock()
    inner = App()
    app = AdmissionMiddleware(
        inner, clock=clock, rate_limiter=TokenBucket(10, 5, clock=clock, max_wait_s=0)
    )
    async with client(app) as c:
        replies = [await c.get("/orders") for _ in range(8)]
    statuses = [r.status_code for r in replies]
    assert statuses == [200] * 5 + [429] * 3
    limited = replies[-1]
    assert limited.headers["retry-after"] == "1"  # 0.1 s to the next token, rounded up
    assert limited.json() == {"error": "rate_limited", "retry_after_s": 0.1}
    assert inner.calls == 5
    assert app.rejected_total == 3


async def test_retry_after_reflects_a_long_wait() -> None:
    clock = ManualClock()
    app = AdmissionMiddleware(
        App(), clock=clock, rate_limiter=TokenBucket(0.1, 1, clock=clock, max_wait_s=0)
    )
    async with client(app) as c:
        assert (await c.get("/")).status_code == 200
        r = await c.get("/")
        assert (r.status_code, r.headers["retry-after"]) == (429, "10")
        clock.advance(10)
        assert (await c.get("/")).status_code == 200


async def test_concurrency_limit_answers_503() -> None:
    clock = ManualClock()
    inner = App()
    inner.gate = asyncio.Event()
    limiter = ConcurrencyLimiter(2, clock=clock, max_wait_s=0)
    app = AdmissionMiddleware(inner, clock=clock, concurrency=limiter)
    async with client(app) as c:
        held = [asyncio.ensure_future(c.get("/slow")) for _ in range(2)]
        await wait_for(lambda: inner.entered == 2)
        r = await c.get("/slow")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"  # the default: a semaphore cannot know
        assert r.json()["error"] == "concurrency_limited"
        inner.gate.set()
        assert [x.status_code for x in await asyncio.gather(*held)] == [200, 200]
    assert limiter.in_flight == 0  # permits are returned when the response ends


async def test_bulkhead_full_answers_503() -> None:
    clock = ManualClock()
    inner = App()
    inner.gate = asyncio.Event()
    bulkhead = Bulkhead(BulkheadConfig(max_concurrent=1, max_queue=0), clock=clock)
    app = AdmissionMiddleware(inner, clock=clock, bulkhead=bulkhead)
    async with client(app) as c:
        held = asyncio.ensure_future(c.get("/"))
        await wait_for(lambda: inner.entered == 1)
        r = await c.get("/")
        assert (r.status_code, r.json()["error"]) == (503, "bulkhead_full")
        inner.gate.set()
        assert (await held).status_code == 200
    assert bulkhead.in_use == 0


async def test_system_protection_sheds_past_capacity_with_503() -> None:
    clock = ManualClock()
    inner = App()
    inner.gate = asyncio.Event()
    protection = SystemProtection(clock=clock, cpu_usage=lambda: 1.0)
    app = AdmissionMiddleware(inner, clock=clock, protection=protection, retry_after_s_default=2)
    async with client(app) as c:
        held = [asyncio.ensure_future(c.get("/")) for _ in range(2)]
        await wait_for(lambda: inner.entered == 2)
        r = await c.get("/")
        assert (r.status_code, r.headers["retry-after"]) == (503, "2")
        assert r.json()["error"] == "overloaded"
        inner.gate.set()
        await asyncio.gather(*held)
    assert protection.in_flight == 0


async def test_degraded_feature_answers_503_and_recovers() -> None:
    switches = DegradeSwitches()
    feature = switches.register("orders.search")
    inner = App()
    app = AdmissionMiddleware(inner, feature=feature)
    async with client(app) as c:
        switches.switch_off("orders.search", reason="incident 42")
        r = await c.get("/search")
        assert (r.status_code, r.json()["error"]) == (503, "degraded")
        switches.switch_on("orders.search")
        assert (await c.get("/search")).status_code == 200
    assert inner.calls == 1


async def test_keyed_limiter_limits_each_client_separately() -> None:
    clock = ManualClock()
    hot = HotParamLimiter(rate_per_s=1, burst=1, clock=clock, max_wait_s=0)
    app = AdmissionMiddleware(
        App(),
        clock=clock,
        keyed_limiter=hot,
        key=lambda scope: dict(scope["headers"]).get(b"x-user"),
    )
    async with client(app) as c:
        assert (await c.get("/", headers={"x-user": "alice"})).status_code == 200
        assert (await c.get("/", headers={"x-user": "alice"})).status_code == 429
        assert (await c.get("/", headers={"x-user": "bob"})).status_code == 200


async def test_exempt_paths_and_lifespan_pass_through() -> None:
    clock = ManualClock()
    inner = App()
    app = AdmissionMiddleware(
        inner,
        clock=clock,
        rate_limiter=TokenBucket(1, 1, clock=clock, max_wait_s=0),
        exempt_paths={"/health"},
    )
    async with client(app) as c:
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/")).status_code == 429
        for _ in range(5):
            assert (await c.get("/health")).status_code == 200
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}]


async def test_listeners_see_every_rejection() -> None:
    clock = ManualClock()
    app = AdmissionMiddleware(
        App(), clock=clock, rate_limiter=TokenBucket(1, 1, clock=clock, max_wait_s=0)
    )
    seen: list[Rejection] = []
    app.admission.add_listener(seen.append)
    async with client(app) as c:
        for _ in range(3):
            await c.get("/")
    assert [r.reason for r in seen] == ["rate_limited", "rate_limited"]
    assert all(r.http_status == 429 for r in seen)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"retry_after_s_default": float("nan")}, RuleError),
        ({"retry_after_s_default": 0}, RuleError),
        ({"retry_after_s_default": 10_000}, RuleError),
        ({"rate_limiter": object()}, TypeError),
        ({"concurrency": "64"}, TypeError),
        ({"protection": object()}, TypeError),
        ({"key": "client"}, TypeError),
        ({"exempt_paths": "/health"}, ValueError),
        ({"exempt_paths": ["health"]}, ValueError),
        ({"exempt_paths": [f"/{i}" for i in range(1000)]}, ValueError),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        AdmissionMiddleware(App(), **kwargs)


def test_rejection_status_is_checked() -> None:
    with pytest.raises(ValueError):
        Rejection("x", 500, None, "")
