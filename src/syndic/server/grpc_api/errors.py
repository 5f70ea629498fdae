"""Turning syndic's errors into the gRPC statuses etcd returns, and counting calls.

``syndic.kv.errors.KvError`` and ``syndic.server.backend.ServerError`` carry
the gRPC code name and etcd's exact message, so mapping them is a lookup.
Anything else escaping a handler is a syndic bug: it is logged with its
traceback and answered UNKNOWN, and the server keeps serving.

Every handler is wrapped by :func:`guard`, which also counts the call in
``grpc_server_handled`` (etcd's go-grpc-prometheus metric) with the final
status code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc

from syndic.kv.errors import KvError
from syndic.observability.calls import CallRecorder
from syndic.server.backend import ServerError
from syndic.server.metrics import ServerMetrics

log = logging.getLogger("syndic.server.grpc_api")

# etcd answers an unexpected server failure with the error's own text; syndic
# does not leak internals, and the traceback goes to the log instead.
UNEXPECTED_ERROR_MESSAGE: Final = "etcdserver: unexpected server error"

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The (code, message) etcd would answer for ``exc``, or None if it is unexpected."""
    if isinstance(exc, KvError | ServerError):
        code = getattr(grpc.StatusCode, exc.grpc_code if isinstance(exc, KvError) else exc.code)
        return code, exc.message
    return None


async def abort_with(context: Any, exc: BaseException) -> None:
    """End the call with ``exc``'s etcd status (UNKNOWN, logged, if unexpected)."""
    status = status_of(exc)
    if status is None:
        log.error("unexpected error in gRPC handler", exc_info=exc)
        status = (grpc.StatusCode.UNKNOWN, UNEXPECTED_ERROR_MESSAGE)
    await context.abort(status[0], status[1])


def _code_name(context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK"


def guard(service: str, method: str, metrics: ServerMetrics | None, handler: _F) -> _F:
    """Wrap a coroutine handler ``(request, context)``: etcd errors, UNKNOWN, metrics.

    Streaming handlers are coroutines too (they answer with
    ``context.write``), so one wrapper serves every method shape.
    """
    counter = metrics.grpc_handled if metrics is not None else None
    # One labelled child per status code, looked up once: labels() takes a
    # lock and builds a key on every call.
    by_code: dict[str, Any] = {}
    # A span, the latency and the slow-request check per call (observability).
    recorder = CallRecorder(service, method, metrics)

    @functools.wraps(handler)
    async def guarded(request: Any, context: Any) -> Any:
        code = "OK"
        started = recorder.begin(context)
        try:
            return await handler(request, context)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            # context.abort() was called (here or by the handler): the status
            # is already set on the context.
            code = _code_name(context)
            raise
        except Exception as exc:
            status = status_of(exc)
            code = status[0].name if status is not None else "UNKNOWN"
            await abort_with(context, exc)
            raise  # abort raises; kept for the type checker
        finally:
            if counter is not None:
                child = by_code.get(code)
                if child is None:
                    child = by_code[code] = counter.labels(service, method, code)
                child.inc()
            recorder.end(started, code, request)

    return guarded  # type: ignore[return-value]
