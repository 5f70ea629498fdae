"""syndic's own gRPC server on 127.0.0.1, serving a servicer whose behaviour
each request picks, so a test can make a handler block, abort, raise or
stream without writing its own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.api.services import (
    KV_SERVICE,
    MAINTENANCE_SERVICE,
    WATCH_SERVICE,
    add_servicer,
    make_stub,
)
from syndic.server.h2 import GrpcServer, ServerLimits
from tests.server.h2.raw_client import RawClient

# A bound on every call and wait, so a broken server fails a test instead of
# hanging it; far above the milliseconds anything here takes on loopback.
CALL_TIMEOUT_S = 10.0

RANGE_PATH = "/etcdserverpb.KV/Range"
WATCH_PATH = "/etcdserverpb.Watch/Watch"
SNAPSHOT_PATH = "/etcdserverpb.Maintenance/Snapshot"

# Range's key picks what the handler does.
KEY_BLOCK = b"block"  # wait for Probe.release; counted in Probe.running
KEY_ABORT = b"abort"  # abort with code ``limit`` and message ``range_end`` (UTF-8)
KEY_RAISE = b"raise"  # raise an exception
KEY_METADATA = b"metadata"  # answer the invocation metadata as kvs
WATCH_ID_BLOCK = 999_999  # a Watch request with this id stops the handler reading
# Any other key is echoed: count = len(key), kvs = [key].

# Watch echoes each request's cancel_request.watch_id; a negative one ends
# the call at once, leaving later requests unread.


class Probe:
    """The servicer: KV.Range, Watch.Watch and Maintenance.Snapshot."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0  # blocking handlers that have begun
        self.running = 0  # blocking handlers not yet returned
        self.cancelled = 0  # handlers that saw CancelledError
        self.ignore_cancel = False  # blocking handlers keep waiting when cancelled
        # Snapshot writes snapshot_count messages of snapshot_chunk_bytes each,
        # after waiting for ``release`` if snapshot_waits.
        self.snapshot_count = 1
        self.snapshot_chunk_bytes = 16
        self.snapshot_waits = False
        self.snapshot_written = 0  # messages whose write() has returned
        # Write with write_now() first, and await write() only when it refuses.
        self.snapshot_write_now = False
        self.snapshot_write_now_refused = 0

    async def wait_started(self, count: int = 1) -> None:
        await wait_until(lambda: self.started >= count, f"{count} handlers have started")

    async def wait_cancelled(self, count: int = 1) -> None:
        """``count`` handlers saw CancelledError, and none is left running."""
        await wait_until(
            lambda: self.cancelled >= count and self.running == 0,
            f"{count} handlers are cancelled",
        )

    async def _block(self) -> None:
        self.started += 1
        self.running += 1
        try:
            while True:
                try:
                    await self.release.wait()
                    return
                except asyncio.CancelledError:
                    self.cancelled += 1
                    if not self.ignore_cancel:
                        raise
        finally:
            self.running -= 1

    async def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        if request.key == KEY_BLOCK:
            await self._block()
        elif request.key == KEY_ABORT:
            await context.abort(status_code(request.limit), request.range_end.decode())
        elif request.key == KEY_RAISE:
            raise RuntimeError("handler bug")
        elif request.key == KEY_METADATA:
            kvs = [
                kv_pb2.KeyValue(
                    key=name.encode(), value=value if isinstance(value, bytes) else value.encode()
                )
                for name, value in context.invocation_metadata()
            ]
            return rpc_pb2.RangeResponse(kvs=kvs)
        return rpc_pb2.RangeResponse(count=len(request.key), kvs=[kv_pb2.KeyValue(key=request.key)])

    async def Watch(
        self, requests: AsyncIterator[rpc_pb2.WatchRequest], context: Any
    ) -> AsyncIterator[rpc_pb2.WatchResponse]:
        async for request in requests:
            watch_id = request.cancel_request.watch_id
            if watch_id < 0:
                return
            if watch_id == WATCH_ID_BLOCK:
                await self._block()
            yield rpc_pb2.WatchResponse(watch_id=watch_id)

    async def Snapshot(self, request: rpc_pb2.SnapshotRequest, context: Any) -> None:
        if self.snapshot_waits:
            await self._block()
        for i in range(self.snapshot_count):
            blob = bytes([i % 251]) * self.snapshot_chunk_bytes
            message = rpc_pb2.SnapshotResponse(remaining_bytes=i, blob=blob)
            if self.snapshot_write_now and context.write_now(message):
                self.snapshot_written += 1
                continue
            if self.snapshot_write_now:
                self.snapshot_write_now_refused += 1
            await context.write(message)
            self.snapshot_written += 1


def status_code(number: int) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == number)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the server until ``condition()`` holds (bounded by CALL_TIMEOUT_S)."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while not condition():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def range_request(key: bytes, **fields: Any) -> bytes:
    return rpc_pb2.RangeRequest(key=key, **fields).SerializeToString()


def watch_request(watch_id: int) -> bytes:
    cancel = rpc_pb2.WatchCancelRequest(watch_id=watch_id)
    return rpc_pb2.WatchRequest(cancel_request=cancel).SerializeToString()


@dataclass
class Running:
    server: GrpcServer
    port: int
    probe: Probe

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def assert_serves(self) -> None:
        """A fresh grpc.aio client still gets an answer: bad input changed nothing."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            response = await make_stub(channel, KV_SERVICE).Range(
                rpc_pb2.RangeRequest(key=b"still-ok"), timeout=CALL_TIMEOUT_S
            )
        assert list(response.kvs) == [kv_pb2.KeyValue(key=b"still-ok")]


async def start_server(
    limits: ServerLimits | None = None, tls: ssl.SSLContext | None = None
) -> Running:
    """A server on a port of 127.0.0.1 the kernel picks; with TLS if ``tls`` is given."""
    server = GrpcServer(limits)
    probe = Probe()
    add_servicer(server, KV_SERVICE, probe)
    add_servicer(server, WATCH_SERVICE, probe)
    add_servicer(server, MAINTENANCE_SERVICE, probe)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", tls)
    await server.start()
    return Running(server, port, probe)


Serve = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start servers with the given ServerLimits; all are stopped after the test."""
    started: list[Running] = []

    async def start(
        limits: ServerLimits | None = None, tls: ssl.SSLContext | None = None
    ) -> Running:
        running = await start_server(limits, tls)
        started.append(running)
        return running

    yield start
    for running in started:
        running.probe.release.set()
        await running.server.stop(grace=None)


@pytest.fixture
async def running(serve: Serve) -> Running:
    return await serve()


Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open raw HTTP/2 clients (RawClient.connect's arguments); all closed after the test."""
    clients: list[RawClient] = []

    async def open_client(port: int, **kwargs: Any) -> RawClient:
        client = await RawClient.connect(port, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
