"""Hostile and malformed input: each gets its exact answer, and nothing else changes.

Every test checks the server's reaction as the client sees it (GOAWAY with
its HTTP/2 error code, RST_STREAM, or a gRPC status) and then that a normal
grpc.aio client is still served: one bad connection must not hurt the rest.
Section numbers are RFC 9113's (HTTP/2) unless said otherwise.
"""

from __future__ import annotations

import asyncio
import gc
import struct

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.server.h2 import ServerLimits
from syndic.server.h2.call import Call
from syndic.server.h2.frames import PREFACE, ErrorCode, Flag, FrameType, Setting, window_update
from syndic.server.h2.protocol import H2Stream
from tests.server.h2.conftest import (
    CALL_TIMEOUT_S,
    KEY_BLOCK,
    RANGE_PATH,
    WATCH_ID_BLOCK,
    WATCH_PATH,
    Connect,
    Running,
    Serve,
    range_request,
    watch_request,
)
from tests.server.h2.raw_client import GoAway, RawClient, grpc_message, request_headers

OK = grpc.StatusCode.OK.value[0]
INTERNAL = grpc.StatusCode.INTERNAL.value[0]
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
U32 = struct.Struct(">I")


def settings_payload(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", key, value) for key, value in pairs)


async def assert_goaway(client: RawClient, expected: GoAway, running: Running) -> None:
    """The connection ends with ``expected``; other clients are served as before."""
    assert await client.read_goaway() == expected
    assert client.closed
    await running.assert_serves()


# -- the preface (§3.4) --------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"PRI * HTTP/1.1"],
    ids=["http1-request", "short-wrong-prefix"],
)
async def test_bad_preface_gets_protocol_error(
    running: Running, connect: Connect, sent: bytes
) -> None:
    client = await connect(running.port, preface=False)
    client.send(sent)
    # A wrong prefix is refused at once, not after 24 bytes have arrived.
    await assert_goaway(
        client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 preface"), running
    )


@pytest.mark.parametrize("sent", [b"", PREFACE[:10]], ids=["silent", "half-preface"])
async def test_no_preface_within_the_timeout_gets_protocol_error(
    serve: Serve, connect: Connect, sent: bytes
) -> None:
    # A connection that never becomes HTTP/2 must not hold a slot forever.
    running = await serve(ServerLimits(preface_timeout_s=0.05))
    client = await connect(running.port, preface=False)
    client.send(sent)
    expected = GoAway(0, ErrorCode.PROTOCOL_ERROR, "no HTTP/2 preface in time")
    await assert_goaway(client, expected, running)


# -- frame layout (§4.2) -------------------------------------------------------


async def test_frame_over_16384_bytes_is_refused_from_its_header_alone(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    # Only the 9-byte header is sent: a server that buffered the declared
    # length before judging it would wait here for ever (and the read times out).
    client.send(struct.pack(">BHBBI", 0, 16_385, FrameType.DATA, 0, 1))
    expected = GoAway(0, ErrorCode.FRAME_SIZE_ERROR, "frame of 16385 bytes; the limit is 16384")
    await assert_goaway(client, expected, running)


async def test_unknown_frame_type_is_ignored(running: Running, connect: Connect) -> None:
    # §4.1: "Implementations MUST ignore and discard frames of unknown types."
    client = await connect(running.port)
    client.send_frame(0xFA, 0xFF, 0, b"extension payload")
    stream_id = client.start_call(RANGE_PATH, [range_request(b"k")])
    response = await client.response(stream_id)
    assert response.grpc_status == OK
    assert client.goaway is None
    await running.assert_serves()


# -- stream identifiers (§5.1.1) -----------------------------------------------


async def test_data_on_stream_0_is_a_protocol_error(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.DATA, 0, 0, grpc_message(b""))
    await assert_goaway(client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "DATA on stream 0"), running)


async def test_headers_on_an_even_stream_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    # Even ids belong to streams the server would push.
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 2, block)
    expected = GoAway(0, ErrorCode.PROTOCOL_ERROR, "a client stream id must be odd")
    await assert_goaway(client, expected, running)


