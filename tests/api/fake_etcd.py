"""A tiny in-memory KV and Watch servicer used to exercise the gRPC bindings.

It implements just enough of etcd's semantics (a revision counter, versions,
single-key watches with filters and prev_kv) for real etcd clients to talk
to it; it is not syndic's store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from syndic.api.gen import kv_pb2, rpc_pb2

# Each watch stream buffers at most this many responses; a test that
# overflows it has a bug, and the assertion says so.
WATCH_QUEUE_RESPONSES_MAX = 64

_FilterType = rpc_pb2.WatchCreateRequest.FilterType
_EventType = kv_pb2.Event.EventType


class FakeKV:
    """Serves Range and Put only; DeleteRange, Txn and Compact stay unimplemented."""

    def __init__(self) -> None:
        self.revision = 1
        self.store: dict[bytes, kv_pb2.KeyValue] = {}
        self.calls: list[str] = []
        self._watch_queues: dict[tuple[int, int], asyncio.Queue[rpc_pb2.WatchResponse]] = {}
        self._watches: dict[tuple[int, int], rpc_pb2.WatchCreateRequest] = {}

    def watch_count(self) -> int:
        return len(self._watches)

    def header(self) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=self.revision)

    async def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        self.calls.append("Range")
        kv = self.store.get(request.key)
        kvs = [kv] if kv is not None else []
        return rpc_pb2.RangeResponse(header=self.header(), kvs=kvs, count=len(kvs))

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        self.calls.append("Put")
        previous = self.store.get(request.key)
        self.revision += 1
        kv = kv_pb2.KeyValue(
            key=request.key,
            value=request.value,
            lease=request.lease,
            mod_revision=self.revision,
            create_revision=previous.create_revision if previous else self.revision,
            version=previous.version + 1 if previous else 1,
        )
        self.store[request.key] = kv
        self._notify(kv_pb2.Event(type=_EventType.PUT, kv=kv, prev_kv=previous))
        response = rpc_pb2.PutResponse(header=self.header())
        if request.prev_kv and previous is not None:
            response.prev_kv.CopyFrom(previous)
        return response

    def _notify(self, event: kv_pb2.Event) -> None:
        for (stream_id, watch_id), create in self._watches.items():
            if create.key != event.kv.key or _FilterType.NOPUT in create.filters:
                continue
            delivered = kv_pb2.Event()
            delivered.CopyFrom(event)
            if not create.prev_kv:
                delivered.ClearField("prev_kv")
            queue = self._watch_queues[(stream_id, watch_id)]
            assert queue.qsize() < WATCH_QUEUE_RESPONSES_MAX, "watch queue overflow"
            queue.put_nowait(
                rpc_pb2.WatchResponse(header=self.header(), watch_id=watch_id, events=[delivered])
            )

    async def Watch(
        self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest], context: Any
    ) -> AsyncIterator[rpc_pb2.WatchResponse]:
        self.calls.append("Watch")
        stream_id = id(request_iterator)
        outgoing: asyncio.Queue[rpc_pb2.WatchResponse | None] = asyncio.Queue(
            WATCH_QUEUE_RESPONSES_MAX
        )
        reader = asyncio.ensure_future(
            self._read_watch_requests(stream_id, request_iterator, outgoing)
        )
        try:
            while True:
                response = await outgoing.get()
                if response is None:
                    return
                yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            for key in [key for key in self._watches if key[0] == stream_id]:
                del self._watches[key]
                del self._watch_queues[key]

    async def _read_watch_requests(
        self,
        stream_id: int,
        request_iterator: AsyncIterator[rpc_pb2.WatchRequest],
        outgoing: asyncio.Queue[rpc_pb2.WatchResponse | None],
    ) -> None:
        forwarders: list[asyncio.Future[None]] = []
        try:
            next_watch_id = 100
            async for request in request_iterator:
                kind = request.WhichOneof("request_union")
                if kind == "create_request":
                    create = request.create_request
                    watch_id = create.watch_id or next_watch_id
                    next_watch_id += 1
                    queue: asyncio.Queue[rpc_pb2.WatchResponse] = asyncio.Queue(
                        WATCH_QUEUE_RESPONSES_MAX
                    )
                    self._watches[(stream_id, watch_id)] = create
                    self._watch_queues[(stream_id, watch_id)] = queue
                    await outgoing.put(
                        rpc_pb2.WatchResponse(header=self.header(), watch_id=watch_id, created=True)
                    )
                    forwarders.append(asyncio.ensure_future(_forward(queue, outgoing)))
                elif kind == "cancel_request":
                    watch_id = request.cancel_request.watch_id
                    self._watches.pop((stream_id, watch_id), None)
                    self._watch_queues.pop((stream_id, watch_id), None)
                    await outgoing.put(
                        rpc_pb2.WatchResponse(
                            header=self.header(), watch_id=watch_id, canceled=True
                        )
                    )
            await outgoing.put(None)
        finally:
            for forwarder in forwarders:
                forwarder.cancel()


async def _forward(
    source: asyncio.Queue[rpc_pb2.WatchResponse],
    sink: asyncio.Queue[rpc_pb2.WatchResponse | None],
) -> None:
    while True:
        await sink.put(await source.get())
