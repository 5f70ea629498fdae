"""Watch over real gRPC: creates, events, filters, cancels, compaction, progress, bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, WATCH_SERVICE
from syndic.server.grpc_api import GrpcApiConfig
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.watch import WatchServicer
from tests.server.grpc_api.conftest import (
    CALL_TIMEOUT_S,
    TEST_WATCH_WAIT_TIMEOUT_S,
    Served,
    start_served,
    stop_served,
)
from tests.server.grpc_api.local_backend import LocalBackend

_Filter = rpc_pb2.WatchCreateRequest.FilterType


def create(**kw: Any) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(**kw))


async def read(call: Any) -> rpc_pb2.WatchResponse:
    return await asyncio.wait_for(call.read(), CALL_TIMEOUT_S)


async def put(served: Served, key: bytes, value: bytes) -> int:
    resp = await served.stub(KV_SERVICE).Put(  # type: ignore[attr-defined]
        rpc_pb2.PutRequest(key=key, value=value), timeout=CALL_TIMEOUT_S
    )
    return int(resp.header.revision)


async def delete(served: Served, key: bytes) -> None:
    await served.stub(KV_SERVICE).DeleteRange(  # type: ignore[attr-defined]
        rpc_pb2.DeleteRangeRequest(key=key), timeout=CALL_TIMEOUT_S
    )


@pytest.fixture
async def watch(served: Served) -> AsyncIterator[Any]:
    call = served.stub(WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S * 3)  # type: ignore[attr-defined]
    try:
        yield call
    finally:
        call.cancel()


async def test_prefix_watch_with_prev_kv_and_filters(served: Served, watch: Any) -> None:
    await watch.write(create(key=b"w/", range_end=b"w0", prev_kv=True, watch_id=5))
    created = await read(watch)
    assert (created.created, created.watch_id, created.header.revision) == (True, 5, 1)
    await watch.write(create(key=b"w/a", filters=[_Filter.NOPUT]))
    only_deletes = await read(watch)
    assert only_deletes.created and only_deletes.watch_id == 0
    await put(served, b"w/a", b"1")
    await put(served, b"other", b"x")
    await put(served, b"w/a", b"2")
    await delete(served, b"w/a")
    seen: list[tuple[int, int, bytes, bytes]] = []
    while len(seen) < 4:
        resp = await read(watch)
        for ev in resp.events:
            seen.append((resp.watch_id, ev.type, ev.kv.value, ev.prev_kv.value))
        assert resp.header.revision == resp.events[-1].kv.mod_revision
    assert seen == [
        (5, 0, b"1", b""),
        (5, 0, b"2", b"1"),
        (5, 1, b"", b"2"),
        (0, 1, b"", b""),
    ]


async def test_start_revision_replays_history_then_follows(served: Served, watch: Any) -> None:
    for i in range(3):
        await put(served, b"h", str(i).encode())
    await watch.write(create(key=b"h", start_revision=3))
    assert (await read(watch)).created
    replay = await read(watch)
    assert [ev.kv.value for ev in replay.events] == [b"1", b"2"]
    await put(served, b"h", b"3")
    live = await read(watch)
    assert [ev.kv.value for ev in live.events] == [b"3"]


async def test_compacted_start_revision_is_canceled_with_compact_revision(
    served: Served, watch: Any
) -> None:
    for i in range(4):
        await put(served, b"c", str(i).encode())
    await served.stub(KV_SERVICE).Compact(  # type: ignore[attr-defined]
        rpc_pb2.CompactionRequest(revision=4), timeout=CALL_TIMEOUT_S
    )
    await watch.write(create(key=b"c", start_revision=2, watch_id=9))
    created = await read(watch)
    canceled = await read(watch)
    assert created.created and created.watch_id == 9
    assert (canceled.canceled, canceled.watch_id, canceled.compact_revision) == (True, 9, 4)


async def test_cancel_stops_events_and_unknown_cancel_is_ignored(
    served: Served, watch: Any
) -> None:
    await watch.write(create(key=b"x", watch_id=3))
    assert (await read(watch)).created
    await watch.write(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=42)))
    await watch.write(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=3)))
    canceled = await read(watch)
    assert (canceled.canceled, canceled.watch_id) == (True, 3)
    await put(served, b"x", b"after")
    # A new watcher on the same stream proves the stream is alive and the old one is gone.
    await watch.write(create(key=b"y", watch_id=4))
    nxt = await read(watch)
    assert (nxt.created, nxt.watch_id) == (True, 4)
    assert len(served.backend.hub._streams) == 1


async def test_failed_create_answers_created_and_canceled(served: Served, watch: Any) -> None:
    await watch.write(create(key=b"a", watch_id=1))
    assert (await read(watch)).created
    await watch.write(create(key=b"b", watch_id=1))
    dup = await read(watch)
    assert (dup.created, dup.canceled, dup.watch_id) == (True, True, -1)
    assert "watch id 1 already exists" in dup.cancel_reason
    await watch.write(create(key=b"b", filters=[7]))
    bad = await read(watch)
    assert bad.canceled and "unknown watch filter" in bad.cancel_reason
    # Still serving the first watcher.
    await put(served, b"a", b"1")
    assert [ev.kv.key for ev in (await read(watch)).events] == [b"a"]


async def test_empty_key_watches_from_the_smallest_key(served: Served, watch: Any) -> None:
    await watch.write(create(key=b"", range_end=b"\0"))
    assert (await read(watch)).created
    await put(served, b"anything", b"1")
    assert [ev.kv.key for ev in (await read(watch)).events] == [b"anything"]


async def test_watchers_per_stream_are_bounded() -> None:
    served = await start_served(
        config=GrpcApiConfig(watchers_per_stream_max=2, watch_wait_timeout_s=0.02)
    )
    call = served.stub(WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S)  # type: ignore[attr-defined]
    try:
        for key in (b"a", b"b", b"c"):
            await call.write(create(key=key))
        first, second, third = [await read(call) for _ in range(3)]
        assert [r.canceled for r in (first, second, third)] == [False, False, True]
        assert "2 watchers" in third.cancel_reason
    finally:
        call.cancel()
        await stop_served(served)


async def test_progress_request_and_periodic_progress(served: Served, watch: Any) -> None:
    await watch.write(create(key=b"p", progress_notify=True, watch_id=2))
    await watch.write(create(key=b"q", watch_id=3))
    assert (await read(watch)).created and (await read(watch)).created
    await put(served, b"zz", b"unwatched")  # revision 2, no events for either watcher
    await watch.write(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
    requested = {(r.watch_id, r.header.revision) for r in [await read(watch), await read(watch)]}
    assert requested == {(2, 2), (3, 2)}
    # Periodic progress only for the watcher that asked, once the interval passes.
    served.clock.now_s += served.config.progress_notify_interval_s + 1
    periodic = await read(watch)
    assert (periodic.watch_id, periodic.header.revision, len(periodic.events)) == (2, 2, 0)
    assert not periodic.created and not periodic.canceled


async def test_stream_end_closes_hub_stream(served: Served) -> None:
    call = served.stub(WATCH_SERVICE).Watch(timeout=CALL_TIMEOUT_S)  # type: ignore[attr-defined]
    await call.write(create(key=b"k"))
    assert (await read(call)).created
    assert len(served.backend.hub._streams) == 1
    await call.done_writing()
    # etcd ends the RPC when the client half-closes.
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while len(served.backend.hub._streams):
            await asyncio.sleep(TEST_WATCH_WAIT_TIMEOUT_S)
    assert await call.code() is not None


class _DyingStream:
    """A servicer context whose client is gone: a write fails and gRPC
    cancels the handler at the same time, as grpc.aio does on a disconnect."""

    def __init__(self) -> None:
        self.handler: asyncio.Task[None] | None = None

    async def write(self, response: rpc_pb2.WatchResponse) -> None:
        assert self.handler is not None
        self.handler.cancel()
        raise RuntimeError("execute_batch failed: the stream is gone")

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def invocation_metadata(self) -> tuple[()]:
        return ()


async def test_a_client_gone_mid_write_cancels_the_handler_quietly() -> None:
    # The failed write must not replace the cancellation: the error wrapper
    # would log it as an unexpected handler error and count UNKNOWN.
    backend = LocalBackend()
    config = GrpcApiConfig(watch_wait_timeout_s=TEST_WATCH_WAIT_TIMEOUT_S)
    servicer = WatchServicer(backend, config, AuthGate(backend, None, lambda: 0.0))
    requests: asyncio.Queue[rpc_pb2.WatchRequest] = asyncio.Queue()
    await requests.put(create(key=b"k"))

    async def request_iterator() -> AsyncIterator[rpc_pb2.WatchRequest]:
        while True:
            yield await requests.get()

    context = _DyingStream()
    context.handler = asyncio.create_task(servicer.Watch(request_iterator(), context))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(context.handler, CALL_TIMEOUT_S)
