"""A write's stages (propose, fsync, commit, apply) as events on the span of
the request that caused it, on a real member and on a follower that forwards
to the leader; spans come from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from syndic.kv.errors import KvError
from syndic.kv.messages import PutRequest
from syndic.member.proposals import ENTRY_OVERHEAD_BYTES_MAX
from syndic.observability import tracing
from syndic.server.app import MemberServer
from syndic.server.backend import ServerError
from tests.console.member import running_member
from tests.observability.spans import named, spans
from tests.server.cluster_util import cluster_configs, eventually

__all__ = ["spans"]  # a fixture, used by name

STAGES = ["propose", "fsync", "commit", "apply"]


def _stages(span: ReadableSpan) -> list[tuple[str, int, int]]:
    """(stage, raft index or 0, timestamp) of the span's write-stage events."""
    return [
        (e.name, int(dict(e.attributes or {}).get("raft.index", 0)), e.timestamp)
        for e in span.events
        if e.name in tracing.WRITE_STAGES
    ]


def _assert_increasing(stages: list[tuple[str, int, int]]) -> None:
    times = [t for _, _, t in stages]
    assert times == sorted(times) and len(set(times)) == len(times), stages


async def test_a_put_span_carries_its_stages_in_order(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_member(tmp_path) as member, member.channel() as channel:
        kv = make_stub(channel, KV_SERVICE)
        await kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
    put = named(spans, "etcdserverpb.KV/Put")
    stages = _stages(put)
    assert [name for name, _, _ in stages] == STAGES
    indexes = {index for _, index, _ in stages}
    assert len(indexes) == 1 and indexes != {0}, stages
    _assert_increasing(stages)


async def test_concurrent_puts_each_get_their_own_entry(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    writers = 16
    async with running_member(tmp_path) as member, member.channel() as channel:
        kv = make_stub(channel, KV_SERVICE)
        await asyncio.gather(
            *(
                kv.Put(rpc_pb2.PutRequest(key=b"k%d" % n, value=b"v"), timeout=10)
                for n in range(writers)
            )
        )
    puts = [s for s in spans.get_finished_spans() if s.name == "etcdserverpb.KV/Put"]
    assert len(puts) == writers
    seen = []
    for put in puts:
        stages = _stages(put)
        # Exactly one of each: a lost stage, or another request's, fails here.
        assert [name for name, _, _ in stages] == STAGES, stages
        _assert_increasing(stages)
        (index,) = {index for _, index, _ in stages}
        seen.append(index)
    assert len(set(seen)) == writers, seen


async def test_a_forwarded_put_records_its_stages_on_the_follower(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(MemberServer(c)) for c in cluster_configs(tmp_path, 3)
        ]
        await eventually(lambda: sum(s.node._is_leader() for s in servers) == 1, timeout_s=30)
        follower = next(s for s in servers if not s.node._is_leader())
        target = follower.config.listen_client_urls[0].removeprefix("http://")
        async with grpc.aio.insecure_channel(target) as channel:
            kv = make_stub(channel, KV_SERVICE)
            await kv.Put(rpc_pb2.PutRequest(key=b"fwd", value=b"1"), timeout=10)
    stages = _stages(named(spans, "etcdserverpb.KV/Put"))
    # The follower forwards (no index yet), then appends the leader's entry
    # to its own log (fsync), learns it is committed and applies it.
    assert [name for name, _, _ in stages] == STAGES, stages
    propose, fsync, commit, apply = stages
    assert propose[1] == 0, "the follower cannot know the index it forwards"
    assert fsync[1] == commit[1] == apply[1] > 0
    _assert_increasing(stages)


async def test_a_refused_put_has_no_stage_and_nothing_is_left_behind(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_member(tmp_path) as member:
        node: Any = member.server.node
        with tracing.span("client.put"):
            await node.write(PutRequest(key=b"a", value=b"1"))
        # Every traced proposal is forgotten once answered.
        assert not node._rt.proposals._traced
        # Past the request limit and the entry's framing: refused at admission.
        too_large = b"x" * (node._rt.proposals.limits.request_bytes_max + ENTRY_OVERHEAD_BYTES_MAX)
        with (
            tracing.span("client.too_large"),
            pytest.raises((ServerError, KvError), match="too large"),
        ):
            await node.write(PutRequest(key=b"b", value=too_large))
        assert not node._rt.proposals._traced
    assert [name for name, _, _ in _stages(named(spans, "client.put"))] == STAGES
    # Refused at admission, before it was proposed: no stage at all.
    assert _stages(named(spans, "client.too_large")) == []


def test_no_recorder_outside_a_recording_span(spans: InMemorySpanExporter) -> None:
    assert tracing.stage_recorder() is None
    with tracing.span("put") as current:
        record = tracing.stage_recorder()
        assert record is not None
    record("commit", 5)
    assert [(e.name, dict(e.attributes or {})) for e in named(spans, "put").events] == []
    assert not current.is_recording()
