"""Watch as an async iterator that survives disconnects and member changes.

Every watch of a client rides on the client's one gRPC Watch stream
(:mod:`syndic.client.watch_mux`), as in etcd's clientv3. The next revision
to deliver (``next_revision``) advances with every batch received; when
the stream breaks (a member killed, restarted, without a leader, a network
blip), each watch is created again on another member from its own
``next_revision``, so no event is lost, and drops anything older than it,
so none is repeated. A start revision that was compacted meanwhile ends the
watch with :class:`CompactedError`, whose ``compact_revision`` says where
to restart.

Fragments (etcd's ``fragment`` option, on by default here so a revision of
any size fits the message limit) are joined before the batch is returned.

Example::

    async with client.watch(b"app/", prefix=True, prev_kv=True) as watch:
        async for batch in watch:
            for event in batch.events:
                print(event.type, event.kv.key, event.kv.value)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Literal

from syndic.api.gen import rpc_pb2
from syndic.client import convert
from syndic.client.config import WATCH_BUFFERED_EVENTS_MAX_DEFAULT
from syndic.client.errors import (
    ClientError,
    CompactedError,
    InvalidRequestError,
    WatchCanceledError,
)
from syndic.client.types import Event, WatchBatch
from syndic.client.watch_mux import WatchMux

WatchFilter = Literal["noput", "nodelete"]
_FILTERS: Final = {
    "noput": rpc_pb2.WatchCreateRequest.NOPUT,
    "nodelete": rpc_pb2.WatchCreateRequest.NODELETE,
}
# Fragments of one revision joined before the batch is returned; beyond this
# the server is misbehaving (etcd splits at the message limit, so a million
# events would be a revision of many gigabytes).
FRAGMENT_EVENTS_MAX: Final = 1_000_000


def watch_filters(filters: Iterable[object]) -> list[Any]:
    chosen = []
    for item in filters:
        if not isinstance(item, str) or item.lower() not in _FILTERS:
            raise InvalidRequestError(
                f"watch filter must be one of {sorted(_FILTERS)}, got {item!r}"
            )
        chosen.append(_FILTERS[item.lower()])
    return chosen


class Watch:
    """An async iterator of :class:`WatchBatch`; see the module docstring."""

    def __init__(
        self,
        mux: WatchMux,
        key: bytes,
        range_end: bytes,
        *,
        start_revision: int,
        prev_kv: bool,
        filters: list[Any],
        progress_notify: bool,
        buffered_events_max: int = WATCH_BUFFERED_EVENTS_MAX_DEFAULT,
        on_close: Any = None,
    ) -> None:
        self._mux = mux
        self._key = key
        self._range_end = range_end
        self._prev_kv = prev_kv
        self._filters = filters
        self._progress_notify = progress_notify
        # 0 means "from now": fixed from the first created response.
        self.next_revision = start_revision
        # The watcher's id on the current stream, None while it has none.
        self.watch_id: int | None = None
        # Bumped by the stream each time it asks for a watcher for this watch.
        self.attachment = 0
        self._fragments: list[Any] = []
        # Batches (or the error that ended the watch) not yet taken by the reader.
        self._queue: deque[WatchBatch | ClientError] = deque()
        self._queued_events = 0
        self._buffered_events_max = buffered_events_max
        # Detached from the stream because the reader fell behind; attached
        # again from next_revision once the queue is drained.
        self._suspended = False
        self._wake = asyncio.Event()
        self._created = False
        self._closed = False
        self._on_close = on_close
        # Counts reconnections and fragments joined, for tests and metrics.
        self.resumes = 0
        self.fragments_received = 0

    @property
    def _endpoint(self) -> Any:
        """The member whose stream carries this watch (None before it is created)."""
        return self._mux.endpoint if self.watch_id is not None else None

    def __aiter__(self) -> Watch:
        return self

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End the watch; a pending ``__anext__`` ends with StopAsyncIteration."""
        if self._closed:
            return
        self._closed = True
        self._mux.detach(self)
        self._wake.set()
        if self._on_close is not None:
            self._on_close(self)

    async def request_progress(self) -> None:
        """Ask the member for a progress notification now (etcd: WatchProgressRequest).

        As in etcd, every watch of this client's stream gets one."""
        self._mux.request_progress()

    def create_request(self) -> rpc_pb2.WatchRequest:
        """The create request that resumes this watch from ``next_revision``."""
        # Fragments of a revision not yet whole are sent again in full.
        self._fragments = []
        return rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=self._key,
                range_end=self._range_end,
                start_revision=self.next_revision,
                progress_notify=self._progress_notify,
                filters=self._filters,
                prev_kv=self._prev_kv,
                fragment=True,
            )
        )

    async def start(self) -> Watch:
        """Create the watcher and wait until the member confirms it.

        Changes made after this returns are delivered even when the watch
        was created "from now" (``start_revision`` 0); ``async with`` calls
        it. A watch the server refuses raises its typed error here.
        """
        if self._closed:
            return self
        if not self._suspended:
            self._mux.attach(self)
        while not self._closed and not self._created and not self._queue:
            self._wake.clear()
            await self._wake.wait()
        if not self._created and self._queue:
            refusal = self._queue[0]
            if isinstance(refusal, ClientError):
                self._queue.popleft()
                raise refusal
        return self

    async def __anext__(self) -> WatchBatch:
        if not self._created and not self._closed:
            await self.start()
        while True:
            if self._queue:
                return self._take()
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    def _take(self) -> WatchBatch:
        item = self._queue.popleft()
        if isinstance(item, ClientError):
            raise item
        self._queued_events -= len(item.events)
        if self._suspended and not self._queue and not self._closed:
            self._suspended = False
            self._mux.attach(self)
        return item

    # ------------------------------------------------------------ from the stream

    def deliver(self, response: rpc_pb2.WatchResponse) -> None:
        """Take one response of this watch's watcher (called by the stream)."""
        try:
            batch = self._receive(response)
        except ClientError as exc:
            self.fail(exc)
            return
        if batch is None:
            return
        self._queue.append(batch)
        self._queued_events += len(batch.events)
        self._wake.set()
        if self._queued_events > self._buffered_events_max and not self._suspended:
            # The reader fell behind: stop the flow rather than buffer without bound.
            self._suspended = True
            self._mux.detach(self)

    def deliver_stream_progress(self, revision: int) -> None:
        """etcd 3.4's progress answer for the whole stream (watch id -1).

        It is a progress notice for this watch but, unlike a watcher's own,
        does not move ``next_revision``: etcd 3.4 sends it at the store's
        revision even to a watcher still catching up on older events."""
        if self._created and not self._fragments:
            self._queue.append(WatchBatch(revision, []))
            self._wake.set()

    def fail(self, error: ClientError) -> None:
        """End the watch with ``error``, raised after the batches already queued."""
        self._queue.append(error)
        self._closed = True
        self._mux.detach(self)
        self._wake.set()
        if self._on_close is not None:
            self._on_close(self)

    def _receive(self, response: rpc_pb2.WatchResponse) -> WatchBatch | None:
        if response.created:
            self._created = True
            if self.next_revision == 0:
                self.next_revision = response.header.revision + 1
            # etcd answers a compacted start revision with created, then canceled.
            if not response.canceled:
                self._wake.set()
                return None
        if response.canceled:
            self._fragments = []
            if response.compact_revision:
                raise CompactedError(response.compact_revision)
            raise WatchCanceledError(
                f"watch canceled by the server: {response.cancel_reason or 'no reason given'}"
            )
        if response.fragment:
            self.fragments_received += 1
            self._fragments.extend(response.events)
            if len(self._fragments) > FRAGMENT_EVENTS_MAX:
                raise ClientError(f"watch fragments over {FRAGMENT_EVENTS_MAX} events")
            return None
        raw = [*self._fragments, *response.events] if self._fragments else response.events
        self._fragments = []
        floor = self.next_revision
        # After a resume the member may repeat what was already delivered.
        events: list[Event] = [convert.event(ev) for ev in raw if ev.kv.mod_revision >= floor]
        if events:
            self.next_revision = events[-1].kv.mod_revision + 1
            return WatchBatch(response.header.revision, events)
        if raw:
            return None  # only repeats
        # A progress notice: every change up to the header revision was sent.
        self.next_revision = max(self.next_revision, response.header.revision + 1)
        return WatchBatch(response.header.revision, [])

    def __repr__(self) -> str:
        return f"Watch(key={self._key!r}, next_revision={self.next_revision})"


async def cancel_all(watches: Iterable[Watch]) -> None:
    for watch in list(watches):
        await watch.close()


__all__ = ["Watch", "WatchFilter", "WatchMux", "cancel_all", "watch_filters"]
