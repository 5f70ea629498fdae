"""Real gRPC round trips on 127.0.0.1: syndic's bindings against etcd clients.

A server registered through ``add_servicer`` must be reachable by an etcd
client that knows nothing of syndic (aetcd, whose stubs hard-code etcd's
method paths), and by syndic's own ``make_stub``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aetcd
import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    KV_SERVICE,
    MAINTENANCE_SERVICE,
    WATCH_SERVICE,
    add_servicer,
    grpc_server_options,
    make_stub,
)
from tests.api.fake_etcd import FakeKV

# A bound on every await below, so a broken binding fails instead of hanging;
# far above the few milliseconds each call takes on loopback.
CALL_TIMEOUT_S = 10.0
# Small enough that a test can exceed it with one cheap message.
SMALL_MAX_REQUEST_BYTES = 1024

_FilterType = rpc_pb2.WatchCreateRequest.FilterType


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    servicer: FakeKV

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _start(max_request_bytes: int | None = None) -> Running:
    options = (
        grpc_server_options()
        if max_request_bytes is None
        else grpc_server_options(max_request_bytes)
    )
    server = grpc.aio.server(options=options)
    servicer = FakeKV()
    assert add_servicer(server, KV_SERVICE, servicer) == ("Range", "Put")
    assert add_servicer(server, WATCH_SERVICE, servicer) == ("Watch",)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    await server.start()
    return Running(server, port, servicer)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    handle = await _start()
    try:
        yield handle
    finally:
        await handle.server.stop(grace=None)


@pytest.fixture
async def channel(running: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(running.target) as chan:
        yield chan


async def test_aetcd_client_puts_and_gets_through_etcd_paths(running: Running) -> None:
    async with aetcd.Client("127.0.0.1", running.port, timeout=int(CALL_TIMEOUT_S)) as client:
        put = await client.put(b"k", b"v")
        got = await client.get(b"k")
        missing = await client.get(b"absent")
    assert put.header.revision == 2
    assert got is not None
    assert (got.key, got.value, got.version, got.mod_revision) == (b"k", b"v", 1, 2)
    assert got.header.revision == 2
    assert missing is None
    assert running.servicer.calls == ["Put", "Range", "Range"]


async def test_aetcd_client_watch_receives_put_event(running: Running) -> None:
    async with aetcd.Client("127.0.0.1", running.port, timeout=int(CALL_TIMEOUT_S)) as client:
        watch = await asyncio.wait_for(client.watch(b"w", prev_kv=True), CALL_TIMEOUT_S)
        await client.put(b"w", b"one")
        await client.put(b"w", b"two")
        events = []
        async with asyncio.timeout(CALL_TIMEOUT_S):
            async for event in watch:
                events.append(event)
                if len(events) == 2:
                    break
        await watch.cancel()
    assert [(e.kind, e.kv.value) for e in events] == [("PUT", b"one"), ("PUT", b"two")]
    # The first put created the key, so its event carries an empty prev_kv.
    assert events[0].prev_kv is not None and events[0].prev_kv.key == b""
    assert events[1].prev_kv is not None and events[1].prev_kv.value == b"one"


async def test_make_stub_put_range_and_header(running: Running, channel: grpc.aio.Channel) -> None:
    kv = make_stub(channel, KV_SERVICE)
    put = await kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=CALL_TIMEOUT_S)
    put_again = await kv.Put(
        rpc_pb2.PutRequest(key=b"a", value=b"2", prev_kv=True), timeout=CALL_TIMEOUT_S
    )
    got = await kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=CALL_TIMEOUT_S)
    assert isinstance(got, rpc_pb2.RangeResponse)
    assert put.header.revision == 2 and put_again.header.revision == 3
    assert put_again.prev_kv.value == b"1"
    assert got.count == 1
    assert (got.kvs[0].value, got.kvs[0].version, got.kvs[0].create_revision) == (b"2", 2, 2)


async def test_make_stub_watch_is_a_bidirectional_stream(
    running: Running, channel: grpc.aio.Channel
) -> None:
    kv = make_stub(channel, KV_SERVICE)
    watch = make_stub(channel, WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S)
    create = rpc_pb2.WatchCreateRequest(
        key=b"w", watch_id=7, prev_kv=True, filters=[_FilterType.NODELETE]
    )
    await watch.write(rpc_pb2.WatchRequest(create_request=create))
    created = await watch.read()
    assert (created.created, created.watch_id) == (True, 7)

    await kv.Put(rpc_pb2.PutRequest(key=b"w", value=b"x"), timeout=CALL_TIMEOUT_S)
    await kv.Put(rpc_pb2.PutRequest(key=b"other", value=b"y"), timeout=CALL_TIMEOUT_S)
    await kv.Put(rpc_pb2.PutRequest(key=b"w", value=b"z"), timeout=CALL_TIMEOUT_S)
    first = await watch.read()
    second = await watch.read()
    assert [r.watch_id for r in (first, second)] == [7, 7]
    assert [r.events[0].kv.value for r in (first, second)] == [b"x", b"z"]
    assert second.events[0].prev_kv.value == b"x"
    assert second.header.revision == 4

    await watch.write(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
    canceled = await watch.read()
    assert (canceled.canceled, canceled.watch_id) == (True, 7)
    await watch.done_writing()
    assert await watch.read() is grpc.aio.EOF
    assert await watch.code() == grpc.StatusCode.OK


async def test_method_the_handler_lacks_is_unimplemented(
    running: Running, channel: grpc.aio.Channel
) -> None:
    kv = make_stub(channel, KV_SERVICE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"a"), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_malformed_request_bytes_are_rejected_before_the_handler(
    running: Running, channel: grpc.aio.Channel
) -> None:
    # A truncated length-delimited field: field 1 (key) claims 127 bytes.
    raw_put = channel.unary_unary("/etcdserverpb.KV/Put")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_put(b"\x0a\x7fshort", timeout=CALL_TIMEOUT_S)
    # etcd (grpc-go) answers an undecodable request with INTERNAL too.
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert running.servicer.calls == []
    assert running.servicer.store == {}


async def test_request_over_the_transport_limit_is_resource_exhausted() -> None:
    handle = await _start(max_request_bytes=SMALL_MAX_REQUEST_BYTES)
    try:
        async with grpc.aio.insecure_channel(handle.target) as chan:
            kv = make_stub(chan, KV_SERVICE)
            # Past max_request_bytes + the 512 KiB gRPC overhead allowance.
            value = b"x" * (SMALL_MAX_REQUEST_BYTES + 512 * 1024 + 1)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await kv.Put(rpc_pb2.PutRequest(key=b"big", value=value), timeout=CALL_TIMEOUT_S)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Just inside the allowance still reaches the handler.
            ok = await kv.Put(
                rpc_pb2.PutRequest(key=b"fits", value=b"x" * SMALL_MAX_REQUEST_BYTES),
                timeout=CALL_TIMEOUT_S,
            )
            assert ok.header.revision == 2
        assert list(handle.servicer.store) == [b"fits"]
    finally:
        await handle.server.stop(grace=None)


async def test_stub_refuses_a_foreign_message_class_before_sending(
    running: Running, channel: grpc.aio.Channel
) -> None:
    # aetcd's PutRequest has the same wire shape, but handing it to syndic's
    # stub is a mix-up; grpc itself would log it and send an empty request.
    kv = make_stub(channel, KV_SERVICE)
    with pytest.raises(TypeError, match=r"expects syndic\.api\.v3\.rpc\.PutRequest"):
        await kv.Put(aetcd.rpc.PutRequest(key=b"a", value=b"b"), timeout=CALL_TIMEOUT_S)
    watch = make_stub(channel, WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S)
    with pytest.raises(TypeError, match="WatchRequest"):
        await watch.write(rpc_pb2.WatchCreateRequest(key=b"a"))
    watch.cancel()
    assert running.servicer.calls in ([], ["Watch"])
    assert running.servicer.store == {}


async def test_malformed_request_on_a_stream_ends_it_with_internal(
    running: Running, channel: grpc.aio.Channel
) -> None:
    raw_watch = channel.stream_stream("/etcdserverpb.Watch/Watch")
    call = raw_watch(timeout=CALL_TIMEOUT_S)
    # Field 1 (create_request) claims 127 bytes and delivers 2.
    await call.write(b"\x0a\x7f\x0a\x00")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "error unmarshalling request" in (caught.value.details() or "")


class WrongAnswer:
    async def Range(self, request: rpc_pb2.RangeRequest, context: object) -> object:
        return rpc_pb2.PutResponse()


async def test_handler_answering_the_wrong_class_is_internal_and_named() -> None:
    server = grpc.aio.server()
    add_servicer(server, KV_SERVICE, WrongAnswer())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await make_stub(chan, KV_SERVICE).Range(
                    rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT_S
                )
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "RangeResponse" in (caught.value.details() or "")
    finally:
        await server.stop(grace=None)


SNAPSHOT_CHUNKS = (b"\x00first", b"second", b"\xfflast")


class YieldingSnapshot:
    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: object
    ) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        remaining = sum(len(chunk) for chunk in SNAPSHOT_CHUNKS)
        for chunk in SNAPSHOT_CHUNKS:
            remaining -= len(chunk)
            yield rpc_pb2.SnapshotResponse(remaining_bytes=remaining, blob=chunk)


class WritingSnapshot:
    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: grpc.aio.ServicerContext
    ) -> None:
        for chunk in SNAPSHOT_CHUNKS:
            await context.write(rpc_pb2.SnapshotResponse(blob=chunk))


@pytest.mark.parametrize(
    "handler", [YieldingSnapshot(), WritingSnapshot()], ids=lambda handler: type(handler).__name__
)
async def test_server_streaming_snapshot_reaches_both_clients(handler: object) -> None:
    server = grpc.aio.server()
    assert add_servicer(server, MAINTENANCE_SERVICE, handler) == ("Snapshot",)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            stub = make_stub(chan, MAINTENANCE_SERVICE)
            call = stub.Snapshot(rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S)
            blobs = [response.blob async for response in call]
        assert tuple(blobs) == SNAPSHOT_CHUNKS
        sink = io.BytesIO()
        async with aetcd.Client("127.0.0.1", port, timeout=int(CALL_TIMEOUT_S)) as client:
            await client.snapshot(sink)
        assert sink.getvalue() == b"".join(SNAPSHOT_CHUNKS)
    finally:
        await server.stop(grace=None)


class WritingWrongClass:
    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: grpc.aio.ServicerContext
    ) -> None:
        await context.write(rpc_pb2.SnapshotResponse(blob=b"ok"))
        await context.write(rpc_pb2.StatusResponse())


async def test_written_response_of_the_wrong_class_ends_the_stream_with_internal() -> None:
    server = grpc.aio.server()
    add_servicer(server, MAINTENANCE_SERVICE, WritingWrongClass())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            call = make_stub(chan, MAINTENANCE_SERVICE).Snapshot(
                rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT_S
            )
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for response in call:
                    received.append(response.blob)
        assert received == [b"ok"]
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "SnapshotResponse" in (caught.value.details() or "")
    finally:
        await server.stop(grace=None)


async def test_iterated_request_of_the_wrong_class_cancels_the_call_unsent(
    running: Running, channel: grpc.aio.Channel
) -> None:
    # grpc.aio cancels a call whose request iterator raises; the point is that
    # the mistyped message never reaches the server as an empty request.
    requests = iter([rpc_pb2.WatchCreateRequest(key=b"a")])
    call = make_stub(channel, WATCH_SERVICE).Watch(requests, timeout=CALL_TIMEOUT_S)
    with pytest.raises(asyncio.CancelledError):
        async for _ in call:
            pass
    assert running.servicer.store == {}
    assert running.servicer.watch_count() == 0
