"""etcd's Watch service: one bidirectional stream per client, many watchers on it.

Each gRPC stream gets one ``WatchStream`` of the member's hub. A reader task
applies create, cancel and progress requests to it as they arrive; the
handler's sender loop is the only writer to the gRPC stream: it sleeps on one
event, set by the reader or by the servicer, pulls a bounded batch of
responses and writes them. One event and no task per wait matters: a write
watched by a thousand streams reaches a thousand senders. The servicer listens
to the backend once (``backend.watch_listen``) and, after each write, visits
only the streams the hub gave responses (``WatchHub.take_notified``), in one
pass, so a write that nobody watches wakes no sender. A parked sender is not
even woken: the visit writes the stream's responses itself when the call can
take them without waiting (``write_encoded_now``), which spares a task step
per stream per write; the sender is woken only for what has to wait. When
either side ends the stream is closed, dropping its watchers (etcd:
serverWatchStream.close).

Responses leave as wire bytes built by :class:`WatchWireEncoder`: the header
and each event are encoded once for every stream that sends them, and a
watcher created with ``fragment`` gets a response of ``max_request_bytes`` plus
``GRPC_OVERHEAD_BYTES`` or more split into fragments, as etcd does.

Once auth is enabled, a create needs READ on its range, checked when the
watcher is created (etcd: isWatchPermitted); a refusal is answered
created+canceled with etcd's reason and the stream stays open.

Periodic progress (etcd: sendLoop's progressTicker) is per stream: every
``progress_notify_interval_s`` each watcher created with ``progress_notify``
that received no events since the previous tick, is synced and has nothing
queued, gets an empty response at the current revision.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from syndic.api.gen import rpc_pb2
from syndic.api.services import GRPC_OVERHEAD_BYTES, EncodedMessage
from syndic.kv.errors import KvError, WatchError
from syndic.kv.watch import WatchHub, WatchResponse, WatchStream
from syndic.server.backend import Backend, Header
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.auth import AuthGate
from syndic.server.grpc_api.config import GrpcApiConfig
from syndic.server.grpc_api.watch_wire import WatchWireEncoder

log = logging.getLogger("syndic.server.grpc_api.watch")

# etcd: clientv3.InvalidWatchID, the id of a create that failed.
INVALID_WATCH_ID: Final = -1
# Requests the reader may queue ahead of the sender; a full queue stops
# reading, which pushes back on the client through gRPC flow control.
INBOX_REQUESTS_MAX: Final = 128
# etcd: the cancel reason of a denied create is the gRPC error's text.
PERMISSION_DENIED_REASON: Final = (
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
)
# Queued by run() when the client half-closes; never sent by a client.
_END_OF_REQUESTS: Final = rpc_pb2.WatchRequest()


class WatchServicer:
    """Serves ``etcdserverpb.Watch``. ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(
        self,
        backend: Backend,
        config: GrpcApiConfig,
        gate: AuthGate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = _Shared(backend, config, gate, clock)

    async def Watch(
        self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest], context: Any
    ) -> None:
        shared = self._shared
        stream = shared.backend.open_watch_stream()
        session = _WatchSession(shared, stream, context)
        shared.attach(session)
        try:
            await session.run(request_iterator)
        finally:
            shared.detach(session)
            stream.close()


class _Shared:
    """What every Watch stream of one member shares: the wire encoder, the
    header of the latest revision, the one backend listener and the one
    timer that wakes senders for progress and as a safety net."""

    def __init__(
        self, backend: Backend, config: GrpcApiConfig, gate: AuthGate, clock: Callable[[], float]
    ) -> None:
        self.backend = backend
        self.config = config
        self.gate = gate
        self.clock = clock
        self.wire = WatchWireEncoder()
        # Open sessions by their hub stream, and how many each hub has (a
        # member replaces its hub when it installs a snapshot).
        self._sessions: dict[WatchStream, _WatchSession] = {}
        self._hubs: dict[WatchHub, int] = {}
        self._unlisten: Callable[[], None] | None = None
        self._ticker: asyncio.TimerHandle | None = None
        # The header as of the last backend wake-up: read once per write, not
        # once per stream it reaches (responses carry their own revision).
        self._header: Header | None = None

    def header(self) -> Header:
        header = self._header
        if header is None:
            header = self._header = self.backend.header()
        return header

    def attach(self, session: _WatchSession) -> None:
        stream = session.stream
        self._sessions[stream] = session
        self._hubs[stream.hub] = self._hubs.get(stream.hub, 0) + 1
        if self._unlisten is None:
            self._unlisten = self.backend.watch_listen(self._wake_notified)
            self._schedule_tick()

    def detach(self, session: _WatchSession) -> None:
        stream = session.stream
        self._sessions.pop(stream, None)
        left = self._hubs.get(stream.hub, 1) - 1
        if left:
            self._hubs[stream.hub] = left
        else:
            self._hubs.pop(stream.hub, None)
        if not self._sessions and self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    def _wake_notified(self) -> None:
        """The backend applied something: deliver, in one pass, to the streams
        the hub gave responses, and no other."""
        self._header = None
        sessions = self._sessions
        for hub in tuple(self._hubs):
            for stream in hub.take_notified():
                session = sessions.get(stream)
                if session is not None:
                    session.deliver()

    def _schedule_tick(self) -> None:
        self._ticker = asyncio.get_running_loop().call_later(
            self.config.watch_wait_timeout_s, self._tick
        )

    def _tick(self) -> None:
        """Every watch_wait_timeout_s: wake the senders that have progress
        watchers (they check the progress clock) or work left (a safety net
        for a missed wake-up). One timer for all streams: a timer per stream
        cost a thousand wake-ups a second with a thousand idle streams."""
        self._header = None
        for session in self._sessions.values():
            if session.wants_tick():
                session.wake()
        self._schedule_tick()


