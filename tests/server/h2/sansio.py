"""A client that drives :class:`H2Protocol` directly: frames in, events and frames out.

No socket and no event loop: time is a number the test moves, so timers and
rate limits are tested exactly and fast. Every step checks the protocol's
invariants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import hpack

from syndic.server.h2 import frames
from syndic.server.h2.events import Event
from syndic.server.h2.frames import ErrorCode, Flag, FrameType
from syndic.server.h2.limits import ServerLimits, SharedBudget
from syndic.server.h2.protocol import H2Protocol
from tests.server.h2.raw_client import GoAway, grpc_message, request_headers

RANGE_PATH = "/etcdserverpb.KV/Range"


@dataclass
class Out:
    """What the server sent, frame by frame, as a client would read it."""

    goaway: GoAway | None = None
    resets: dict[int, ErrorCode] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)  # grpc-status per stream
    messages: dict[int, str] = field(default_factory=dict)  # grpc-message per stream
    data: dict[int, int] = field(default_factory=dict)  # DATA bytes per stream
    payloads: dict[int, bytes] = field(default_factory=dict)  # DATA content per stream
    pings: list[bytes] = field(default_factory=list)  # PINGs the server sent (not ACKs)
    frame_types: list[int] = field(default_factory=list)


class Peer:
    """One client connection to an H2Protocol, at time ``now`` (seconds)."""

    def __init__(
        self,
        limits: ServerLimits | None = None,
        *,
        budget: SharedBudget | None = None,
        now: float = 0.0,
        preface: bool = True,
    ) -> None:
        self.limits = limits if limits is not None else ServerLimits()
        budget = budget or SharedBudget(self.limits.server_request_buffer_bytes_max)
        self.now = now
        self.protocol = H2Protocol(self.limits, budget, now)
        self.protocol.initiate()
        self.encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self.events: list[Event] = []
        self.out = Out()
        self._next_stream_id = 1
        self.passes = 0  # receive(b"") calls for frames left over a pass's share
        self._read()
        if preface:
            self.send(frames.PREFACE + frames.settings_frame({}))

    # -- in --------------------------------------------------------------------

    def send(self, data: bytes) -> list[Event]:
        """Feed ``data``, and the frames over each pass's share after it, as the driver does."""
        events = self._after(self.protocol.receive(data, self.now))
        while self.protocol.backlogged and not self.protocol.ended:
            self.passes += 1
            events = events + self._after(self.protocol.receive(b"", self.now))
        return events

    def frame(
        self, frame_type: int, flags: int, stream_id: int, payload: bytes = b""
    ) -> list[Event]:
        return self.send(frames.frame(frame_type, flags, stream_id, payload))

    def tick(self, advance_s: float) -> list[Event]:
        self.now += advance_s
        return self._after(self.protocol.tick(self.now))

    def new_stream_id(self) -> int:
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        return stream_id

    def headers_frame(self, stream_id: int, *, end_stream: bool, path: str = RANGE_PATH) -> bytes:
        block = self.encoder.encode(request_headers(path))
        flags = Flag.END_HEADERS | (Flag.END_STREAM if end_stream else 0)
        return frames.frame(FrameType.HEADERS, flags, stream_id, block)

    def start_call(self, messages: Sequence[bytes] = (b"",), *, end_stream: bool = True) -> int:
        """HEADERS and one DATA frame per message; returns the stream id."""
        stream_id = self.new_stream_id()
        data = self.headers_frame(stream_id, end_stream=end_stream and not messages)
        for i, message in enumerate(messages):
            last = i == len(messages) - 1
            flags = Flag.END_STREAM if end_stream and last else 0
            data += frames.frame(FrameType.DATA, flags, stream_id, grpc_message(message))
        self.send(data)
        return stream_id

    # -- the handler's side ------------------------------------------------------

    def answer(self, stream_id: int, payload: bytes) -> list[Event]:
        return self._after(self.protocol.answer(stream_id, payload))

    def send_message(self, stream_id: int, payload: bytes) -> list[Event]:
        return self._after(self.protocol.send_message(stream_id, payload))

    def release(self, stream_id: int) -> list[Event]:
        return self._after(self.protocol.release(stream_id))

    # -- out -------------------------------------------------------------------

    def _after(self, events: list[Event]) -> list[Event]:
        self.protocol.check_invariants()
        self.events.extend(events)
        self._read()
        return events

    def _read(self) -> None:
        data = self.protocol.data_to_send()
        offset = 0
        while offset < len(data):
            length, frame_type, flags, stream_id = frames.parse_header(data, offset)
            start = offset + frames.FRAME_HEADER_BYTES
            payload = data[start : start + length]
            offset = start + length
            self.out.frame_types.append(frame_type)
            self._apply(frame_type, flags, stream_id, payload)

    def _apply(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        out = self.out
        if frame_type == FrameType.GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFF_FFFF
            code = int.from_bytes(payload[4:8], "big")
            out.goaway = GoAway(last, ErrorCode(code), payload[8:].decode())
        elif frame_type == FrameType.RST_STREAM:
            out.resets[stream_id] = ErrorCode(int.from_bytes(payload, "big"))
        elif frame_type == FrameType.DATA:
            out.data[stream_id] = out.data.get(stream_id, 0) + len(payload)
            out.payloads[stream_id] = out.payloads.get(stream_id, b"") + payload
        elif frame_type == FrameType.PING and not flags & Flag.ACK:
            out.pings.append(payload)
        elif frame_type == FrameType.HEADERS:
            fields = dict(self._decoder.decode(payload))
            if "grpc-status" in fields:
                out.statuses[stream_id] = int(fields["grpc-status"])
                out.messages[stream_id] = fields.get("grpc-message", "")