async def test_reused_stream_id_is_a_protocol_error(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    first = client.start_call(RANGE_PATH, [range_request(b"k")])
    assert (await client.response(first)).grpc_status == OK
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS, first, block)
    expected = GoAway(first, ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {first} again")
    await assert_goaway(client, expected, running)


async def test_decreasing_stream_id_is_a_protocol_error(running: Running, connect: Connect) -> None:
    # §5.1.1: a new stream's id must exceed every id the client has used.
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS, 5, block)
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS, 3, block)
    expected = GoAway(5, ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 3 again")
    await assert_goaway(client, expected, running)


# -- header blocks (§4.3, §6.10) -----------------------------------------------


async def test_continuation_without_headers_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block)
    expected = GoAway(0, ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
    await assert_goaway(client, expected, running)


async def test_continuation_on_another_stream_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, 0, 1, block[:4])
    client.send_frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, block[4:])
    expected = GoAway(0, ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
    await assert_goaway(client, expected, running)


async def test_frame_inside_a_header_block_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    # §4.3: a header block is one contiguous sequence of frames; even a PING
    # may not come between HEADERS and its last CONTINUATION.
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, 0, 1, block[:4])
    client.send_frame(FrameType.PING, 0, 0, bytes(8))
    client.send_frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block[4:])
    expected = GoAway(
        0, ErrorCode.PROTOCOL_ERROR, "a header block was interrupted by another frame"
    )
    await assert_goaway(client, expected, running)


async def test_header_block_split_over_continuations_is_served(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    client.send_frame(FrameType.HEADERS, 0, 1, block[:3])
    client.send_frame(FrameType.CONTINUATION, 0, 1, block[3:7])
    client.send_frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block[7:])
    client.send_frame(FrameType.DATA, Flag.END_STREAM, 1, grpc_message(range_request(b"k")))
    assert (await client.response(1)).grpc_status == OK
    await running.assert_serves()


async def test_continuation_flood_past_the_block_limit_enhances_calm(
    serve: Serve, connect: Connect
) -> None:
    # The CONTINUATION flood (CVE-2024-27316 and kin): a header block that
    # never ends must be cut at its size limit, not buffered until END_HEADERS.
    running = await serve(ServerLimits(header_block_bytes_max=4096))
    client = await connect(running.port)
    client.send_frame(FrameType.HEADERS, 0, 1, b"\x82" * 100)  # :method GET, repeated
    for _ in range(4):  # 100 + 4 * 1024 bytes, and no END_HEADERS
        client.send_frame(FrameType.CONTINUATION, 0, 1, b"\x82" * 1024)
    expected = GoAway(0, ErrorCode.ENHANCE_YOUR_CALM, "header block over 4096 bytes")
    await assert_goaway(client, expected, running)


async def test_garbage_hpack_is_a_compression_error(running: Running, connect: Connect) -> None:
    # An index far past both tables: the client's HPACK state and ours have
    # parted, and nothing later on the connection could be decoded (RFC 7541 §2.3.3).
    client = await connect(running.port)
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS, 1, b"\xff\xff\xff\xff\x0f")
    goaway = await client.read_goaway()
    assert (goaway.last_stream_id, goaway.code) == (0, ErrorCode.COMPRESSION_ERROR)
    assert goaway.reason.startswith("HPACK: ")
    await running.assert_serves()


async def test_header_list_over_the_limit_enhances_calm(serve: Serve, connect: Connect) -> None:
    running = await serve(ServerLimits(header_list_bytes_max=1024))
    client = await connect(running.port)
    await client.sync()
    # The limit is advertised (§6.5.2), so a well-behaved client never trips it.
    assert client.server_settings[Setting.MAX_HEADER_LIST_SIZE] == 1024
    headers = request_headers(RANGE_PATH, extra=[("x-big", "a" * 2000)])
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS, 1, client.header_block(headers))
    goaway = await client.read_goaway()
    assert (goaway.last_stream_id, goaway.code) == (0, ErrorCode.ENHANCE_YOUR_CALM)
    assert goaway.reason.startswith("header list: ")
    await running.assert_serves()


async def test_padded_headers_and_data_are_served(running: Running, connect: Connect) -> None:
    # §6.1, §6.2: padding (and HEADERS' priority fields) are stripped, not parsed.
    client = await connect(running.port)
    block = client.header_block(request_headers(RANGE_PATH))
    priority = U32.pack(0) + b"\x10"  # stream dependency 0, weight 17
    headers = bytes([7]) + priority + block + bytes(7)
    client.send_frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY, 1, headers)
    data = bytes([200]) + grpc_message(range_request(b"padded")) + bytes(200)
    client.send_frame(FrameType.DATA, Flag.END_STREAM | Flag.PADDED, 1, data)
    response = await client.response(1)
    assert response.grpc_status == OK
    [message] = response.messages()
    assert rpc_pb2.RangeResponse.FromString(message).count == len(b"padded")
    await running.assert_serves()


