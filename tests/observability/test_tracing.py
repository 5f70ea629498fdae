"""Tracing: a trace from a client call through the member (gRPC and HTTP), W3C
trace context across httpx, aiohttp, grpc.aio and ASGI, OTEL_* configuration;
spans come from the SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.client import Client
from syndic.observability import tracing
from tests.console.member import running_member
from tests.observability.spans import named, spans

__all__ = ["spans"]  # a fixture, used by name


async def test_a_client_call_is_traced_through_the_member(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_member(tmp_path) as member:
        channel = grpc.aio.insecure_channel(
            member.target, interceptors=[tracing.grpc_trace_interceptor()]
        )
        async with channel:
            kv = make_stub(channel, KV_SERVICE)
            with tracing.span("client.put", kind=SpanKind.CLIENT) as client_span:
                await kv.Put(rpc_pb2.PutRequest(key=b"t", value=b"1"), timeout=10)
                tracing.add_event("retry", attempt=1)
            # Without the interceptor, the explicit metadata helper does the same.
            with tracing.span("client.range") as range_span:
                await kv.Range(
                    rpc_pb2.RangeRequest(key=b"t"),
                    metadata=tracing.inject_grpc_metadata(),
                    timeout=10,
                )
        async with aiohttp.ClientSession(
            member.admin_url, trace_configs=[tracing.aiohttp_trace_config()]
        ) as http:
            with tracing.span("client.cluster") as http_span:
                async with http.get("/ui/api/cluster") as resp:
                    assert resp.status == 200
    server = named(spans, "etcdserverpb.KV/Put")
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert server.parent.span_id == client_span.get_span_context().span_id
    assert server.context.trace_id == client_span.get_span_context().trace_id
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == "OK"
    assert [e.name for e in named(spans, "client.put").events] == ["retry"]
    ranged = named(spans, "etcdserverpb.KV/Range")
    assert ranged.parent is not None
    assert ranged.parent.span_id == range_span.get_span_context().span_id
    served = named(spans, "HTTP GET /ui/api/cluster")
    assert served.parent is not None
    assert served.parent.span_id == http_span.get_span_context().span_id
    assert served.attributes is not None and served.attributes["http.status_code"] == 200


async def test_a_syndic_client_call_joins_the_callers_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_member(tmp_path) as member, Client([member.target]) as client:
        with tracing.span("caller", kind=SpanKind.CLIENT) as caller:
            await client.put("traced", "1")
    served = named(spans, "etcdserverpb.KV/Put")
    assert served.parent is not None
    assert served.parent.span_id == caller.get_span_context().span_id
    assert served.context.trace_id == caller.get_span_context().trace_id


async def test_a_failed_call_marks_its_span(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    async with running_member(tmp_path) as member, member.channel() as channel:
        kv = make_stub(channel, KV_SERVICE)
        with pytest.raises(grpc.aio.AioRpcError):
            await kv.Range(rpc_pb2.RangeRequest(key=b""), timeout=10)  # etcd: key is not provided
    failed = named(spans, "etcdserverpb.KV/Range")
    assert not failed.status.is_ok
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT"


async def test_httpx_and_asgi_carry_the_trace_context(spans: InMemorySpanExporter) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=tracing.TracingASGIMiddleware(app))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://svc",
        event_hooks={"request": [tracing.httpx_request_hook]},
    ) as client:
        with tracing.span("caller") as caller:
            resp = await client.get("/orders")
    assert resp.status_code == 204
    server = named(spans, "GET /orders")
    assert server.parent is not None
    assert server.parent.span_id == caller.get_span_context().span_id
    assert server.attributes is not None and server.attributes["http.status_code"] == 204


def test_asgi_and_grpc_carriers_round_trip(spans: InMemorySpanExporter) -> None:
    with tracing.span("origin") as origin:
        headers = tracing.inject_asgi_headers([])
        metadata = tracing.inject_grpc_metadata((("x-other", "1"),))
    want = origin.get_span_context()
    for ctx in (
        tracing.extract_asgi_scope({"headers": headers}),
        tracing.extract_grpc_metadata(metadata),
        tracing.extract_headers({"Traceparent": dict(metadata)["traceparent"]}),
    ):
        got = trace.get_current_span(ctx).get_span_context()
        assert (got.trace_id, got.span_id) == (want.trace_id, want.span_id)
    assert metadata[0] == ("x-other", "1")


def test_otel_variables_decide_the_export() -> None:
    assert tracing.build_provider(env={}) is None
    assert tracing.build_provider(env={"OTEL_TRACES_EXPORTER": "none"}) is None
    assert (
        tracing.build_provider(
            env={"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
        )
        is None
    )
    provider = tracing.build_provider(
        "svc", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SERVICE_NAME": "m1"}
    )
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "m1"
    provider.shutdown()


def test_write_stages_are_events_on_the_current_span(spans: InMemorySpanExporter) -> None:
    with tracing.span("put") as request_span:
        tracing.write_stage("propose", 7)
        # The node loop's own context has no current span: it passes the one
        # it kept with the entry, while the request still waits.
        with trace.use_span(trace.INVALID_SPAN):
            tracing.write_stage("fsync", 7, span=request_span, batch=3)
    assert [(e.name, dict(e.attributes or {})) for e in named(spans, "put").events] == [
        ("propose", {"raft.index": 7}),
        ("fsync", {"raft.index": 7, "batch": 3}),
    ]
    with pytest.raises(ValueError, match="stage"):
        tracing.write_stage("vote", 1)
