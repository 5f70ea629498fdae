"""Connections in total and per peer address are capped by the server, not the protocol."""

from __future__ import annotations

import asyncio
import struct

import pytest

from syndic.server.h2 import ServerLimits
from syndic.server.h2 import server as server_module
from syndic.server.h2.frames import ErrorCode, FrameType
from syndic.server.h2.limits import TokenBucket
from tests.server.h2.conftest import (
    CALL_TIMEOUT_S,
    KEY_BLOCK,
    RANGE_PATH,
    Connect,
    Running,
    Serve,
    range_request,
)
from tests.server.h2.raw_client import GoAway, RawClient

OK = 0
U32 = struct.Struct(">I")


async def test_connections_past_the_per_peer_cap_are_told_to_calm_down(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(connections_per_peer_max=2))
    first, second = await connect(running.port), await connect(running.port)
    await first.sync()
    await second.sync()
    third = await connect(running.port)
    goaway = await third.read_goaway()
    assert goaway == GoAway(0, ErrorCode.ENHANCE_YOUR_CALM, "over 2 connections from 127.0.0.1")
    # Those admitted still serve, and a slot freed is a slot given again.
    stream_id = first.start_call(RANGE_PATH, [range_request(b"k")])
    assert (await first.response(stream_id)).grpc_status == OK
    await second.close()
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while len(running.server._connections) > 1:
            await asyncio.sleep(0.01)
    fourth = await connect(running.port)
    stream_id = fourth.start_call(RANGE_PATH, [range_request(b"k")])
    assert (await fourth.response(stream_id)).grpc_status == OK


async def test_connections_past_the_total_cap_are_refused(serve: Serve, connect: Connect) -> None:
    running = await serve(ServerLimits(connections_max=3))
    clients = [await connect(running.port) for _ in range(3)]
    for client in clients:
        await client.sync()
    extra = await connect(running.port)
    assert (await extra.read_goaway()).reason == "over 3 connections"
    stream_id = clients[0].start_call(RANGE_PATH, [range_request(b"k")])
    assert (await clients[0].response(stream_id)).grpc_status == OK


async def test_the_rapid_reset_budget_is_shared_by_a_peers_connections(
    serve: Serve, connect: Connect
) -> None:
    # Reconnecting does not buy a fresh budget of resets.
    limits = ServerLimits(stream_resets_burst=4, stream_resets_per_s=0.001)
    running = await serve(limits)
    first, second = await connect(running.port), await connect(running.port)
    for client, rounds in ((first, 4), (second, 1)):
        await _reset_calls(running, client, rounds)
    await first.sync()
    assert first.goaway is None
    goaway = await second.read_goaway()
    assert goaway.code == ErrorCode.ENHANCE_YOUR_CALM and goaway.reason == "too many streams reset"


async def test_the_cheap_frame_budget_is_shared_by_a_peers_connections(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(cheap_frames_burst=50, cheap_frames_per_s=0.001))
    first, second = await connect(running.port), await connect(running.port)
    for _ in range(45):  # each client's SETTINGS took one token
        first.send_frame(FrameType.PING, 0, 0, b"12345678")
    await first.sync()
    assert first.goaway is None
    for _ in range(5):
        second.send_frame(FrameType.PING, 0, 0, b"12345678")
    goaway = await second.read_goaway()
    assert goaway.code == ErrorCode.ENHANCE_YOUR_CALM and goaway.reason == "too many PING frames"


async def _reset_calls(running: Running, client: RawClient, count: int) -> None:
    for _ in range(count):
        stream_id = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)])
        await running.probe.wait_started(running.probe.started + 1)
        client.send_frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))


async def _spend_and_leave(running: Running, connect: Connect, resets: int) -> None:
    """A peer's one connection resets ``resets`` calls, unpunished, and closes."""
    client = await connect(running.port)
    await _reset_calls(running, client, resets)
    await client.sync()
    assert client.goaway is None
    await client.close()
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while running.server._connections:
            await asyncio.sleep(0.01)


async def test_closing_and_reconnecting_does_not_refill_the_reset_budget(
    serve: Serve, connect: Connect
) -> None:
    # The budget outlives the peer's connections until it would be full again.
    running = await serve(ServerLimits(stream_resets_burst=4, stream_resets_per_s=0.001))
    await _spend_and_leave(running, connect, 4)
    again = await connect(running.port)
    await _reset_calls(running, again, 1)
    goaway = await again.read_goaway()
    assert goaway.code == ErrorCode.ENHANCE_YOUR_CALM and goaway.reason == "too many streams reset"


async def test_a_peer_whose_budget_refilled_comes_back_with_all_of_it(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(stream_resets_burst=4, stream_resets_per_s=40.0))
    await _spend_and_leave(running, connect, 4)
    await asyncio.sleep(0.2)  # 4 resets back at 40/s: 0.1 s
    again = await connect(running.port)
    await _reset_calls(running, again, 4)
    await again.sync()
    assert again.goaway is None


async def test_departed_peers_budgets_are_bounded(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "LEFT_BUDGETS_MAX", 2)
    running = await serve(ServerLimits())
    now = asyncio.get_running_loop().time()

    def spent() -> tuple[TokenBucket, TokenBucket]:
        resets, cheap = TokenBucket(1.0, 10, now), TokenBucket(1.0, 10, now)
        resets.take(now)
        return resets, cheap

    full = (TokenBucket(1.0, 10, now), TokenBucket(1.0, 10, now))
    running.server._remember("192.0.2.1", full)  # full: nothing to remember
    for host in ("192.0.2.2", "192.0.2.3", "192.0.2.4"):
        running.server._remember(host, spent())
    assert list(running.server._left) == ["192.0.2.3", "192.0.2.4"]
