"""The lean HTTP/2 unary connection: against real members (large requests and
answers through flow control, both unary transports alike) and against a
scripted hostile peer (garbage, refusals, GOAWAY, oversized frames, errors
in trailers, silence)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import hpack
import pytest

from syndic.api.gen import rpc_pb2
from syndic.client import Client, Compare, Op, UnavailableError
from syndic.client.h2 import REQUESTS_PER_WRITE, STREAM_REFUSED, H2Channel
from syndic.server.h2.frames import (
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    frame,
    parse_header,
    rst_stream,
    settings_frame,
)
from syndic.server.h2.headers import leaves_table_unchanged
from tests.stores import Store

RANGE = "/etcdserverpb.KV/Range"
# Far above a loopback round trip; bounds a hang.
CALL_TIMEOUT_S = 10.0

Reply = Callable[[int], bytes]


def headers_frame(stream_id: int, headers: list[tuple[str, str]], *, end_stream: bool) -> bytes:
    block = hpack.Encoder().encode(headers)
    flags = Flag.END_HEADERS | (Flag.END_STREAM if end_stream else 0)
    return frame(FrameType.HEADERS, flags, stream_id, block)


def grpc_error(code: int, message: str) -> Reply:
    def reply(stream_id: int) -> bytes:
        trailers = [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", str(code)),
            ("grpc-message", message),
        ]
        return headers_frame(stream_id, trailers, end_stream=True)

    return reply


def ok_reply(message: bytes) -> Reply:
    def reply(stream_id: int) -> bytes:
        body = struct.pack(">BI", 0, len(message)) + message
        return (
            headers_frame(stream_id, [(":status", "200")], end_stream=False)
            + frame(FrameType.DATA, 0, stream_id, body)
            + headers_frame(stream_id, [("grpc-status", "0")], end_stream=True)
        )

    return reply


@asynccontextmanager
async def hostile_peer(reply: Reply | bytes | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A peer that answers each request (once its END_STREAM arrives) with
    ``reply(stream_id)``, sends raw ``bytes`` on connect, or stays silent;
    yields its address and the frames it received (type byte + payload)."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(reply, bytes):
            writer.write(reply)
            await writer.drain()
        with_preface = await reader.readexactly(len(PREFACE))
        assert with_preface == PREFACE
        writer.write(settings_frame({}))
        buffer = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 9:
                length, kind, flags, stream_id = parse_header(buffer, 0)
                if len(buffer) < 9 + length:
                    break
                received.append(bytes([kind]) + buffer[9 : 9 + length])
                buffer = buffer[9 + length :]
                if kind == FrameType.DATA and flags & Flag.END_STREAM and callable(reply):
                    writer.write(reply(stream_id))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        server.close()


async def call_range(target: str, timeout_s: float = CALL_TIMEOUT_S) -> rpc_pb2.RangeResponse:
    channel = H2Channel(target, ssl_context=None, server_hostname=None)
    method = channel.method(
        RANGE, rpc_pb2.RangeRequest.SerializeToString, rpc_pb2.RangeResponse.FromString
    )
    try:
        response: rpc_pb2.RangeResponse = await method(
            rpc_pb2.RangeRequest(key=b"k"), timeout=timeout_s
        )
        return response
    finally:
        channel.close()


async def test_an_answer_is_decoded() -> None:
    answer = rpc_pb2.RangeResponse(count=7)
    async with hostile_peer(ok_reply(answer.SerializeToString())) as (target, _):
        assert (await call_range(target)).count == 7


def test_an_answer_is_decoded_on_uvloop() -> None:
    # uvloop's transports implement asyncio.Transport without subclassing it;
    # `syndic agent` and `syndic serve` run their clients on uvloop.
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> int:
        answer = rpc_pb2.RangeResponse(count=3)
        async with hostile_peer(ok_reply(answer.SerializeToString())) as (target, _):
            return (await call_range(target)).count

    assert uvloop.run(scenario()) == 3


async def test_error_in_trailers_keeps_code_and_decoded_message() -> None:
    async with hostile_peer(grpc_error(5, "etcdserver:%20not%20found")) as (target, _):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_range(target)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "etcdserver: not found"


async def test_garbage_from_the_peer_fails_the_call_without_a_hang() -> None:
    async with hostile_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\xff" * 64) as (target, _):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_range(target)
    assert raised.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)


async def test_oversized_frame_is_a_protocol_error() -> None:
    def huge(stream_id: int) -> bytes:
        return frame(FrameType.DATA, 0, stream_id, b"x" * 20_000)

    async with hostile_peer(huge) as (target, _):
        with pytest.raises(grpc.aio.AioRpcError, match="protocol error"):
            await call_range(target)


async def test_refused_stream_and_goaway_are_safe_to_retry() -> None:
    def refuse(stream_id: int) -> bytes:
        return rst_stream(stream_id, ErrorCode.REFUSED_STREAM)

    def goaway(stream_id: int) -> bytes:
        return frame(FrameType.GOAWAY, 0, 0, struct.pack(">II", 0, 0))

    for reply in (refuse, goaway):
        async with hostile_peer(reply) as (target, _):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call_range(target)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == STREAM_REFUSED
            # Through the client a refused write is not "outcome unknown":
            # it was never processed, so it is retried and fails as unavailable.
            async with Client([target], timeout_s=2.0) as client:
                with pytest.raises(UnavailableError):
                    await client.put(b"k", b"v")


async def test_silent_peer_hits_the_deadline_and_the_stream_is_reset() -> None:
    async with hostile_peer(None) as (target, received):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_range(target, timeout_s=0.3)
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        for _ in range(50):
            if any(f[0] == FrameType.RST_STREAM for f in received):
                break
            await asyncio.sleep(0.02)
    rst = [f for f in received if f[0] == FrameType.RST_STREAM]
    assert rst and struct.unpack(">I", rst[0][1:])[0] == ErrorCode.CANCEL


async def test_connection_refused_is_never_sent() -> None:
    async with hostile_peer(None) as (target, _):
        pass  # closed: nothing listens there now
    with pytest.raises(grpc.aio.AioRpcError, match="failed to connect") as raised:
        await call_range(target)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_only_blocks_that_leave_the_table_alone_are_kept() -> None:
    assert leaves_table_unchanged(b"\x88\xc0\xbf")
    assert leaves_table_unchanged(b"\xff\x81\x01")  # a multi-byte index
    # syndic's answers: :status 200 indexed, then literals without indexing.
    assert leaves_table_unchanged(b"\x88\x00\x0ccontent-type\x10application/grpc")
    assert leaves_table_unchanged(b"\x00\x0bgrpc-status\x010")
    assert leaves_table_unchanged(b"\x1f\x10\x03abc")  # never indexed, name from the table
    assert not leaves_table_unchanged(b"\x88\x40\x01a\x01b")  # incremental indexing
    assert not leaves_table_unchanged(b"\x3f\xe1\x1f")  # a table size update
    assert not leaves_table_unchanged(b"\x00\x05ab")  # cut short


@pytest.mark.parametrize("unary_transport", ["h2", "grpc"])
async def test_large_request_and_answer_through_flow_control(
    store: Store, key_prefix: bytes, unary_transport: str
) -> None:
    # A 1.4 MiB value is over the member's initial window (64 KiB by
    # default) and many frames long both ways.
    value = bytes(range(256)) * (1400 * 4)
    async with Client(store.endpoints, unary_transport=unary_transport) as client:
        await asyncio.gather(
            *(client.put(key_prefix + b"big%d" % i, value) for i in range(3)),
            *(client.put(key_prefix + b"small%d" % i, b"v") for i in range(50)),
        )
        got = await client.get(key_prefix + b"big", prefix=True)
        assert [kv.value for kv in got.kvs] == [value] * 3
        assert (await client.get(key_prefix + b"small", prefix=True, count_only=True)).count == 50
        txn = await client.txn(
            [Compare.value(key_prefix + b"small0") == b"v"],
            [Op.delete(key_prefix + b"small", prefix=True), Op.get(key_prefix + b"big0")],
            [],
        )
        assert txn.succeeded and txn.responses[0].deleted == 50  # type: ignore[union-attr]
        assert txn.responses[1].kvs[0].value == value  # type: ignore[union-attr]
        assert (await client.delete(key_prefix + b"big", prefix=True)).deleted == 3


async def test_each_call_keeps_its_own_deadline_on_one_connection() -> None:
    """The connection's one timer follows the earliest deadline: a short call
    made after a long one still ends on time, the long one at its own, and
    both streams are reset."""
    async with hostile_peer(None) as (target, received):
        channel = H2Channel(target, ssl_context=None, server_hostname=None)
        method = channel.method(
            RANGE, rpc_pb2.RangeRequest.SerializeToString, rpc_pb2.RangeResponse.FromString
        )
        loop = asyncio.get_running_loop()

        async def timed(timeout_s: float) -> float:
            started = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await method(rpc_pb2.RangeRequest(key=b"k"), timeout=timeout_s)
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            return loop.time() - started

        try:
            long_call = asyncio.create_task(timed(1.5))
            await asyncio.sleep(0.05)
            short_s = await timed(0.2)
            long_s = await long_call
        finally:
            channel.close()
        for _ in range(50):
            if sum(f[0] == FrameType.RST_STREAM for f in received) >= 2:
                break
            await asyncio.sleep(0.02)
    # Generous upper bounds: the machine is shared; the order is the point.
    assert 0.2 <= short_s < 1.0
    assert 1.5 <= long_s < 4.0
    assert sum(f[0] == FrameType.RST_STREAM for f in received) == 2


async def test_concurrent_calls_share_writes_a_few_at_a_time() -> None:
    """Calls made in one loop turn share writes, not one write each, and not
    one write for all: the member gets the first ones while the client still
    builds the rest."""
    answer = rpc_pb2.RangeResponse(count=1).SerializeToString()
    async with hostile_peer(ok_reply(answer)) as (target, _):
        channel = H2Channel(target, ssl_context=None, server_hostname=None)
        method = channel.method(
            RANGE, rpc_pb2.RangeRequest.SerializeToString, rpc_pb2.RangeResponse.FromString
        )
        try:
            await method(rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT_S)  # connects
            connection = await channel.connection()
            transport = connection._transport
            assert transport is not None
            writes = 0
            write = transport.write

            def counted(data: bytes) -> None:
                nonlocal writes
                writes += 1
                write(data)

            transport.write = counted  # type: ignore[method-assign]
            calls = [
                method(rpc_pb2.RangeRequest(key=b"k%d" % i), timeout=CALL_TIMEOUT_S)
                for i in range(64)
            ]
            answers = await asyncio.gather(*calls)
        finally:
            channel.close()
    assert [a.count for a in answers] == [1] * 64
    # The first call is alone in flight and written at once; the other 63
    # leave REQUESTS_PER_WRITE at a time, the last few at the end of the turn.
    shared = -(-63 // REQUESTS_PER_WRITE)
    assert shared <= writes <= shared + 2
