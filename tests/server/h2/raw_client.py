"""A raw HTTP/2 client for poking syndic's gRPC server frame by frame.

grpc.aio never sends a malformed frame, so tests of the server's reaction to
hostile input need a client that will: this one writes whatever frames a test
builds (with the server's own ``frames.frame``) and reads back every frame,
keeping per-stream responses, flow-control credit and the connection's GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import hpack

from syndic.server.h2 import frames
from syndic.server.h2.frames import ErrorCode, Flag, FrameType

# Every read is bounded so a server that never answers fails the test
# instead of hanging it; loopback answers take milliseconds.
READ_TIMEOUT_S = 5.0
GRPC_PREFIX = struct.Struct(">BI")

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class GoAway:
    last_stream_id: int
    code: ErrorCode
    reason: str


@dataclass
class Response:
    """What the server sent on one stream."""

    headers: Headers = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    reset: ErrorCode | None = None  # RST_STREAM's code, if one came
    ended: bool = False  # END_STREAM seen

    @property
    def http_status(self) -> int:
        return int(dict(self.headers)[":status"])

    @property
    def _status_fields(self) -> dict[str, str]:
        # A "Trailers-Only" response carries the status in its only HEADERS.
        return dict(self.trailers or self.headers)

    @property
    def grpc_status(self) -> int:
        return int(self._status_fields["grpc-status"])

    @property
    def grpc_message(self) -> str:
        """grpc-message, percent-decoded as a gRPC client does."""
        return urllib.parse.unquote(self._status_fields.get("grpc-message", ""))

    def messages(self) -> list[bytes]:
        out, offset = [], 0
        while offset < len(self.data):
            compressed, length = GRPC_PREFIX.unpack_from(self.data, offset)
            assert compressed == 0
            offset += GRPC_PREFIX.size
            out.append(bytes(self.data[offset : offset + length]))
            offset += length
        return out


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One length-prefixed gRPC message."""
    return GRPC_PREFIX.pack(int(compressed), len(payload)) + payload


def request_headers(
    path: str,
    *,
    method: str = "POST",
    content_type: str = "application/grpc",
    extra: Sequence[tuple[str, str]] = (),
) -> Headers:
    return [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", content_type),
        ("te", "trailers"),
        *extra,
    ]


