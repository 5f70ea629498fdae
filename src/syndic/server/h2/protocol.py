"""The server side of one HTTP/2 connection carrying gRPC calls, sans-IO.

Bytes go in (``receive``), time goes in (``tick``), and events and bytes come
out (the events ``receive`` and ``tick`` return, and ``data_to_send``). The
driver (``connection.py``) owns the socket, the timers and the handlers'
tasks; this object owns every rule of RFC 9113 syndic keeps, the flow
control both ways, gRPC's message framing and every limit of
:class:`ServerLimits`. It imports no asyncio, socket or clock, so tests and
the fuzzer drive it directly.

Flow control both ways: the client may send only what the windows allow,
and a stream's window is given back only as handlers consume requests, so
unread input is bounded. Answers wait for the client's windows; a client
that reads nothing holds at most ``connection_send_buffer_bytes_max`` of
them, and a stream that cannot send for ``send_stall_timeout_s`` is reset.

The stream's own states (RFC 9113 §5.1) change only through ``_TRANSITIONS``;
an input with no entry there is a protocol error (h11's rule).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import Final

from syndic.server.h2 import frames
from syndic.server.h2.events import (
    CallEnded,
    CallStarted,
    ConnectionEnded,
    Event,
    MessageReceived,
    RequestEnded,
    StreamWritable,
)
from syndic.server.h2.frames import ErrorCode, Flag, FrameType, ProtocolError, Setting
from syndic.server.h2.headers import (
    OK_TRAILERS,
    RESPONSE_HEADERS,
    TABLE_SIZE_ZERO,
    RequestHead,
    RequestHeadDecoder,
    http_error_headers,
    status_trailers,
)
from syndic.server.h2.limits import ServerLimits, SharedBudget, TokenBucket

_MESSAGE_PREFIX_BYTES: Final = 5
# A partial message lacking more than this is gathered frame by frame in a
# list (H2Stream.recv_parts), not appended to a buffer; smaller ones are
# cheaper appended.
_GATHER_AS_PARTS_BYTES_MIN: Final = 64 * 1024
# Messages in one frame that may pass a full request budget (see _hold).
_WHOLE_MESSAGES_MAX: Final = 16
# gRPC status codes this layer answers with itself (grpc.StatusCode values).
GRPC_UNIMPLEMENTED: Final = 12
GRPC_INTERNAL: Final = 13
GRPC_RESOURCE_EXHAUSTED: Final = 8
# Answer bytes sent that earn one cheap-frame token back: clients return
# window (WINDOW_UPDATE) about once per 16 KiB they read, per stream and
# per connection, even when nothing waits to be sent, so honest readers
# never run the bucket dry.
_SENT_BYTES_PER_TOKEN: Final = 4096
# Cheap-frame tokens each DATA frame sent earns back. grpc-core returns
# window for the stream and the connection after every DATA frame it reads,
# however small: a watch stream pushing 200-byte events to 1,000 watchers
# draws 2,000 WINDOW_UPDATEs per change, which the per-byte refund alone
# left unpaid (GOAWAY "too many WINDOW_UPDATE frames" to config listeners).
_TOKENS_PER_DATA_FRAME: Final = 2
# Cheap-frame tokens a call's start earns back. An honest gRPC client answers
# each call with a few control frames however small the answer: WINDOW_UPDATE
# for the stream and for the connection, and grpc-core's bandwidth-probe PING
# with its ACK. Without this, a client making thousands of small calls a
# second from one address ran the bucket dry. A call costs its sender a
# stream slot and the server a handler, so it is no cheap way to refill.
_TOKENS_PER_CALL: Final = 4


class StreamState(enum.IntEnum):
    """IntEnum, not Enum: the table is looked up several times per call, and
    an IntEnum hashes as an int, in C."""

    OPEN = 1
    HALF_CLOSED_REMOTE = 2
    HALF_CLOSED_LOCAL = 3
    CLOSED = 4


class StreamInput(enum.IntEnum):
    RECV_DATA = 1
    RECV_END_STREAM = 2
    RECV_RST = 3
    SEND_END_STREAM = 4
    SEND_RST = 5


_S = StreamState
_I = StreamInput
# RFC 9113 §5.1, server side, from the client's HEADERS on. What is not here
# is an error: DATA after the client's END_STREAM is STREAM_CLOSED (§5.1),
# and nothing happens to a closed stream (it is forgotten).
_TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_END_STREAM): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _I.SEND_END_STREAM): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.RECV_RST): _S.CLOSED,
    (_S.OPEN, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_DATA): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.SEND_RST): _S.CLOSED,
}


_REMOTE_CLOSED: Final = frozenset({StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED})
_LOCAL_CLOSED: Final = frozenset({StreamState.HALF_CLOSED_LOCAL, StreamState.CLOSED})
# An empty result shared by every call that produced no event; never mutated.
_NO_EVENTS: Final[list[Event]] = []


class StreamStateError(Exception):
    """An input the stream's state has no transition for."""

    def __init__(self, state: StreamState, event: StreamInput) -> None:
        super().__init__(f"{event.name} in state {state.name}")
        self.state = state
        self.event = event


