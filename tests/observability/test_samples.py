"""The sample ring and the readings it is built from."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Histogram

from syndic.observability.samples import (
    SERIES,
    SampleRing,
    bucket_quantile,
    histogram_buckets,
    percentile,
)
from tests.console.member import put, running_member


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.99) == 0.0
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_bucket_quantile_reads_only_the_interval() -> None:
    h = Histogram("h_seconds", "h", buckets=(0.001, 0.01, 0.1, 1.0), registry=CollectorRegistry())
    for _ in range(100):
        h.observe(0.0005)
    before = histogram_buckets(h)
    for _ in range(99):
        h.observe(0.005)
    h.observe(0.5)
    after = histogram_buckets(h)
    # Over the interval: 99 at <= 10 ms, one at <= 1 s; the earlier 100 fast ones don't count.
    assert bucket_quantile(before, after, 0.99) == 0.01
    assert bucket_quantile(before, after, 1.0) == 1.0
    assert bucket_quantile(after, after, 0.99) == 0.0


def test_ring_is_bounded_and_series_are_named() -> None:
    with pytest.raises(ValueError):
        SampleRing(1)
    ring = SampleRing(3)
    with pytest.raises(KeyError, match="unknown series"):
        ring.series("nope")
    assert "latency_ms_p99" in SERIES


async def test_the_sampler_reads_the_member(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member:
        await member.obs.sample_now()
        for i in range(20):
            await put(member, f"s/{i}", "v")
        await member.obs.sample_now()
        latest = member.obs.ring.latest()
        assert latest is not None
        assert latest.has_leader == 1.0
        assert latest.request_rate > 0
        assert latest.latency_ms_p99 > 0
        assert latest.proposals_rate > 0
        assert latest.fsync_ms_p99 > 0
        async with aiohttp.ClientSession(member.admin_url) as http, http.get("/metrics") as resp:
            text = await resp.text()
        assert "syndic_request_latency_p99_seconds" in text
        assert "syndic_registry_instances_critical 0.0" in text


async def test_hostile_console_requests_change_nothing(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        revision = member.server.node.status().raft_index
        bad = [
            ("PUT", "/ui/api/key", b"{not json"),
            ("PUT", "/ui/api/key", b'{"key": "", "value": "x"}'),
            ("PUT", "/ui/api/key", b'{"key": "k", "value": 7}'),
            ("PUT", "/ui/api/key", b'["k"]'),
            ("PUT", "/ui/api/key", b'{"key": "' + b"k" * 300_000 + b'"}'),
            ("POST", "/ui/api/services", b'{"service": "web", "instance_id": "a/b"}'),
            ("POST", "/ui/api/services", b'{"service": "web", "instance_id": "a", "port": "x"}'),
            ("POST", "/ui/api/login", b'{"user": "x", "password": "y"}'),
            ("DELETE", "/ui/api/key", b""),
            ("GET", "/ui/api/key", b""),
        ]
        for method, path, body in bad:
            async with http.request(method, path, data=body) as resp:
                assert 400 <= resp.status < 500, (method, path, body[:40], resp.status)
        assert member.server.node.status().raft_index == revision