async def test_padding_longer_than_the_frame_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    client.start_call(RANGE_PATH, end_stream=False)
    client.send_frame(FrameType.DATA, Flag.PADDED, 1, bytes([4]) + b"abc")
    expected = GoAway(1, ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    await assert_goaway(client, expected, running)


# -- SETTINGS (§6.5) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "payload", "expected"),
    [
        (
            0,
            settings_payload((Setting.INITIAL_WINDOW_SIZE, 2**31)),
            GoAway(0, ErrorCode.FLOW_CONTROL_ERROR, "initial window of 2147483648 bytes"),
        ),
        (
            0,
            settings_payload((Setting.MAX_FRAME_SIZE, 16_383)),
            GoAway(0, ErrorCode.PROTOCOL_ERROR, "max frame size of 16383 bytes"),
        ),
        (
            0,
            settings_payload((Setting.MAX_FRAME_SIZE, 2**24)),
            GoAway(0, ErrorCode.PROTOCOL_ERROR, "max frame size of 16777216 bytes"),
        ),
        (
            0,
            settings_payload((Setting.ENABLE_PUSH, 2)),
            GoAway(0, ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH of 2"),
        ),
        (
            0,
            b"\x00\x04\x00\x00\x01",
            GoAway(0, ErrorCode.FRAME_SIZE_ERROR, "SETTINGS payload of 5 bytes"),
        ),
        (
            Flag.ACK,
            settings_payload((Setting.MAX_FRAME_SIZE, 16_384)),
            GoAway(0, ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"),
        ),
    ],
    ids=[
        "initial-window-over-2^31-1",
        "max-frame-below-16384",
        "max-frame-above-2^24-1",
        "enable-push-2",
        "length-not-a-multiple-of-6",
        "ack-with-payload",
    ],
)
async def test_bad_settings_end_the_connection(
    running: Running, connect: Connect, flags: int, payload: bytes, expected: GoAway
) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.SETTINGS, flags, 0, payload)
    await assert_goaway(client, expected, running)


async def test_settings_on_a_stream_is_a_protocol_error(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.SETTINGS, 0, 1, b"")
    await assert_goaway(
        client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream"), running
    )


async def test_settings_are_acknowledged(running: Running, connect: Connect) -> None:
    client = await connect(running.port, settings={Setting.MAX_FRAME_SIZE: 32_768})
    await client.sync()
    acks = [f for f in client.frames if f.type == FrameType.SETTINGS and f.flags & Flag.ACK]
    assert [ack.payload for ack in acks] == [b""]
    await running.assert_serves()


# -- WINDOW_UPDATE and flow control (§5.2, §6.9) -------------------------------


async def test_window_update_of_0_is_a_protocol_error(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.WINDOW_UPDATE, 0, 0, U32.pack(0))
    await assert_goaway(client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0"), running)


async def test_window_update_with_wrong_length_is_a_frame_size_error(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")
    expected = GoAway(0, ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload of 3 bytes")
    await assert_goaway(client, expected, running)


async def test_connection_window_overflow_is_a_flow_control_error(
    running: Running, connect: Connect
) -> None:
    # §6.9.1: a window may not exceed 2^31-1; the server's starts at 65535.
    client = await connect(running.port)
    client.send(window_update(0, 2**31 - 1))
    expected = GoAway(0, ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
    await assert_goaway(client, expected, running)


async def test_initial_window_change_overflowing_a_stream_is_a_flow_control_error(
    running: Running, connect: Connect
) -> None:
    # §6.9.2: a SETTINGS change that pushes an open stream past 2^31-1.
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)])
    await running.probe.wait_started()
    client.send(window_update(stream_id, 2**31 - 1 - 65_535))
    client.send_frame(
        FrameType.SETTINGS, 0, 0, settings_payload((Setting.INITIAL_WINDOW_SIZE, 65_536))
    )
    expected = GoAway(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
    await assert_goaway(client, expected, running)


async def test_data_beyond_the_stream_window_is_a_flow_control_error(
    serve: Serve, connect: Connect
) -> None:
    # The smallest window HTTP/2 allows. A stream's window comes back only as
    # its handler takes requests; this one has stopped reading.
    running = await serve(ServerLimits(stream_window_bytes=65_535, receive_message_bytes_max=1000))
    client = await connect(running.port)
    await client.sync()
    assert client.server_settings[Setting.INITIAL_WINDOW_SIZE] == 65_535
    stream_id = client.start_call(WATCH_PATH, end_stream=False)
    first = grpc_message(watch_request(WATCH_ID_BLOCK))
    client.send_data(stream_id, first)
    await running.probe.wait_started()
    filler = grpc_message(watch_request(1)) * 1000
    sent = len(first)
    while sent <= 65_535:
        chunk = filler[: min(16_384, 65_536 - sent)]
        client.send_frame(FrameType.DATA, 0, stream_id, chunk)
        sent += len(chunk)
    expected = GoAway(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
    await assert_goaway(client, expected, running)


async def test_requests_held_unread_past_the_connection_limit_end_it(
    serve: Serve, connect: Connect
) -> None:
    # Each stream stays within its own window, but together the partial
    # messages pass request_buffer_bytes_max: the connection ends, so a
    # client cannot make the server hold without bound what no handler reads.
    limits = ServerLimits(request_buffer_bytes_max=100_000)
    running = await serve(limits)
    client = await connect(running.port)
    await client.sync()
    declared = bytes([0]) + (60_000).to_bytes(4, "big")  # a message never finished
    last = 0
    for _ in range(3):
        last = client.start_call(RANGE_PATH, end_stream=False)
        client.send_frame(FrameType.DATA, 0, last, declared + bytes(16_379))
        client.send_frame(FrameType.DATA, 0, last, bytes(16_384))
        client.send_frame(FrameType.DATA, 0, last, bytes(5_000))
    expected = GoAway(
        last, ErrorCode.ENHANCE_YOUR_CALM, "over 100000 bytes of requests held unread"
    )
    await assert_goaway(client, expected, running)


async def test_connection_window_below_the_protocol_default_is_refused_or_honoured(
    serve: Serve, connect: Connect
) -> None:
    # §6.9.2: every connection starts with a 65535-byte window, and the
    # SETTINGS frame cannot shrink it.
    try:
        limits = ServerLimits(connection_window_bytes=20_000)
    except ValueError:
        return  # refusing the limit is as good as honouring it
    running = await serve(limits)
    client = await connect(running.port)
    await client.sync()
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    client.send_data(stream_id, grpc_message(range_request(b"k" * 30_000)), end_stream=True)
    assert (await client.response(stream_id)).grpc_status == OK


# -- PING, PUSH_PROMISE, RST_STREAM, PRIORITY (§6.3, §6.4, §6.6, §6.7) ---------


async def test_ping_is_answered_with_the_same_8_bytes(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.PING, 0, 0, b"syndic!!")
    while not client.ping_acks:
        assert await client.read_frame() is not None
    assert client.ping_acks == [b"syndic!!"]
    await running.assert_serves()


async def test_ping_with_wrong_length_is_a_frame_size_error(
    running: Running, connect: Connect
) -> None:
    # §6.7: "Receipt of a PING frame with a length field value other than 8
    # MUST be treated as a connection error of type FRAME_SIZE_ERROR."
    client = await connect(running.port)
    client.send_frame(FrameType.PING, 0, 0, bytes(7))
    goaway = await client.read_goaway()
    assert goaway.code == ErrorCode.FRAME_SIZE_ERROR
    await running.assert_serves()


async def test_ping_on_a_stream_is_a_protocol_error(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.PING, 0, 1, bytes(8))
    await assert_goaway(client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "PING on a stream"), running)


async def test_push_promise_from_the_client_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    # §8.4: only a server may push; ours also advertises ENABLE_PUSH 0.
    client = await connect(running.port)
    client.send_frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, U32.pack(2))
    await assert_goaway(
        client, GoAway(0, ErrorCode.PROTOCOL_ERROR, "a client may not push"), running
    )


async def test_rst_stream_on_an_idle_stream_is_a_protocol_error(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    client.send_frame(FrameType.RST_STREAM, 0, 7, U32.pack(ErrorCode.CANCEL))
    expected = GoAway(0, ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
    await assert_goaway(client, expected, running)


async def test_priority_frame_is_accepted(running: Running, connect: Connect) -> None:
    # §5.3.2: PRIORITY is deprecated but still legal, even for idle streams.
    client = await connect(running.port)
    client.send_frame(FrameType.PRIORITY, 0, 9, U32.pack(0) + b"\x10")
    stream_id = client.start_call(RANGE_PATH, [range_request(b"k")])
    assert (await client.response(stream_id)).grpc_status == OK
    assert client.goaway is None
    await running.assert_serves()


# -- concurrency limits --------------------------------------------------------


async def test_streams_over_the_concurrency_limit_are_refused(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(concurrent_streams_max=2))
    client = await connect(running.port)
    ids = [client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)]) for _ in range(3)]
    # §8.7: REFUSED_STREAM tells the client the call never ran and may be retried.
    assert (await client.response(ids[2])).reset == ErrorCode.REFUSED_STREAM
    assert client.server_settings[Setting.MAX_CONCURRENT_STREAMS] == 2
    await running.probe.wait_started(2)
    running.probe.release.set()
    assert [(await client.response(i)).grpc_status for i in ids[:2]] == [OK, OK]
    # The two finished calls gave their slots back.
    again = client.start_call(RANGE_PATH, [range_request(b"k")])
    assert (await client.response(again)).grpc_status == OK
    assert running.probe.started == 2
    await running.assert_serves()


async def test_open_and_reset_in_a_loop_leaves_no_handlers_running(
    serve: Serve, connect: Connect
) -> None:
    # A reset cancels its handler, so a client that resets each call before
    # opening the next never runs into the concurrency limit.
    running = await serve(ServerLimits(concurrent_streams_max=4))
    client = await connect(running.port)
    for round_number in range(1, 51):
        stream_id = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)])
        await running.probe.wait_started(round_number)
        client.send_frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    await running.probe.wait_cancelled(50)
    assert all(response.reset is None for response in client.responses.values())
    await running.assert_serves()


