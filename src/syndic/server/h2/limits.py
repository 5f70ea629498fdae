"""The bounds a client connection, and all of them together, are held to.

Every limit is named with its unit last. The abuse classes they answer are
those of nghttp2's and Go's HTTP/2 servers: floods of cheap frames, SETTINGS
storms, endless header blocks, rapid resets, slow readers, idle and partial
connections, and too many connections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from syndic.api.services import DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES

_POSITIVE_INTS = (
    "receive_message_bytes_max",
    "concurrent_streams_max",
    "header_block_bytes_max",
    "header_block_frames_max",
    "header_list_bytes_max",
    "stream_window_bytes",
    "connection_window_bytes",
    "request_buffer_bytes_max",
    "server_request_buffer_bytes_max",
    "stream_send_buffer_bytes_max",
    "connection_send_buffer_bytes_max",
    "server_send_buffer_bytes_max",
    "cheap_frames_burst",
    "stream_resets_burst",
    "settings_frames_burst",
    "refused_streams_burst",
    "connections_max",
    "connections_per_peer_max",
    "read_bytes_per_pass_max",
    "receive_frames_per_pass_max",
)
_POSITIVE_FLOATS = (
    "preface_timeout_s",
    "request_stall_timeout_s",
    "send_stall_timeout_s",
    "connection_idle_timeout_s",
    "keepalive_interval_s",
    "keepalive_timeout_s",
    "connection_age_s_max",
    "connection_age_grace_s",
    "cheap_frames_per_s",
    "stream_resets_per_s",
    "stream_reset_rapid_s",
    "settings_frames_per_s",
    "refused_streams_per_s",
)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection and server-wide limits; each is advertised to the client where HTTP/2 can.

    A client that goes past one is told why: a stream over a limit is ended
    with a gRPC status or RST_STREAM, a connection that breaks the protocol or
    floods it gets GOAWAY with the HTTP/2 error code and a reason, and is
    closed. ``math.inf`` turns a timer off.
    """

    # gRPC's own framing allows 4 GiB messages; etcd accepts its request
    # limit plus grpcOverheadBytes and answers anything larger
    # RESOURCE_EXHAUSTED without reading it.
    receive_message_bytes_max: int = DEFAULT_MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES
    # Streams in flight per connection (SETTINGS_MAX_CONCURRENT_STREAMS),
    # counted until their handler has finished, not until the client resets
    # them. etcd leaves it unbounded; a Python member's handler costs a task
    # and its answer, so 256 (Go's net/http2 allows 250) keeps one client's
    # share of the loop and of memory bounded. etcd's --max-concurrent-streams.
    concurrent_streams_max: int = 256
    # Compressed header block (HEADERS + CONTINUATION), the frames it spans
    # and the decoded header list; etcd's requests carry a few hundred bytes
    # in one frame. Counting frames stops a flood of tiny CONTINUATIONs that
    # stays under the byte bound (nghttp2 allows 8 CONTINUATIONs).
    header_block_bytes_max: int = 64 * 1024
    header_block_frames_max: int = 16
    header_list_bytes_max: int = 64 * 1024
    # The window each stream and the connection start with. A stream's window
    # is raised to hold a whole request (see initial_stream_window), so a
    # unary call never waits for a WINDOW_UPDATE.
    stream_window_bytes: int = 4 * 1024 * 1024
    connection_window_bytes: int = 16 * 1024 * 1024
    # Request bytes one connection may hold that handlers have not taken yet
    # (partial messages, unread stream requests); past it the connection ends
    # with ENHANCE_YOUR_CALM. Room for 16 requests of etcd's largest size.
    request_buffer_bytes_max: int = 32 * 1024 * 1024
    # The same, summed over every connection of the server: past it the
    # stream whose bytes arrive is ended RESOURCE_EXHAUSTED, so a few hundred
    # connections each holding a partial request cannot exhaust memory.
    server_request_buffer_bytes_max: int = 32 * 1024 * 1024
    # Bytes a streaming handler may queue on one stream before its write()
    # waits for the client to read.
    stream_send_buffer_bytes_max: int = 1024 * 1024
    # Answer bytes one connection may have queued behind the client's
    # windows (or a full socket). A unary answer that would pass it while
    # others wait is refused RESOURCE_EXHAUSTED instead of queued: a client
    # that reads nothing holds at most this much (and one answer) of ours.
    connection_send_buffer_bytes_max: int = 8 * 1024 * 1024
    # The same, summed over every connection of the server: past it, a
    # connection that already has answers queued gets no new calls run and
    # its unary answers are refused, while clients that read are served.
    server_send_buffer_bytes_max: int = 32 * 1024 * 1024
    # A client must send the HTTP/2 preface within this time of connecting.
    preface_timeout_s: float = 10.0
    # A stream holding part of a message, a unary call whose request has not
    # ended, or a header block left open, with no new bytes for this long, is
    # ended (within a quarter of the timeout more: streams are looked at a few
    # times per timeout, not per call): a partial request is not a lease on
    # server memory or a call slot.
    request_stall_timeout_s: float = 20.0
    # A stream with answers queued that could send nothing for this long
    # (zero window, unread socket) is reset with CANCEL and its queue freed.
    send_stall_timeout_s: float = 20.0
    # gRPC's max_connection_idle: a connection with no call in flight for
    # this long is sent GOAWAY NO_ERROR and closed; clients reconnect.
    connection_idle_timeout_s: float = 600.0
    # etcd's --grpc-keepalive-interval and --grpc-keepalive-timeout: a
    # connection silent for the interval is pinged, and closed if the ACK
    # does not come within the timeout.
    keepalive_interval_s: float = 7200.0
    keepalive_timeout_s: float = 20.0
    # gRPC's max_connection_age and max_connection_age_grace: off by default,
    # as in gRPC and etcd, since a forced reconnection ends watch streams.
    connection_age_s_max: float = math.inf
    connection_age_grace_s: float = math.inf
    # Frames that cost the server work but carry no request (PING, SETTINGS,
    # empty DATA, PRIORITY, WINDOW_UPDATE, RST_STREAM, empty CONTINUATION,
    # refused HEADERS): a token bucket per peer address, so that reconnecting
    # does not refill it; each 4 KiB of answer sent earns one back, since
    # clients return window as they read. Empty, GOAWAY ENHANCE_YOUR_CALM.
    cheap_frames_per_s: float = 1000.0
    cheap_frames_burst: int = 5000
    # Streams the client resets while their handler still runs (CVE-2023-44487,
    # "rapid reset"), per peer address, so that reconnecting does not refill
    # the bucket; nghttp2 allows a burst of 1000 and 33 per second per
    # connection. Each reset call has cost a handler's start.
    stream_resets_per_s: float = 50.0
    stream_resets_burst: int = 200
    # Only a stream reset this soon after it opened counts as a rapid reset.
    # The attack works because a reset frees the stream's slot at once, so
    # the concurrency limit no longer bounds how fast handlers start; a
    # stream that lived this long was already paced by that limit. Clients
    # that close many long-lived watches at once (a config SDK shutting
    # down) reset hundreds of streams in one burst, legitimately.
    stream_reset_rapid_s: float = 1.0
    # SETTINGS frames; a client sends one or two per connection.
    settings_frames_per_s: float = 10.0
    settings_frames_burst: int = 50
    # Streams opened past concurrent_streams_max, per connection: each is
    # refused (REFUSED_STREAM) and costs a header block's decoding. An honest
    # client does so only while our SETTINGS are in flight, or when it reuses
    # the slot of a stream it reset whose handler has not yet stopped; a
    # flood of them (bench/hostile.py's SETTINGS flood opens 4,000 streams per
    # connection, on connection after connection) gets GOAWAY
    # ENHANCE_YOUR_CALM. Go's server answers each with PROTOCOL_ERROR once the
    # client has our SETTINGS ("they should know better"), but keeps reading.
    refused_streams_per_s: float = 10.0
    refused_streams_burst: int = 256
    # Connections open at once, in total and from one peer address; past
    # either, a new connection is sent GOAWAY ENHANCE_YOUR_CALM and closed.
    connections_max: int = 4096
    connections_per_peer_max: int = 512
    # Bytes of large reads (one frame's worth or more) the server parses per
    # event-loop pass, over all connections; past it, connections whose read
    # was large wait for a later pass, in turn (see reads.py). Bounds how
    # long bulk uploads (hundreds of partial 1 MiB requests) can hold a pass,
    # so small calls and Raft's heartbeats are not kept waiting for seconds.
    # 2 MiB parses in a few milliseconds; a 1.5 MiB Put fits in one pass.
    read_bytes_per_pass_max: int = 2 * 1024 * 1024
    # Frames one connection's bytes are parsed into per event-loop pass; the
    # rest wait in its buffer, its socket unread, for the next pass. One
    # 256 KiB read holds 4,000 HEADERS or 15,000 PINGs, tens of milliseconds
    # of parsing on a free core and several times that on a busy one, all in
    # one pass that Raft's heartbeat timers wait behind (bench/hostile.py's
    # SETTINGS flood opens 4,000 streams per connection). 256 frames parse in
    # about 1 ms; an honest client sends fewer per read (h2load with 64
    # streams in flight sends about 130), so it never waits.
    receive_frames_per_pass_max: int = 256

    def __post_init__(self) -> None:
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in _POSITIVE_FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("stream_window_bytes", "connection_window_bytes"):
            # A client may send 65,535 bytes before it has our SETTINGS, and a
            # connection window can only be raised, so less cannot be honoured.
            if not 65_535 <= getattr(self, name) <= 2**31 - 1:
                raise ValueError(f"{name} must be in [65535, 2**31-1] (HTTP/2's window range)")
        if self.concurrent_streams_max > 2**31 - 1:
            raise ValueError("concurrent_streams_max must fit SETTINGS (2**31-1)")

    @property
    def initial_stream_window(self) -> int:
        """The window a stream starts with: enough for the largest request."""
        return min(2**31 - 1, max(self.stream_window_bytes, self.receive_message_bytes_max + 5))

    @classmethod
    def for_member(cls, max_request_bytes: int, max_concurrent_streams: int) -> ServerLimits:
        """The limits of a member started with ``--max-request-bytes`` and
        ``--max-concurrent-streams`` (etcd's uint32; SETTINGS carries 2**31-1 at most)."""
        return cls(
            receive_message_bytes_max=max_request_bytes + GRPC_OVERHEAD_BYTES,
            concurrent_streams_max=min(max_concurrent_streams, 2**31 - 1),
        )

    @classmethod
    def for_max_request_bytes(cls, max_request_bytes: int) -> ServerLimits:
        """The limits of a member started with ``--max-request-bytes``."""
        return cls(receive_message_bytes_max=max_request_bytes + GRPC_OVERHEAD_BYTES)


