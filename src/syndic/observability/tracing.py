"""OpenTelemetry tracing for syndic, and W3C trace context propagation.

``configure_tracing()`` installs an SDK tracer provider exporting over OTLP
when the standard ``OTEL_*`` variables ask for it (``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...); without them,
the API's no-op tracer costs a member next to nothing.

The propagation helpers carry ``traceparent``/``tracestate`` across the
transports syndic speaks::

    with span("registry.lookup", service="web"):
        headers = inject_headers({})          # httpx / aiohttp request headers
        metadata = inject_grpc_metadata(())   # grpc.aio call metadata
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

TRACER_NAME: Final = "syndic"

# A proxy tracer: it follows the provider set later (once per process, by
# configure_tracing or a test), so it is looked up once.
_TRACER: Final = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    """syndic's tracer."""
    return _TRACER


# (provider, is it an SDK provider), refreshed when the global provider changes.
_enabled_cache: list[tuple[object, bool]] = [(None, False)]


def tracing_enabled() -> bool:
    """True once an SDK provider is installed (spans record); one global read
    and an identity check per call, as it runs on every request.

    It reads the global that ``trace.set_tracer_provider`` sets: the public
    getter also looks up ``os.environ`` on each call while none is set, which
    would double the cost of a traced-off request's bookkeeping."""
    provider = trace._TRACER_PROVIDER  # getattr(..., None) costs five times as much
    if provider is None:
        return False
    cached = _enabled_cache[0]
    if provider is not cached[0]:
        name = type(provider).__name__
        cached = (provider, name not in ("ProxyTracerProvider", "NoOpTracerProvider"))
        _enabled_cache[0] = cached
    return cached[1]


def configure_tracing(service_name: str = "syndic", env: Mapping[str, str] | None = None) -> bool:
    """Install an SDK provider with an OTLP/HTTP exporter if ``OTEL_*`` asks for one.

    Returns True if tracing was turned on. ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none`` leave it off; an ``OTEL_EXPORTER_OTLP_*``
    endpoint or ``OTEL_TRACES_EXPORTER=otlp`` turn it on.
    """
    provider = build_provider(service_name, env)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    return True


