"""Hypothesis-generated frame sequences, fed to syndic's protocol object and to
python-hyper ``h2`` (server side) as an oracle: both must end the connection
at the same frame with the same error code, and reset the same streams with
the same codes.

The two are not the same program, and a few differences are deliberate;
each is normalised in ``_accepted`` with its reason, and nowhere else:

* HEADERS on a stream opened before (open, half-closed or closed): h2 takes
  it for trailers or resets the stream; syndic ends the connection, since no
  gRPC client sends trailers or reuses a stream (§5.4.1 lets any stream
  error end the connection).
* Frames after the client's own GOAWAY: h2 closes its state machine and
  treats anything more as a protocol error; syndic goes on serving the calls
  in flight (RFC 9113 §6.8 lets a receiver of GOAWAY finish its work). The
  comparison stops at the client's GOAWAY.
* A PRIORITY frame of the wrong length: h2 (hyperframe) reports
  FRAME_SIZE_ERROR, syndic PROTOCOL_ERROR; both end the connection.
* RST_STREAM or WINDOW_UPDATE on an idle stream (one not yet opened):
  §5.1 requires a connection error PROTOCOL_ERROR, which syndic sends; h2
  ignores the frame.
* A frame inside a header block that is also malformed in itself: both end
  the connection; syndic names the interruption (PROTOCOL_ERROR), h2 may
  name the frame's own fault first.
* A CONTINUATION outside a header block: §6.10 names PROTOCOL_ERROR, which
  syndic sends; h2 may first find the stream closed (STREAM_CLOSED).
* A SETTINGS ACK with a payload: RFC 9113 §6.5 names FRAME_SIZE_ERROR,
  which syndic sends; h2 sends PROTOCOL_ERROR.
* A DATA frame whose padding is at least its length: both end the
  connection; h2 says FRAME_SIZE_ERROR or PROTOCOL_ERROR depending on the
  frame, syndic PROTOCOL_ERROR (§6.1 names PROTOCOL_ERROR).

Every step also runs ``check_invariants()`` on syndic's side.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndic.server.h2 import frames
from syndic.server.h2.events import ConnectionEnded
from syndic.server.h2.frames import ErrorCode, Flag, FrameType
from syndic.server.h2.limits import ServerLimits, SharedBudget
from syndic.server.h2.protocol import H2Protocol
from tests.server.h2.raw_client import grpc_message, request_headers

# Limits as h2's defaults, so flow control and stream counts agree, and flood
# budgets out of reach (they are syndic's own, tested in test_limits.py).
LIMITS = ServerLimits(
    stream_window_bytes=65_535,
    connection_window_bytes=65_535,
    receive_message_bytes_max=60_000,
    concurrent_streams_max=100,
    cheap_frames_burst=1_000_000,
    settings_frames_burst=1_000_000,
    stream_resets_burst=1_000_000,
    refused_streams_burst=1_000_000,
    header_block_frames_max=1_000,
)
SETTING_IDS = (1, 2, 3, 4, 5, 6, 0x99)
# Stream choices that name a stream the client has not opened.
IDLE_CHOICES = ("new", "even", "idle")


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    stream: str = "new"  # new | last | older | even | zero | idle
    flags: int = 0
    size: int = 0
    value: int = 0


streams = st.sampled_from(["new", "last", "last", "last", "older", "even", "zero", "idle"])
ACTIONS = st.one_of(
    st.builds(
        Action,
        kind=st.just("HEADERS"),
        stream=streams,
        flags=st.sampled_from([0x4, 0x5, 0x0, 0x1, 0x24, 0xC]),
    ),
    st.builds(Action, kind=st.just("CONTINUATION"), stream=streams, flags=st.sampled_from([0, 4])),
    st.builds(
        Action,
        kind=st.just("DATA"),
        stream=streams,
        flags=st.sampled_from([0, 1, 8, 9]),
        size=st.integers(0, 3000),
        value=st.integers(0, 255),
    ),
    st.builds(Action, kind=st.just("RST_STREAM"), stream=streams, value=st.integers(0, 13)),
    st.builds(
        Action,
        kind=st.just("SETTINGS"),
        flags=st.sampled_from([0, 0, 1]),
        size=st.sampled_from([0, 6, 12, 5]),
        value=st.sampled_from([0, 1, 2, 100, 65_535, 16_384, 2**24, 2**31 - 1, 2**31, 2**32 - 1]),
    ),
    st.builds(Action, kind=st.just("SETTING_ID"), value=st.sampled_from(SETTING_IDS)),
    st.builds(
        Action,
        kind=st.just("PING"),
        stream=st.sampled_from(["zero", "zero", "last"]),
        flags=st.sampled_from([0, 1]),
        size=st.sampled_from([8, 8, 7]),
    ),
    st.builds(Action, kind=st.just("PRIORITY"), stream=streams, size=st.sampled_from([5, 5, 4])),
    st.builds(
        Action,
        kind=st.just("WINDOW_UPDATE"),
        stream=st.sampled_from(["zero", "last", "older", "idle"]),
        size=st.sampled_from([4, 4, 3]),
        value=st.sampled_from([0, 1, 1000, 2**31 - 1]),
    ),
    st.builds(Action, kind=st.just("PUSH_PROMISE"), stream=streams),
    st.builds(Action, kind=st.just("GOAWAY")),
    st.builds(Action, kind=st.just("UNKNOWN"), stream=streams, size=st.integers(0, 20)),
)


@dataclass
class Client:
    """Turns actions into bytes: stream ids, HPACK blocks and pending settings."""

    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    last_id: int = 0
    used_id: int = 0  # the stream of the last frame encoded
    setting_id: int = 4

    def stream_id(self, choice: str) -> int:
        self.used_id = self._stream_id(choice)
        return self.used_id

    def _stream_id(self, choice: str) -> int:
        if choice == "new" or not self.last_id:
            self.last_id += 2 if self.last_id else 1
            return self.last_id
        return {
            "last": max(self.last_id, 1),
            "older": max(self.last_id - 2, 1),
            "even": self.last_id + 1,
            "zero": 0,
            "idle": self.last_id + 4,
        }[choice]

    def encode(self, action: Action) -> bytes:
        kind = action.kind
        if kind == "HEADERS":
            stream_id = self.stream_id(action.stream)
            block = self.encoder.encode(request_headers("/etcdserverpb.KV/Range"))
            if action.flags & Flag.PRIORITY:
                block = b"\x00\x00\x00\x00\x10" + block
            if action.flags & Flag.PADDED:
                block = b"\x02" + block + b"\x00\x00"
            return frames.frame(FrameType.HEADERS, action.flags, stream_id, block)
        if kind == "CONTINUATION":
            stream_id = self.stream_id(action.stream)
            return frames.frame(FrameType.CONTINUATION, action.flags, stream_id, b"")
        if kind == "DATA":
            stream_id = self.stream_id(action.stream)
            payload = grpc_message(bytes([action.value % 256]) * action.size)[: action.size + 5]
            if action.flags & Flag.PADDED:
                payload = bytes([action.value % 16]) + payload + bytes(action.value % 16)
                if action.value % 32 >= 16:  # padding longer than the frame
                    payload = bytes([255]) + payload[1:8]
            return frames.frame(FrameType.DATA, action.flags, stream_id, payload)
        if kind == "RST_STREAM":
            stream_id = self.stream_id(action.stream)
            return frames.frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", action.value))
        if kind == "SETTINGS":
            pairs = struct.pack(">HI", self.setting_id, action.value % 2**32) * 2
            return frames.frame(FrameType.SETTINGS, action.flags, 0, pairs[: action.size])
        if kind == "SETTING_ID":
            self.setting_id = action.value
            return b""
        if kind == "PING":
            stream_id = self.stream_id(action.stream)
            return frames.frame(FrameType.PING, action.flags, stream_id, bytes(action.size))
        if kind == "PRIORITY":
            stream_id = self.stream_id(action.stream)
            return frames.frame(
                FrameType.PRIORITY, 0, stream_id, b"\x00\x00\x00\x00\x10"[: action.size]
            )
        if kind == "WINDOW_UPDATE":
            stream_id = self.stream_id(action.stream)
            payload = struct.pack(">I", action.value)[: action.size]
            return frames.frame(FrameType.WINDOW_UPDATE, 0, stream_id, payload)
        if kind == "PUSH_PROMISE":
            stream_id = self.stream_id(action.stream)
            return frames.frame(FrameType.PUSH_PROMISE, 4, stream_id, b"\x00\x00\x00\x02")
        if kind == "GOAWAY":
            return frames.goaway(0, ErrorCode.NO_ERROR)
        return frames.frame(0x42, 0, self.stream_id(action.stream), bytes(action.size))


@dataclass
class Outcome:
    """What a server did: the code it ended the connection with, streams it reset."""

    ended: int | None = None
    reason: str = ""
    resets: dict[int, int] = field(default_factory=dict)


def _read(data: bytes, outcome: Outcome) -> None:
    offset = 0
    while offset + frames.FRAME_HEADER_BYTES <= len(data):
        length, frame_type, _, stream_id = frames.parse_header(data, offset)
        payload = data[offset + 9 : offset + 9 + length]
        offset += 9 + length
        if frame_type == FrameType.RST_STREAM:
            outcome.resets[stream_id] = int.from_bytes(payload, "big")
        elif frame_type == FrameType.GOAWAY and outcome.ended is None:
            code = int.from_bytes(payload[4:8], "big")
            if code != ErrorCode.NO_ERROR:
                outcome.ended = code


class Syndic:
    def __init__(self) -> None:
        self.protocol = H2Protocol(LIMITS, SharedBudget(2**30), 0.0)
        self.protocol.initiate()
        self.protocol.data_to_send()
        self.outcome = Outcome()

    def feed(self, data: bytes) -> None:
        events = list(self.protocol.receive(data, 0.0))
        while self.protocol.backlogged and not self.protocol.ended:
            events += self.protocol.receive(b"", 0.0)
        self.protocol.check_invariants()
        _read(self.protocol.data_to_send(), self.outcome)
        for event in events:
            if isinstance(event, ConnectionEnded) and not event.graceful:
                self.outcome.ended = event.code
                self.outcome.reason = event.reason


class Oracle:
    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.connection = h2.connection.H2Connection(config=config)
        self.connection.initiate_connection()
        self.connection.data_to_send()
        self.outcome = Outcome()

    def feed(self, data: bytes) -> None:
        try:
            events = self.connection.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.outcome.ended = int(exc.error_code)
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                # As syndic does for data it has taken: the window comes back.
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
        _read(self.connection.data_to_send(), self.outcome)


def _accepted(action: Action, ours: Outcome, theirs: Outcome, reopened: bool) -> bool:
    """True if the outcomes differ only in a way the module docstring accepts."""
    if ours.reason in (
        "a header block was interrupted by another frame",
        "CONTINUATION out of place",
    ):
        return theirs.ended is not None
    if action.kind in ("RST_STREAM", "WINDOW_UPDATE") and action.stream in IDLE_CHOICES:
        return ours.ended == ErrorCode.PROTOCOL_ERROR and theirs.ended is None
    if action.kind == "SETTINGS" and action.flags & Flag.ACK and action.size:
        return ours.ended == ErrorCode.FRAME_SIZE_ERROR and theirs.ended is not None
    if action.kind == "PRIORITY" and action.size != 5:
        return ours.ended == ErrorCode.PROTOCOL_ERROR and theirs.ended is not None
    if action.kind == "DATA" and action.flags & Flag.PADDED and action.value % 32 >= 16:
        return ours.ended == ErrorCode.PROTOCOL_ERROR and theirs.ended is not None
    if action.kind == "HEADERS" and reopened:
        return ours.ended == ErrorCode.PROTOCOL_ERROR
    return False


def run(actions: list[Action]) -> None:
    client, ours, theirs = Client(), Syndic(), Oracle()
    preface = frames.PREFACE + frames.settings_frame({})
    ours.feed(preface)
    theirs.feed(preface)
    highest_opened = 0
    for step, action in enumerate(actions):
        if action.kind == "GOAWAY":
            return  # see the module docstring
        data = client.encode(action)
        if not data:
            continue
        ours.feed(data)
        theirs.feed(data)
        same = ours.outcome.ended == theirs.outcome.ended
        reopened = client.used_id <= highest_opened
        if action.kind == "HEADERS":
            highest_opened = max(highest_opened, client.used_id)
        if not same and not _accepted(action, ours.outcome, theirs.outcome, reopened):
            raise AssertionError(
                f"step {step} {action}: syndic ended with {ours.outcome.ended}, "
                f"h2 with {theirs.outcome.ended}"
            )
        if ours.outcome.ended is not None or theirs.outcome.ended is not None:
            return
        assert ours.outcome.resets == theirs.outcome.resets, (
            f"step {step} {action}: syndic reset {ours.outcome.resets}, h2 {theirs.outcome.resets}"
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIONS, max_size=16))
def test_syndic_and_h2_agree_on_connection_errors_and_resets(actions: list[Action]) -> None:
    run(actions)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIONS, max_size=40))
def test_syndic_and_h2_agree_over_long_sequences(actions: list[Action]) -> None:
    run(actions)
