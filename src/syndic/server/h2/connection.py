"""One client connection: HTTP/2 frames in, gRPC calls dispatched, frames out.

Everything runs on the member's event loop. Frames are parsed as they
arrive; a finished unary request starts its handler's task at once. Output
from every call is gathered and written with one ``transport.write`` per
loop pass, so a burst of answers leaves in one system call.

Flow control both ways: the client may send only what the windows allow,
and its window is given back only as handlers consume requests, so
unread input is bounded. Responses wait for the client's windows, and a
streaming handler's ``write`` waits while its stream has too much queued.
When the transport's own buffer fills (the client does not read), reading
pauses too, so a client cannot make syndic queue answers without end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Final, cast

import grpc

from syndic.server.h2 import frames
from syndic.server.h2.call import CallContext, RequestIterator, Stream, end_of_requests
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
from syndic.server.h2.limits import ServerLimits

log = logging.getLogger("syndic.server.h2")

# A closing connection waits this long for the client to close its end.
_HANG_UP_WAIT_S: Final = 1.0
# Output gathered for one write; a streaming handler past it flushes at once,
# so the transport can tell it to wait (pause_writing) before more piles up.
_OUT_BYTES_FLUSH: Final = 256 * 1024
_UNKNOWN_ERROR: Final = "unexpected server error"
_MESSAGE_PREFIX_BYTES: Final = 5

HandlerLookup = Callable[[str], Any]


def _grpc_message(payload: bytes) -> bytes:
    """gRPC's length-prefixed message: not compressed, 4-byte length, bytes."""
    return (
        b"\x00" + len(payload).to_bytes(4, "big") + payload
    )  # path -> grpc.RpcMethodHandler | None


