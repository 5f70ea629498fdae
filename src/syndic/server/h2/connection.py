"""The asyncio driver of one client connection: socket and timers in, handlers' tasks out.

Every HTTP/2 and gRPC framing rule lives in :class:`H2Protocol`; this class
feeds it the socket's bytes and the loop's clock, turns its events into
handler tasks, and writes what it produces with one ``transport.write`` per
loop pass, so a burst of answers leaves in one system call.

When the transport's own buffer fills (the client does not read), reading
pauses and the protocol holds DATA back, so a client cannot make syndic
queue answers without end.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, Final, cast

import grpc

from syndic.server.h2.call import Call, CallContext, RequestIterator, end_of_requests
from syndic.server.h2.events import (
    CallEnded,
    CallStarted,
    ConnectionEnded,
    Event,
    MessageReceived,
    RequestEnded,
    StreamWritable,
)
from syndic.server.h2.limits import ServerLimits, SharedBudget
from syndic.server.h2.protocol import H2Protocol
from syndic.server.h2.reads import ReadShare

log = logging.getLogger("syndic.server.h2")

# A closing connection waits this long for the client to close its end.
_HANG_UP_WAIT_S: Final = 1.0
# Output gathered for one write; a streaming handler past it flushes at once,
# so the transport can tell it to wait (pause_writing) before more piles up.
_OUT_BYTES_FLUSH: Final = 256 * 1024
# The protocol's timers are looked at least this often, so a stream that
# starts to stall is noticed without a timer per stream.
_TICK_S_MAX: Final = 1.0
# Handlers one connection starts per loop pass; the rest wait for the next
# pass. A pass runs every ready callback before it looks at timers, so this
# bounds how long one client's burst can keep a heartbeat waiting.
_HANDLER_STARTS_PER_PASS: Final = 16
_UNKNOWN_ERROR: Final = "unexpected server error"
_BACKED_UP: Final = "client reads too slowly: its answers queued are over the bound; call not run"
_MESSAGE_PREFIX_BYTES: Final = 5

HandlerLookup = Callable[[str], Any]  # path -> grpc.RpcMethodHandler | None
# (connection, peer host) -> why it may not connect, or None.
Admission = Callable[["Http2Connection", str], str | None]


def _next_pass(loop: asyncio.AbstractEventLoop, share: ReadShare) -> None:
    """Runs once per loop pass while large reads come in or connections are held."""
    delay_s = share.next_pass()
    share.pass_scheduled = delay_s is not None
    if delay_s == 0.0:
        loop.call_soon(_next_pass, loop, share)
    elif delay_s is not None:
        loop.call_later(delay_s, _next_pass, loop, share)


class Http2Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection carrying gRPC calls."""

    def __init__(
        self,
        limits: ServerLimits,
        lookup: HandlerLookup,
        unknown_method: Callable[[str], str],
        on_close: Callable[[Http2Connection], None],
        budget: SharedBudget | None = None,
        admit: Admission | None = None,
        share: ReadShare | None = None,
    ) -> None:
        self._lookup = lookup
        self._unknown_method = unknown_method
        self._on_close = on_close
        self._admit = admit
        self._loop = asyncio.get_running_loop()
        if budget is None:
            budget = SharedBudget(limits.server_request_buffer_bytes_max)
        self.protocol = H2Protocol(limits, budget, self._loop.time())
        # The server's share of each pass for large reads; one of its own alone.
        if share is None:
            share = ReadShare(limits.read_bytes_per_pass_max, budget)
        self._share = share
        self._read_held = False  # held back by the share until a later pass
        self._backlog_held = False  # frames over a pass's share wait in the protocol
        self._transport: asyncio.Transport | None = None
        self._calls: dict[int, Call] = {}
        # Handlers not yet started: one read can carry hundreds of calls, and
        # their first steps would run back to back in one loop pass.
        self._to_start: collections.deque[tuple[Call, bytes | None]] = collections.deque()
        self._starts_left = _HANDLER_STARTS_PER_PASS
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._writing_paused = False
        self._transport_writable: asyncio.Event | None = None
        self._closed = False
        # Event type -> its handler; a dict lookup beats a chain of isinstance.
        self._dispatch: dict[type, Callable[[Any], None]] = {
            MessageReceived: self._message,
            CallStarted: self._start,
            RequestEnded: self._request_ended,
            CallEnded: self._call_ended,
            StreamWritable: self._writable,
            ConnectionEnded: self._connection_ended,
        }
        self.peer_host = ""
        self.peer_name = "unknown"

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            family = "ipv6" if ":" in str(peer[0]) else "ipv4"
            self.peer_host = str(peer[0])
            self.peer_name = f"{family}:{peer[0]}:{peer[1]}"
        refusal = self._admit(self, self.peer_host) if self._admit is not None else None
        if refusal is not None:
            self._handle(self.protocol.refuse_connection(refusal))
            return
        self.protocol.initiate()
        self._flush()
        self._schedule_tick()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._handle(self.protocol.connection_lost())
        self._wake_writers()
        self._on_close(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._handle(self.protocol.set_transport_paused(True, self._loop.time()))
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()
        self._handle(self.protocol.set_transport_paused(False, self._loop.time()))
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        self._starts_left = _HANDLER_STARTS_PER_PASS
        self._handle(self.protocol.receive(data, self._loop.time()))
        if self.protocol.backlogged and not self._backlog_held:
            self._backlog_held = True
            self._update_reading()
            self._loop.call_soon(self._read_backlog)
        share = self._share
        if not share.spend(len(data), self.protocol.held_bytes > 0):
            self._read_held = True
            share.hold(self)
            self._update_reading()
        if share.spent_bytes and not share.pass_scheduled:
            share.pass_scheduled = True
            self._loop.call_soon(_next_pass, self._loop, share)

    # -- reading, held back by a full socket or the share of a pass ------------

    @property
    def closed(self) -> bool:
        return self._closed or self.protocol.ended

    @property
    def holds_request_bytes(self) -> bool:
        return self.protocol.held_bytes > 0

    def _read_backlog(self) -> None:
        """Parse the next share of frames already read, one share per loop pass
        (receive_frames_per_pass_max); the socket is read again once none wait."""
        if self.closed:
            return
        self._starts_left = _HANDLER_STARTS_PER_PASS
        self._handle(self.protocol.receive(b"", self._loop.time()))
        if self.protocol.backlogged and not self.protocol.ended:
            self._loop.call_soon(self._read_backlog)
            return
        self._backlog_held = False
        self._update_reading()

    def resume_from_share(self) -> None:
        self._read_held = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed or self.protocol.ended:
            return
        if self._writing_paused or self._read_held or self._backlog_held:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # -- events --------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        dispatch = self._dispatch
        for event in events:
            dispatch[type(event)](event)
        if self.protocol.out_bytes and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _writable(self, event: StreamWritable) -> None:
        if event.stream_id == 0:
            self._wake_writers()
            return
        call = self._calls.get(event.stream_id)
        if call is not None and call.writable is not None:
            call.writable.set()

    def _start(self, event: CallStarted) -> None:
        stream_id, head = event.stream_id, event.head
        handler = self._lookup(head.path)
        if handler is None:
            code = grpc.StatusCode.UNIMPLEMENTED.value[0]
            self._handle(self.protocol.end_call(stream_id, code, self._unknown_method(head.path)))
            self._handle(self.protocol.release(stream_id))
            return
        call = Call(stream_id, head, handler)
        self._calls[stream_id] = call
        if head.timeout_s is not None:
            call.deadline = self._loop.call_later(head.timeout_s, self._deadline_expired, call)
        if handler.request_streaming:
            self.protocol.let_request_pause(stream_id)
            call.requests = asyncio.Queue()
            self._run(call, None)

    def _run(self, call: Call, request: bytes | None) -> None:
        """Start the handler, or queue it if this pass has started its share."""
        if self._starts_left > 0 and not self._to_start:
            self._starts_left -= 1
            self._start_task(call, request)
            return
        self._to_start.append((call, request))
        if len(self._to_start) == 1:
            self._loop.call_soon(self._start_queued)

    def _start_task(self, call: Call, request: bytes | None) -> None:
        if self.protocol.answers_backed_up():
            # Calls admitted in one burst before the first answers queued
            # (zero-window clients asking for 1 MiB values): each would
            # build an answer only to have it refused.
            self._end(call, grpc.StatusCode.RESOURCE_EXHAUSTED, _BACKED_UP)
            return
        # No done callback: _serve forgets the call itself as it ends, which
        # saves a loop callback per call. A task cancelled before its first
        # step never runs _serve's body; _cancel forgets those calls.
        call.task = self._loop.create_task(self._serve(call, request))

    def _start_queued(self) -> None:
        """Start the next share of queued handlers, one share per loop pass, so
        that the loop's timers (Raft's heartbeats) run between shares."""
        queue = self._to_start
        for _ in range(_HANDLER_STARTS_PER_PASS):
            if not queue:
                return
            call, request = queue.popleft()
            if not call.ended and call.id in self._calls:
                self._start_task(call, request)
            else:
                self._forget(call)
        if queue:
            self._loop.call_soon(self._start_queued)

    def _message(self, event: MessageReceived) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        message = event.message
        if call.requests is not None:
            call.requests.put_nowait(message)
        elif call.single_request is not None:
            self._end(
                call, grpc.StatusCode.INTERNAL, "grpc: more than one request for a unary call"
            )
            return
        else:
            call.single_request = message
        if event.end_stream:
            self._ended(call)

    def _request_ended(self, event: RequestEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            self._ended(call)

    def _ended(self, call: Call) -> None:
        """The client has sent its last request: a unary handler may start."""
        stream_id = call.id
        if call.ended:
            return
        if call.requests is not None:
            call.requests.put_nowait(end_of_requests())
            return
        request = call.single_request
        if request is None:
            self._end(call, grpc.StatusCode.INTERNAL, "grpc: no request message for a unary call")
            return
        call.single_request = None
        self._handle(self.protocol.consumed(stream_id, len(request) + _MESSAGE_PREFIX_BYTES))
        self._run(call, request)

    def _call_ended(self, event: CallEnded) -> None:
        self._stop(event.stream_id)

    def _stop(self, stream_id: int) -> None:
        """The stream is over: wake and cancel whatever serves it."""
        call = self._calls.get(stream_id)
        if call is None:
            return
        call.ended = True
        if call.writable is not None:
            call.writable.set()
        if call.requests is not None:
            call.requests.put_nowait(end_of_requests())
        if call.task is not None and not call.task.done():
            self._cancel(call)
        elif call.task is None:
            self._forget(call)

    def _cancel(self, call: Call) -> None:
        """Cancel the call's handler; a handler that never began is forgotten
        here, since its _serve will not run to forget it."""
        assert call.task is not None
        call.task.cancel()
        if not call.running:
            self._forget(call)

    def _end(self, call: Call, code: grpc.StatusCode, message: str) -> None:
        """End the call with an error status; a handler not yet started never runs."""
        if not call.ended:
            call.ended = True
            self._handle(self.protocol.end_call(call.id, code.value[0], message))
        if call.task is None:
            self._forget(call)

    def _forget(self, call: Call) -> None:
        if call.deadline is not None:
            call.deadline.cancel()  # it holds the call until it fires
            call.deadline = None
        if self._calls.pop(call.id, None) is not None:
            self._handle(self.protocol.release(call.id))

    def _connection_ended(self, event: ConnectionEnded) -> None:
        if not event.graceful:
            log.info(
                "closing HTTP/2 connection from %s: %s", self.peer_name, event.reason or event.code
            )
        for call in list(self._calls.values()):
            self._stop(call.id)
        self._flush()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if event.graceful:
            self._hang_up(transport)
        else:
            transport.close()

    def _hang_up(self, transport: asyncio.Transport) -> None:
        """Close after a graceful stop without cutting off the last answer.

        Closing a socket the client still writes to makes the kernel reset
        it and drop what is unsent, so the write side is shut first and the
        client given a moment to close its end.
        """
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the client has already gone
                transport.close()
                return
            self._loop.call_later(_HANG_UP_WAIT_S, transport.close)
        else:
            transport.close()

    # -- the write side ----------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.protocol.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _schedule_tick(self) -> None:
        now = self._loop.time()
        when = min(self.protocol.next_tick_s(), now + _TICK_S_MAX)
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._handle(self.protocol.tick(self._loop.time()))
        if not self.protocol.ended:
            self._schedule_tick()

    def close_gracefully(self) -> None:
        """GOAWAY: no new calls; the ones running finish (the server's stop)."""
        if self._transport is not None and not self._closed:
            self._handle(self.protocol.close_gracefully())

    def abort_now(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def consumed(self, call: Call, size: int) -> None:
        """A handler took ``size`` bytes of requests."""
        self._handle(self.protocol.consumed(call.id, size))

    # -- calls ---------------------------------------------------------------

    async def _serve(self, call: Call, request: bytes | None) -> None:
        call.running = True
        handler = call.handler
        context = CallContext(self, call, handler.response_serializer)
        try:
            if handler.request_streaming:
                argument: Any = RequestIterator(self, call, handler.request_deserializer)
            else:
                argument = handler.request_deserializer(request)
            if handler.response_streaming:
                behavior = (
                    handler.stream_stream if handler.request_streaming else handler.unary_stream
                )
                result = behavior(argument, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        await context.write(response)
                else:
                    await result
                if not call.ended:
                    self._handle(self.protocol.finish(call.id))
            else:
                behavior = (
                    handler.stream_unary if handler.request_streaming else handler.unary_unary
                )
                response = await behavior(argument, context)
                if not call.ended:
                    call.ended = True
                    self._handle(
                        self.protocol.answer(call.id, handler.response_serializer(response))
                    )
        except grpc.aio.AbortError:
            code, message = call.aborted_with or (grpc.StatusCode.UNKNOWN, _UNKNOWN_ERROR)
            self._end(call, code, message)
        except asyncio.CancelledError:
            if not call.ended:  # cancelled by the server's stop, not the client
                self._end(call, grpc.StatusCode.UNAVAILABLE, "server shutting down")
            raise
        except Exception:
            log.exception("gRPC handler for %s failed", call.head.path)
            self._end(call, grpc.StatusCode.UNKNOWN, _UNKNOWN_ERROR)
        finally:
            self._forget(call)

    def _deadline_expired(self, call: Call) -> None:
        call.deadline = None
        if not call.ended:
            self._end(call, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if call.task is not None and not call.task.done():
            self._cancel(call)

    async def write_message(self, call: Call, payload: bytes) -> None:
        """Wait while the stream, the connection or the transport lags, then queue one message.

        Waiting comes first, so that however many handlers write at once, a
        connection holds at most its send budget and one message more.
        """
        while True:
            may_write = self.protocol.stream_may_write(call.id)
            if may_write is None or call.ended:
                raise asyncio.CancelledError()  # the client has gone; stop the handler
            if self._writing_paused:
                if self._transport_writable is None:
                    self._transport_writable = asyncio.Event()
                await self._transport_writable.wait()
                continue
            if may_write:
                break
            if call.writable is None:
                call.writable = asyncio.Event()
            call.writable.clear()
            await call.writable.wait()
        self._handle(self.protocol.send_message(call.id, payload))
        if self.protocol.out_bytes >= _OUT_BYTES_FLUSH:
            self._flush()  # may call pause_writing, which the next write obeys

    def write_now(self, call: Call, payload: bytes) -> bool:
        """Queue one message at once if nothing would make ``write_message``
        wait; False (and nothing queued) otherwise, or if the call is over.

        A watch event reaching a thousand streams is written from the one
        wake-up that found it, not from a thousand handler tasks woken in turn.
        """
        if call.ended or self._writing_paused or not self.protocol.stream_may_write(call.id):
            return False
        self._handle(self.protocol.send_message(call.id, payload))
        if self.protocol.out_bytes >= _OUT_BYTES_FLUSH:
            self._flush()
        return True

    def _wake_writers(self) -> None:
        if self._transport_writable is not None:
            self._transport_writable.set()
            self._transport_writable = None
        for call in self._calls.values():
            if call.writable is not None:
                call.writable.set()
