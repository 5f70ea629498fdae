"""Connections in total and per peer address are capped by the server, not the protocol."""

from __future__ import annotations

import asyncio

from syndic.server.h2 import ServerLimits
from syndic.server.h2.frames import ErrorCode
from tests.server.h2.conftest import CALL_TIMEOUT_S, RANGE_PATH, Connect, Serve, range_request
from tests.server.h2.raw_client import GoAway

OK = 0


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