def _grpc_message(payload: bytes) -> bytes:
    """gRPC's length-prefixed message: not compressed, 4-byte length, bytes."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class H2Stream:
    """One stream as the protocol sees it: states, windows, buffers."""

    __slots__ = (
        "claimed",
        "headers_sent",
        "held_bytes",
        "id",
        "last_recv_s",
        "last_send_s",
        "local_closed",
        "may_pause",
        "opened_s",
        "pending",
        "pending_bytes",
        "pending_trailers",
        "recv_buffer",
        "recv_missing",
        "recv_parts",
        "recv_window",
        "remote_closed",
        "send_credit",
        "state",
        "unacked_bytes",
    )

    def __init__(self, stream_id: int, send_credit: int, recv_window: int, now: float) -> None:
        self.id = stream_id
        self.state = StreamState.OPEN
        # Kept with ``state`` by _transition: read on every frame.
        self.remote_closed = False  # the client's END_STREAM or a reset
        self.local_closed = False  # END_STREAM or RST_STREAM sent: nothing more goes out
        # The send window is send_credit + the client's INITIAL_WINDOW_SIZE,
        # so a SETTINGS change moves every stream's window at O(1) (§6.9.2).
        self.send_credit = send_credit
        self.recv_window = recv_window
        self.unacked_bytes = 0  # consumed by the handler, not yet given back
        self.held_bytes = 0  # received, not yet consumed by the handler
        self.recv_buffer = bytearray()
        # A long message is gathered as a list of frames, joined once whole:
        # appending each frame to recv_buffer re-copied the whole buffer
        # whenever it grew past its allocation, megabytes per 1 MiB Put.
        # recv_buffer keeps the message's start meanwhile (so it is truthy).
        self.recv_parts: list[bytes] | None = None
        self.recv_missing = 0  # bytes the gathered message still lacks
        self.claimed = False  # a handler owns the call until release()
        self.may_pause = False  # a streaming request: no stall timeout
        self.headers_sent = False
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.pending_trailers: bytes | None = None
        self.last_recv_s = now
        self.last_send_s = now
        self.opened_s = now


class H2Protocol:
    """One connection's HTTP/2 and gRPC framing: bytes and time in, events and bytes out.

    Example::

        protocol = H2Protocol(ServerLimits(), SharedBudget(2**25), now=0.0)
        protocol.initiate()
        transport.write(protocol.data_to_send())   # our SETTINGS
        for event in protocol.receive(data, now):  # whatever the client sent
            ...
        protocol.answer(stream_id, response_bytes)
        transport.write(protocol.data_to_send())
    """

    def __init__(self, limits: ServerLimits, budget: SharedBudget, now: float) -> None:
        self.limits = limits
        self._budget = budget
        self._decoder = RequestHeadDecoder(limits.header_list_bytes_max)
        self._buffer = bytearray()
        # Whole frames are left in the buffer, over this pass's share of
        # frames: the driver calls receive(b"", now) on a later pass.
        self.backlogged = False
        self._preface_seen = False
        self.streams: dict[int, H2Stream] = {}
        self.last_stream_id = 0
        self._header_block: bytearray | None = None  # HEADERS awaiting CONTINUATION
        self._header_frames = 0
        self._header_stream_id = 0
        self._header_end_stream = False
        # What the client allows us (its SETTINGS and WINDOW_UPDATEs).
        self._peer_initial_window = frames.DEFAULT_WINDOW
        self._peer_max_frame = frames.DEFAULT_MAX_FRAME_BYTES
        self._send_window = frames.DEFAULT_WINDOW
        # An upper bound of every stream's send_credit, so a raised
        # INITIAL_WINDOW_SIZE is checked for overflow without a walk.
        self._credit_bound = 0
        # What we allow the client: the connection window and its unreturned part.
        self._recv_window = limits.connection_window_bytes
        self._recv_unacked = 0
        self._stream_window = limits.initial_stream_window
        self.held_bytes = 0  # request bytes received, not yet taken by handlers
        self.queued_bytes = 0  # answer bytes waiting for windows, all streams
        # An answer was refused for want of room, and nothing has been sent or
        # dropped since: the queue is full, whatever its byte count says.
        self._answer_refused = False
        # The same, summed over the server's connections: the server puts its
        # own budget here; a protocol on its own has one of its own.
        self.answers = SharedBudget(limits.server_send_buffer_bytes_max)
        self.blocked: dict[int, H2Stream] = {}  # streams waiting to send, in order
        # When the streams are next looked at for requests left unfinished.
        self._stall_scan_s = now
        self._out: list[bytes] = []
        self.out_bytes = 0
        self._table_size_sent = False
        self._transport_paused = False
        self.ended = False  # GOAWAY with an error sent, or the drain finished
        self.draining = False  # GOAWAY NO_ERROR sent: running calls finish
        self._events: list[Event] = []
        # Time: all in the driver's monotonic seconds.
        self._opened_s = now
        self._last_recv_s = now
        self._idle_since_s: float | None = now
        self._ping_sent_s: float | None = None
        # The cheap-frame budget; like ``resets``, the server shares one among
        # the connections of a peer address.
        self.cheap = TokenBucket(limits.cheap_frames_per_s, limits.cheap_frames_burst, now)
        # The rapid-reset budget; the server shares one among the connections
        # of a peer address, so that reconnecting does not refill it.
        self.resets = TokenBucket(limits.stream_resets_per_s, limits.stream_resets_burst, now)
        self._settings = TokenBucket(
            limits.settings_frames_per_s, limits.settings_frames_burst, now
        )
        self._refused_streams = TokenBucket(
            limits.refused_streams_per_s, limits.refused_streams_burst, now
        )
        self._now = now

    # -- driver interface ------------------------------------------------------

    def initiate(self) -> None:
        """Queue our SETTINGS and the connection window beyond the default."""
        limits = self.limits
        settings = frames.settings_frame(
            {
                Setting.MAX_CONCURRENT_STREAMS: limits.concurrent_streams_max,
                Setting.INITIAL_WINDOW_SIZE: self._stream_window,
                Setting.MAX_HEADER_LIST_SIZE: limits.header_list_bytes_max,
                Setting.ENABLE_PUSH: 0,
            }
        )
        extra = limits.connection_window_bytes - frames.DEFAULT_WINDOW
        self._send(settings + (frames.window_update(0, extra) if extra > 0 else b""))

    def refuse_connection(self, reason: str) -> list[Event]:
        """End the connection at once, before reading it (a connection cap).

        Our SETTINGS still go first: §3.4 makes them the server's preface."""
        if not self._out:
            self.initiate()
        self._fail(ErrorCode.ENHANCE_YOUR_CALM, reason)
        return self._take_events()

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the socket; returns what happened, in order.

        At most ``receive_frames_per_pass_max`` frames are parsed; if more
        wait, ``backlogged`` is set, and ``receive(b"", now)`` goes on."""
        if self.ended:
            return _NO_EVENTS
        self._now = now
        self._last_recv_s = now
        self.backlogged = False
        try:
            self._receive(data)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)
        except StreamStateError as exc:  # a missing transition is a protocol error
            self._fail(ErrorCode.PROTOCOL_ERROR, str(exc))
        return self._take_events()

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call, in one piece."""
        if not self._out:
            return b""
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self.out_bytes = 0
        return data

    def set_transport_paused(self, paused: bool, now: float) -> list[Event]:
        """The socket's buffer is full (or drained): DATA waits while it is full."""
        self._now = now
        self._transport_paused = paused
        if not paused:
            self._pump_blocked()
        return self._take_events()

    def tick(self, now: float) -> list[Event]:
        """Apply every timer due at ``now``: preface, stalls, idle, keepalive, age."""
        self._now = now
        if self.ended:
            return _NO_EVENTS
        limits = self.limits
        if not self._preface_seen and now - self._opened_s >= limits.preface_timeout_s:
            self._fail(ErrorCode.PROTOCOL_ERROR, "no HTTP/2 preface in time")
            return self._take_events()
        self._tick_streams(now)
        if self._header_block is not None and now - self._last_recv_s >= (
            limits.request_stall_timeout_s
        ):
            self._fail(ErrorCode.ENHANCE_YOUR_CALM, "header block left unfinished")
            return self._take_events()
        if self._ping_sent_s is not None:
            if now - self._ping_sent_s >= limits.keepalive_timeout_s:
                self._fail(ErrorCode.ENHANCE_YOUR_CALM, "keepalive ping not answered")
                return self._take_events()
        elif now - self._last_recv_s >= limits.keepalive_interval_s:
            self._ping_sent_s = now
            self._send(frames.frame(FrameType.PING, 0, 0, b"syndicka"))
        age_s = now - self._opened_s
        if age_s >= limits.connection_age_s_max + limits.connection_age_grace_s:
            self._fail(ErrorCode.NO_ERROR, "max connection age and its grace have passed")
        elif age_s >= limits.connection_age_s_max or (
            self._idle_since_s is not None
            and now - self._idle_since_s >= limits.connection_idle_timeout_s
        ):
            self._drain()
        return self._take_events()

    def next_tick_s(self) -> float:
        """When ``tick`` has something to do next (absolute seconds), or inf."""
        limits = self.limits
        due = [self._last_recv_s + limits.keepalive_interval_s]
        if not self._preface_seen:
            due.append(self._opened_s + limits.preface_timeout_s)
        if self._ping_sent_s is not None:
            due.append(self._ping_sent_s + limits.keepalive_timeout_s)
        if self._header_block is not None:
            due.append(self._last_recv_s + limits.request_stall_timeout_s)
        if self._idle_since_s is not None:
            due.append(self._idle_since_s + limits.connection_idle_timeout_s)
        due.append(self._opened_s + limits.connection_age_s_max)
        if math.isfinite(limits.connection_age_s_max):
            due.append(self._opened_s + limits.connection_age_s_max + limits.connection_age_grace_s)
        if self.blocked or self.streams:
            # Checked a few times per timeout rather than per stream.
            step = min(limits.send_stall_timeout_s, limits.request_stall_timeout_s) / 4
            due.append(self._now + step)
        return min(due)

    def close_gracefully(self) -> list[Event]:
        """GOAWAY NO_ERROR: no new calls; the ones running finish.

        Frames from the client are still read, since running calls may need
        its window updates; ConnectionEnded(graceful) comes once they end.
        """
        self._drain()
        return self._take_events()

    def _drain(self) -> None:
        if self.ended or self.draining:
            return
        self.draining = True
        self._send(frames.goaway(self.last_stream_id, ErrorCode.NO_ERROR))
        self._maybe_drained()

    def answer(self, stream_id: int, payload: bytes) -> list[Event]:
        """A unary call's response and OK status, in one piece when the windows allow."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return self._take_events()
        size = len(payload) + _MESSAGE_PREFIX_BYTES
        if self._fits_now(stream, size):
            stream.send_credit -= size
            self._send_window -= size
            # The usual answer: head, message and OK trailers in one piece.
            stream.headers_sent = True
            head = RESPONSE_HEADERS if self._table_size_sent else self._head_block(RESPONSE_HEADERS)
            self._send(frames.unary_response(stream.id, head, payload, OK_TRAILERS))
            self._sent_data(size, 1)
            self._ended_locally(stream)
            return self._take_events()
        if self.queued_bytes and (
            self.queued_bytes + size > self.limits.connection_send_buffer_bytes_max
            or self.answers.held_bytes + size > self.answers.bytes_max
        ):
            self._answer_refused = True
            self._end_call(
                stream,
                GRPC_RESOURCE_EXHAUSTED,
                "client reads too slowly: its answers queued are over "
                f"{self.limits.connection_send_buffer_bytes_max} bytes, or all clients' over "
                f"{self.answers.bytes_max}",
                notify=False,
            )
            return self._take_events()
        self._queue(stream, payload)
        stream.pending_trailers = OK_TRAILERS
        self._pump(stream)
        return self._take_events()

    def _fits_now(self, stream: H2Stream, size: int) -> bool:
        """Whether a message of ``size`` bytes can leave in one DATA frame now:
        nothing queued ahead of it and room in every window and the frame size."""
        return (
            not stream.pending
            and not self._transport_paused
            and size <= stream.send_credit + self._peer_initial_window
            and size <= self._send_window
            and size <= self._peer_max_frame
        )

    def send_message(self, stream_id: int, payload: bytes) -> list[Event]:
        """Queue one message of a streaming answer and send what the windows allow."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return self._take_events()
        size = len(payload) + _MESSAGE_PREFIX_BYTES
        if stream.headers_sent and self._fits_now(stream, size):
            # The usual streamed message (a watch event): nothing queued
            # before it and room in every window, so it goes out in one DATA
            # frame without passing through the stream's queue.
            stream.send_credit -= size
            self._send_window -= size
            stream.last_send_s = self._now
            self._send(frames.data_message(stream.id, payload))
            self._sent_data(size, 1)
            return self._take_events()
        self._queue(stream, payload)
        self._pump(stream)
        return self._take_events()

    def let_request_pause(self, stream_id: int) -> None:
        """The call streams its requests, which may pause at will; a unary
        request must end within request_stall_timeout_s of its last byte, so
        that a client cannot hold call slots with requests it never ends."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.may_pause = True

    def answers_backed_up(self) -> bool:
        """The client leaves so many answers unread (or all clients do) that a
        new call's answer could only be refused: new calls are not run."""
        return (
            self._answer_refused
            or self.queued_bytes > self.limits.connection_send_buffer_bytes_max
            or bool(self.queued_bytes and self.answers.held_bytes > self.answers.bytes_max)
        )

    def stream_may_write(self, stream_id: int) -> bool | None:
        """True if the stream's queue and the connection's are within their
        bounds; None if the stream has ended."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return None
        return (
            stream.pending_bytes <= self.limits.stream_send_buffer_bytes_max
            and self.queued_bytes <= self.limits.connection_send_buffer_bytes_max
        )

    def finish(self, stream_id: int) -> list[Event]:
        """End a streaming answer with OK, after what is queued."""
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.local_closed:
            stream.pending_trailers = OK_TRAILERS
            self._pump(stream)
        return self._take_events()

    def end_call(self, stream_id: int, code: int, message: str) -> list[Event]:
        """End the call with gRPC status ``code``; whatever was queued is dropped."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._end_call(stream, code, message, notify=False)
        return self._take_events()

    def consumed(self, stream_id: int, size: int) -> list[Event]:
        """A handler took ``size`` bytes: the stream may send that much more."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._release_held(stream, size)
            self._return_to_stream(stream, size)
        return self._take_events()

    def release(self, stream_id: int) -> list[Event]:
        """The handler of a CallStarted has finished: its slot is free once the stream ends."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.claimed = False
            if stream.local_closed:
                self._forget(stream)
        return self._take_events()

    def connection_lost(self) -> list[Event]:
        """The socket is gone: every stream ends, every held byte is given back."""
        self.ended = True
        for stream in list(self.streams.values()):
            stream.state = StreamState.CLOSED
            stream.remote_closed = stream.local_closed = True
            if stream.claimed:
                self._events.append(CallEnded(stream.id, "connection closed"))
            stream.claimed = False
            self._forget(stream)
        self._out.clear()
        self.out_bytes = 0
        return self._take_events()

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent."""
        held = sum(s.held_bytes for s in self.streams.values())
        assert held == self.held_bytes, f"held {self.held_bytes} != streams' {held}"
        assert 0 <= self.held_bytes <= self.limits.request_buffer_bytes_max or self.ended
        queued = sum(s.pending_bytes for s in self.streams.values())
        assert queued == self.queued_bytes, f"queued {self.queued_bytes} != streams' {queued}"
        assert self._send_window <= frames.WINDOW_MAX
        assert 0 <= self._recv_window <= frames.WINDOW_MAX
        for stream in self.streams.values():
            assert stream.send_credit + self._peer_initial_window <= frames.WINDOW_MAX
            assert stream.send_credit <= self._credit_bound
            assert stream.recv_window >= 0
            assert stream.pending_bytes == sum(len(p) for p in stream.pending)
            assert stream.state is not StreamState.CLOSED or stream.claimed, (
                f"closed stream {stream.id} kept though no handler holds it"
            )
        assert self.blocked.keys() <= self.streams.keys(), "a blocked stream is not open"
        assert all(s.pending for s in self.blocked.values()), "a blocked stream has nothing"
        assert len(self.streams) <= self.limits.concurrent_streams_max

    # -- frames in -------------------------------------------------------------

    def _take_events(self) -> list[Event]:
        if not self._events:
            return _NO_EVENTS
        events = self._events
        self._events = []
        return events

    def _send(self, data: bytes) -> None:
        self._out.append(data)
        self.out_bytes += len(data)

    def _fail(self, code: ErrorCode, reason: str) -> None:
        """End the connection for a protocol error, telling the client why."""
        if not self.ended:
            self.ended = True
            self._send(frames.goaway(self.last_stream_id, code, reason))
            self._events.append(ConnectionEnded(int(code), reason, graceful=False))

    def _receive(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        offset = 0
        end = len(view)
        if not self._preface_seen:
            if end < len(frames.PREFACE):
                if not frames.PREFACE.startswith(bytes(view)):
                    raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 preface")
                self._keep(view, 0)
                return
            if bytes(view[: len(frames.PREFACE)]) != frames.PREFACE:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 preface")
            self._preface_seen = True
            offset = len(frames.PREFACE)
        max_frame = frames.DEFAULT_MAX_FRAME_BYTES
        frames_left = self.limits.receive_frames_per_pass_max
        while end - offset >= frames.FRAME_HEADER_BYTES:
            if not frames_left:
                # The rest waits for the driver's next pass (receive_frames_per_pass_max).
                self.backlogged = True
                break
            frames_left -= 1
            length, frame_type, flags, stream_id = frames.parse_header(view, offset)
            if length > max_frame:
                raise ProtocolError(
                    ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes; the limit is {max_frame}"
                )
            start = offset + frames.FRAME_HEADER_BYTES
            if end - start < length:
                break
            offset = start + length
            self._frame(frame_type, flags, stream_id, bytes(view[start:offset]))
            if self.ended:
                self._buffer = bytearray()
                return
        self._keep(view, offset)

    def _keep(self, view: bytes | bytearray, offset: int) -> None:
        if view is self._buffer:
            del self._buffer[:offset]
        else:
            self._buffer = bytearray(view[offset:])

    def _cheap_frame(self, what: str) -> None:
        """One frame that asks work of us and carries no request (§10.5)."""
        if not self.cheap.take(self._now):
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, f"too many {what} frames")

    def _frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_block is not None and frame_type != FrameType.CONTINUATION:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, "a header block was interrupted by another frame"
            )
        if frame_type == FrameType.DATA:
            self._data(flags, stream_id, payload)
        elif frame_type == FrameType.HEADERS:
            self._headers(flags, stream_id, payload)
        elif frame_type == FrameType.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif frame_type == FrameType.SETTINGS:
            self._settings_frame(flags, stream_id, payload)
        elif frame_type == FrameType.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif frame_type == FrameType.PING:
            self._ping(flags, stream_id, payload)
        elif frame_type == FrameType.RST_STREAM:
            self._rst_stream(stream_id, payload)
        elif frame_type == FrameType.PRIORITY:
            if stream_id == 0 or len(payload) != 5:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "malformed PRIORITY")
            self._cheap_frame("PRIORITY")
        elif frame_type == FrameType.PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "a client may not push")
        elif frame_type == FrameType.GOAWAY:
            if stream_id != 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            self._cheap_frame("GOAWAY")
        else:
            # Frames of unknown type are ignored (RFC 9113 §4.1), but not for free.
            self._cheap_frame("unknown")

    def _ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"PING of {len(payload)} bytes")
        self._cheap_frame("PING")
        if flags & Flag.ACK:
            self._ping_sent_s = None
        else:
            self._send(frames.frame(FrameType.PING, Flag.ACK, 0, payload))

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        frames.parse_u32(payload, "RST_STREAM")
        if stream_id > self.last_stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        self._cheap_frame("RST_STREAM")
        stream = self.streams.get(stream_id)
        if stream is None or stream.state is StreamState.CLOSED:
            return
        rapid = self._now - stream.opened_s < self.limits.stream_reset_rapid_s
        if stream.claimed and not stream.local_closed and rapid and not self.resets.take(self._now):
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset")
        self._transition(stream, StreamInput.RECV_RST)
        self._drop_output(stream)
        if stream.claimed:
            self._events.append(CallEnded(stream.id, "reset by the client"))
        self._forget_if_done(stream)

    def _settings_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            if payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self._cheap_frame("SETTINGS")
            return
        self._cheap_frame("SETTINGS")
        if not self._settings.take(self._now):
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "too many SETTINGS frames")
        raised = False
        for key, value in frames.parse_settings(payload):
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > frames.WINDOW_MAX:
                    raise ProtocolError(
                        ErrorCode.FLOW_CONTROL_ERROR, f"initial window of {value} bytes"
                    )
                self._check_initial_window(value)
                raised = raised or value > self._peer_initial_window
                self._peer_initial_window = value
            elif key == Setting.MAX_FRAME_SIZE:
                if not frames.DEFAULT_MAX_FRAME_BYTES <= value <= frames.MAX_FRAME_BYTES_LIMIT:
                    raise ProtocolError(
                        ErrorCode.PROTOCOL_ERROR, f"max frame size of {value} bytes"
                    )
                self._peer_max_frame = value
            elif key == Setting.ENABLE_PUSH and value > 1:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"ENABLE_PUSH of {value}")
        self._send(frames.frame(FrameType.SETTINGS, Flag.ACK, 0))
        if raised:
            self._pump_blocked()

    def _check_initial_window(self, value: int) -> None:
        """§6.9.2: a new INITIAL_WINDOW_SIZE may not push a stream's window past 2^31-1.

        The bound on credits makes this O(1); only when the bound says it
        might overflow are the streams walked, which makes the bound exact,
        so a walk happens at most once per rise of some stream's credit.
        """
        if not self.streams or self._credit_bound + value <= frames.WINDOW_MAX:
            return
        self._credit_bound = max(s.send_credit for s in self.streams.values())
        if self._credit_bound + value > frames.WINDOW_MAX:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        increment = frames.parse_u32(payload, "WINDOW_UPDATE") & 0x7FFF_FFFF
        if increment == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        # An update that lets queued answers go is work we asked for; one
        # that moves nothing is a cheap frame.
        if not (self.blocked.get(stream_id) if stream_id else self.blocked):
            self._cheap_frame("WINDOW_UPDATE")
        if stream_id == 0:
            if self._send_window + increment > frames.WINDOW_MAX:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            self._send_window += increment
            self._pump_blocked()
            return
        if stream_id > self.last_stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return  # the stream has ended; updates may still be in flight
        if stream.send_credit + increment + self._peer_initial_window > frames.WINDOW_MAX:
            # A WINDOW_UPDATE past 2^31-1 ends that stream, not the connection
            # (§6.9.1; only a SETTINGS change doing it is a connection error, §6.9.2).
            self._reset(stream, ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
            return
        stream.send_credit += increment
        self._credit_bound = max(self._credit_bound, stream.send_credit)
        self._pump(stream)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = frames.strip_padding(payload, flags)
        if flags & Flag.PRIORITY:
            if len(block) < 5:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority cut short")
            block = block[5:]
        self._header_stream_id = stream_id
        self._header_end_stream = bool(flags & Flag.END_STREAM)
        if flags & Flag.END_HEADERS:
            self._header_block_done(block)
        else:
            self._header_block = bytearray(block)
            self._header_frames = 1
            self._check_block_size(len(block))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_block is None or stream_id != self._header_stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
        if not payload and not flags & Flag.END_HEADERS:
            self._cheap_frame("empty CONTINUATION")
        self._header_frames += 1
        if self._header_frames > self.limits.header_block_frames_max:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header block over {self.limits.header_block_frames_max} frames",
            )
        self._header_block += payload
        self._check_block_size(len(self._header_block))
        if flags & Flag.END_HEADERS:
            block = bytes(self._header_block)
            self._header_block = None
            self._header_block_done(block)

    def _check_block_size(self, size: int) -> None:
        if size > self.limits.header_block_bytes_max:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header block over {self.limits.header_block_bytes_max} bytes",
            )

    def _header_block_done(self, block: bytes) -> None:
        # Decode even a block that will be refused: HPACK state is shared by
        # the whole connection.
        head = self._decoder.decode(block)
        stream_id = self._header_stream_id
        if stream_id in self.streams or stream_id <= self.last_stream_id:
            # Trailers from the client, or a stream reused: neither is gRPC.
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id} again")
        if stream_id % 2 == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "a client stream id must be odd")
        self.last_stream_id = stream_id
        over_streams = len(self.streams) >= self.limits.concurrent_streams_max
        if self.draining or over_streams or self.answers_backed_up():
            # §8.7: REFUSED_STREAM tells the client the call never ran. A
            # client that leaves its answers unread gets no new calls run:
            # each would cost the work of an answer it will not read.
            self._cheap_frame("refused HEADERS")
            if over_streams and not self._refused_streams.take(self._now):
                raise ProtocolError(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"too many streams opened past {self.limits.concurrent_streams_max}",
                )
            self._send(frames.rst_stream(stream_id, ErrorCode.REFUSED_STREAM))
            return
        stream = H2Stream(stream_id, 0, self._stream_window, self._now)
        self.streams[stream_id] = stream
        self._idle_since_s = None
        refusal = _refusal(head)
        if refusal is not None:
            http_status, code, message = refusal
            if self._header_end_stream:
                self._transition(stream, StreamInput.RECV_END_STREAM)
            self._finish_early(stream, http_status, code, message)
            return
        stream.claimed = True
        self.cheap.refund(_TOKENS_PER_CALL)
        self._events.append(CallStarted(stream_id, head))
        if self._header_end_stream:
            self._remote_closed(stream)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        # The connection window is returned as data arrives. What one stream
        # may hold is bounded by its own window, what the whole connection
        # holds by request_buffer_bytes_max, what the server holds by
        # server_request_buffer_bytes_max.
        self._give_back(size)
        data = frames.strip_padding(payload, flags)
        if not data and not flags & Flag.END_STREAM:
            self._cheap_frame("empty DATA")
        stream = self.streams.get(stream_id)
        if stream is None or stream.state is StreamState.CLOSED:
            if stream_id > self.last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a call that already ended: its data is dropped
        if stream.state is StreamState.HALF_CLOSED_REMOTE:
            # §5.1: the client had ended the stream.
            self._reset(stream, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM")
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        stream.last_recv_s = self._now
        if len(data) < size:  # padding reaches no handler: the stream has it back now
            self._return_to_stream(stream, size - len(data))
        end_stream = bool(flags & Flag.END_STREAM)
        if data and stream.state is StreamState.OPEN:
            if not self._hold(stream, data):
                return
            if self._messages(stream, data, end_stream):
                # The usual unary request: one frame, one message, the end.
                self._transition(stream, StreamInput.RECV_END_STREAM)
                return
        if end_stream and not stream.remote_closed:
            self._remote_closed(stream)

    def _messages(self, stream: H2Stream, data: bytes, end_stream: bool) -> bool:
        """Cut gRPC's length-prefixed messages out of the stream's bytes.

        True if ``end_stream`` was told with the last message (its event's
        ``end_stream``): the frame ended the request with nothing left over.

        A message split over many frames is gathered in the stream's buffer,
        whose prefix is read once per frame, so gathering costs no copies
        beyond the appends.
        """
        buffer = stream.recv_buffer
        parts = stream.recv_parts
        if parts is not None:
            parts.append(data)
            if len(data) < stream.recv_missing:
                stream.recv_missing -= len(data)
                return False
            data = b"".join(parts)  # the message's start is parts[0]
            stream.recv_parts = None
            buffer.clear()
        view: bytes | bytearray = data
        if buffer:
            buffer += data
            view = buffer
        offset, end = 0, len(view)
        limit = self.limits.receive_message_bytes_max
        while end - offset >= _MESSAGE_PREFIX_BYTES:
            compressed = view[offset]
            length = int.from_bytes(view[offset + 1 : offset + 5], "big")
            if length > limit:
                buffer.clear()
                self._end_call(
                    stream,
                    GRPC_RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({length} vs. {limit})",
                )
                return False
            if compressed:
                buffer.clear()
                self._end_call(
                    stream,
                    GRPC_INTERNAL,
                    "grpc: compressed flag set with identity or empty encoder",
                )
                return False
            if end - offset - _MESSAGE_PREFIX_BYTES < length:
                break
            start = offset + _MESSAGE_PREFIX_BYTES
            offset = start + length
            last = end_stream and offset == end and stream.claimed
            self._events.append(MessageReceived(stream.id, bytes(view[start:offset]), last))
            if last:
                if view is buffer:
                    buffer.clear()
                return True
        if view is buffer:
            del buffer[:offset]
        elif offset < end:
            buffer += view[offset:]
        if len(buffer) >= _MESSAGE_PREFIX_BYTES:
            missing = _MESSAGE_PREFIX_BYTES + int.from_bytes(buffer[1:5], "big") - len(buffer)
            if missing > _GATHER_AS_PARTS_BYTES_MIN:
                stream.recv_parts = [bytes(buffer)]
                stream.recv_missing = missing
        return False

    def _remote_closed(self, stream: H2Stream) -> None:
        self._transition(stream, StreamInput.RECV_END_STREAM)
        if stream.recv_buffer:
            self._end_call(stream, GRPC_INTERNAL, "grpc: request cut short")
            return
        if stream.claimed:
            self._events.append(RequestEnded(stream.id))
        self._forget_if_done(stream)

    # -- what the client may send ------------------------------------------------

    def _hold(self, stream: H2Stream, data: bytes) -> bool:
        """Count ``data`` against the stream, the connection and the server;
        False (and the call ended) if the server has no room.

        Whole messages arriving in one frame are let in past a full server
        budget: they go to their handler at once, and refusing them would let
        a few clients holding partial requests starve every other client.
        """
        size = len(data)
        if not self._budget.take(size):
            if stream.recv_buffer or not _whole_messages(data):
                self._end_call(
                    stream,
                    GRPC_RESOURCE_EXHAUSTED,
                    f"server holds over {self._budget.bytes_max} bytes of unread requests",
                )
                return False
            self._budget.overdraw(size)
        stream.held_bytes += size
        self.held_bytes += size
        if self.held_bytes > self.limits.request_buffer_bytes_max:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"over {self.limits.request_buffer_bytes_max} bytes of requests held unread",
            )
        return True

    def _release_held(self, stream: H2Stream, size: int) -> None:
        size = min(size, stream.held_bytes)
        stream.held_bytes -= size
        self.held_bytes -= size
        self._budget.give(size)

    def _return_to_stream(self, stream: H2Stream, size: int) -> None:
        if stream.remote_closed or stream.local_closed:
            return
        stream.unacked_bytes += size
        if stream.unacked_bytes * 2 >= self._stream_window:
            self._send(frames.window_update(stream.id, stream.unacked_bytes))
            stream.recv_window += stream.unacked_bytes
            stream.unacked_bytes = 0

    def _give_back(self, size: int) -> None:
        self._recv_unacked += size
        if self._recv_unacked * 2 >= self.limits.connection_window_bytes:
            self._send(frames.window_update(0, self._recv_unacked))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0

    # -- stream lifetime ------------------------------------------------------------

    def _transition(self, stream: H2Stream, event: StreamInput) -> None:
        state = _TRANSITIONS.get((stream.state, event))
        if state is None:
            raise StreamStateError(stream.state, event)
        stream.state = state
        stream.remote_closed = state in _REMOTE_CLOSED
        stream.local_closed = state in _LOCAL_CLOSED

    def _forget_if_done(self, stream: H2Stream) -> None:
        if stream.state is StreamState.CLOSED and not stream.claimed:
            self._forget(stream)

    def _forget(self, stream: H2Stream) -> None:
        self._release_held(stream, stream.held_bytes)
        self._drop_output(stream)
        del self.streams[stream.id]
        if not self.streams:
            self._idle_since_s = self._now
            self._credit_bound = 0
            self._maybe_drained()

    def _maybe_drained(self) -> None:
        if self.draining and not self.streams and not self.ended:
            self.ended = True
            self._events.append(ConnectionEnded(int(ErrorCode.NO_ERROR), "drained", graceful=True))

    def _drop_output(self, stream: H2Stream) -> None:
        if not stream.pending_bytes:  # the usual case: the answer went out whole
            stream.pending_trailers = None
            if self.blocked:
                self.blocked.pop(stream.id, None)
            return
        self._answer_refused = False
        limit = self.limits.connection_send_buffer_bytes_max
        if self.queued_bytes > limit >= self.queued_bytes - stream.pending_bytes:
            self._events.append(StreamWritable(0))
        self.queued_bytes -= stream.pending_bytes
        self.answers.give(stream.pending_bytes)
        stream.pending.clear()
        stream.pending_bytes = 0
        stream.pending_trailers = None
        self.blocked.pop(stream.id, None)

    def _reset(self, stream: H2Stream, code: ErrorCode, reason: str) -> None:
        """End the stream with RST_STREAM ``code`` (a stream error, §5.4.2)."""
        if stream.state is StreamState.CLOSED:
            return
        self._transition(stream, StreamInput.SEND_RST)
        self._send(frames.rst_stream(stream.id, code))
        self._drop_output(stream)
        if stream.claimed:
            self._events.append(CallEnded(stream.id, reason))
        self._forget_if_done(stream)

    def _tick_streams(self, now: float) -> None:
        limits = self.limits
        for stream in list(self.blocked.values()):
            if now - stream.last_send_s >= limits.send_stall_timeout_s:
                self._reset(stream, ErrorCode.CANCEL, "the client read nothing in time")
        timeout_s = limits.request_stall_timeout_s
        if now < self._stall_scan_s or not self.streams:
            return
        # A few looks per timeout: the walk costs nothing per call.
        self._stall_scan_s = now + timeout_s / 4
        for stream in list(self.streams.values()):
            unfinished = stream.recv_buffer or (
                stream.claimed and stream.state is StreamState.OPEN and not stream.may_pause
            )
            if unfinished and now - stream.last_recv_s >= timeout_s:
                self._end_call(stream, GRPC_RESOURCE_EXHAUSTED, "request left unfinished")

    # -- responses -------------------------------------------------------------

    def _head_block(self, block: bytes) -> bytes:
        if self._table_size_sent:
            return block
        self._table_size_sent = True
        return TABLE_SIZE_ZERO + block

    def _end_call(self, stream: H2Stream, code: int, message: str, *, notify: bool = True) -> None:
        """End the call with an error status (nothing queued before it is sent).

        ``notify``: tell the driver (CallEnded), unless the driver asked for it."""
        if stream.local_closed:
            return
        self._drop_output(stream)
        stream.recv_buffer.clear()
        stream.recv_parts = None
        self._release_held(stream, stream.held_bytes)
        if stream.claimed and notify:
            self._events.append(CallEnded(stream.id, message))
        self._close(stream, status_trailers(code, message))

    def _finish_early(self, stream: H2Stream, http_status: int, code: int, message: str) -> None:
        if http_status == 200:
            self._end_call(stream, code, message)
            return
        self._end_stream(stream, self._head_block(http_error_headers(http_status, code, message)))

    def _response_headers(self, stream: H2Stream) -> bytes:
        """The HEADERS frame that opens a response."""
        stream.headers_sent = True
        return frames.frame(
            FrameType.HEADERS, Flag.END_HEADERS, stream.id, self._head_block(RESPONSE_HEADERS)
        )

    def _close(self, stream: H2Stream, trailers: bytes) -> None:
        """End the response with ``trailers``: trailers-only if nothing was sent yet."""
        if not stream.headers_sent:
            stream.headers_sent = True
            trailers = self._head_block(RESPONSE_HEADERS + trailers)
        self._end_stream(stream, trailers)

    def _end_stream(self, stream: H2Stream, block: bytes) -> None:
        self._send(
            frames.frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, stream.id, block)
        )
        self._ended_locally(stream)

    def _ended_locally(self, stream: H2Stream) -> None:
        """Our END_STREAM has been queued: close our side, and stop a client still sending."""
        self._transition(stream, StreamInput.SEND_END_STREAM)
        if stream.state is StreamState.HALF_CLOSED_LOCAL:
            # The client is still sending: tell it to stop (§8.1).
            self._transition(stream, StreamInput.SEND_RST)
            self._send(frames.rst_stream(stream.id, ErrorCode.NO_ERROR))
            stream.recv_buffer.clear()
            stream.recv_parts = None
            self._release_held(stream, stream.held_bytes)
        self._forget_if_done(stream)

    def _queue(self, stream: H2Stream, payload: bytes) -> None:
        message = _grpc_message(payload)
        stream.pending.append(message)
        stream.pending_bytes += len(message)
        self.queued_bytes += len(message)
        self.answers.overdraw(len(message))

    def _sent_data(self, size: int, frame_count: int) -> None:
        self.cheap.refund(frame_count * _TOKENS_PER_DATA_FRAME + size / _SENT_BYTES_PER_TOKEN)

    def _pump(self, stream: H2Stream) -> None:
        """Send what the windows allow of ``stream``'s queue, then its trailers."""
        if stream.local_closed:
            return
        limit = self.limits.stream_send_buffer_bytes_max
        was_over = stream.pending_bytes > limit
        connection_limit = self.limits.connection_send_buffer_bytes_max
        connection_was_over = self.queued_bytes > connection_limit
        sent = sent_frames = 0
        while stream.pending:
            allowed = min(
                stream.send_credit + self._peer_initial_window,
                self._send_window,
                self._peer_max_frame,
            )
            if allowed <= 0 or self._transport_paused:
                if sent or stream.id not in self.blocked:
                    stream.last_send_s = self._now  # the stall is timed from here
                self.blocked[stream.id] = stream
                break
            if not stream.headers_sent:
                self._send(self._response_headers(stream))
            message = stream.pending[0]
            chunk = message[:allowed]
            if len(chunk) < len(message):
                stream.pending[0] = message[allowed:]
            else:
                stream.pending.popleft()
            size = len(chunk)
            stream.pending_bytes -= size
            self.queued_bytes -= size
            self.answers.give(size)
            stream.send_credit -= size
            self._send_window -= size
            sent += size
            sent_frames += 1
            self._send(frames.frame(FrameType.DATA, 0, stream.id, chunk))
        if sent:
            stream.last_send_s = self._now
            self._answer_refused = False
            self._sent_data(sent, sent_frames)
            if connection_was_over and self.queued_bytes <= connection_limit:
                # Writers of every stream may be waiting on the connection.
                self._events.append(StreamWritable(0))
        if stream.pending:
            if was_over and stream.pending_bytes <= limit:
                self._events.append(StreamWritable(stream.id))
            return
        self.blocked.pop(stream.id, None)
        if was_over:
            self._events.append(StreamWritable(stream.id))
        trailers = stream.pending_trailers
        if trailers is not None:
            stream.pending_trailers = None
            self._close(stream, trailers)

    def _pump_blocked(self) -> None:
        if not self.blocked:
            return
        for stream in list(self.blocked.values()):
            if self._send_window <= 0 or self._transport_paused:
                return
            self._pump(stream)


