"""A client that reads nothing gets few handlers run for it.

bench/hostile.py's slow read: clients with a zero window ask for a 1 MiB
value on 50 streams at once. All 50 were admitted before any answer had
queued, so every handler read the value and built its answer, only for all
but the first few to be refused: about 3 MiB copied per call, 400 calls in
the first second, which on a loaded machine kept an etcdctl get waiting 3 s.
"""

from __future__ import annotations

import asyncio

import grpc

from syndic.server.h2.frames import ErrorCode, Setting
from syndic.server.h2.limits import ServerLimits
from tests.server.h2.conftest import CALL_TIMEOUT_S, RANGE_PATH, Connect, Serve, range_request
from tests.server.h2.raw_client import grpc_message

ANSWER_BYTES = 256 * 1024
CALLS = 40
# Handlers one connection starts per loop pass (connection.py): they were
# admitted before any answer queued, so they run.
STARTS_PER_PASS = 16


async def test_calls_admitted_before_answers_backed_up_are_not_run(
    serve: Serve, connect: Connect
) -> None:
    # Room for 4 queued answers on the connection.
    running = await serve(ServerLimits(connection_send_buffer_bytes_max=4 * ANSWER_BYTES))
    client = await connect(running.port, settings={Setting.INITIAL_WINDOW_SIZE: 0})
    # The servicer echoes the key: each answer is ANSWER_BYTES long.
    key = b"k" * ANSWER_BYTES
    ids = []
    for _ in range(CALLS):
        stream_id = client.start_call(RANGE_PATH, end_stream=False)
        client.send_data(stream_id, grpc_message(range_request(key)), end_stream=True)
        ids.append(stream_id)
    await client.drain()

    def done(stream_id: int) -> bool:
        response = client.responses.get(stream_id)
        return response is not None and (response.ended or response.reset is not None)

    async with asyncio.timeout(CALL_TIMEOUT_S):
        while sum(map(done, ids)) < CALLS - 4:  # 4 answers wait for window
            assert await client.read_frame() is not None, client.goaway
    responses = [client.responses[i] for i in ids if done(i)]
    refused_streams = [r for r in responses if r.reset == ErrorCode.REFUSED_STREAM]
    ended = [r for r in responses if r.reset is None]
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert all(r.grpc_status == exhausted for r in ended)
    not_run = [r for r in ended if "call not run" in r.grpc_message]
    refused_after_running = [r for r in ended if "call not run" not in r.grpc_message]
    # Once an answer was refused for want of room, no handler ran: new
    # streams are refused, and calls admitted before are ended unrun.
    assert len(refused_after_running) <= STARTS_PER_PASS - 4, [r.grpc_message for r in ended]
    assert len(not_run) + len(refused_streams) >= CALLS - STARTS_PER_PASS
    await running.assert_serves()
