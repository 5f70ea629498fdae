"""The bounds one client connection is held to."""

from __future__ import annotations

from dataclasses import dataclass

from syndic.api.services import DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection limits; each is advertised to the client where HTTP/2 can.

    A client that goes past one is told why: a stream over a limit is ended
    with a gRPC status, a connection that breaks the protocol gets GOAWAY
    with the HTTP/2 error code and a reason, and is closed.
    """

    # gRPC's own framing allows 4 GiB messages; etcd accepts its request
    # limit plus grpcOverheadBytes and answers anything larger
    # RESOURCE_EXHAUSTED without reading it.
    receive_message_bytes_max: int = DEFAULT_MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES
    # Streams in flight per connection, counted until their handler has
    # finished, not until the client resets them: a client that opens and
    # resets streams in a loop cannot pile up handlers.
    concurrent_streams_max: int = 10_000
    # Compressed header block (HEADERS + CONTINUATION) and decoded header
    # list; etcd's requests carry a few hundred bytes (a token at most).
    header_block_bytes_max: int = 64 * 1024
    header_list_bytes_max: int = 64 * 1024
    # The window each stream and the connection start with. A stream's window
    # is raised to hold a whole request (see initial_stream_window), so a
    # unary call never waits for a WINDOW_UPDATE.
    stream_window_bytes: int = 4 * 1024 * 1024
    connection_window_bytes: int = 16 * 1024 * 1024
    # Request bytes a connection may hold that handlers have not taken yet
    # (partial messages, unread stream requests); past it the connection
    # ends with ENHANCE_YOUR_CALM. Far above what any etcd client holds.
    request_buffer_bytes_max: int = 256 * 1024 * 1024
    # Bytes a streaming handler may queue on one stream before its write()
    # waits for the client to read.
    stream_send_buffer_bytes_max: int = 1024 * 1024
    # A client must send the HTTP/2 preface within this time of connecting.
    preface_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "receive_message_bytes_max",
            "concurrent_streams_max",
            "header_block_bytes_max",
            "header_list_bytes_max",
            "stream_window_bytes",
            "connection_window_bytes",
            "request_buffer_bytes_max",
            "stream_send_buffer_bytes_max",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("stream_window_bytes", "connection_window_bytes"):
            # A client may send 65,535 bytes before it has our SETTINGS, and a
            # connection window can only be raised, so less cannot be honoured.
            if not 65_535 <= getattr(self, name) <= 2**31 - 1:
                raise ValueError(f"{name} must be in [65535, 2**31-1] (HTTP/2's window range)")
        if self.preface_timeout_s <= 0:
            raise ValueError(f"preface_timeout_s must be positive, got {self.preface_timeout_s!r}")

    @property
    def initial_stream_window(self) -> int:
        """The window a stream starts with: enough for the largest request."""
        return min(2**31 - 1, max(self.stream_window_bytes, self.receive_message_bytes_max + 5))

    @classmethod
    def for_max_request_bytes(cls, max_request_bytes: int) -> ServerLimits:
        """The limits of a member started with ``--max-request-bytes``."""
        return cls(receive_message_bytes_max=max_request_bytes + GRPC_OVERHEAD_BYTES)