async def test_handlers_that_ignore_reset_still_count_against_the_limit(
    serve: Serve, connect: Connect
) -> None:
    # A stream counts until its handler has finished, not until the client
    # resets it: resets cannot be used to pile up handlers that never stop.
    running = await serve(ServerLimits(concurrent_streams_max=4))
    running.probe.ignore_cancel = True
    client = await connect(running.port)
    for round_number in range(1, 5):
        stream_id = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)])
        await running.probe.wait_started(round_number)
        client.send_frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    fifth = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)])
    assert (await client.response(fifth)).reset == ErrorCode.REFUSED_STREAM
    assert running.probe.running == 4
    running.probe.release.set()
    await running.assert_serves()


# -- gRPC framing of messages --------------------------------------------------


async def test_message_over_the_receive_limit_is_resource_exhausted_unread(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(receive_message_bytes_max=1024))
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    # Only the 5-byte prefix and a little of the body: the answer must not
    # wait for the other 1015 bytes (grpc-go's wording, as etcd answers).
    client.send_frame(FrameType.DATA, 0, stream_id, struct.pack(">BI", 0, 1025) + bytes(10))
    response = await client.response(stream_id)
    assert response.grpc_status == RESOURCE_EXHAUSTED
    assert response.grpc_message == "grpc: received message larger than max (1025 vs. 1024)"
    # The client is still sending, so it is told to stop (§8.1).
    assert await client.reset_after(stream_id) == ErrorCode.NO_ERROR
    await running.assert_serves()