class TokenBucket:
    """``rate_per_s`` tokens a second up to ``burst``; time comes in as ``now``."""

    __slots__ = ("_burst", "_rate_per_s", "_stamp", "tokens")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self.tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; False if there is none."""
        # Refilled on every take: refilling only when empty would credit the
        # whole time the bucket sat full, a second burst at the same instant.
        elapsed = now - self._stamp
        if elapsed > 0:
            self.tokens = min(self._burst, self.tokens + elapsed * self._rate_per_s)
            self._stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def refund(self, tokens: float) -> None:
        self.tokens = min(self._burst, self.tokens + tokens)

    def full_at(self) -> float:
        """When the bucket will hold its whole burst again, if nothing takes."""
        return self._stamp + (self._burst - self.tokens) / self._rate_per_s


class SharedBudget:
    """A byte count shared by every connection of one server (one event loop)."""

    __slots__ = ("bytes_max", "held_bytes")

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self.held_bytes = 0

    def take(self, size: int) -> bool:
        if self.held_bytes + size > self.bytes_max:
            return False
        self.held_bytes += size
        return True

    def overdraw(self, size: int) -> None:
        """Count ``size`` past the bound: bytes about to be handed on (whole messages)."""
        self.held_bytes += size

    def give(self, size: int) -> None:
        self.held_bytes -= size
        assert self.held_bytes >= 0, "a budget gave back more than it lent"
