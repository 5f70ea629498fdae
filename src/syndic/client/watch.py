"""Watch as an async iterator that survives disconnects and member changes.

Each :class:`Watch` owns one gRPC Watch stream. The next revision to deliver
(``next_revision``) advances with every batch handed to the caller; when the
stream breaks (a member killed, restarted, without a leader, a network
blip), the watch reopens on another member from ``next_revision``, so no
event is lost, and drops anything older than it, so none is repeated.
A start revision that was compacted meanwhile ends the watch with
:class:`CompactedError`, whose ``compact_revision`` says where to restart.

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
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Literal

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import WATCH_SERVICE
from syndic.client import convert
from syndic.client.errors import (
    ClientError,
    CompactedError,
    InvalidRequestError,
    UnavailableError,
    WatchCanceledError,
    error_from_status,
)
from syndic.client.transport import Transport
from syndic.client.types import Event, WatchBatch

log = logging.getLogger("syndic.client.watch")

WatchFilter = Literal["noput", "nodelete"]
_FILTERS: Final = {
    "noput": rpc_pb2.WatchCreateRequest.NOPUT,
    "nodelete": rpc_pb2.WatchCreateRequest.NODELETE,
}
# Fragments of one revision joined before the batch is returned; beyond this
# the server is misbehaving (etcd splits at the message limit, so a million
# events would be a revision of many gigabytes).
FRAGMENT_EVENTS_MAX: Final = 1_000_000
# etcd clientv3 sends this so a member without a leader closes the stream
# (ErrGRPCNoLeader) instead of keeping a watcher that sees nothing new.
_REQUIRE_LEADER: Final = (("hasleader", "true"),)
_NO_LEADER: Final = "etcdserver: no leader"


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
        transport: Transport,
        key: bytes,
        range_end: bytes,
        *,
        start_revision: int,
        prev_kv: bool,
        filters: list[Any],
        progress_notify: bool,
        on_close: Any = None,
    ) -> None:
        self._transport = transport
        self._key = key
        self._range_end = range_end
        self._prev_kv = prev_kv
        self._filters = filters
        self._progress_notify = progress_notify
        # 0 means "from now": fixed from the first created response.
        self.next_revision = start_revision
        self._call: Any = None
        self._endpoint: Any = None
        self._fragments: list[Any] = []
        self._pending: list[WatchBatch] = []
        self._created = False
        self._stream_confirmed = False
        self._confirm_timeout_s = transport.config.attempt_timeout_s or transport.config.timeout_s
        self._closed = False
        self._failures = 0
        self._on_close = on_close
        # Counts reconnections and fragments joined, for tests and metrics.
        self.resumes = 0
        self.fragments_received = 0

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
        self._drop_call()
        if self._on_close is not None:
            self._on_close(self)

    async def request_progress(self) -> None:
        """Ask the member for a progress notification now (etcd: WatchProgressRequest)."""
        if self._call is not None:
            await self._call.write(
                rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
            )

    def _drop_call(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._fragments = []

    def _create_request(self) -> rpc_pb2.WatchRequest:
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

    async def _open(self) -> None:
        transport = self._transport
        if transport.config.username is not None and transport.metadata is None:
            await transport.authenticate()
        endpoint = self._endpoint = transport.pick(avoid=self._endpoint)
        metadata = (*(transport.metadata or ()), *_REQUIRE_LEADER)
        call = endpoint.stub(WATCH_SERVICE).Watch(metadata=metadata)
        self._call = call
        self._stream_confirmed = False
        await call.write(self._create_request())

    async def _backoff(self) -> None:
        self._failures += 1
        delay_s = self._transport.config.retry_backoff.delay_s(
            min(self._failures, 20), 0.0, self._transport.rng
        )
        await asyncio.sleep(delay_s)

    async def start(self) -> Watch:
        """Open the stream and wait until the member confirms the watch.

        Changes made after this returns are delivered even when the watch
        was created "from now" (``start_revision`` 0); ``async with`` calls it.
        """
        while not self._closed and not self._created:
            response = await self._read()
            if response is not None:
                batch = self._receive(response)
                if batch is not None:
                    self._pending.append(batch)
        return self

    async def __anext__(self) -> WatchBatch:
        if self._pending:
            return self._pending.pop(0)
        while not self._closed:
            response = await self._read()
            if response is None:
                continue
            batch = self._receive(response)
            if batch is not None:
                return batch
        raise StopAsyncIteration

    async def _read(self) -> rpc_pb2.WatchResponse | None:
        """The next response, or None after a lost stream was dealt with."""
        if self._call is None:
            try:
                await self._open()
            except grpc.aio.AioRpcError as exc:
                await self._lost(exc.code(), exc.details() or "")
                return None
            except UnavailableError as exc:  # no member could issue an auth token
                await self._lost(grpc.StatusCode.UNAVAILABLE, exc.message)
                return None
        try:
            if self._stream_confirmed:
                response = await self._call.read()
            else:
                # A member that takes the request and never confirms it
                # (stopped, overloaded) must not hold the watch: go elsewhere.
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
                # the read's result when a cancel and the read's completion meet,
                # and the cancel is lost: closing a config SDK then waited for
                # its watch task forever.
                async with asyncio.timeout(self._confirm_timeout_s):
                    response = await self._call.read()
        except TimeoutError:
            await self._lost(grpc.StatusCode.UNAVAILABLE, "watch not confirmed in time")
            return None
        except grpc.aio.AioRpcError as exc:
            if not self._closed:
                await self._lost(exc.code(), exc.details() or "")
            return None
        except asyncio.CancelledError:
            if self._closed:
                return None
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The caller gave up waiting (a timeout): grpc.aio ends the
                # whole call with the read, so the next read resumes anew.
                self._drop_call()
                raise
            # The call itself was cancelled underneath us.
            await self._lost(grpc.StatusCode.CANCELLED, "watch stream cancelled")
            return None
        if response is grpc.aio.EOF:
            await self._lost(grpc.StatusCode.UNAVAILABLE, "watch stream ended")
            return None
        return response  # type: ignore[no-any-return]

    async def _lost(self, code: grpc.StatusCode, details: str) -> None:
        """The stream broke: decide whether to resume elsewhere or give up."""
        self._drop_call()
        resumable = (
            code
            in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            or details == _NO_LEADER
        )
        if details == "etcdserver: invalid auth token" and self._transport.config.username:
            await self._transport.authenticate(force=True)
            resumable = True
        if not resumable:
            await self.close()
            raise error_from_status(code, details)
        if self._endpoint is not None:
            self._transport.mark_failed(self._endpoint)
        log.debug(
            "watch on %r lost (%s: %s); resuming from %d",
            self._key,
            code,
            details,
            self.next_revision,
        )
        self.resumes += 1
        await self._backoff()

    def _receive(self, response: rpc_pb2.WatchResponse) -> WatchBatch | None:
        if response.created:
            self._created = True
            self._stream_confirmed = True
            self._failures = 0
            if self._endpoint is not None:
                self._transport.mark_healthy(self._endpoint)
            if self.next_revision == 0:
                self.next_revision = response.header.revision + 1
            # etcd answers a compacted start revision with created, then canceled.
            if not response.canceled:
                return None
        if response.canceled:
            self._drop_call()
            self._closed = True
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


__all__ = ["Watch", "WatchFilter", "cancel_all", "watch_filters"]
