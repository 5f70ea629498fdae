"""Calls through syndic's HTTP/2 server as real gRPC clients make them.

grpc.aio is the client here, as it is syndic's own and etcd's Python
clients'; a raw HTTP/2 client stands in where a test must control flow
control or read the frames themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.api.services import KV_SERVICE, MAINTENANCE_SERVICE, WATCH_SERVICE, make_stub
from syndic.server.h2 import GrpcServer, ServerLimits
from syndic.server.h2.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    Flag,
    FrameType,
    Setting,
    frame,
    window_update,
)
from syndic.server.h2.server import ListenError
from tests.server.h2.conftest import (
    CALL_TIMEOUT_S,
    KEY_ABORT,
    KEY_BLOCK,
    KEY_METADATA,
    KEY_RAISE,
    RANGE_PATH,
    SNAPSHOT_PATH,
    Connect,
    Probe,
    Running,
    Serve,
    range_request,
    wait_until,
)
from tests.server.h2.raw_client import RawClient, grpc_message, request_headers
from tests.server.tls_certs import Certificates, make_certificates

MiB = 1024 * 1024


def kv_stub(channel: grpc.aio.Channel) -> object:
    return make_stub(channel, KV_SERVICE)


@pytest.fixture
async def channel(running: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(running.target) as chan:
        yield chan


# -- unary calls ---------------------------------------------------------------


async def test_unary_call_is_answered(channel: grpc.aio.Channel) -> None:
    response = await kv_stub(channel).Range(
        rpc_pb2.RangeRequest(key=b"hello"), timeout=CALL_TIMEOUT_S
    )
    assert response == rpc_pb2.RangeResponse(count=5, kvs=[kv_pb2.KeyValue(key=b"hello")])


async def test_many_concurrent_unary_calls_are_each_answered(channel: grpc.aio.Channel) -> None:
    # Answers from one loop pass leave in one write; each must still reach its own call.
    keys = [f"key-{i}".encode() for i in range(200)]
    responses = await asyncio.gather(
        *(kv_stub(channel).Range(rpc_pb2.RangeRequest(key=k), timeout=CALL_TIMEOUT_S) for k in keys)
    )
    assert [r.kvs[0].key for r in responses] == keys


async def test_grpcio_making_many_small_calls_is_not_taken_for_a_flood(serve: Serve) -> None:
    # grpc-core returns window and probes bandwidth after each answer, however
    # small: a few control frames per call, from one address. Thousands of
    # calls over a tight cheap-frame budget must all be answered.
    running = await serve(ServerLimits(cheap_frames_burst=200, cheap_frames_per_s=50))
    calls = 2_000
    async with grpc.aio.insecure_channel(running.target) as channel:
        semaphore = asyncio.Semaphore(64)

        async def call(n: int) -> bytes:
            async with semaphore:
                request = rpc_pb2.RangeRequest(key=b"k%d" % n)
                reply = await kv_stub(channel).Range(request, timeout=CALL_TIMEOUT_S)
                return bytes(reply.kvs[0].key)

        keys = await asyncio.gather(*(call(n) for n in range(calls)))
    assert keys == [b"k%d" % n for n in range(calls)]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.NOT_FOUND, "etcdserver: key not found"),
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: 100% of quota used"),
        (grpc.StatusCode.INVALID_ARGUMENT, "ключ «x» не найден — 🔑"),
        (grpc.StatusCode.PERMISSION_DENIED, "%41 is not A, and %% is not %"),
        (grpc.StatusCode.UNAVAILABLE, "line one\nline two\ttabbed"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
    ids=["ascii", "percent", "non-ascii", "percent-escapes", "control-chars", "empty"],
)
async def test_abort_code_and_message_reach_the_client(
    channel: grpc.aio.Channel, code: grpc.StatusCode, message: str
) -> None:
    # grpc-message is percent-encoded on the wire (gRPC's PROTOCOL-HTTP2.md);
    # a '%' or a non-ASCII character that is not encoded comes back mangled.
    request = rpc_pb2.RangeRequest(key=KEY_ABORT, limit=code.value[0], range_end=message.encode())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kv_stub(channel).Range(request, timeout=CALL_TIMEOUT_S)
    assert (caught.value.code(), caught.value.details()) == (code, message)


async def test_long_non_ascii_abort_message_fits_the_clients_frames(
    running: Running, connect: Connect
) -> None:
    # The server caps grpc-message at 4096 characters; percent-encoded, a
    # character can take 12 bytes, and nothing else bounds the frame.
    client = await connect(running.port)
    message = "€" * 3000
    request = range_request(KEY_ABORT, limit=5, range_end=message.encode())
    response = await client.response(client.start_call(RANGE_PATH, [request]))
    assert response.grpc_status == grpc.StatusCode.NOT_FOUND.value[0]
    assert max(len(f.payload) for f in client.frames) <= DEFAULT_MAX_FRAME_BYTES


async def test_handler_exception_is_unknown_and_the_server_keeps_serving(
    running: Running, channel: grpc.aio.Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kv_stub(channel).Range(rpc_pb2.RangeRequest(key=KEY_RAISE), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    # The exception's text stays in the server's log, not in the client's hands.
    assert "handler bug" not in (caught.value.details() or "")
    await running.assert_serves()


async def test_client_deadline_is_deadline_exceeded_and_cancels_the_handler(
    running: Running, channel: grpc.aio.Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kv_stub(channel).Range(rpc_pb2.RangeRequest(key=KEY_BLOCK), timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await running.probe.wait_cancelled()


async def test_server_enforces_grpc_timeout_itself(running: Running, connect: Connect) -> None:
    # A client that sends grpc-timeout but never resets the call (the raw
    # client here) must still get DEADLINE_EXCEEDED from the server.
    client = await connect(running.port)
    headers = request_headers(RANGE_PATH, extra=[("grpc-timeout", "20m")])
    stream_id = client.start_call(RANGE_PATH, [range_request(KEY_BLOCK)], headers=headers)
    response = await client.response(stream_id)
    assert (response.grpc_status, response.grpc_message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
        "Deadline Exceeded",
    )
    await running.probe.wait_cancelled()


async def test_client_cancel_cancels_the_handler(
    running: Running, channel: grpc.aio.Channel
) -> None:
    call = kv_stub(channel).Range(rpc_pb2.RangeRequest(key=KEY_BLOCK), timeout=CALL_TIMEOUT_S)
    await running.probe.wait_started()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await running.probe.wait_cancelled()
    await running.assert_serves()


async def test_invocation_metadata_reaches_the_handler(channel: grpc.aio.Channel) -> None:
    metadata = (("x-user", "alice"), ("x-token-bin", b"\x00\xff\x10binary"))
    response = await kv_stub(channel).Range(
        rpc_pb2.RangeRequest(key=KEY_METADATA), metadata=metadata, timeout=CALL_TIMEOUT_S
    )
    received = [(kv.key, kv.value) for kv in response.kvs]
    # -bin values arrive decoded from their base64; gRPC's own headers
    # (content-type, te, grpc-timeout) are not metadata.
    assert (b"x-user", b"alice") in received
    assert (b"x-token-bin", b"\x00\xff\x10binary") in received
    assert not {b"content-type", b"te", b"grpc-timeout"} & {key for key, _ in received}


# -- streaming -----------------------------------------------------------------


async def test_server_streaming_many_messages_arrive_in_order(
    running: Running, channel: grpc.aio.Channel
) -> None:
    running.probe.snapshot_count = 2000
    running.probe.snapshot_chunk_bytes = 100
    call = make_stub(channel, MAINTENANCE_SERVICE).Snapshot(
        rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S
    )
    received = [response.remaining_bytes async for response in call]
    assert received == list(range(2000))
    assert await call.code() == grpc.StatusCode.OK


async def test_large_message_to_a_client_with_small_windows_arrives_whole(
    running: Running,
) -> None:
    # 3 MiB through 16 KiB windows that never grow: the server must send
    # what each WINDOW_UPDATE allows and no more (§6.9), in order.
    running.probe.snapshot_chunk_bytes = 3 * MiB
    options = [
        ("grpc.http2.lookahead_bytes", 16 * 1024),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.max_receive_message_length", 4 * MiB),
    ]
    async with grpc.aio.insecure_channel(running.target, options=options) as chan:
        call = make_stub(chan, MAINTENANCE_SERVICE).Snapshot(
            rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S
        )
        responses = [response async for response in call]
    assert len(responses) == 1
    assert responses[0].blob == bytes(3 * MiB)


async def test_bidirectional_echo_of_thousands_of_messages(
    running: Running, channel: grpc.aio.Channel
) -> None:
    count = 3000

    async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
        for watch_id in range(count):
            yield rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id))

    call = make_stub(channel, WATCH_SERVICE).Watch(requests(), timeout=CALL_TIMEOUT_S)
    echoed = [response.watch_id async for response in call]
    assert echoed == list(range(count))


async def test_writer_waits_for_a_client_that_grants_no_window(
    serve: Serve, connect: Connect
) -> None:
    # The raw client never sends WINDOW_UPDATE: once 65535 bytes (the
    # default window) are out and stream_send_buffer_bytes_max more are
    # queued, the handler's write() must wait instead of queueing on.
    running = await serve(ServerLimits(stream_send_buffer_bytes_max=64 * 1024))
    probe = running.probe
    probe.snapshot_count, probe.snapshot_chunk_bytes = 200, 16 * 1024
    client = await connect(running.port)
    stream_id = client.start_call(SNAPSHOT_PATH, [b""])
    while client.data_bytes(stream_id) < 65_535:
        assert await client.read_frame() is not None
    for _ in range(20):  # the handler gets many loop passes to run ahead
        await client.sync()
    # Sent (one window) + queued (the buffer limit) + the message that crossed it.
    assert probe.snapshot_written * 16 * 1024 <= 65_535 + 64 * 1024 + 16 * 1024
    # A client that reads again (and gives back what it has read) gets
    # everything, in order.
    client.send(window_update(0, 65_535) + window_update(stream_id, 65_535))
    response = await client.response(stream_id, refill=True)
    assert response.grpc_status == 0
    assert [
        rpc_pb2.SnapshotResponse.FromString(m).remaining_bytes for m in response.messages()
    ] == list(range(200))


async def test_write_now_refuses_what_write_would_wait_for_and_loses_nothing(
    serve: Serve, connect: Connect
) -> None:
    # As above, with the handler trying write_now() first: it must refuse
    # (queue nothing) once the stream's queue is over its bound, so the
    # handler falls back to write() and waits, and the client still gets
    # every message once and in order.
    running = await serve(ServerLimits(stream_send_buffer_bytes_max=64 * 1024))
    probe = running.probe
    probe.snapshot_count, probe.snapshot_chunk_bytes = 200, 16 * 1024
    probe.snapshot_write_now = True
    client = await connect(running.port)
    stream_id = client.start_call(SNAPSHOT_PATH, [b""])
    while client.data_bytes(stream_id) < 65_535:
        assert await client.read_frame() is not None
    for _ in range(20):
        await client.sync()
    assert probe.snapshot_write_now_refused == 1  # the handler waits in write() since
    assert probe.snapshot_written * 16 * 1024 <= 65_535 + 64 * 1024 + 16 * 1024
    client.send(window_update(0, 65_535) + window_update(stream_id, 65_535))
    response = await client.response(stream_id, refill=True)
    assert response.grpc_status == 0
    assert [
        rpc_pb2.SnapshotResponse.FromString(m).remaining_bytes for m in response.messages()
    ] == list(range(200))
    assert probe.snapshot_write_now_refused > 1  # it tried write_now() again after


async def test_writer_waits_for_a_client_that_stops_reading_the_socket(
    running: Running, connect: Connect
) -> None:
    # Here the windows are wide open (as a gRPC client's grow to be): only
    # the socket pushes back. The handler must stall once the kernel's
    # buffers (a few MiB on loopback) and the transport's are full, not
    # hold all 64 MiB of answers in memory.
    probe = running.probe
    probe.snapshot_count, probe.snapshot_chunk_bytes = 4096, 16 * 1024
    client = await connect(running.port, settings={Setting.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.send(window_update(0, 2**31 - 1 - 65_535))
    client.start_call(SNAPSHOT_PATH, [b""])
    await probe_settles(probe)
    assert 0 < probe.snapshot_written * 16 * 1024 < 32 * MiB


async def probe_settles(probe: Probe) -> None:
    """Wait until the handler has written nothing new for 20 rounds of 5 ms."""
    async with asyncio.timeout(CALL_TIMEOUT_S):
        stalled_rounds, last = 0, -1
        while stalled_rounds < 20:
            await asyncio.sleep(0.005)
            stalled_rounds = stalled_rounds + 1 if probe.snapshot_written == last else 0
            last = probe.snapshot_written


# -- stopping ------------------------------------------------------------------


async def test_graceful_stop_finishes_running_calls_and_refuses_new_ones(
    running: Running, channel: grpc.aio.Channel
) -> None:
    blocked = kv_stub(channel).Range(rpc_pb2.RangeRequest(key=KEY_BLOCK), timeout=CALL_TIMEOUT_S)
    await running.probe.wait_started()
    stopping = asyncio.create_task(running.server.stop(grace=60.0))
    await asyncio.sleep(0)  # stop() has closed the listener and sent GOAWAY
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kv_stub(channel).Range(rpc_pb2.RangeRequest(key=b"new"), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    running.probe.release.set()
    assert (await blocked).kvs[0].key == KEY_BLOCK
    # stop() returns as soon as the last call is done, long before its grace.
    await asyncio.wait_for(stopping, CALL_TIMEOUT_S)


async def test_graceful_stop_finishes_a_call_that_needs_window_updates(
    running: Running, connect: Connect
) -> None:
    probe = running.probe
    probe.snapshot_waits = True
    probe.snapshot_count, probe.snapshot_chunk_bytes = 10, 16 * 1024  # 160 KiB > 65535
    client = await connect(running.port)
    stream_id = client.start_call(SNAPSHOT_PATH, [b""])
    await probe.wait_started()
    stopping = asyncio.create_task(running.server.stop(grace=0.5))
    await asyncio.sleep(0)  # GOAWAY is on its way
    probe.release.set()
    try:
        response = await client.response(stream_id, refill=True)
        assert (response.grpc_status, len(response.messages())) == (0, 10)
    finally:
        await stopping


async def test_graceful_stop_delivers_the_whole_answer_to_a_client_still_sending(
    running: Running, connect: Connect
) -> None:
    # gRPC clients send PINGs (BDP probes) and WINDOW_UPDATEs as answers
    # arrive, so a client is often still sending when the server closes.
    probe = running.probe
    probe.snapshot_waits = True
    probe.snapshot_count, probe.snapshot_chunk_bytes = 64, 128 * 1024  # 8 MiB: more than
    # the kernel buffers, so the server is still sending when it closes.
    client = await connect(running.port, settings={Setting.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.send(window_update(0, 2**31 - 1 - 65_535))
    stream_id = client.start_call(SNAPSHOT_PATH, [b""])
    await probe.wait_started()
    stopping = asyncio.create_task(running.server.stop(grace=CALL_TIMEOUT_S))
    await asyncio.sleep(0)
    probe.release.set()
    # The client reads as it goes: a handler's write() waits for a client
    # that does not, so all 64 chunks are written only while it reads.
    reading = asyncio.create_task(client.response(stream_id))
    await wait_until(lambda: probe.snapshot_written == 64, "the handler has written all")
    for _ in range(10):  # the handler's end, the stream's end and the close run
        await asyncio.sleep(0)
    client.send_frame(FrameType.PING, 0, 0, bytes(8))
    try:
        response = await reading
        assert (response.grpc_status, len(response.messages())) == (0, 64)
    finally:
        await stopping


async def test_stop_without_grace_cuts_running_calls(
    running: Running, channel: grpc.aio.Channel
) -> None:
    blocked = kv_stub(channel).Range(rpc_pb2.RangeRequest(key=KEY_BLOCK), timeout=CALL_TIMEOUT_S)
    await running.probe.wait_started()
    await running.server.stop(grace=None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await blocked
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await running.probe.wait_cancelled()


# -- listening -----------------------------------------------------------------


def test_busy_port_raises_listen_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ListenError) as caught:
            GrpcServer().add_insecure_port(address)
    assert isinstance(caught.value, RuntimeError)
    assert address in str(caught.value)


async def test_port_0_returns_the_port_chosen(running: Running) -> None:
    assert running.port > 0
    await running.assert_serves()  # served on exactly the port returned


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", "127.0.0.1:65536"])
def test_malformed_address_raises_listen_error(address: str) -> None:
    with pytest.raises(ListenError, match="is not host:port"):
        GrpcServer().add_insecure_port(address)


# -- TLS -----------------------------------------------------------------------


def server_context(certs_dir: Path, *, verify_clients: bool) -> tuple[ssl.SSLContext, Certificates]:
    certs = make_certificates(certs_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.member_cert, certs.member_key)
    context.set_alpn_protocols(["h2"])  # gRPC clients insist on ALPN h2
    if verify_clients:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context, certs


async def secure_range(port: int, credentials: grpc.ChannelCredentials) -> rpc_pb2.RangeResponse:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as chan:
        return await kv_stub(chan).Range(rpc_pb2.RangeRequest(key=b"tls"), timeout=CALL_TIMEOUT_S)


async def test_tls_port_serves_a_secure_channel(serve: Serve, tmp_path: Path) -> None:
    context, certs = server_context(tmp_path, verify_clients=False)
    running = await serve(tls=context)
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    assert (await secure_range(running.port, credentials)).kvs[0].key == b"tls"


async def test_tls_with_client_verification_refuses_a_client_without_a_certificate(
    serve: Serve, tmp_path: Path
) -> None:
    context, certs = server_context(tmp_path, verify_clients=True)
    running = await serve(tls=context)
    ca = certs.ca.read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secure_range(running.port, grpc.ssl_channel_credentials(root_certificates=ca))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # The same server serves a client that presents a certificate of its CA.
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=certs.client_key.read_bytes(),
        certificate_chain=certs.client_cert.read_bytes(),
    )
    assert (await secure_range(running.port, with_cert)).kvs[0].key == b"tls"


async def test_a_burst_of_calls_starts_its_handlers_a_share_per_loop_pass(
    running: Running, connect: Connect
) -> None:
    # 64 calls in one read must not run back to back in one pass: the loop's
    # timers (a member's heartbeats) get a turn every 16 handlers.
    client = await connect(running.port)
    await client.sync()
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def each_pass() -> None:
        seen.append(running.probe.started)
        if running.probe.started < 64 and len(seen) < 10_000:
            loop.call_soon(each_pass)

    burst = b"".join(_call_bytes(client, range_request(KEY_BLOCK)) for _ in range(64))
    client.send(burst)
    loop.call_soon(each_pass)
    await running.probe.wait_started(64)
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(steps) <= 16, steps
    running.probe.release.set()


def _call_bytes(client: RawClient, message: bytes) -> bytes:
    """One unary call's HEADERS and DATA, for sending many in one write."""
    stream_id = client.new_stream_id()
    block = client.header_block(request_headers(RANGE_PATH))
    return frame(FrameType.HEADERS, Flag.END_HEADERS, stream_id, block) + frame(
        FrameType.DATA, Flag.END_STREAM, stream_id, grpc_message(message)
    )
