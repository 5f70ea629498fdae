"""One gRPC call as its handler sees it: its task, its requests and its servicer context."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import grpc

from syndic.server.h2.headers import RequestHead

if TYPE_CHECKING:
    from syndic.server.h2.connection import Http2Connection

_END: Final = object()  # ends a stream of requests


class Call:
    """The driver's side of one stream: from CallStarted until its handler ends."""

    __slots__ = (
        "aborted_with",
        "deadline",
        "ended",
        "handler",
        "head",
        "id",
        "requests",
        "running",
        "single_request",
        "task",
        "writable",
    )

    def __init__(self, stream_id: int, head: RequestHead, handler: Any) -> None:
        self.id = stream_id
        self.head = head
        self.handler = handler  # grpc.RpcMethodHandler
        self.single_request: bytes | None = None
        self.requests: asyncio.Queue[Any] | None = None
        self.ended = False  # the stream is over: nothing the handler sends goes out
        self.task: asyncio.Task[None] | None = None
        self.running = False  # the handler's task has taken its first step
        self.deadline: asyncio.TimerHandle | None = None
        self.writable: asyncio.Event | None = None
        self.aborted_with: tuple[grpc.StatusCode, str] | None = None


class RequestIterator:
    """The requests of a client-streaming call, in order; the client's window
    is given back as the handler takes them, so a handler that stops reading
    stops the client."""

    __slots__ = ("_call", "_connection", "_deserialize")

    def __init__(
        self, connection: Http2Connection, call: Call, deserialize: Callable[[bytes], Any]
    ) -> None:
        self._connection = connection
        self._call = call
        self._deserialize = deserialize

    def __aiter__(self) -> RequestIterator:
        return self

    async def __anext__(self) -> Any:
        queue = self._call.requests
        assert queue is not None
        message = await queue.get()
        if message is _END:
            queue.put_nowait(_END)  # later reads end too
            raise StopAsyncIteration
        self._connection.consumed(self._call, len(message) + 5)
        return self._deserialize(message)


def end_of_requests() -> object:
    return _END


class CallContext:
    """The servicer context a handler gets: grpc.aio's, as far as syndic uses it."""

    __slots__ = ("_call", "_connection", "_serialize")

    def __init__(
        self, connection: Http2Connection, call: Call, serialize: Callable[[Any], bytes]
    ) -> None:
        self._connection = connection
        self._call = call
        self._serialize = serialize

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        """End the call with ``code``; raises grpc.aio.AbortError, as grpc.aio does."""
        if code is grpc.StatusCode.OK:
            raise ValueError("abort() needs an error code, not OK")
        self._call.aborted_with = (code, details)
        raise grpc.aio.AbortError()

    async def write(self, message: Any) -> None:
        """Send one response of a streaming call; waits while the client lags."""
        await self._connection.write_message(self._call, self._serialize(message))

    def write_now(self, message: Any) -> bool:
        """Send one response of a streaming call now if that needs no wait;
        False, and nothing sent, if the caller must ``await write()`` instead."""
        return self._connection.write_now(self._call, self._serialize(message))

    def write_encoded_now(self, payload: bytes) -> bool:
        """As write_now, for a response the handler has serialised itself
        (the bytes of the method's response type)."""
        return self._connection.write_now(self._call, payload)

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._call.head.metadata

    def code(self) -> grpc.StatusCode | None:
        aborted = self._call.aborted_with
        return aborted[0] if aborted is not None else None

    def peer(self) -> str:
        return self._connection.peer_name