class _WatchSession:
    """The state of one gRPC Watch stream.

    The reader task only queues requests; the sender task applies them to
    the hub and writes every response, so responses leave in the order the
    requests that caused them arrived (a failed create is answered after
    the created responses of the creates before it).
    """

    def __init__(self, shared: _Shared, stream: WatchStream, context: Any) -> None:
        self._shared = shared
        self._config = shared.config
        self.stream = stream
        self._context = context
        # The sender's wait: a bare future, set at most once per wait (an
        # asyncio.Event costs more per wake-up, and a write reaches many).
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self._inbox: asyncio.Queue[rpc_pb2.WatchRequest] = asyncio.Queue(INBOX_REQUESTS_MAX)
        # Live watch ids of this stream, for the per-stream bound.
        self._active: set[int] = set()
        # Watchers that asked for progress_notify -> "no events since last tick".
        self._progress: dict[int, bool] = {}
        # Watchers created with fragment=true (etcd: serverWatchStream.fragment).
        self._fragment: set[int] = set()
        # The call's non-waiting write of WatchResponse bytes, if it has one
        # (syndic's HTTP/2 server).
        self._write_now: Callable[[bytes], bool] | None = getattr(
            context, "write_encoded_now", None
        )
        # Responses pulled and encoded by deliver() that had to wait: the
        # sender writes them before anything it pulls itself. At most one
        # pull's worth: deliver() adds only to an empty carry.
        self._carry: collections.deque[bytes] = collections.deque()
        # What went wrong in deliver(): the sender raises it, ending the call.
        self._failure: BaseException | None = None

    def wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self) -> None:
        """The hub gave this stream responses: write them now if the sender is
        parked and the call takes them without waiting, else wake the sender.

        Runs in the backend's wake-up, so it never raises: a failure is
        handed to the sender, which ends the call with it.
        """
        waiter = self._waiter
        write_now = self._write_now
        if (
            write_now is None
            or waiter is None
            or waiter.done()
            or self._carry
            or self._failure is not None
            or not self._inbox.empty()
        ):
            self.wake()
            return
        try:
            payloads = self._pull_payloads()
            for i, payload in enumerate(payloads):
                if not write_now(payload):
                    self._carry.extend(payloads[i:])
                    self.wake()
                    return
            if self.stream.pending():
                self.wake()  # more than one pull's worth, or history to replay
        except Exception as exc:
            log.exception("watch delivery failed")
            self._failure = exc
            self.wake()

    def wants_tick(self) -> bool:
        return bool(self._progress) or self.stream.pending() > 0

    async def run(self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest]) -> None:
        reader = asyncio.create_task(self._read(request_iterator))
        sender = asyncio.create_task(self._send())
        try:
            done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.exception() is None:
                # etcd ends the RPC when the client half-closes, after the
                # requests already received are answered.
                await self._inbox.put(_END_OF_REQUESTS)
                self.wake()
                await sender
        finally:
            for task in (reader, sender):
                task.cancel()
            # Collected, not raised: when the client goes away, gRPC cancels
            # this handler while a write of the sender fails on the dead
            # stream, and that failure must not replace the cancellation
            # (it would be reported as an unexpected handler error).
            await asyncio.gather(reader, sender, return_exceptions=True)
        for task in (reader, sender):
            if not task.cancelled():
                task.result()  # errors propagate

    # ------------------------------------------------------------- reader

    async def _read(self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest]) -> None:
        async for request in request_iterator:
            await self._inbox.put(request)
            self.wake()

    async def _handle(self, request: rpc_pb2.WatchRequest) -> None:
        kind = request.WhichOneof("request_union")
        if kind == "create_request":
            await self._create(request.create_request)
        elif kind == "cancel_request":
            self._cancel(request.cancel_request.watch_id)
        elif kind == "progress_request":
            self.stream.request_progress()
        # etcd ignores a request with no union member set.

    async def _create(self, pb: rpc_pb2.WatchCreateRequest) -> None:
        if not await self._shared.gate.watch_permitted(self._context, pb.key, pb.range_end):
            await self._refuse_create(PERMISSION_DENIED_REASON)
            return
        try:
            if len(self._active) >= self._config.watchers_per_stream_max:
                raise WatchError(
                    f"stream holds {self._config.watchers_per_stream_max} watchers already"
                )
            watch_id = self.stream.create(convert.watch_create_from_pb(pb))
        except KvError as exc:
            await self._refuse_create(str(exc))
            return
        self._active.add(watch_id)
        if pb.progress_notify:
            self._progress[watch_id] = True
        if pb.fragment:
            self._fragment.add(watch_id)

    async def _refuse_create(self, reason: str) -> None:
        # etcd: a failed create is answered created+canceled with the
        # reason, and the stream stays open.
        await self._context.write(
            rpc_pb2.WatchResponse(
                header=convert.header_pb(self._shared.backend.header()),
                watch_id=INVALID_WATCH_ID,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    def _cancel(self, watch_id: int) -> None:
        # etcd: cancelling an unknown id sends nothing.
        with contextlib.suppress(WatchError):
            self.stream.cancel(watch_id)

    # ------------------------------------------------------------- sender

    async def _send(self) -> None:
        clock = self._shared.clock
        interval_s = self._config.progress_notify_interval_s
        next_progress_s = clock() + interval_s
        stream = self.stream
        inbox = self._inbox
        while True:
            self._woken = False
            if self._failure is not None:
                raise self._failure
            while not inbox.empty():
                request = inbox.get_nowait()
                await self._flush()
                if request is _END_OF_REQUESTS:
                    return
                await self._handle(request)
            await self._flush()
            if stream.pending() or not inbox.empty():
                continue  # more than one pull's worth, or history to replay
            if self._progress:
                now_s = clock()
                if now_s >= next_progress_s:
                    await self._progress_tick()
                    next_progress_s = now_s + interval_s
            if not self._woken:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    async def _flush(self) -> None:
        """Write what deliver() left waiting, then one pulled batch of the hub's responses."""
        write = self._context.write
        carry = self._carry
        while carry:
            await write(EncodedMessage(rpc_pb2.WatchResponse, carry[0]))
            carry.popleft()
        for payload in self._pull_payloads():
            await write(EncodedMessage(rpc_pb2.WatchResponse, payload))

    def _pull_payloads(self) -> list[bytes]:
        """One pulled batch of the hub's responses as wire bytes, in order."""
        responses = self.stream.pull(self._config.watch_pull_responses_max)
        if not responses:
            return []
        shared = self._shared
        header = shared.header()
        encode = shared.wire.encode
        fragment = self._fragment
        # etcd: serverWatchStream.maxRequestBytes is the request limit plus
        # gRPC's overhead allowance, and fragments are cut at that size.
        fragment_bytes_max = self._config.max_request_bytes + GRPC_OVERHEAD_BYTES
        out: list[bytes] = []
        for resp in responses:
            out += encode(resp, header, fragment_bytes_max if resp.watch_id in fragment else None)
            self._account(resp)
        return out

    def _account(self, resp: WatchResponse) -> None:
        if resp.canceled:
            self._active.discard(resp.watch_id)
            self._progress.pop(resp.watch_id, None)
            self._fragment.discard(resp.watch_id)
        elif resp.events and resp.watch_id in self._progress:
            self._progress[resp.watch_id] = False

    async def _progress_tick(self) -> None:
        header = self._shared.backend.header()
        for watch_id, idle in list(self._progress.items()):
            self._progress[watch_id] = True
            if not idle:
                continue
            try:
                watcher = self.stream.watcher(watch_id)
            except WatchError:
                self._progress.pop(watch_id, None)
                continue
            # Only a synced watcher with nothing queued has delivered every
            # event up to the current revision (the bookmark promise).
            if watcher.synced and not watcher.buffer:
                await self._context.write(
                    rpc_pb2.WatchResponse(header=convert.header_pb(header), watch_id=watch_id)
                )
