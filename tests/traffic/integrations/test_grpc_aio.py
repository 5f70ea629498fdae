"""grpc.aio interceptors on a real grpc.aio server on loopback (bytes in, bytes out)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest

from syndic.traffic.breaker import State
from syndic.traffic.clock import ManualClock, MonotonicClock
from syndic.traffic.integrations.grpc_aio import (
    AdmissionServerInterceptor,
    PolicyClientInterceptor,
)
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import ConcurrencyLimiter, TokenBucket

NO_BACKOFF = {"base_s": 0, "cap_s": 0, "jitter": "none"}
GET = "/test.Store/Get"
PUT = "/test.Store/Put"
COUNT = "/test.Store/Count"


@dataclass
class Backend:
    fail_next: int = 0
    fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    latency_s: float = 0.0
    hits: int = 0
    entered: int = 0
    gate: asyncio.Event | None = None
    timeouts: list[float | None] = field(default_factory=list)

    async def get(self, request: bytes, context: Any) -> bytes:
        self.hits += 1
        self.entered += 1
        self.timeouts.append(context.time_remaining())
        if self.gate is not None:
            await self.gate.wait()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            await context.abort(self.fail_code, "injected")
        return b"value:" + request

    async def count(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        self.hits += 1
        for i in range(int(request)):
            yield str(i).encode()


async def start_server(
    backend: Backend, interceptors: list[Any] = ()
) -> tuple[grpc.aio.Server, str]:  # type: ignore[assignment]
    handler = grpc.method_handlers_generic_handler(
        "test.Store",
        {
            "Get": grpc.unary_unary_rpc_method_handler(backend.get),
            "Put": grpc.unary_unary_rpc_method_handler(backend.get),
            "Count": grpc.unary_stream_rpc_method_handler(backend.count),
        },
    )
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def backend() -> AsyncIterator[tuple[Backend, str]]:
    b = Backend()
    server, target = await start_server(b)
    yield b, target
    await server.stop(0)


def policy(rules: dict[str, Any], clock: Any = None, **kwargs: Any) -> Policy:
    return Policy(rules, clock=clock or ManualClock(), rng=random.Random(3), **kwargs)


def channel(target: str, p: Policy, **kwargs: Any) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target, interceptors=[PolicyClientInterceptor(p, idempotent_methods={GET}, **kwargs)]
    )


async def test_retry_recovers_from_unavailable_on_idempotent_method(
    backend: tuple[Backend, str],
) -> None:
    b, target = backend
    b.fail_next = 2
    async with channel(target, policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}})) as ch:
        assert await ch.unary_unary(GET)(b"k1") == b"value:k1"
    assert b.hits == 3


async def test_non_idempotent_method_is_not_retried(backend: tuple[Backend, str]) -> None:
    b, target = backend
    b.fail_next = 1
    async with channel(target, policy({"retry": {"max_attempts": 3, "backoff": NO_BACKOFF}})) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary(PUT)(b"k1")
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert b.hits == 1


async def test_application_errors_pass_through_and_are_not_failures(
    backend: tuple[Backend, str],
) -> None:
    b, target = backend
    b.fail_next, b.fail_code = 3, grpc.StatusCode.INVALID_ARGUMENT
    p = policy(
        {
            "retry": {"max_attempts": 3, "backoff": NO_BACKOFF},
            "breaker": {"window_size": 2, "minimum_calls": 2},
        }
    )
    async with channel(target, p) as ch:
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ch.unary_unary(GET)(b"bad")
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert b.hits == 3  # never retried
    assert p.breaker is not None and p.breaker.state is State.CLOSED


async def test_breaker_opens_then_fallback_answers(backend: tuple[Backend, str]) -> None:
    b, target = backend
    b.fail_next = 100
    clock = ManualClock()
    p = policy(
        {"breaker": {"window_size": 3, "minimum_calls": 3, "open_wait_s": 10}},
        clock,
        fallback_handler=lambda exc: b"fallback",
    )
    async with channel(target, p) as ch:
        answers = [await ch.unary_unary(GET)(b"k") for _ in range(6)]
        assert answers == [b"fallback"] * 6
        assert b.hits == 3
        assert p.breaker is not None and p.breaker.state is State.OPEN
        b.fail_next = 0
        clock.advance(10)
        assert await ch.unary_unary(GET)(b"k") == b"value:k"
    assert p.breaker.state is State.CLOSED


async def test_open_breaker_without_fallback_is_unavailable_with_retry_after(
    backend: tuple[Backend, str],
) -> None:
    b, target = backend
    b.fail_next = 2
    p = policy({"breaker": {"window_size": 2, "minimum_calls": 2, "open_wait_s": 7}})
    async with channel(target, p) as ch:
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await ch.unary_unary(GET)(b"k")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary(GET)(b"k")
    err = info.value
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert "circuit breaker" in (err.details() or "")
    assert dict(err.trailing_metadata() or ())["retry-after"] == "7"
    assert b.hits == 2


async def test_policy_deadline_reaches_the_server_and_cuts_the_call(
    backend: tuple[Backend, str],
) -> None:
    b, target = backend
    b.latency_s = 5.0
    p = policy({"timeout": {"overall_s": 0.3}}, MonotonicClock())
    async with channel(target, p) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary(GET)(b"k")
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert b.timeouts[0] is not None and b.timeouts[0] <= 0.31  # grpc-timeout granularity


async def test_server_rate_limit_answers_resource_exhausted() -> None:
    clock = ManualClock()
    b = Backend()
    server, target = await start_server(
        b,
        [
            AdmissionServerInterceptor(
                clock=clock, rate_limiter=TokenBucket(1, 2, clock=clock, max_wait_s=0)
            )
        ],
    )
    try:
        async with grpc.aio.insecure_channel(target) as ch:
            get = ch.unary_unary(GET)
            assert [await get(b"a"), await get(b"b")] == [b"value:a", b"value:b"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await get(b"c")
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(info.value.trailing_metadata() or ())["retry-after"] == "1"
            clock.advance(1)
            assert await get(b"d") == b"value:d"
    finally:
        await server.stop(0)
    assert b.hits == 3


async def test_server_concurrency_limit_answers_unavailable_and_covers_streams() -> None:
    clock = ManualClock()
    b = Backend()
    b.gate = asyncio.Event()
    limiter = ConcurrencyLimiter(1, clock=clock, max_wait_s=0)
    server, target = await start_server(
        b, [AdmissionServerInterceptor(clock=clock, concurrency=limiter)]
    )
    try:
        async with grpc.aio.insecure_channel(target) as ch:
            held = asyncio.ensure_future(ch.unary_unary(GET)(b"slow"))
            for _ in range(10_000):
                if b.entered:
                    break
                await asyncio.sleep(0.001)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ch.unary_unary(GET)(b"x")
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in ch.unary_stream(COUNT)(b"3"):
                    pass
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            b.gate.set()
            assert await held == b"value:slow"
            assert [m async for m in ch.unary_stream(COUNT)(b"3")] == [b"0", b"1", b"2"]
    finally:
        await server.stop(0)
    assert limiter.in_flight == 0


def test_bad_arguments_are_refused() -> None:
    p = policy({})
    with pytest.raises(ValueError):
        PolicyClientInterceptor(p, failure_codes={grpc.StatusCode.OK})
    with pytest.raises(ValueError):
        PolicyClientInterceptor(p, failure_codes={14})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PolicyClientInterceptor(p, idempotent_methods={"Get"})
    with pytest.raises(ValueError):
        PolicyClientInterceptor(p, idempotent_methods="/a.B/C")
    with pytest.raises(TypeError):
        PolicyClientInterceptor(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AdmissionServerInterceptor(keyed_limiter=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AdmissionServerInterceptor(rate_limiter=object())  # type: ignore[arg-type]