def _whole_messages(data: bytes) -> bool:
    """True if ``data`` is a few whole gRPC messages, nothing partial.

    At most _WHOLE_MESSAGES_MAX are looked at: a frame of empty messages
    is not worth a walk of its every fifth byte."""
    offset, end = 0, len(data)
    for _ in range(_WHOLE_MESSAGES_MAX):
        if end - offset < _MESSAGE_PREFIX_BYTES:
            break
        offset += _MESSAGE_PREFIX_BYTES + int.from_bytes(data[offset + 1 : offset + 5], "big")
    return offset == end


def _refusal(head: RequestHead) -> tuple[int, int, str] | None:
    """(HTTP status, gRPC status, message) for a head that cannot start a call."""
    if head.malformed:
        return 200, GRPC_INTERNAL, f"transport: {head.malformed}"
    if head.method != b"POST":
        method = head.method.decode("latin-1")
        return 405, GRPC_INTERNAL, f'invalid gRPC request method "{method}"'
    if not head.content_type.startswith(b"application/grpc"):
        content_type = head.content_type.decode("latin-1")
        return 415, GRPC_INTERNAL, f'invalid gRPC request content-type "{content_type}"'
    if head.encoding not in (b"", b"identity"):
        encoding = head.encoding.decode("latin-1")
        return (
            200,
            GRPC_UNIMPLEMENTED,
            f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"',
        )
    return None