async def test_compressed_flag_without_an_encoding_is_internal(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    body = grpc_message(range_request(b"k"), compressed=True)
    client.send_frame(FrameType.DATA, Flag.END_STREAM, stream_id, body)
    response = await client.response(stream_id)
    assert response.grpc_status == INTERNAL
    assert response.grpc_message == "grpc: compressed flag set with identity or empty encoder"
    await running.assert_serves()


async def test_grpc_encoding_gzip_is_unimplemented(running: Running, connect: Connect) -> None:
    # syndic has no decompressor; it says so instead of misreading the bytes.
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, extra=[("grpc-encoding", "gzip")])
    stream_id = client.start_call(RANGE_PATH, [range_request(b"k")], headers=headers)
    response = await client.response(stream_id)
    assert (response.http_status, response.grpc_status) == (200, UNIMPLEMENTED)
    assert response.grpc_message.startswith("grpc: Decompressor is not installed for grpc-encoding")
    assert "gzip" in response.grpc_message
    await running.assert_serves()


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "grpc: no request message for a unary call"),
        (
            [range_request(b"a"), range_request(b"b")],
            "grpc: more than one request for a unary call",
        ),
    ],
    ids=["no-message", "two-messages"],
)
async def test_unary_call_needs_exactly_one_message(
    running: Running, connect: Connect, messages: list[bytes], message: str
) -> None:
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, messages)
    response = await client.response(stream_id)
    assert (response.grpc_status, response.grpc_message) == (INTERNAL, message)
    await running.assert_serves()


