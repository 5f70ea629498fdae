"""HTTP/2 frames (RFC 9113 §4 and §6): the numbers on the wire and their encoding."""

from __future__ import annotations

import enum
import struct
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES: Final = 9
# The smallest SETTINGS_MAX_FRAME_SIZE, which syndic advertises; a peer may
# raise what it accepts from us, never what we accept from it.
DEFAULT_MAX_FRAME_BYTES: Final = 16_384
MAX_FRAME_BYTES_LIMIT: Final = 2**24 - 1
WINDOW_MAX: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65_535

_HEADER: Final = struct.Struct(">BHBBI")
_U32: Final = struct.Struct(">I")
_GOAWAY: Final = struct.Struct(">II")
_SETTING: Final = struct.Struct(">HI")
# A DATA frame's header followed by gRPC's message prefix (not compressed, length).
_DATA_MESSAGE: Final = struct.Struct(">BHBBIBI")


class FrameType(enum.IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag:
    """Frame flags. Plain ints, not an IntFlag: ``flags & Flag.X`` runs for
    every frame, and IntFlag's operators build enum members each time."""

    END_STREAM: Final = 0x1
    ACK: Final = 0x1
    END_HEADERS: Final = 0x4
    PADDED: Final = 0x8
    PRIORITY: Final = 0x20


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ProtocolError(Exception):
    """The peer broke the protocol: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason


def parse_header(buffer: bytes | bytearray | memoryview, offset: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at ``offset``."""
    high, low, frame_type, flags, stream_id = _HEADER.unpack_from(buffer, offset)
    return (high << 16) | low, frame_type, flags, stream_id & 0x7FFF_FFFF


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _HEADER.pack(length >> 16, length & 0xFFFF, frame_type, flags, stream_id) + payload


def unary_response(stream_id: int, head: bytes, message: bytes, trailers: bytes) -> bytes:
    """HEADERS ``head``, DATA with ``message`` as one gRPC message, HEADERS
    ``trailers`` ending the stream: a whole unary answer, built in one join."""
    size = len(message)
    data_size = size + 5
    return b"".join(
        (
            _HEADER.pack(0, len(head), FrameType.HEADERS, Flag.END_HEADERS, stream_id),
            head,
            _DATA_MESSAGE.pack(
                data_size >> 16, data_size & 0xFFFF, FrameType.DATA, 0, stream_id, 0, size
            ),
            message,
            _HEADER.pack(
                0, len(trailers), FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, stream_id
            ),
            trailers,
        )
    )


def data_message(stream_id: int, message: bytes) -> bytes:
    """One DATA frame carrying ``message`` as one whole gRPC message."""
    size = len(message)
    data_size = size + 5
    return (
        _DATA_MESSAGE.pack(
            data_size >> 16, data_size & 0xFFFF, FrameType.DATA, 0, stream_id, 0, size
        )
        + message
    )


def settings_frame(settings: dict[Setting, int]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in settings.items())
    return frame(FrameType.SETTINGS, 0, 0, payload)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"SETTINGS payload of {len(payload)} bytes")
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, f"{what} payload of {len(payload)} bytes")
    value: int = _U32.unpack(payload)[0]
    return value


def rst_stream(stream_id: int, code: ErrorCode) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: ErrorCode, reason: str = "") -> bytes:
    payload = _GOAWAY.pack(last_stream_id, code) + reason.encode()[:256]
    return frame(FrameType.GOAWAY, 0, 0, payload)


def strip_padding(payload: bytes, flags: int) -> bytes:
    """The frame's content without its padding (RFC 9113 §6.1)."""
    if not flags & 0x8:  # Flag.PADDED
        return payload
    if not payload:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PADDED frame without a pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - pad]
