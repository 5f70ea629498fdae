"""The event loop's lag is measured by a timer that notes how late it fires,
and exported as ``syndic_event_loop_lag_seconds``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from syndic.server.loop_lag import LoopLagProbe
from syndic.server.node import MemberNode
from tests.server.cluster_util import cluster_configs


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_blocked_loop_shows_as_lag_of_about_the_block() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lag_seconds", "", buckets=(0.05, 0.2, 1.0), registry=registry)
    probe = LoopLagProbe(histogram, interval_s=0.02)
    probe.start()
    try:
        await asyncio.sleep(0.2)
        assert _sample(registry, "lag_seconds_count") >= 3
        assert _sample(registry, "lag_seconds_bucket", le="0.2") == _sample(
            registry, "lag_seconds_count"
        )
        time.sleep(0.3)  # something slow on the loop
        await asyncio.sleep(0.1)
        assert 0.25 <= probe.worst_s < 1.0
        over = _sample(registry, "lag_seconds_count") - _sample(
            registry, "lag_seconds_bucket", le="0.2"
        )
        assert over == 1  # one stall, counted once
    finally:
        probe.stop()
    count = _sample(registry, "lag_seconds_count")
    await asyncio.sleep(0.1)
    assert _sample(registry, "lag_seconds_count") == count  # stopped


def test_interval_must_be_positive() -> None:
    histogram = Histogram("h_seconds", "", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="interval_s"):
        LoopLagProbe(histogram, interval_s=0)


async def test_a_member_exports_its_loop_lag(tmp_path: Path) -> None:
    (config,) = cluster_configs(tmp_path, 1)
    node = MemberNode(config)
    await node.start()
    try:
        registry = node.metrics.registry
        await asyncio.sleep(0.35)
        before = _sample(registry, "syndic_event_loop_lag_seconds_count")
        assert before >= 2
        time.sleep(0.15)
        await asyncio.sleep(0.25)
        assert _sample(registry, "syndic_event_loop_lag_seconds_count") > before
        assert _sample(registry, "syndic_event_loop_lag_seconds_sum") >= 0.1
        text = node.metrics.exposition().decode()
        assert 'syndic_event_loop_lag_seconds_bucket{le="0.0001"}' in text
    finally:
        await node.stop()
