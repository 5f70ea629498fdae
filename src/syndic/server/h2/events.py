"""What the HTTP/2 protocol object hands its driver: small values that compare by value."""

from __future__ import annotations

from dataclasses import dataclass

from syndic.server.h2.headers import RequestHead


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A stream opened with an acceptable gRPC head. The driver owns the call
    until it calls ``H2Protocol.release(stream_id)``: the stream counts against
    the concurrency limit until then, even if the client resets it."""

    stream_id: int
    head: RequestHead


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """One whole gRPC request message (without its 5-byte prefix).

    ``end_stream``: the client ended its side with this message, and no
    RequestEnded follows (one event, not two, for the usual unary request)."""

    stream_id: int
    message: bytes
    end_stream: bool = False


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """The client ended its side of the stream with no partial message left."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The stream ended without the handler: the client reset it, or the
    protocol ended it (a limit, a stall, a malformed request). The handler,
    if running, should be cancelled; nothing it sends will go out."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class StreamWritable:
    """A stream's queue fell to its bound: a waiting streaming writer may go on.
    Stream 0: the connection's queue fell to its bound; every writer may."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The connection is over: flush ``data_to_send()`` and close the socket.

    ``graceful`` means GOAWAY NO_ERROR after the last call finished (the
    server's stop, idle or old connections); otherwise ``code`` names the
    HTTP/2 error sent in GOAWAY."""

    code: int
    reason: str
    graceful: bool


Event = CallStarted | MessageReceived | RequestEnded | CallEnded | StreamWritable | ConnectionEnded
