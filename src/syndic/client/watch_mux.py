"""One gRPC Watch stream per client, carrying every watch of that client.

etcd's Watch RPC is a bidirectional stream on which a client creates and
cancels any number of watchers; each response names its watcher by
``watch_id``. etcd's clientv3 keeps one stream per client and multiplexes
every watch on it; so does this module (one stream, one HTTP/2 stream on
the server, one set of server resources, however many watches).

* **Create**: a create request goes out on the stream; the member answers
  creates in the order they arrived (etcd's recvLoop is sequential, and
  a refused create is answered ``created`` and ``canceled`` with watch id
  -1), so created responses are matched first in, first out with the creates
  in flight. Requests are written by one writer task per stream, in the
  order they were queued, so a caller cancelled mid-create cannot reorder
  them.
* **Cancel**: the watch leaves the id map at once, so late events for it
  are dropped, and a cancel request goes out; a watch closed before its
  create was answered is cancelled when the answer comes.
* **Resume**: when the stream breaks (member killed, restarted, left
  without a leader, a network blip) it is reopened on another member and
  every watch is created again from its own ``next_revision``: nothing it
  delivered is repeated and nothing after it is lost (each
  :class:`~syndic.client.watch.Watch` drops anything older, and its
  partial fragments, on its own).
* **A member that does not confirm** a create within the confirm timeout
  (stopped, overloaded) is given up: the stream is reopened elsewhere.
* **A slow reader** cannot grow memory without bound or stall the other
  watches: past ``watch_buffered_events_max`` queued events its watcher is
  cancelled on the server and created again from where its queue ends once
  the reader has drained it (no loss, no repeat, unless compacted meanwhile,
  which is then reported as :class:`CompactedError`).
* The stream closes when its last watch does (as clientv3 does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import WATCH_SERVICE
from syndic.client.errors import (
    ClientError,
    ClosedError,
    InvalidRequestError,
    UnavailableError,
    error_from_status,
)
from syndic.client.transport import Transport

if TYPE_CHECKING:
    from syndic.client.watch import Watch

log = logging.getLogger("syndic.client.watch")

# etcd: clientv3.InvalidWatchID; the id of a refused create, and (etcd 3.4)
# of a progress response meant for every watcher on the stream.
INVALID_WATCH_ID: Final = -1
# etcd clientv3 sends this so a member without a leader closes the stream
# (ErrGRPCNoLeader) instead of keeping watchers that see nothing new.
_REQUIRE_LEADER: Final = (("hasleader", "true"),)
_NO_LEADER: Final = "etcdserver: no leader"
_INVALID_TOKEN: Final = "etcdserver: invalid auth token"
# Stream failures after which the watches resume on another member.
_RESUMABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
# Backoff steps are capped here; the backoff itself is capped in seconds.
_BACKOFF_STEPS_MAX: Final = 20


class _StreamLostError(Exception):
    """The current stream broke or stalled; ``code`` and ``details`` say how."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class WatchMux:
    """The one Watch stream of a client and the task that reads it; see the module docstring."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        config = transport.config
        self._confirm_timeout_s = config.attempt_timeout_s or config.timeout_s
        self._watches_max = config.watch_stream_watches_max
        # Watches that want a watcher on the server, in attach order.
        self._watches: dict[Watch, None] = {}
        # For the current stream: confirmed watches by id, and creates in
        # flight in the order they were written (FIFO-matched to created).
        self._by_id: dict[int, Watch] = {}
        self._creating: deque[tuple[Watch, int, float]] = deque()
        self._outbox: asyncio.Queue[rpc_pb2.WatchRequest] | None = None
        self._call: Any = None
        self._stalled = False
        # The stream was cancelled because its last watch left.
        self._idle = False
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.endpoint: Any = None
        # Streams opened, for tests and metrics: one per client while it lives.
        self.streams_opened = 0

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    # ------------------------------------------------------------ watches

    def attach(self, watch: Watch) -> None:
        """Ask for a watcher on the server for ``watch``, from its ``next_revision``."""
        if self._closed:
            raise ClosedError("the client is closed")
        if watch in self._watches:
            return
        if len(self._watches) >= self._watches_max:
            raise InvalidRequestError(
                f"this client holds {self._watches_max} watches already "
                "(watch_stream_watches_max); close some or use another client"
            )
        self._watches[watch] = None
        watch.attachment += 1
        if self._outbox is not None:
            self._send_create(watch)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def detach(self, watch: Watch) -> None:
        """Drop ``watch``'s watcher on the server; the stream ends with its last watch."""
        if self._watches.pop(watch, None) is None:
            return
        watch_id = watch.watch_id
        watch.watch_id = None
        if watch_id is not None and self._by_id.pop(watch_id, None) is watch:
            cancel = rpc_pb2.WatchCancelRequest(watch_id=watch_id)
            self._send(rpc_pb2.WatchRequest(cancel_request=cancel))
        # A create still in flight is cancelled when its answer names the id.
        if not self._watches and self._call is not None:
            self._idle = True
            self._call.cancel()

    def request_progress(self) -> None:
        """etcd WatchProgressRequest: every watcher on the stream gets a progress notice."""
        self._send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    async def close(self) -> None:
        self._closed = True
        for watch in list(self._watches):
            self.detach(watch)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _send(self, request: rpc_pb2.WatchRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(request)

    def _send_create(self, watch: Watch) -> None:
        assert self._outbox is not None
        request = watch.create_request()
        if not self._creating:
            self._arm_confirm_timer()
        self._creating.append((watch, watch.attachment, self._transport.clock.now_s()))
        self._outbox.put_nowait(request)

    # ------------------------------------------------------------ confirm timer

    def _arm_confirm_timer(self) -> None:
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
        self._confirm_timer = asyncio.get_running_loop().call_later(
            self._confirm_timeout_s, self._check_confirmed
        )

    def _check_confirmed(self) -> None:
        """A create unanswered for the confirm timeout: the member holds the
        watches without serving them; end the stream so they go elsewhere."""
        self._confirm_timer = None
        if not self._creating:
            return
        _, _, sent_at_s = self._creating[0]
        waited_s = self._transport.clock.now_s() - sent_at_s
        if waited_s < self._confirm_timeout_s:
            self._confirm_timer = asyncio.get_running_loop().call_later(
                self._confirm_timeout_s - waited_s, self._check_confirmed
            )
            return
        self._stalled = True
        if self._call is not None:
            self._call.cancel()

    # ------------------------------------------------------------ the stream

    async def _run(self) -> None:
        transport = self._transport
        failures = 0
        avoid: Any = None
        while self._watches and not self._closed:
            endpoint = self.endpoint = transport.pick(avoid=avoid)
            try:
                await self._serve(endpoint)
                return  # the last watch left
            except _StreamLostError as lost:
                if not self._watches:
                    return
                if self._idle:
                    # Closed for want of watches as one more arrived: no fault.
                    continue
                if not await self._may_resume(lost):
                    return
            finally:
                self._end_stream()
            transport.mark_failed(endpoint)
            avoid = endpoint
            failures += 1
            for watch in self._watches:
                watch.resumes += 1
            log.debug("watch stream lost; resuming %d watches", len(self._watches))
            delay_s = transport.config.retry_backoff.delay_s(
                min(failures, _BACKOFF_STEPS_MAX), 0.0, transport.rng
            )
            await asyncio.sleep(delay_s)

    async def _may_resume(self, lost: _StreamLostError) -> bool:
        """Whether the watches resume elsewhere; if not, each ends with the error."""
        transport = self._transport
        if lost.details == _INVALID_TOKEN and transport.config.username is not None:
            with contextlib.suppress(ClientError):
                await transport.authenticate(force=True)
            return True
        if lost.code in _RESUMABLE or lost.details == _NO_LEADER:
            return True
        error = error_from_status(lost.code, lost.details)
        for watch in list(self._watches):
            self._watches.pop(watch, None)
            watch.fail(error)
        return False

    async def _serve(self, endpoint: Any) -> None:
        """Open a stream to ``endpoint``, create every watch on it, and
        dispatch its responses until it breaks or the last watch leaves."""
        transport = self._transport
        if transport.config.username is not None and transport.metadata is None:
            try:
                await transport.authenticate()
            except UnavailableError as exc:  # no member could issue a token
                raise _StreamLostError(grpc.StatusCode.UNAVAILABLE, exc.message) from None
        metadata = (*(transport.metadata or ()), *_REQUIRE_LEADER)
        call = self._call = endpoint.stub(WATCH_SERVICE).Watch(metadata=metadata)
        self.streams_opened += 1
        self._outbox = asyncio.Queue()
        self._stalled = self._idle = False
        for watch in self._watches:
            self._send_create(watch)
        writer = asyncio.get_running_loop().create_task(self._write(call, self._outbox))
        try:
            while self._watches:
                response = await self._read(call)
                self._dispatch(response, endpoint)
        finally:
            writer.cancel()

    async def _read(self, call: Any) -> rpc_pb2.WatchResponse:
        try:
            response = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise self._lost(exc.code(), exc.details() or "") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the client is closing
            # The call was cancelled underneath the read: stalled, or idle.
            raise self._lost(grpc.StatusCode.CANCELLED, "watch stream cancelled") from None
        if response is grpc.aio.EOF:
            raise self._lost(grpc.StatusCode.UNAVAILABLE, "watch stream ended")
        return response  # type: ignore[no-any-return]

    def _lost(self, code: grpc.StatusCode, details: str) -> _StreamLostError:
        if self._stalled:
            return _StreamLostError(grpc.StatusCode.UNAVAILABLE, "watch not confirmed in time")
        return _StreamLostError(code, details)

    @staticmethod
    async def _write(call: Any, outbox: asyncio.Queue[rpc_pb2.WatchRequest]) -> None:
        # A failed write means a broken stream, which the reader reports.
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            while True:
                await call.write(await outbox.get())

    def _end_stream(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._confirm_timer = None
        self._outbox = None
        self._creating.clear()
        for watch in self._by_id.values():
            watch.watch_id = None
        self._by_id.clear()

    def _dispatch(self, response: rpc_pb2.WatchResponse, endpoint: Any) -> None:
        if response.created:
            self._confirm(response, endpoint)
            return
        watch_id = response.watch_id
        watch = self._by_id.get(watch_id)
        if watch is not None:
            if response.canceled:
                del self._by_id[watch_id]
                self._watches.pop(watch, None)
                watch.watch_id = None
            watch.deliver(response)
        elif watch_id == INVALID_WATCH_ID and not response.events:
            # etcd 3.4 answers a progress request once, for the whole stream.
            for each in list(self._by_id.values()):
                each.deliver_stream_progress(response.header.revision)
        # Otherwise a watch cancelled here a moment ago: its events are late.

    def _confirm(self, response: rpc_pb2.WatchResponse, endpoint: Any) -> None:
        if not self._creating:
            log.warning("watch stream: a created response with no create in flight; ignored")
            return
        watch, attachment, _ = self._creating.popleft()
        if self._creating:
            self._arm_confirm_timer()
        elif self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._confirm_timer = None
        self._transport.mark_healthy(endpoint)
        # Not wanted: closed (or detached and attached again) since the create left.
        wanted = watch in self._watches and watch.attachment == attachment
        if response.canceled or not wanted:
            if not wanted and not response.canceled:
                cancel = rpc_pb2.WatchCancelRequest(watch_id=response.watch_id)
                self._send(rpc_pb2.WatchRequest(cancel_request=cancel))
            if response.canceled:
                self._watches.pop(watch, None)
            if wanted:
                watch.deliver(response)
            return
        watch.watch_id = response.watch_id
        self._by_id[response.watch_id] = watch
        watch.deliver(response)


__all__ = ["INVALID_WATCH_ID", "WatchMux"]