def build_provider(service_name: str = "syndic", env: Mapping[str, str] | None = None) -> Any:
    """The SDK provider ``OTEL_*`` asks for, or None (see :func:`configure_tracing`)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").lower()
    wants = exporter_name == "otlp" or any(
        k in env for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if exporter_name == "none" or not wants:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES itself.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    # The exporter reads its endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@contextmanager
def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, parent: Any = None, **attributes: Any
) -> Iterator[Span]:
    """A span around a block; an exception is recorded and marks it as an error.

    The helper SDK code (``syndic.traffic``) uses for one call or attempt.
    """
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes or None
    ) as current:
        yield current


def add_event(name: str, **attributes: Any) -> None:
    """An event (a retry, a breaker decision, a fallback) on the current span."""
    trace.get_current_span().add_event(name, attributes=attributes or None)


# The stages of a write a request's span records as events (etcd's trace
# steps), in the order they happen to one entry.
WRITE_STAGES: Final = ("propose", "fsync", "commit", "apply")


def write_stage(stage: str, index: int, span: Span | None = None, **attributes: Any) -> None:
    """An event for one stage of a write on a request's span; ``index`` is
    the entry's Raft index (``raft.index``), 0 when this member does not know
    it (a proposal forwarded to the leader: no ``raft.index``).

    The member's node loop records the stages, so it passes the request's
    span as ``span`` (see :func:`stage_recorder`); without it, the event goes
    to the current span.
    """
    if stage not in WRITE_STAGES:
        raise ValueError(f"stage must be one of {', '.join(WRITE_STAGES)}, got {stage!r:.20}")
    target = span if span is not None else trace.get_current_span()
    if target.is_recording():
        if index:
            attributes = {"raft.index": index, **attributes}
        target.add_event(stage, attributes=attributes or None)


def stage_recorder() -> Callable[[str, int], None] | None:
    """What a member's proposal carries to record its write stages on the
    current (request's) span, or None when that span does not record: the
    proposal then carries nothing and the node loop does no tracing work.

    The event's timestamp is taken when the node loop reports the stage: the
    member runtime itself reads no clock."""
    if not tracing_enabled():
        return None
    current = trace.get_current_span()
    if not current.is_recording():
        return None
    return functools.partial(_record_stage, current)


def _record_stage(span: Span, stage: str, index: int) -> None:
    write_stage(stage, index, span)


def mark_error(current: Span, description: str) -> None:
    current.set_status(Status(StatusCode.ERROR, description))


def trace_id_of(current: Span) -> str:
    ctx = current.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


# ------------------------------------------------------------ propagation


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add ``traceparent``/``tracestate`` of the current context to HTTP
    headers (an httpx ``Headers``, an aiohttp request's headers, a dict)."""
    inject(headers)
    return headers


def extract_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The context an incoming HTTP request (aiohttp, httpx) carries."""
    return extract({k.lower(): v for k, v in headers.items()})


def inject_grpc_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None = None,
) -> tuple[tuple[str, str | bytes], ...]:
    """``metadata`` plus the trace context, for a grpc.aio call's ``metadata=``."""
    return (*(metadata or ()), *_context_items())


def trace_metadata(
    metadata: tuple[tuple[str, str], ...] | None,
) -> tuple[tuple[str, str], ...]:
    """``metadata`` plus the current trace context, all text (syndic.client's calls)."""
    return (*(metadata or ()), *_context_items())


def _context_items() -> tuple[tuple[str, str], ...]:
    """The current trace context as W3C header pairs (``traceparent``, ...)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return tuple(carrier.items())


def extract_grpc_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> otel_context.Context:
    """The context a gRPC call's invocation metadata carries."""
    carrier = {
        k.lower(): v if isinstance(v, str) else v.decode("latin-1") for k, v in metadata or ()
    }
    return extract(carrier)


async def httpx_request_hook(request: Any) -> None:
    """httpx: ``AsyncClient(event_hooks={"request": [httpx_request_hook]})``."""
    inject_headers(request.headers)


def aiohttp_trace_config() -> Any:
    """aiohttp: ``ClientSession(trace_configs=[aiohttp_trace_config()])``."""
    import aiohttp

    config = aiohttp.TraceConfig()

    async def on_request_start(_session: Any, _ctx: Any, params: Any) -> None:
        inject_headers(params.headers)

    config.on_request_start.append(on_request_start)
    return config


class GrpcTraceInterceptor:
    """grpc.aio: ``insecure_channel(target, interceptors=[GrpcTraceInterceptor()])``
    adds the trace context to every unary call's metadata."""

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        import grpc

        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        carrier: dict[str, str] = {}
        inject(carrier)
        for key, value in carrier.items():
            metadata.add(key, value)
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            metadata,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def grpc_trace_interceptor() -> Any:
    """A :class:`GrpcTraceInterceptor` that grpc.aio accepts as an interceptor."""
    import grpc

    class _Interceptor(GrpcTraceInterceptor, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        pass

    return _Interceptor()


def extract_asgi_scope(scope: Mapping[str, Any]) -> otel_context.Context:
    """The context an ASGI request carries (its scope's raw ``headers``)."""
    carrier = {
        bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
        for k, v in scope.get("headers", ())
    }
    return extract(carrier)


def inject_asgi_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add the trace context to an ASGI response's (or outgoing request's) raw headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items())
    return headers


class TracingASGIMiddleware:
    """ASGI middleware: a server span per HTTP request, parented on its traceparent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        name = f"{scope.get('method', 'GET')} {scope.get('path', '')}"
        with tracer().start_as_current_span(
            name, context=extract_asgi_scope(scope), kind=SpanKind.SERVER
        ) as current:

            async def send_traced(message: dict[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    current.set_attribute("http.status_code", int(message.get("status", 0)))
                await send(message)

            await self.app(scope, receive, send_traced)