async def test_request_cut_short_is_internal(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    client.send_frame(FrameType.DATA, Flag.END_STREAM, stream_id, grpc_message(b"abcdef")[:-2])
    response = await client.response(stream_id)
    assert (response.grpc_status, response.grpc_message) == (INTERNAL, "grpc: request cut short")
    await running.assert_serves()


# -- request heads -------------------------------------------------------------


async def test_non_post_is_http_405(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, method="GET")
    stream_id = client.start_call(RANGE_PATH, headers=headers)
    response = await client.response(stream_id)
    assert (response.http_status, response.grpc_status) == (405, INTERNAL)
    assert response.grpc_message == 'invalid gRPC request method "GET"'
    await running.assert_serves()


async def test_non_post_message_names_the_method_as_sent(
    running: Running, connect: Connect
) -> None:
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, headers=request_headers(RANGE_PATH, method="GET"))
    assert "b'" not in (await client.response(stream_id)).grpc_message


async def test_wrong_content_type_is_http_415(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, content_type="application/json")
    stream_id = client.start_call(RANGE_PATH, [b"{}"], headers=headers)
    response = await client.response(stream_id)
    assert (response.http_status, response.grpc_status) == (415, INTERNAL)
    assert response.grpc_message == 'invalid gRPC request content-type "application/json"'
    await running.assert_serves()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etcdserverpb.Nope/Range", "unknown service etcdserverpb.Nope"),
        ("/etcdserverpb.KV/Nope", "unknown method Nope for service etcdserverpb.KV"),
        # KV is served, but this servicer does not implement Txn.
        ("/etcdserverpb.KV/Txn", "unknown method Txn for service etcdserverpb.KV"),
    ],
    ids=["unknown-service", "unknown-method", "unimplemented-method"],
)
async def test_unknown_path_is_unimplemented_in_grpc_go_words(
    running: Running, connect: Connect, path: str, message: str
) -> None:
    client = await connect(running.port)
    stream_id = client.start_call(path, [range_request(b"k")], headers=request_headers(path))
    response = await client.response(stream_id)
    assert (response.http_status, response.grpc_status) == (200, UNIMPLEMENTED)
    assert response.grpc_message == message
    await running.assert_serves()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("grpc-timeout", "5 seconds"), "transport: malformed grpc-timeout: '5 seconds'"),
        (("grpc-timeout", "123456789S"), "transport: malformed grpc-timeout: '123456789S'"),
        (("x-token-bin", "not base64!"), "transport: malformed binary header 'x-token-bin'"),
    ],
    ids=["timeout-words", "timeout-9-digits", "bin-header-bad-base64"],
)
async def test_malformed_reserved_header_is_internal(
    running: Running, connect: Connect, extra: tuple[str, str], message: str
) -> None:
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, extra=[extra])
    stream_id = client.start_call(RANGE_PATH, [range_request(b"k")], headers=headers)
    response = await client.response(stream_id)
    assert (response.http_status, response.grpc_status) == (200, INTERNAL)
    assert response.grpc_message == message
    assert running.probe.started == 0
    await running.assert_serves()


async def test_missing_path_is_internal(running: Running, connect: Connect) -> None:
    client = await connect(running.port)
    headers = [h for h in request_headers(RANGE_PATH) if h[0] != ":path"]
    stream_id = client.start_call(RANGE_PATH, [range_request(b"k")], headers=headers)
    response = await client.response(stream_id)
    assert (response.grpc_status, response.grpc_message) == (INTERNAL, "transport: missing :path")
    await running.assert_serves()


# -- windows given back --------------------------------------------------------

# Every window test runs with this connection window: 100000 bytes, given
# back in one WINDOW_UPDATE once 50000 are owed (half the window).
WINDOW_TEST_BYTES = 100_000


