"""A lean gRPC-over-HTTP/2 connection for unary calls (the client's hot path).

grpc.aio spends about 100 µs of CPU per unary call on the 2-core machine
(its completion queue is polled by a thread of its own that wakes the
event loop for every completion), and more than 300 µs per call when the
caller waits for each answer. This module speaks the same wire (gRPC's
HTTP/2 mapping, RFC 9113) as an ``asyncio.Protocol`` in the caller's loop:
one write per request, one parse per received buffer, no thread. Streams
(Watch, LeaseKeepAlive, Snapshot) stay on grpc.aio.

What it does, and what it leaves out on purpose:

* request headers are HPACK literals that never touch the dynamic table,
  built once per method; the member's response headers go through one
  ``hpack.Decoder`` per connection, in arrival order;
* flow control both ways: large windows advertised up front and topped up
  as answers are consumed; requests larger than the member's window wait
  for its WINDOW_UPDATE;
* SETTINGS, PING (answered), GOAWAY (streams above the last id the member
  took are refused, hence safe to retry; a draining connection takes no new
  calls), RST_STREAM, the member's stream limit (callers over it wait);
* deadlines: ``grpc-timeout`` is sent and the call is reset (CANCEL) when
  the local deadline passes, as grpc does. One timer per connection, set
  for the earliest deadline in flight, watches every call: a call arms no
  timer of its own (calls share a timeout, so a new call's deadline is
  rarely the earliest);
* a request is written at once when no other call is in flight (a lone
  caller waits for nothing); otherwise it joins the requests written
  together at the end of the loop turn, a few at a time
  (:data:`REQUESTS_PER_WRITE`) so the member need not wait for the last;
* no compression, no server push, no keepalive pings: a hung member is
  found by the call's own deadline (idle connections carry no calls).

Failures are raised as ``grpc.aio.AioRpcError`` with gRPC's status codes,
so :class:`~syndic.client.transport.Transport` classifies them the same
way whichever channel carried the call.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast
from urllib.parse import unquote

import grpc
import hpack

from syndic.server.h2.frames import (
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    ProtocolError,
    Setting,
    frame,
    parse_header,
    parse_settings,
    rst_stream,
    settings_frame,
    strip_padding,
    window_update,
)
from syndic.server.h2.headers import encode_integer, leaves_table_unchanged

# What this side accepts: the HTTP/2 default frame size; windows large
# enough that an answer of many megabytes never waits for a WINDOW_UPDATE
# round trip (topped up once half is consumed).
FRAME_BYTES_MAX: Final = 16_384
STREAM_WINDOW_BYTES: Final = 16 * 1024 * 1024
CONNECTION_WINDOW_BYTES: Final = 64 * 1024 * 1024
# A response (headers, then one gRPC message) larger than this is refused:
# a Range answer is bounded by the member's limits, this bounds a broken one.
RESPONSE_BYTES_MAX: Final = 2**31 - 1
# Header blocks whose decoding is kept (see H2Connection._decode): a member
# sends a handful of distinct ones (answer headers, OK trailers, errors).
DECODED_BLOCKS_MAX: Final = 64
# Header blocks a method keeps, one per timeout in ms: calls mostly share
# a few timeouts (the client's, the attempt's), so this is rarely reached.
HEADER_BLOCKS_MAX: Final = 64
# Requests that wait for the end of the loop turn before they are written
# together. Past this many they leave at once: when an answer wakes many
# callers, the member starts on their first requests while the client is
# still building the rest, instead of both sides taking turns idling
# (measured at 64 callers: puts +15 %, txns +17 %; reads, which the member
# answers without waiting for a disk, neither gained nor lost).
REQUESTS_PER_WRITE: Final = 8
# The peer's settings until its SETTINGS frame says otherwise (RFC 9113 §6.5.2).
_PEER_WINDOW_DEFAULT: Final = 65_535
_PEER_STREAMS_DEFAULT: Final = 100
# Client stream ids are odd and below 2**31; a connection near the end of
# its ids drains and a new one is opened.
_STREAM_ID_MAX: Final = 2**31 - 1
_GRPC_PREFIX: Final = struct.Struct(">BI")
# A DATA frame's header followed by the gRPC message prefix (uncompressed).
_DATA_HEADER: Final = struct.Struct(">BHBBIBI")
_PING_ACK: Final = 0x1
_STATUS_BY_VALUE: Final = {code.value[0]: code for code in grpc.StatusCode}
# gRPC's mapping of RST_STREAM codes (grpc-go: http2ErrConvTab).
_RST_STATUS: Final[dict[int, grpc.StatusCode]] = {
    ErrorCode.REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.CANCEL: grpc.StatusCode.CANCELLED,
    ErrorCode.ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}
# The text of a call the member never took (REFUSED_STREAM, or above a
# GOAWAY's last stream id): it may be repeated, even a write (RFC 9113 §8.7).
STREAM_REFUSED: Final = "stream refused by the member, not processed"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def _hpack_string(data: bytes) -> bytes:
    return encode_integer(len(data), 7, 0) + data


def literal(name: bytes, value: bytes) -> bytes:
    """A never-indexed literal with a literal name (RFC 7541 §6.2.3): the
    dynamic table stays untouched, so blocks can be built in any order."""
    return b"\x10" + _hpack_string(name) + _hpack_string(value)


def _indexed_name_literal(index: int, value: bytes) -> bytes:
    # Literal without indexing, name from the static table (RFC 7541 §6.2.2).
    return encode_integer(index, 4, 0x00) + _hpack_string(value)


def request_headers(path: str, authority: str, *, secure: bool) -> bytes:
    """The fixed part of a call's header block (RFC 7541 Appendix A indexes)."""
    return b"".join(
        (
            b"\x83",  # :method POST
            b"\x87" if secure else b"\x86",  # :scheme https / http
            _indexed_name_literal(4, path.encode()),  # :path
            _indexed_name_literal(1, authority.encode()),  # :authority
            _indexed_name_literal(31, b"application/grpc"),  # content-type
            literal(b"te", b"trailers"),
        )
    )


