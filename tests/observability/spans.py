"""The process's in-memory span exporter, as a fixture tests of every area share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from syndic.observability import tracing

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's SDK provider (set once: OpenTelemetry allows no replacement)."""
    if not tracing.tracing_enabled():
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    if not tracing.tracing_enabled() or _EXPORTER not in _exporters():
        pytest.skip("another SDK provider is installed in this process")
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _exporters() -> list[Any]:
    provider: Any = trace.get_tracer_provider()
    processors = provider._active_span_processor._span_processors
    return [p.span_exporter for p in processors if hasattr(p, "span_exporter")]


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert found, [s.name for s in exporter.get_finished_spans()]
    return found[-1]
