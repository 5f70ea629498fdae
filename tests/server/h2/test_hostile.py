"""bench/hostile.py's attacks, bounded, against syndic's gRPC server in this process.

The server shares this test's event loop with the attacker, as a member
shares its loop with Raft: while each attack runs, a well-behaved client's
calls must be answered within 1 s, and what the server holds for clients
must stay within its budgets. The cluster version (Raft term, etcdctl, RSS,
etcd side by side) is ``test_hostile_cluster.py`` and bench/hostile.py.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from bench.hostile import ATTACKS, Scale, Tally, slow_read

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.server.h2 import ServerLimits
from tests.server.h2.conftest import Running, Serve

SCALE = Scale(
    duration_s=1.5,
    open_streams=1000,
    slow_connections=2,
    slow_streams=40,
    partial_connections=60,
    partial_bytes=400_000,
    flood_connections=2,
)
ANSWER_S_MAX = 1.0
PROBE_INTERVAL_S = 0.1
MESSAGE_BYTES = 1024 * 1024
LIMITS = ServerLimits(
    server_request_buffer_bytes_max=8 * 1024 * 1024,
    connection_send_buffer_bytes_max=2 * 1024 * 1024,
    send_stall_timeout_s=0.5,
)
Attack = Callable[[int, Scale, float, Tally], Awaitable[None]]


async def attacked(running: Running, attack: Attack) -> tuple[list[float], Tally]:
    """Run ``attack`` for SCALE.duration_s while a good client calls; its latencies."""
    until = time.monotonic() + SCALE.duration_s
    tally = Tally()
    server = running.server
    task = asyncio.create_task(attack(running.port, SCALE, until, tally))
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = make_stub(channel, KV_SERVICE)
        await stub.Range(rpc_pb2.RangeRequest(key=b"warm"), timeout=5)
        while time.monotonic() < until:
            started = time.monotonic()
            await stub.Range(rpc_pb2.RangeRequest(key=b"good"), timeout=ANSWER_S_MAX * 5)
            latencies.append(time.monotonic() - started)
            # What the server holds for clients stays within its budgets.
            assert server.request_budget.held_bytes <= LIMITS.server_request_buffer_bytes_max
            for connection in server._connections:
                assert connection.protocol.queued_bytes <= (
                    LIMITS.connection_send_buffer_bytes_max + MESSAGE_BYTES + 64
                )
            await asyncio.sleep(PROBE_INTERVAL_S)
    async with asyncio.timeout(10):
        await task
    return latencies, tally


@pytest.mark.parametrize(
    "name", ["settings_flood", "continuation_flood", "partial_requests", "rapid_reset"]
)
async def test_attack_leaves_good_clients_answered_and_memory_bounded(
    serve: Serve, name: str
) -> None:
    running = await serve(LIMITS)
    latencies, tally = await attacked(running, ATTACKS[name])
    assert latencies and max(latencies) < ANSWER_S_MAX, latencies
    assert tally.frames > 0
    if name != "partial_requests":  # that one is held, not refused
        assert tally.goaway_codes.get("ENHANCE_YOUR_CALM", 0) >= 1, tally
    await running.assert_serves()


async def test_zero_window_slow_read_of_1_mib_answers_is_bounded(serve: Serve) -> None:
    running = await serve(LIMITS)
    probe = running.probe
    probe.snapshot_count, probe.snapshot_chunk_bytes = 1, MESSAGE_BYTES
    call = ("/etcdserverpb.Maintenance/Snapshot", b"")
    latencies, tally = await attacked(running, functools.partial(slow_read, call=call))
    assert latencies and max(latencies) < ANSWER_S_MAX, latencies
    assert tally.frames > 0
    await running.assert_serves()