def grpc_timeout(timeout_s: float) -> bytes:
    """gRPC's ``grpc-timeout`` (at most 8 digits) in milliseconds, or seconds if longer."""
    ms = max(1, int(timeout_s * 1000))  # UnaryMethod keys its blocks by this
    value = b"%dm" % ms if ms < 100_000_000 else b"%dS" % min(int(timeout_s), 99_999_999)
    return literal(b"grpc-timeout", value)


class _Stream:
    __slots__ = ("data", "deadline", "future", "headers_seen", "send_window", "unacked")

    def __init__(self, future: asyncio.Future[bytes], send_window: int, deadline: float) -> None:
        self.future = future
        # The DATA received: the first frame's payload as it came (an answer
        # is nearly always one frame), joined into a bytearray past that.
        self.data: bytes | bytearray = b""
        self.deadline = deadline  # on the loop's clock
        self.headers_seen = False
        self.send_window = send_window
        self.unacked = 0


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection to a member, carrying unary gRPC calls."""

    def __init__(self, target: str, *, secure: bool) -> None:
        self.target = target
        self.secure = secure
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = b""  # the start of a frame not yet received whole
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._decoder = hpack.Decoder()
        self._decoded: dict[bytes, dict[bytes, bytes]] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._header_stream = 0  # a HEADERS awaiting CONTINUATION
        self._header_block = bytearray()
        self._header_end_stream = False
        self.peer_window = _PEER_WINDOW_DEFAULT  # connection send window
        self._peer_stream_window = _PEER_WINDOW_DEFAULT
        self._peer_frame_bytes = FRAME_BYTES_MAX
        self._peer_streams_max = _PEER_STREAMS_DEFAULT
        self._recv_unacked = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._window_waiters: list[asyncio.Future[None]] = []
        # The connection's one deadline timer and when it fires.
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self.draining = False
        self.closed = False
        self._close_error = rpc_error(grpc.StatusCode.UNAVAILABLE, "connection closed")

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self._transport = cast(asyncio.Transport, transport)
        settings = settings_frame(
            {
                Setting.ENABLE_PUSH: 0,
                Setting.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
            }
        )
        grow = window_update(0, CONNECTION_WINDOW_BYTES - _PEER_WINDOW_DEFAULT)
        self._transport.write(PREFACE + settings + grow)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to {self.target} lost" + (f": {exc}" if exc else "")
        self._shut(rpc_error(grpc.StatusCode.UNAVAILABLE, reason))

    def _send(self, data: bytes) -> None:
        """Queue frames; they leave together at the end of this loop turn,
        or as soon as :data:`REQUESTS_PER_WRITE` are waiting, so many
        callers' requests cost a few writes (system calls)."""
        if self.closed or self._transport is None:
            return
        out = self._out
        out.append(data)
        if len(out) >= REQUESTS_PER_WRITE:
            self._flush()
        elif not self._flush_scheduled:
            # One end-of-turn flush however many early ones go before it.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_at_turn_end)

    def _flush_at_turn_end(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        # Frames are sliced out of the received bytes themselves (one copy
        # each); only a frame cut by the end of a read waits, for the next.
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        size = len(buffer)
        try:
            while size - offset >= 9:
                length, frame_type, flags, stream_id = parse_header(buffer, offset)
                if length > FRAME_BYTES_MAX:
                    raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                end = offset + 9 + length
                if end > size:
                    break
                self._frame(frame_type, flags, stream_id, buffer[offset + 9 : end])
                offset = end
        except ProtocolError as exc:
            self._fail_connection(exc.code, exc.reason)
            return
        self._buffer = bytes(buffer[offset:]) if offset < size else b""

    # ---------------------------------------------------------------- calls

    async def unary(self, header_block: bytes, message: bytes, timeout_s: float) -> bytes:
        """Send one request; the answer's message bytes, or AioRpcError."""
        loop = self._loop
        deadline = loop.time() + timeout_s
        if self.draining or len(self._streams) >= self._peer_streams_max:
            await self._wait_for_slot(deadline)
        stream_id = self._next_id
        self._next_id += 2
        if self._next_id >= _STREAM_ID_MAX:
            self.draining = True
        future: asyncio.Future[bytes] = loop.create_future()
        stream = _Stream(future, self._peer_stream_window, deadline)
        streams = self._streams
        streams[stream_id] = stream
        try:
            if not self._send_request(stream_id, stream, header_block, message):
                async with asyncio.timeout_at(deadline):
                    await self._send_rest(stream_id, stream, header_block, message)
            if self._deadline_timer is None or deadline < self._deadline_at:
                self._arm_deadline_timer(deadline)
            return await future
        except TimeoutError:
            self._reset(stream_id)
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except asyncio.CancelledError:
            self._reset(stream_id)
            raise
        finally:
            if streams.pop(stream_id, None) is not None:
                self._release_slot()

    async def _wait_for_slot(self, deadline: float) -> None:
        """Until the member's stream limit lets one more call in (by ``deadline``)."""
        try:
            async with asyncio.timeout_at(deadline):
                while len(self._streams) >= self._peer_streams_max and not self.draining:
                    waiter = self._loop.create_future()
                    self._slot_waiters.append(waiter)
                    await waiter
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        if self.draining:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, STREAM_REFUSED)

    def _arm_deadline_timer(self, deadline: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = deadline
        self._deadline_timer = self._loop.call_at(deadline, self._expire_deadlines)

    def _expire_deadlines(self) -> None:
        """Fail the calls whose deadline passed (reset, as grpc does); set the
        timer for the earliest of the others."""
        self._deadline_timer = None
        now = self._loop.time()
        earliest = None
        for stream_id, stream in list(self._streams.items()):
            if stream.deadline <= now:
                self._reset(stream_id)
                self._finish(
                    stream_id, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                )
            elif earliest is None or stream.deadline < earliest:
                earliest = stream.deadline
        if earliest is not None and not self.closed:
            self._arm_deadline_timer(earliest)

    def _send_request(
        self, stream_id: int, stream: _Stream, header_block: bytes, message: bytes
    ) -> bool:
        """Send the whole request if the member's windows and frame size allow
        it (False: nothing was sent, see :meth:`_send_rest`)."""
        size = len(message) + 5
        if size > self._peer_frame_bytes or size > min(self.peer_window, stream.send_window):
            return False
        self.peer_window -= size
        stream.send_window -= size
        request = b"".join(
            (
                self._header_frames(stream_id, header_block),
                _DATA_HEADER.pack(
                    size >> 16,
                    size & 0xFFFF,
                    FrameType.DATA,
                    Flag.END_STREAM,
                    stream_id,
                    0,
                    size - 5,
                ),
                message,
            )
        )
        transport = self._transport
        if len(self._streams) == 1 and not self._out and transport is not None and not self.closed:
            transport.write(request)  # no other call to share a write with
        else:
            self._send(request)
        return True

    async def _send_rest(
        self, stream_id: int, stream: _Stream, header_block: bytes, message: bytes
    ) -> None:
        """A request larger than a frame or than the member's windows: DATA
        frames as the windows open."""
        body = _GRPC_PREFIX.pack(0, len(message)) + message
        size = len(body)
        self._send(self._header_frames(stream_id, header_block))
        view = memoryview(body)
        sent = 0
        while sent < size:
            room = min(self.peer_window, stream.send_window, self._peer_frame_bytes)
            if room <= 0:
                waiter = self._loop.create_future()
                self._window_waiters.append(waiter)
                await waiter
                if self.closed:
                    raise self._close_error
                continue
            chunk = bytes(view[sent : sent + room])
            sent += len(chunk)
            self.peer_window -= len(chunk)
            stream.send_window -= len(chunk)
            flags = Flag.END_STREAM if sent == size else 0
            self._send(frame(FrameType.DATA, flags, stream_id, chunk))

    def _header_frames(self, stream_id: int, block: bytes) -> bytes:
        limit = self._peer_frame_bytes
        if len(block) <= limit:
            return frame(FrameType.HEADERS, Flag.END_HEADERS, stream_id, block)
        parts = [block[i : i + limit] for i in range(0, len(block), limit)]
        out = [frame(FrameType.HEADERS, 0, stream_id, parts[0])]
        for index, part in enumerate(parts[1:], start=2):
            flags = Flag.END_HEADERS if index == len(parts) else 0
            out.append(frame(FrameType.CONTINUATION, flags, stream_id, part))
        return b"".join(out)

    def _reset(self, stream_id: int) -> None:
        if stream_id in self._streams:
            self._send(rst_stream(stream_id, ErrorCode.CANCEL))

    def _release_slot(self) -> None:
        while self._slot_waiters and len(self._streams) < self._peer_streams_max:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._flush()  # resets of calls given up just now still go out
            self._transport.close()
        self._shut(rpc_error(grpc.StatusCode.CANCELLED, "channel closed"))

    # ---------------------------------------------------------------- frames

    def _frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._header_stream and frame_type != FrameType.CONTINUATION:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "a header block was interrupted")
        if frame_type == FrameType.DATA:
            self._data(flags, stream_id, payload)
        elif frame_type == FrameType.HEADERS:
            self._headers(flags, stream_id, payload)
        elif frame_type == FrameType.CONTINUATION:
            if stream_id != self._header_stream or not stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
            self._header_block += payload
            if len(self._header_block) > self._decoder.max_header_list_size:
                raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
            if flags & Flag.END_HEADERS:
                self._header_stream = 0
                self._header_done(stream_id, bytes(self._header_block), self._header_end_stream)
        elif frame_type == FrameType.SETTINGS:
            self._settings(flags, payload)
        elif frame_type == FrameType.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif frame_type == FrameType.PING:
            if len(payload) != 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "PING payload not 8 bytes")
            if not flags & _PING_ACK:
                self._send(frame(FrameType.PING, _PING_ACK, 0, payload))
        elif frame_type == FrameType.RST_STREAM:
            if len(payload) != 4:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM payload not 4 bytes")
            self._rst(stream_id, struct.unpack(">I", payload)[0])
        elif frame_type == FrameType.GOAWAY:
            self._goaway(payload)
        elif frame_type == FrameType.PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._consumed(len(payload))
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # reset by us a moment ago
        data = strip_padding(payload, flags) if flags & Flag.PADDED else payload
        if not stream.data:
            stream.data = data
        else:
            if isinstance(stream.data, bytes):
                stream.data = bytearray(stream.data)
            stream.data += data
        stream.unacked += len(payload)
        if len(stream.data) > RESPONSE_BYTES_MAX:
            error = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "answer too large")
            self._finish(stream_id, error)
            return
        if stream.unacked >= STREAM_WINDOW_BYTES // 2:
            self._send(window_update(stream_id, stream.unacked))
            stream.unacked = 0
        if flags & Flag.END_STREAM:
            self._finish(stream_id, rpc_error(grpc.StatusCode.INTERNAL, "answer without trailers"))

    def _consumed(self, size: int) -> None:
        self._recv_unacked += size
        if self._recv_unacked >= CONNECTION_WINDOW_BYTES // 2:
            self._send(window_update(0, self._recv_unacked))
            self._recv_unacked = 0

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = strip_padding(payload, flags)
        if flags & Flag.PRIORITY:
            block = block[5:]
        if flags & Flag.END_HEADERS:
            self._header_done(stream_id, block, bool(flags & Flag.END_STREAM))
        else:
            self._header_stream = stream_id
            self._header_block = bytearray(block)
            self._header_end_stream = bool(flags & Flag.END_STREAM)

    def _header_done(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        headers = self._decode(block)
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # decoded all the same: the HPACK table must stay in step
        if not stream.headers_seen:
            stream.headers_seen = True
            status = headers.get(b":status", b"")
            if status != b"200":
                self._finish(stream_id, _http_status_error(status))
                return
        if end_stream:
            self._trailers(stream_id, stream, headers)

    def _decode(self, block: bytes) -> dict[bytes, bytes]:
        """The block's headers. A member answers every call with the same few
        blocks; one that leaves the table as it was (references and literals
        that are not indexed) decodes the same until the table changes, so
        its decoding is kept until then."""
        cache = self._decoded
        headers = cache.get(block)
        if headers is not None:
            return headers
        try:
            headers = dict(self._decoder.decode(block, raw=True))
        except hpack.HPACKError as exc:
            raise ProtocolError(ErrorCode.COMPRESSION_ERROR, str(exc)) from None
        if not leaves_table_unchanged(block):
            cache.clear()  # the table may have changed: references mean other things
        elif len(cache) < DECODED_BLOCKS_MAX:
            cache[block] = headers
        return headers

    def _trailers(self, stream_id: int, stream: _Stream, headers: dict[bytes, bytes]) -> None:
        raw_status = headers.get(b"grpc-status")
        if raw_status == b"0":
            self._finish_message(stream_id, stream.data)
            return
        if raw_status is None:
            error = rpc_error(grpc.StatusCode.UNKNOWN, "answer without grpc-status")
            self._finish(stream_id, error)
            return
        code = _STATUS_BY_VALUE.get(int(raw_status) if raw_status.isdigit() else -1)
        if code is None:
            code = grpc.StatusCode.UNKNOWN
        if code is not grpc.StatusCode.OK:
            message = unquote(headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
            self._finish(stream_id, rpc_error(code, message))
            return
        self._finish_message(stream_id, stream.data)

    def _finish_message(self, stream_id: int, data: bytes | bytearray) -> None:
        """End the call with the one gRPC message ``data`` holds."""
        if len(data) < 5:
            self._finish(stream_id, rpc_error(grpc.StatusCode.INTERNAL, "answer without a message"))
            return
        compressed, length = _GRPC_PREFIX.unpack_from(data, 0)
        if compressed or length != len(data) - 5:
            error = rpc_error(grpc.StatusCode.INTERNAL, "answer is not one uncompressed message")
            self._finish(stream_id, error)
            return
        self._finish(stream_id, bytes(data[5:]))

    def _finish(self, stream_id: int, outcome: bytes | grpc.aio.AioRpcError) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None or stream.future.done():
            return
        if isinstance(outcome, bytes):
            stream.future.set_result(outcome)
        else:
            stream.future.set_exception(outcome)
        self._release_slot()
        if self.draining and not self._streams and self._transport is not None:
            self._flush()
            self._transport.close()

    def _settings(self, flags: int, payload: bytes) -> None:
        if flags & Flag.ACK:
            return
        for key, value in parse_settings(payload):
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > 2**31 - 1:
                    raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "window over 2**31-1")
                delta = value - self._peer_stream_window
                self._peer_stream_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == Setting.MAX_FRAME_SIZE:
                if not FRAME_BYTES_MAX <= value <= 2**24 - 1:
                    raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"max frame size {value}")
                self._peer_frame_bytes = value
            elif key == Setting.MAX_CONCURRENT_STREAMS:
                self._peer_streams_max = value
        self._send(frame(FrameType.SETTINGS, Flag.ACK, 0))
        self._wake_senders()
        self._release_slot()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        increment = struct.unpack(">I", payload)[0] & 0x7FFF_FFFF if len(payload) == 4 else 0
        if not increment:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        if stream_id == 0:
            self.peer_window += increment
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._wake_senders()

    def _wake_senders(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _rst(self, stream_id: int, code: int) -> None:
        status = _RST_STATUS.get(code, grpc.StatusCode.INTERNAL)
        details = STREAM_REFUSED if code == ErrorCode.REFUSED_STREAM else f"stream reset ({code})"
        self._finish(stream_id, rpc_error(status, details))

    def _goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY payload under 8 bytes")
        last_stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFF_FFFF
        self.draining = True
        for stream_id in [s for s in self._streams if s > last_stream_id]:
            self._finish(stream_id, rpc_error(grpc.StatusCode.UNAVAILABLE, STREAM_REFUSED))
        self._wake_slot_waiters()
        if not self._streams and self._transport is not None:
            self._flush()
            self._transport.close()

    def _fail_connection(self, code: ErrorCode, reason: str) -> None:
        if self._transport is not None and not self.closed:
            self._send(frame(FrameType.GOAWAY, 0, 0, struct.pack(">II", 0, code)))
            self._flush()
            self._transport.close()
        self._shut(rpc_error(grpc.StatusCode.INTERNAL, f"HTTP/2 protocol error: {reason}"))

    def _shut(self, error: grpc.aio.AioRpcError) -> None:
        if self.closed:
            return
        self.closed = self.draining = True
        self._close_error = error
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        for stream_id in list(self._streams):
            self._finish(stream_id, error)
        self._wake_senders()
        self._wake_slot_waiters()

    def _wake_slot_waiters(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


def _http_status_error(status: bytes) -> grpc.aio.AioRpcError:
    # gRPC's mapping of HTTP statuses (doc/http-grpc-status-mapping.md).
    code = {
        b"400": grpc.StatusCode.INTERNAL,
        b"401": grpc.StatusCode.UNAUTHENTICATED,
        b"403": grpc.StatusCode.PERMISSION_DENIED,
        b"404": grpc.StatusCode.UNIMPLEMENTED,
        b"429": grpc.StatusCode.UNAVAILABLE,
        b"502": grpc.StatusCode.UNAVAILABLE,
        b"503": grpc.StatusCode.UNAVAILABLE,
        b"504": grpc.StatusCode.UNAVAILABLE,
    }.get(status, grpc.StatusCode.UNKNOWN)
    return rpc_error(code, f"HTTP status {status.decode('ascii', 'replace') or 'missing'}")


class H2Channel:
    """Unary calls to one member over one lean HTTP/2 connection, opened on
    first use and again after it closes."""

    def __init__(
        self, target: str, *, ssl_context: ssl.SSLContext | None, server_hostname: str | None
    ) -> None:
        self.target = target
        self._host, _, port = target.rpartition(":")
        self._port = int(port)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._connection: H2Connection | None = None
        self._connecting: asyncio.Future[H2Connection] | None = None
        self._blocks: dict[str, bytes] = {}

    def method(
        self,
        path: str,
        request_serializer: Callable[[Any], bytes] | None,
        response_deserializer: Callable[[bytes], Any] | None,
    ) -> UnaryMethod:
        return UnaryMethod(self, path, request_serializer, response_deserializer)

    def header_block(self, path: str) -> bytes:
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = request_headers(
                path, self.target, secure=self._ssl is not None
            )
        return block

    async def connection(self) -> H2Connection:
        connection = self._connection
        if connection is not None and not connection.draining:
            return connection
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> H2Connection:
        loop = asyncio.get_running_loop()
        secure = self._ssl is not None
        try:
            _, protocol = await loop.create_connection(
                lambda: H2Connection(self.target, secure=secure),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._server_hostname if secure else None,
            )
        except (OSError, ssl.SSLError) as exc:
            # grpc's words for a connection never made: the request never left.
            raise rpc_error(
                grpc.StatusCode.UNAVAILABLE, f"failed to connect to {self.target}: {exc}"
            ) from None
        self._connection = protocol
        return protocol

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UnaryMethod:
    """``await method(request, timeout=, metadata=)``, as a grpc.aio unary
    callable (without a serializer, the request and answer are bytes)."""

    __slots__ = ("_block", "_blocks", "_channel", "_deserialize", "_metadata", "_serialize")

    def __init__(
        self,
        channel: H2Channel,
        path: str,
        request_serializer: Callable[[Any], bytes] | None,
        response_deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._block = channel.header_block(path)
        self._serialize = request_serializer
        self._deserialize = response_deserializer
        # Whole header blocks by (timeout in ms, metadata): a call's block
        # differs from the last one's only when its timeout or token does.
        self._blocks: dict[int, bytes] = {}
        self._metadata: tuple[tuple[str, str], ...] | None = None

    async def __call__(
        self,
        request: Any,
        *,
        timeout: float,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> Any:
        if metadata is not self._metadata:
            self._metadata = metadata
            self._blocks.clear()
        timeout_ms = max(1, int(timeout * 1000))
        block = self._blocks.get(timeout_ms)
        if block is None:
            if len(self._blocks) >= HEADER_BLOCKS_MAX:
                self._blocks.clear()
            block = self._block + grpc_timeout(timeout)
            if metadata:
                block += b"".join(literal(k.encode(), v.encode()) for k, v in metadata)
            self._blocks[timeout_ms] = block
        connection = self._channel._connection
        if connection is None or connection.draining:
            connection = await self._channel.connection()
        message = request if self._serialize is None else self._serialize(request)
        answer = await connection.unary(block, message, timeout)
        return answer if self._deserialize is None else self._deserialize(answer)


def tls_context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """A client TLS context offering h2, from etcd's options (--cacert, --cert, --key)."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    return context


__all__ = [
    "STREAM_REFUSED",
    "H2Channel",
    "H2Connection",
    "UnaryMethod",
    "grpc_timeout",
    "literal",
    "request_headers",
    "rpc_error",
    "tls_context",
]
