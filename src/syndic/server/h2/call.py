"""One gRPC call on one HTTP/2 stream: its state, its requests and its servicer context."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import grpc

from syndic.server.h2.headers import RequestHead

if TYPE_CHECKING:
    from syndic.server.h2.connection import Http2Connection

_END: Final = object()  # ends a stream of requests


class Stream:
    """The server's side of one stream, from the client's HEADERS to our END_STREAM."""

    __slots__ = (
        "aborted_with",
        "deadline",
        "handler",
        "head",
        "headers_sent",
        "held_bytes",
        "id",
        "message_count",
        "pending",
        "pending_bytes",
        "pending_trailers",
        "recv_buffer",
        "recv_window",
        "remote_closed",
        "requests",
        "send_window",
        "sent_end",
        "single_request",
        "task",
        "unacked_bytes",
        "writable",
    )

    def __init__(self, stream_id: int, head: RequestHead, send_window: int, recv_window: int):
        self.id = stream_id
        self.head = head
        self.handler: Any = None  # grpc.RpcMethodHandler
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked_bytes = 0  # consumed by the handler, not yet given back
        self.held_bytes = 0  # received, not yet consumed by the handler
        self.recv_buffer = bytearray()
        self.message_count = 0
        self.single_request: bytes | None = None
        self.requests: asyncio.Queue[Any] | None = None
        self.remote_closed = False
        self.headers_sent = False
        self.sent_end = False  # END_STREAM or RST_STREAM sent: nothing more goes out
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0
        self.pending_trailers: bytes | None = None
        self.task: asyncio.Task[None] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.writable: asyncio.Event | None = None
        self.aborted_with: tuple[grpc.StatusCode, str] | None = None


class RequestIterator:
    """The requests of a client-streaming call, in order; the client's window
    is given back as the handler takes them, so a handler that stops reading
    stops the client."""

    __slots__ = ("_connection", "_deserialize", "_stream")

    def __init__(
        self, connection: Http2Connection, stream: Stream, deserialize: Callable[[bytes], Any]
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._deserialize = deserialize

    def __aiter__(self) -> RequestIterator:
        return self

    async def __anext__(self) -> Any:
        queue = self._stream.requests
        assert queue is not None
        message = await queue.get()
        if message is _END:
            queue.put_nowait(_END)  # later reads end too
            raise StopAsyncIteration
        self._connection.consumed(self._stream, len(message) + 5)
        return self._deserialize(message)


def end_of_requests() -> object:
    return _END


class CallContext:
    """The servicer context a handler gets: grpc.aio's, as far as syndic uses it."""

    __slots__ = ("_connection", "_serialize", "_stream")

    def __init__(
        self, connection: Http2Connection, stream: Stream, serialize: Callable[[Any], bytes]
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._serialize = serialize

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        """End the call with ``code``; raises grpc.aio.AbortError, as grpc.aio does."""
        if code is grpc.StatusCode.OK:
            raise ValueError("abort() needs an error code, not OK")
        self._stream.aborted_with = (code, details)
        raise grpc.aio.AbortError()

    async def write(self, message: Any) -> None:
        """Send one response of a streaming call; waits while the client lags."""
        await self._connection.write_message(self._stream, self._serialize(message))

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._stream.head.metadata

    def code(self) -> grpc.StatusCode | None:
        aborted = self._stream.aborted_with
        return aborted[0] if aborted is not None else None

    def peer(self) -> str:
        return self._connection.peer_name