def connection_credit_returned(client: RawClient) -> int:
    """Connection-window bytes the server has given back, beyond its opening raise."""
    return client.window_credit.get(0, 0) - (WINDOW_TEST_BYTES - 65_535)


async def test_padding_does_not_shrink_a_long_streams_window(
    serve: Serve, connect: Connect
) -> None:
    # Padding counts against flow control (§6.1) and is never handed to the
    # handler, so the server must return it at once on the stream too, or a
    # long-lived stream with padded DATA (a Watch) stalls for good.
    running = await serve(ServerLimits(stream_window_bytes=65_535, receive_message_bytes_max=1024))
    client = await connect(running.port)
    await client.sync()
    stream_id = client.start_call(WATCH_PATH, end_stream=False)
    window = client.server_settings[Setting.INITIAL_WINDOW_SIZE]
    assert window == 65_535  # 300 padded frames (about 80 KB) overrun it
    for watch_id in range(300):
        body = grpc_message(watch_request(watch_id))
        window += client.window_credit.pop(stream_id, 0)
        assert window >= 1 + len(body) + 255, f"stream window shut after {watch_id} messages"
        window -= 1 + len(body) + 255
        client.send_frame(FrameType.DATA, Flag.PADDED, stream_id, bytes([255]) + body + bytes(255))
        await client.sync()
    await running.assert_serves()


async def test_reset_call_returns_its_unread_request_to_the_connection_window(
    serve: Serve, connect: Connect
) -> None:
    # The connection window is shared by every call: bytes the server will
    # never hand to a handler must be given back, or each cancelled call
    # shrinks it until the whole connection stalls.
    running = await serve(ServerLimits(connection_window_bytes=WINDOW_TEST_BYTES))
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    request = grpc_message(range_request(b"k" * 60_000))
    client.send_data(stream_id, request)
    client.send_frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    await client.sync()
    assert connection_credit_returned(client) == len(request)


async def test_requests_a_finished_handler_left_unread_return_to_the_window(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(connection_window_bytes=WINDOW_TEST_BYTES))
    client = await connect(running.port)
    stream_id = client.start_call(WATCH_PATH, end_stream=False)
    # The first request ends the handler; the four behind it are never read.
    first = grpc_message(watch_request(-1))
    unread = grpc_message(watch_request(1) + bytes(14_000))
    client.send_frame(FrameType.DATA, 0, stream_id, first + unread)
    for _ in range(3):
        client.send_frame(FrameType.DATA, 0, stream_id, unread)
    assert (await client.response(stream_id)).grpc_status == OK
    await client.sync()
    assert connection_credit_returned(client) == len(first) + 4 * len(unread)


async def test_refused_unary_call_returns_its_requests_to_the_window(
    serve: Serve, connect: Connect
) -> None:
    running = await serve(ServerLimits(connection_window_bytes=WINDOW_TEST_BYTES))
    client = await connect(running.port)
    stream_id = client.start_call(RANGE_PATH, end_stream=False)
    message = grpc_message(range_request(b"k" * 8_000))
    # The second message ends the call; the third shares its frame.
    for data in (message, message + message, message + message, message + message):
        client.send_frame(FrameType.DATA, 0, stream_id, data)
    response = await client.response(stream_id)
    assert response.grpc_message == "grpc: more than one request for a unary call"
    await client.sync()
    assert connection_credit_returned(client) == 7 * len(message)


@pytest.mark.parametrize("ending", ["reset", "disconnect"])
async def test_calls_ended_before_their_handler_hold_no_memory(
    serve: Serve, connect: Connect, ending: str
) -> None:
    # A client may open calls with the longest grpc-timeout and drop them:
    # whatever the server kept for them must go with them.
    running = await serve()
    gc.collect()
    streams_before = live_streams()
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, extra=[("grpc-timeout", "99999999H")])
    for _ in range(100):
        stream_id = client.start_call(RANGE_PATH, headers=headers, end_stream=False)
        if ending == "reset":
            client.send_frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    await client.sync()
    if ending == "disconnect":
        await client.close()
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while running.server._connections:
                await asyncio.sleep(0.001)
    gc.collect()
    assert live_streams() - streams_before <= 0


def live_streams() -> int:
    return sum(isinstance(o, H2Stream | Call) for o in gc.get_objects())
