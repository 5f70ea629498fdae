"""Watch fan-out: many streams, tight flow-control windows, every event once and in order.

Each stream's sender writes the responses the hub gives it; when the
client's window and the stream's send queue are full its write waits. These
tests hold both small so writes do wait, with python-hyper ``h2`` as the
client (it lets the test decide when window is returned).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, WATCH_SERVICE
from syndic.server.h2 import ServerLimits
from tests.server.grpc_api.conftest import (
    CALL_TIMEOUT_S,
    TEST_MAX_REQUEST_BYTES,
    Served,
    start_served,
    stop_served,
)

# Small enough that a stream's window holds less than one event response, so
# writes wait for the client; the connection window stays large.
TIGHT_WINDOW_BYTES = 40
EVENTS = 25
# A stream's queue of answers holds about one event response, so a write
# behind a full window waits (the server's default holds far more).
STREAM_SEND_BUFFER_BYTES = 64


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    limits = dataclasses.replace(
        ServerLimits.for_max_request_bytes(TEST_MAX_REQUEST_BYTES),
        stream_send_buffer_bytes_max=STREAM_SEND_BUFFER_BYTES,
    )
    handle = await start_served(limits=limits)
    try:
        yield handle
    finally:
        await stop_served(handle)


class _RawWatch:
    """One HTTP/2 connection with watch streams; window is returned only when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: TIGHT_WINDOW_BYTES},
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(2**30)
        self.data: dict[int, bytes] = {}
        self.unacked: list[tuple[int, int]] = []
        self.ended: list[int] = []

    def open(self, key: bytes) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/etcdserverpb.Watch/Watch"),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        body = rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=key)
        ).SerializeToString()
        self.conn.send_data(stream_id, b"\x00" + len(body).to_bytes(4, "big") + body)
        self.data[stream_id] = b""
        return stream_id

    async def pump(self, give_window: bool, wait_s: float = CALL_TIMEOUT_S) -> None:
        """Send what is queued, read what arrives within ``wait_s``, and give
        the window back for it if ``give_window``."""
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()
        try:
            chunk: bytes | None = await asyncio.wait_for(self.reader.read(65536), wait_s)
            assert chunk, "the server closed the connection"
        except TimeoutError:
            chunk = None
        for event in self.conn.receive_data(chunk) if chunk else ():
            if isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] += event.data
                self.unacked.append((event.stream_id, event.flow_controlled_length))
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                self.ended.append(event.stream_id)
        if give_window:
            # Explicit increments: h2's own manager would batch small ones.
            for stream_id, size in self.unacked:
                if size and stream_id not in self.ended:
                    self.conn.increment_flow_control_window(size, stream_id)
            self.unacked.clear()
        self.writer.write(self.conn.data_to_send())

    def responses(self, stream_id: int) -> list[Any]:
        out, buf = [], self.data[stream_id]
        while len(buf) >= 5:
            size = int.from_bytes(buf[1:5], "big")
            if len(buf) < 5 + size:
                break
            out.append(rpc_pb2.WatchResponse.FromString(buf[5 : 5 + size]))
            buf = buf[5 + size :]
        return out


async def test_every_stream_gets_every_event_in_order_through_tight_windows(
    served: Served,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    raw = _RawWatch(reader, writer)
    streams = [raw.open(b"fan") for _ in range(20)]
    kv = served.stub(KV_SERVICE)
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while not all(raw.responses(s) for s in streams):
                await raw.pump(give_window=True)
        for n in range(EVENTS):
            await kv.Put(  # type: ignore[attr-defined]
                rpc_pb2.PutRequest(key=b"fan", value=b"%03d" % n), timeout=CALL_TIMEOUT_S
            )
            # Window comes back only every third round: writes must wait.
            if n % 3 == 0:
                await raw.pump(give_window=False, wait_s=0.05)
        async with asyncio.timeout(CALL_TIMEOUT_S * 3):
            while any(sum(len(r.events) for r in raw.responses(s)) < EVENTS for s in streams):
                await raw.pump(give_window=True, wait_s=0.2)
        expected = [b"%03d" % n for n in range(EVENTS)]
        for stream_id in streams:
            values = [e.kv.value for r in raw.responses(stream_id) for e in r.events]
            assert values == expected
        assert not raw.ended
    finally:
        writer.close()


async def test_a_stream_that_stops_reading_does_not_hold_up_the_others(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    stalled = _RawWatch(reader, writer)
    stalled.open(b"fan")
    call = served.stub(WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S * 3)  # type: ignore[attr-defined]
    kv = served.stub(KV_SERVICE)
    try:
        await stalled.pump(give_window=False, wait_s=0.2)
        await call.write(
            rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fan"))
        )
        assert (await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)).created
        seen: list[bytes] = []
        for n in range(EVENTS):
            await kv.Put(  # type: ignore[attr-defined]
                rpc_pb2.PutRequest(key=b"fan", value=b"%03d" % n), timeout=CALL_TIMEOUT_S
            )
        while len(seen) < EVENTS:
            resp = await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)
            seen.extend(e.kv.value for e in resp.events)
        assert seen == [b"%03d" % n for n in range(EVENTS)]
    finally:
        call.cancel()
        writer.close()


async def test_a_delivery_that_fails_ends_its_own_stream_and_nothing_else(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The apply wake-up writes parked streams' responses itself; a failure
    # there must end that one call (UNKNOWN), not the wake-up of the others
    # nor the member's apply loop.
    from syndic.server.grpc_api.watch_wire import WatchWireEncoder

    real_encode = WatchWireEncoder._encode
    failures = []

    def encode_once_badly(self: WatchWireEncoder, resp: Any, *args: Any) -> list[bytes]:
        if resp.events and not failures:
            failures.append(resp.watch_id)
            raise RuntimeError("planted encoding failure")
        return real_encode(self, resp, *args)

    monkeypatch.setattr(WatchWireEncoder, "_encode", encode_once_badly)
    kv = served.stub(KV_SERVICE)
    calls = [
        served.stub(WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S * 3)  # type: ignore[attr-defined]
        for _ in range(2)
    ]
    try:
        for n, call in enumerate(calls):
            create = rpc_pb2.WatchCreateRequest(key=b"fan", watch_id=n + 1)
            await call.write(rpc_pb2.WatchRequest(create_request=create))
            assert (await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)).created
        await kv.Put(rpc_pb2.PutRequest(key=b"fan", value=b"1"), timeout=CALL_TIMEOUT_S)  # type: ignore[attr-defined]
        failed = calls[failures[0] - 1]
        survivor = calls[2 - failures[0]]
        resp = await asyncio.wait_for(survivor.read(), CALL_TIMEOUT_S)
        assert [e.kv.value for e in resp.events] == [b"1"]
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(failed.read(), CALL_TIMEOUT_S)
        assert ended.value.code() == grpc.StatusCode.UNKNOWN
        # The member goes on applying, and the survivor goes on receiving.
        await kv.Put(rpc_pb2.PutRequest(key=b"fan", value=b"2"), timeout=CALL_TIMEOUT_S)  # type: ignore[attr-defined]
        resp = await asyncio.wait_for(survivor.read(), CALL_TIMEOUT_S)
        assert [e.kv.value for e in resp.events] == [b"2"]
    finally:
        for call in calls:
            call.cancel()