class Http2Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection carrying gRPC calls."""

    def __init__(
        self,
        limits: ServerLimits,
        lookup: HandlerLookup,
        unknown_method: Callable[[str], str],
        on_close: Callable[[Http2Connection], None],
    ) -> None:
        self._limits = limits
        self._lookup = lookup
        self._unknown_method = unknown_method
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface_seen = False
        self._preface_timer: asyncio.TimerHandle | None = None
        self._decoder = RequestHeadDecoder(limits.header_list_bytes_max)
        self._streams: dict[int, Stream] = {}
        self._last_stream_id = 0
        self._header_block: bytearray | None = None  # HEADERS awaiting CONTINUATION
        self._header_stream_id = 0
        self._header_end_stream = False
        # What the client allows us (its SETTINGS and WINDOW_UPDATEs).
        self._peer_initial_window = frames.DEFAULT_WINDOW
        self._peer_max_frame = frames.DEFAULT_MAX_FRAME_BYTES
        self._send_window = frames.DEFAULT_WINDOW
        # What we allow the client: the connection window and its unreturned part.
        self._recv_window = limits.connection_window_bytes
        self._recv_unacked = 0
        self._stream_window = limits.initial_stream_window
        self._held_bytes = 0  # request bytes received, not yet taken by handlers
        self._blocked: dict[int, Stream] = {}  # streams waiting for window, in order
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._table_size_sent = False
        self._writing_paused = False
        self._transport_writable: asyncio.Event | None = None
        self._closing = False  # broken or gone: nothing more is read
        self._draining = False  # GOAWAY sent: running calls finish, no new ones
        self.peer_name = "unknown"

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            family = "ipv6" if ":" in str(peer[0]) else "ipv4"
            self.peer_name = f"{family}:{peer[0]}:{peer[1]}"
        limits = self._limits
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
        self._preface_timer = self._loop.call_later(
            limits.preface_timeout_s, self._preface_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._preface_timer is not None:
            self._preface_timer.cancel()
        for stream in list(self._streams.values()):
            self._cancel(stream)
        self._wake_writers()
        self._on_close(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # a broken connection, or a hang-up under way
        try:
            self._receive(data)
        except ProtocolError as exc:
            self._fail(exc.code, exc.reason)

    # -- the write side ----------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_bytes = 0

    def _fail(self, code: ErrorCode, reason: str) -> None:
        """End the connection for a protocol error, telling the client why."""
        log.info("closing HTTP/2 connection from %s: %s: %s", self.peer_name, code.name, reason)
        self._closing = True
        self._send(frames.goaway(self._last_stream_id, code, reason))
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def close_gracefully(self) -> None:
        """GOAWAY: no new calls; the ones running finish (the server's stop).

        Frames from the client are still read, since running calls may need
        its window updates, and the socket is closed only once they end.
        """
        if self._transport is None or self._closing or self._draining:
            return
        self._draining = True
        self._send(frames.goaway(self._last_stream_id, ErrorCode.NO_ERROR))
        if not self._streams:
            self._hang_up()

    def _hang_up(self) -> None:
        """Close after a graceful stop without cutting off the last answer.

        Closing a socket the client still writes to makes the kernel reset
        it and drop what is unsent, so the write side is shut first and the
        client given a moment to close its end.
        """
        transport = self._transport
        assert transport is not None
        self._flush()
        self._closing = True
        if transport.can_write_eof() and not transport.is_closing():
            try:
                transport.write_eof()
            except OSError:  # the client has already gone
                transport.close()
                return
            self._loop.call_later(_HANG_UP_WAIT_S, transport.close)
        else:
            transport.close()

    def abort_now(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _preface_timed_out(self) -> None:
        if not self._preface_seen and not self._closing:
            self._fail(ErrorCode.PROTOCOL_ERROR, "no HTTP/2 preface in time")

    # -- frames in -----------------------------------------------------------

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
            if self._preface_timer is not None:
                self._preface_timer.cancel()
            offset = len(frames.PREFACE)
        max_frame = frames.DEFAULT_MAX_FRAME_BYTES
        while end - offset >= frames.FRAME_HEADER_BYTES:
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
            if self._closing and self._transport is not None and self._transport.is_closing():
                return
        self._keep(view, offset)

    def _keep(self, view: bytes | bytearray, offset: int) -> None:
        if view is self._buffer:
            del self._buffer[:offset]
        else:
            self._buffer = bytearray(view[offset:])

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
            self._settings(flags, stream_id, payload)
        elif frame_type == FrameType.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif frame_type == FrameType.PING:
            if len(payload) != 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"PING of {len(payload)} bytes")
            if stream_id != 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if not flags & Flag.ACK:
                self._send(frames.frame(FrameType.PING, Flag.ACK, 0, payload))
        elif frame_type == FrameType.RST_STREAM:
            if stream_id == 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            frames.parse_u32(payload, "RST_STREAM")
            if stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._cancel(stream)
        elif frame_type == FrameType.PRIORITY:
            if stream_id == 0 or len(payload) != 5:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "malformed PRIORITY")
        elif frame_type == FrameType.PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "a client may not push")
        elif frame_type == FrameType.GOAWAY and stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        # Frames of unknown type are ignored (RFC 9113 §4.1).

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            if payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        for key, value in frames.parse_settings(payload):
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > frames.WINDOW_MAX:
                    raise ProtocolError(
                        ErrorCode.FLOW_CONTROL_ERROR, f"initial window of {value} bytes"
                    )
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > frames.WINDOW_MAX:
                        raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
            elif key == Setting.MAX_FRAME_SIZE:
                if not frames.DEFAULT_MAX_FRAME_BYTES <= value <= frames.MAX_FRAME_BYTES_LIMIT:
                    raise ProtocolError(
                        ErrorCode.PROTOCOL_ERROR, f"max frame size of {value} bytes"
                    )
                self._peer_max_frame = value
            elif key == Setting.ENABLE_PUSH and value > 1:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"ENABLE_PUSH of {value}")
        self._send(frames.frame(FrameType.SETTINGS, Flag.ACK, 0))
        self._pump_blocked()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        increment = frames.parse_u32(payload, "WINDOW_UPDATE") & 0x7FFF_FFFF
        if increment == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > frames.WINDOW_MAX:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            self._pump_blocked()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # the stream has ended; updates may still be in flight
        stream.send_window += increment
        if stream.send_window > frames.WINDOW_MAX:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
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
            self._check_block_size(len(block))

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_block is None or stream_id != self._header_stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
        self._header_block += payload
        self._check_block_size(len(self._header_block))
        if flags & Flag.END_HEADERS:
            block = bytes(self._header_block)
            self._header_block = None
            self._header_block_done(block)

    def _check_block_size(self, size: int) -> None:
        if size > self._limits.header_block_bytes_max:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header block over {self._limits.header_block_bytes_max} bytes",
            )

    def _header_block_done(self, block: bytes) -> None:
        # Decode even a block that will be refused: HPACK state is shared by
        # the whole connection.
        head = self._decoder.decode(block)
        stream_id = self._header_stream_id
        if stream_id in self._streams or stream_id <= self._last_stream_id:
            # Trailers from the client, or a stream reused: neither is gRPC.
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id} again")
        if stream_id % 2 == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "a client stream id must be odd")
        self._last_stream_id = stream_id
        if self._draining:
            self._send(frames.rst_stream(stream_id, ErrorCode.REFUSED_STREAM))
            return
        if len(self._streams) >= self._limits.concurrent_streams_max:
            self._send(frames.rst_stream(stream_id, ErrorCode.REFUSED_STREAM))
            return
        stream = Stream(stream_id, head, self._peer_initial_window, self._stream_window)
        self._streams[stream_id] = stream
        self._open(stream, self._header_end_stream)

    def _open(self, stream: Stream, end_stream: bool) -> None:
        head = stream.head
        refusal = self._refusal(head)
        if refusal is not None:
            http_status, code, message = refusal
            self._finish_early(stream, http_status, code, message)
            return
        handler = self._lookup(head.path)
        if handler is None:
            self._finish_early(
                stream, 200, grpc.StatusCode.UNIMPLEMENTED, self._unknown_method(head.path)
            )
            return
        stream.handler = handler
        if head.timeout_s is not None:
            stream.deadline = self._loop.call_later(head.timeout_s, self._deadline_expired, stream)
        if handler.request_streaming:
            stream.requests = asyncio.Queue()
            stream.task = self._loop.create_task(self._serve(stream, None))
            stream.task.add_done_callback(functools.partial(self._handler_done, stream))
        if end_stream:
            self._remote_closed(stream)

    @staticmethod
    def _refusal(head: RequestHead) -> tuple[int, grpc.StatusCode, str] | None:
        if head.malformed:
            return 200, grpc.StatusCode.INTERNAL, f"transport: {head.malformed}"
        if head.method != b"POST":
            method = head.method.decode("latin-1")
            return 405, grpc.StatusCode.INTERNAL, f'invalid gRPC request method "{method}"'
        if not head.content_type.startswith(b"application/grpc"):
            content_type = head.content_type.decode("latin-1")
            return (
                415,
                grpc.StatusCode.INTERNAL,
                f'invalid gRPC request content-type "{content_type}"',
            )
        if head.encoding not in (b"", b"identity"):
            encoding = head.encoding.decode("latin-1")
            return (
                200,
                grpc.StatusCode.UNIMPLEMENTED,
                f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"',
            )
        return None

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        # The connection window is returned as data arrives. What one stream
        # may hold is bounded by its own window, what the whole connection
        # holds by request_buffer_bytes_max.
        self._give_back(size)
        data = frames.strip_padding(payload, flags)
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed or stream.sent_end:
            if stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a call that already ended: its data is dropped
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        if len(data) < size:  # padding reaches no handler: the stream has it back now
            self._return_to_stream(stream, size - len(data))
        if data:
            self._hold(stream, len(data))
            self._messages(stream, data)
        if flags & Flag.END_STREAM and not stream.sent_end:
            self._remote_closed(stream)

    def _messages(self, stream: Stream, data: bytes) -> None:
        """Cut gRPC's length-prefixed messages out of the stream's bytes.

        A message split over many frames is gathered in the stream's buffer,
        whose prefix is read once per frame, so gathering costs no copies
        beyond the appends.
        """
        buffer = stream.recv_buffer
        view: bytes | bytearray = data
        if buffer:
            buffer += data
            view = buffer
        offset, end = 0, len(view)
        limit = self._limits.receive_message_bytes_max
        while end - offset >= _MESSAGE_PREFIX_BYTES:
            compressed = view[offset]
            length = int.from_bytes(view[offset + 1 : offset + 5], "big")
            if length > limit:
                buffer.clear()
                self._end_call(
                    stream,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({length} vs. {limit})",
                )
                return
            if compressed:
                buffer.clear()
                self._end_call(
                    stream,
                    grpc.StatusCode.INTERNAL,
                    "grpc: compressed flag set with identity or empty encoder",
                )
                return
            if end - offset - _MESSAGE_PREFIX_BYTES < length:
                break
            start = offset + _MESSAGE_PREFIX_BYTES
            offset = start + length
            self._deliver(stream, bytes(view[start:offset]))
            if stream.sent_end:
                buffer.clear()
                return
        if view is buffer:
            del buffer[:offset]
        elif offset < end:
            buffer += view[offset:]

    def _deliver(self, stream: Stream, message: bytes) -> None:
        stream.message_count += 1
        if stream.requests is not None:
            stream.requests.put_nowait(message)
            return
        if stream.message_count > 1:
            self._end_call(
                stream, grpc.StatusCode.INTERNAL, "grpc: more than one request for a unary call"
            )
            return
        stream.single_request = message

    def _remote_closed(self, stream: Stream) -> None:
        stream.remote_closed = True
        if stream.requests is not None:
            if stream.recv_buffer:
                self._end_call(stream, grpc.StatusCode.INTERNAL, "grpc: request cut short")
                return
            stream.requests.put_nowait(end_of_requests())
            return
        if stream.sent_end or stream.task is not None:
            return
        if stream.single_request is None:
            self._end_call(
                stream,
                grpc.StatusCode.INTERNAL,
                "grpc: request cut short"
                if stream.recv_buffer
                else "grpc: no request message for a unary call",
            )
            return
        self.consumed(stream, len(stream.single_request) + _MESSAGE_PREFIX_BYTES)
        stream.task = self._loop.create_task(self._serve(stream, stream.single_request))
        stream.single_request = None
        stream.task.add_done_callback(functools.partial(self._handler_done, stream))

    # -- what the client may send ------------------------------------------------

    def _hold(self, stream: Stream, size: int) -> None:
        stream.held_bytes += size
        self._held_bytes += size
        if self._held_bytes > self._limits.request_buffer_bytes_max:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"over {self._limits.request_buffer_bytes_max} bytes of requests held unread",
            )

    def _release(self, stream: Stream, size: int) -> None:
        size = min(size, stream.held_bytes)
        stream.held_bytes -= size
        self._held_bytes -= size

    def consumed(self, stream: Stream, size: int) -> None:
        """A handler took ``size`` bytes: the stream may send that much more."""
        self._release(stream, size)
        self._return_to_stream(stream, size)

    def _return_to_stream(self, stream: Stream, size: int) -> None:
        if stream.remote_closed or stream.sent_end:
            return
        stream.unacked_bytes += size
        if stream.unacked_bytes * 2 >= self._stream_window:
            self._send(frames.window_update(stream.id, stream.unacked_bytes))
            stream.recv_window += stream.unacked_bytes
            stream.unacked_bytes = 0

    def _give_back(self, size: int) -> None:
        self._recv_unacked += size
        if self._recv_unacked * 2 >= self._limits.connection_window_bytes:
            self._send(frames.window_update(0, self._recv_unacked))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0

    # -- calls ---------------------------------------------------------------

    async def _serve(self, stream: Stream, request: bytes | None) -> None:
        handler = stream.handler
        context = CallContext(self, stream, handler.response_serializer)
        try:
            if handler.request_streaming:
                argument: Any = RequestIterator(self, stream, handler.request_deserializer)
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
                self._finish(stream, OK_TRAILERS)
            else:
                behavior = (
                    handler.stream_unary if handler.request_streaming else handler.unary_unary
                )
                response = await behavior(argument, context)
                self._answer(stream, handler.response_serializer(response))
        except grpc.aio.AbortError:
            code, message = stream.aborted_with or (grpc.StatusCode.UNKNOWN, _UNKNOWN_ERROR)
            self._end_call(stream, code, message)
        except asyncio.CancelledError:
            if not stream.sent_end:  # cancelled by the server's stop, not the client
                self._end_call(stream, grpc.StatusCode.UNAVAILABLE, "server shutting down")
            raise
        except Exception:
            log.exception("gRPC handler for %s failed", stream.head.path)
            self._end_call(stream, grpc.StatusCode.UNKNOWN, _UNKNOWN_ERROR)

    def _handler_done(self, stream: Stream, _task: object = None) -> None:
        if not stream.sent_end:
            return  # the answer is still queued behind the client's window
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        if stream.deadline is not None:
            stream.deadline.cancel()  # it holds the stream until it fires
            stream.deadline = None
        self._release(stream, stream.held_bytes)
        self._streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        if self._draining and not self._closing and not self._streams:
            self._hang_up()

    def _deadline_expired(self, stream: Stream) -> None:
        stream.deadline = None
        if not stream.sent_end:
            self._end_call(stream, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            if stream.task is not None:
                stream.task.cancel()

    def _cancel(self, stream: Stream) -> None:
        """The client reset the stream, or the connection is gone."""
        stream.sent_end = True
        stream.pending.clear()
        stream.pending_trailers = None
        self._blocked.pop(stream.id, None)
        if stream.writable is not None:
            stream.writable.set()
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        else:
            self._forget(stream)

    # -- responses -------------------------------------------------------------

    def _head_block(self, block: bytes) -> bytes:
        if self._table_size_sent:
            return block
        self._table_size_sent = True
        return TABLE_SIZE_ZERO + block

    def _answer(self, stream: Stream, payload: bytes) -> None:
        """A unary call's response and OK status, in one write when the windows allow."""
        if stream.sent_end:
            return
        size = len(payload) + _MESSAGE_PREFIX_BYTES
        if (
            not stream.pending
            and size <= stream.send_window
            and size <= self._send_window
            and size <= self._peer_max_frame
        ):
            stream.send_window -= size
            self._send_window -= size
            self._send(
                self._response_headers(stream)
                + frames.frame(FrameType.DATA, 0, stream.id, _grpc_message(payload))
            )
            self._close(stream, OK_TRAILERS)
            return
        self._queue(stream, payload)
        self._finish(stream, OK_TRAILERS)

    async def write_message(self, stream: Stream, payload: bytes) -> None:
        """Queue one response message, then wait while the stream or transport lags."""
        if stream.sent_end:
            raise asyncio.CancelledError()  # the client has gone; stop the handler
        self._queue(stream, payload)
        self._pump(stream)
        if self._out_bytes >= _OUT_BYTES_FLUSH:
            self._flush()  # may call pause_writing, which the loop below obeys
        while stream.pending_bytes > self._limits.stream_send_buffer_bytes_max or (
            self._writing_paused and not stream.sent_end
        ):
            if stream.sent_end:
                raise asyncio.CancelledError()
            if self._writing_paused:
                if self._transport_writable is None:
                    self._transport_writable = asyncio.Event()
                await self._transport_writable.wait()
                continue
            if stream.writable is None:
                stream.writable = asyncio.Event()
            stream.writable.clear()
            await stream.writable.wait()

    def _queue(self, stream: Stream, payload: bytes) -> None:
        message = _grpc_message(payload)
        stream.pending.append(message)
        stream.pending_bytes += len(message)

    def _finish(self, stream: Stream, trailers: bytes) -> None:
        if stream.sent_end:
            return
        stream.pending_trailers = trailers
        self._pump(stream)

    def _end_call(self, stream: Stream, code: grpc.StatusCode, message: str) -> None:
        """End the call with an error status (nothing queued before it is sent)."""
        if stream.sent_end:
            return
        stream.pending.clear()
        stream.pending_bytes = 0
        self._blocked.pop(stream.id, None)
        self._close(stream, status_trailers(code.value[0], message))

    def _finish_early(
        self, stream: Stream, http_status: int, code: grpc.StatusCode, message: str
    ) -> None:
        if http_status == 200:
            self._end_call(stream, code, message)
            return
        self._end_stream(
            stream, self._head_block(http_error_headers(http_status, code.value[0], message))
        )

    def _response_headers(self, stream: Stream) -> bytes:
        """The HEADERS frame that opens a response."""
        stream.headers_sent = True
        return frames.frame(
            FrameType.HEADERS, Flag.END_HEADERS, stream.id, self._head_block(RESPONSE_HEADERS)
        )

    def _close(self, stream: Stream, trailers: bytes) -> None:
        """End the response with ``trailers``: trailers-only if nothing was sent yet."""
        if not stream.headers_sent:
            stream.headers_sent = True
            trailers = self._head_block(RESPONSE_HEADERS + trailers)
        self._end_stream(stream, trailers)

    def _end_stream(self, stream: Stream, block: bytes) -> None:
        stream.sent_end = True
        self._send(
            frames.frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, stream.id, block)
        )
        self._after_end(stream)
        if stream.task is None or stream.task.done():
            self._forget(stream)

    def _after_end(self, stream: Stream) -> None:
        """We have ended the stream; if the client is still sending, tell it to stop."""
        if not stream.remote_closed:
            self._send(frames.rst_stream(stream.id, ErrorCode.NO_ERROR))
            stream.remote_closed = True
            if stream.requests is not None:
                stream.requests.put_nowait(end_of_requests())
        if stream.writable is not None:
            stream.writable.set()

    def _pump(self, stream: Stream) -> None:
        """Send what the windows allow of ``stream``'s queue, then its trailers."""
        if stream.sent_end:
            return
        out = self._send
        while stream.pending:
            allowed = min(stream.send_window, self._send_window, self._peer_max_frame)
            if allowed <= 0:
                self._blocked[stream.id] = stream
                if (
                    stream.writable is not None
                    and stream.pending_bytes <= self._limits.stream_send_buffer_bytes_max
                ):
                    stream.writable.set()
                return
            if not stream.headers_sent:
                out(self._response_headers(stream))
            message = stream.pending[0]
            chunk = message[:allowed]
            if len(chunk) < len(message):
                stream.pending[0] = message[allowed:]
            else:
                stream.pending.popleft()
            stream.pending_bytes -= len(chunk)
            stream.send_window -= len(chunk)
            self._send_window -= len(chunk)
            out(frames.frame(FrameType.DATA, 0, stream.id, chunk))
        self._blocked.pop(stream.id, None)
        if stream.writable is not None:
            stream.writable.set()
        trailers = stream.pending_trailers
        if trailers is not None:
            stream.pending_trailers = None
            self._close(stream, trailers)

    def _pump_blocked(self) -> None:
        if not self._blocked:
            return
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                return
            self._pump(stream)

    def _wake_writers(self) -> None:
        if self._transport_writable is not None:
            self._transport_writable.set()
            self._transport_writable = None
        for stream in self._streams.values():
            if stream.writable is not None:
                stream.writable.set()
