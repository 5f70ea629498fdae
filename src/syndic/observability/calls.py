"""One record per gRPC call: a server span (when tracing is on), the request
observer's counts and latency, and the slow-request check.

The gRPC ``guard`` wrapper calls :meth:`CallRecorder.begin` and
:meth:`CallRecorder.end` around every handler. With tracing off a call costs
two ``perf_counter`` reads and a deque append (measured in
``tests/observability/test_calls.py``).
"""

from __future__ import annotations

import time
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from syndic.observability import tracing
from syndic.observability.requests import observer_for

_Started = tuple[float, Any, Any]

# Streams live as long as their client wants: their duration is no latency,
# and etcd's slow-request warning is for unary requests only.
STREAMING_METHODS: Final = frozenset({"Watch", "LeaseKeepAlive", "Snapshot", "Observe"})


class CallRecorder:
    """Records the calls of one gRPC method of one member."""

    __slots__ = ("kind", "observer")

    def __init__(self, service: str, method: str, owner: object | None) -> None:
        self.kind = f"{service}/{method}"
        unary = method not in STREAMING_METHODS
        self.observer = observer_for(owner) if owner is not None and unary else None

    def begin(self, context: Any) -> _Started:
        if not tracing.tracing_enabled():
            return time.perf_counter(), None, None
        parent = tracing.extract_grpc_metadata(_metadata(context))
        span = tracing.tracer().start_span(
            self.kind, context=parent, kind=SpanKind.SERVER, attributes={"rpc.system": "grpc"}
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return time.perf_counter(), span, token

    def end(self, started: _Started, code: str, request: object) -> None:
        t0, span, token = started
        duration_ms = (time.perf_counter() - t0) * 1000.0
        trace_id = ""
        if span is not None:
            trace_id = self._end_span(span, token, code)
        if self.observer is not None:
            self.observer.finish(self.kind, duration_ms, code, request, trace_id)

    @staticmethod
    def _end_span(span: Any, token: Any, code: str) -> str:
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        trace_id = tracing.trace_id_of(span)
        span.end()
        otel_context.detach(token)
        return trace_id


def _metadata(context: Any) -> Any:
    get = getattr(context, "invocation_metadata", None)
    return get() if callable(get) else ()