class RawClient:
    """One HTTP/2 connection to the server under test, driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self._next_stream_id = 1
        self.frames: list[Frame] = []  # every frame received, in order
        self.responses: dict[int, Response] = {}
        self.server_settings: dict[int, int] = {}
        self.window_credit: dict[int, int] = {}  # WINDOW_UPDATE increments per stream
        self.ping_acks: list[bytes] = []
        self.goaway: GoAway | None = None
        self.closed = False  # the server closed the connection
        self._header_block: tuple[int, int, bytearray] | None = None  # stream, flags, block

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        preface: bool = True,
        settings: dict[frames.Setting, int] | None = None,
    ) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if preface:
            client.send(frames.PREFACE + frames.settings_frame(settings or {}))
        return client

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # the server may have reset the connection first
            await self._writer.wait_closed()

    # -- sending -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._writer.write(data)

    def send_frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        self.send(frames.frame(frame_type, flags, stream_id, payload))

    def send_data(
        self, stream_id: int, data: bytes, *, end_stream: bool = False, frame_bytes: int = 16_384
    ) -> None:
        """``data`` on ``stream_id`` in DATA frames of at most ``frame_bytes``."""
        for offset in range(0, len(data), frame_bytes):
            last = offset + frame_bytes >= len(data)
            flags = Flag.END_STREAM if end_stream and last else 0
            self.send_frame(FrameType.DATA, flags, stream_id, data[offset : offset + frame_bytes])

    async def drain(self) -> None:
        await self._writer.drain()

    def new_stream_id(self) -> int:
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        return stream_id

    def header_block(self, headers: Iterable[tuple[str, str]]) -> bytes:
        return self.encoder.encode(list(headers))

    def start_call(
        self,
        path: str,
        messages: Sequence[bytes] = (),
        *,
        end_stream: bool = True,
        headers: Headers | None = None,
    ) -> int:
        """HEADERS, then one DATA frame per (unprefixed) message; returns the stream id."""
        stream_id = self.new_stream_id()
        block = self.header_block(headers if headers is not None else request_headers(path))
        flags = Flag.END_HEADERS | (Flag.END_STREAM if end_stream and not messages else 0)
        self.send_frame(FrameType.HEADERS, flags, stream_id, block)
        for i, message in enumerate(messages):
            last = i == len(messages) - 1
            flags = Flag.END_STREAM if end_stream and last else 0
            self.send_frame(FrameType.DATA, flags, stream_id, grpc_message(message))
        return stream_id

    # -- receiving -------------------------------------------------------------

    async def read_frame(self) -> Frame | None:
        """The next frame (recorded and applied), or None once the server has closed."""
        try:
            head = await asyncio.wait_for(
                self._reader.readexactly(frames.FRAME_HEADER_BYTES), READ_TIMEOUT_S
            )
            length, frame_type, flags, stream_id = frames.parse_header(head, 0)
            payload = await asyncio.wait_for(self._reader.readexactly(length), READ_TIMEOUT_S)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            return None
        frame = Frame(frame_type, flags, stream_id, payload)
        self.frames.append(frame)
        self._apply(frame)
        return frame

    def _apply(self, frame: Frame) -> None:
        kind, flags, stream_id, payload = frame.type, frame.flags, frame.stream_id, frame.payload
        if kind == FrameType.HEADERS:
            block = frames.strip_padding(payload, flags)
            if flags & Flag.PRIORITY:
                block = block[5:]
            self._header_block = (stream_id, flags, bytearray(block))
        elif kind == FrameType.CONTINUATION:
            assert self._header_block is not None, "CONTINUATION without HEADERS"
            self._header_block[2].extend(payload)
        elif kind == FrameType.DATA:
            response = self.responses.setdefault(stream_id, Response())
            response.data += frames.strip_padding(payload, flags)
            response.ended |= bool(flags & Flag.END_STREAM)
        elif kind == FrameType.RST_STREAM:
            code = struct.unpack(">I", payload)[0]
            self.responses.setdefault(stream_id, Response()).reset = ErrorCode(code)
        elif kind == FrameType.SETTINGS and not flags & Flag.ACK:
            for key, value in frames.parse_settings(payload):
                self.server_settings[key] = value
        elif kind == FrameType.WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0]
            self.window_credit[stream_id] = self.window_credit.get(stream_id, 0) + increment
        elif kind == FrameType.PING and flags & Flag.ACK:
            self.ping_acks.append(payload)
        elif kind == FrameType.GOAWAY:
            last, code = struct.unpack_from(">II", payload)
            self.goaway = GoAway(last, ErrorCode(code), payload[8:].decode())
        if kind in (FrameType.HEADERS, FrameType.CONTINUATION) and flags & Flag.END_HEADERS:
            self._headers_done()

    def _headers_done(self) -> None:
        assert self._header_block is not None
        stream_id, flags, block = self._header_block
        self._header_block = None
        fields = [(str(k), str(v)) for k, v in self._decoder.decode(bytes(block))]
        response = self.responses.setdefault(stream_id, Response())
        if response.headers:
            response.trailers = fields
        else:
            response.headers = fields
        response.ended |= bool(flags & Flag.END_STREAM)

    async def response(self, stream_id: int, *, refill: bool = False) -> Response:
        """Read until ``stream_id`` has ended (END_STREAM or RST_STREAM).

        With ``refill``, every DATA frame read is given back to the server at
        once (WINDOW_UPDATE on its stream and on the connection), as a client
        that keeps up with its reads does.
        """
        while True:
            response = self.responses.get(stream_id)
            if response is not None and (response.ended or response.reset is not None):
                return response
            frame = await self.read_frame()
            if frame is None:
                raise AssertionError(
                    f"connection closed before stream {stream_id} ended; GOAWAY: {self.goaway}"
                )
            if refill and frame.type == FrameType.DATA and frame.payload:
                size = len(frame.payload)
                self.send(
                    frames.window_update(0, size) + frames.window_update(frame.stream_id, size)
                )

    async def reset_after(self, stream_id: int) -> ErrorCode | None:
        """The RST_STREAM that may follow an ended stream, read up to a PING's answer."""
        await self.sync()
        return self.responses[stream_id].reset

    def data_bytes(self, stream_id: int) -> int:
        """DATA payload received so far on ``stream_id``."""
        response = self.responses.get(stream_id)
        return 0 if response is None else len(response.data)

    async def sync(self) -> None:
        """Send a PING and read until its ACK: the server has handled all we sent."""
        opaque = (len(self.ping_acks) + 1).to_bytes(8, "big")
        self.send_frame(FrameType.PING, 0, 0, opaque)
        while opaque not in self.ping_acks:
            if await self.read_frame() is None:
                raise AssertionError("connection closed before the PING was answered")

    async def read_goaway(self) -> GoAway:
        """Read until GOAWAY, then until the server closes the connection."""
        while self.goaway is None:
            if await self.read_frame() is None:
                raise AssertionError("connection closed without GOAWAY")
        while await self.read_frame() is not None:
            pass
        return self.goaway
