"""The event loop's lag is measured by a timer that notes how late it fires,
and exported as ``syndic_event_loop_lag_seconds``."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from syndic.kv.messages import PutRequest
from syndic.server.app import GC_THRESHOLDS
from syndic.server.loop_lag import LoopLagProbe
from syndic.server.node import MemberNode
from tests.server.cluster_util import cluster_configs, eventually


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_blocked_loop_shows_as_lag_of_about_the_block() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lag_seconds", "", buckets=(0.05, 0.6, 2.0), registry=registry)
    probe = LoopLagProbe(histogram, interval_s=0.02)
    probe.start()
    try:
        await asyncio.sleep(0.2)
        assert _sample(registry, "lag_seconds_count") >= 3
        time.sleep(0.8)  # something slow on the loop
        await asyncio.sleep(0.1)
        # A loaded machine adds lag of its own, but not this much.
        assert 0.75 <= probe.worst_s < 2.0
        over = _sample(registry, "lag_seconds_count") - _sample(
            registry, "lag_seconds_bucket", le="0.6"
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
        await eventually(
            lambda: _sample(registry, "syndic_event_loop_lag_seconds_count") >= 2, timeout_s=10
        )
        before = _sample(registry, "syndic_event_loop_lag_seconds_count")
        # Blocked past a whole probe interval: the probe falls due inside it.
        time.sleep(0.35)
        await eventually(
            lambda: _sample(registry, "syndic_event_loop_lag_seconds_count") > before, timeout_s=10
        )
        assert _sample(registry, "syndic_event_loop_lag_seconds_sum") >= 0.2
        text = node.metrics.exposition().decode()
        assert 'syndic_event_loop_lag_seconds_bucket{le="0.0001"}' in text
    finally:
        await node.stop()


class _Samples:
    """A histogram stand-in that keeps every observation, for exact quantiles."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.slow
async def test_snapshot_of_a_200_mb_store_under_write_load_keeps_loop_lag_p99_under_50_ms(
    tmp_path: Path,
) -> None:
    """The issue's scenario: a 200 MB store snapshotted while 16 writers write."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # as a member process runs
    (config,) = cluster_configs(tmp_path, 1, heartbeat_ms=100)
    node = MemberNode(dataclasses.replace(config, snapshot_count=10**9))
    await node.start()
    try:
        await eventually(node._is_leader)
        value = b"v" * 2048
        keys = 200 * 1024 * 1024 // len(value)

        async def fill(first: int) -> None:
            for i in range(first, keys, 64):
                await node.write(PutRequest(key=b"key%08d" % i, value=value))

        await asyncio.gather(*(fill(n) for n in range(64)))
        samples = _Samples()
        probe = LoopLagProbe(samples, interval_s=0.02)  # type: ignore[arg-type]
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                await node.write(PutRequest(key=b"w%d-%d" % (n, i % 1000), value=b"x" * 100))
                i += 1

        writers = [asyncio.create_task(writer(n)) for n in range(16)]
        await asyncio.sleep(1)
        probe.start()
        before = node._snapshot_index
        # The member runtime's schedule decides when a snapshot is due.
        node._rt.snapshots.every_entries = 1
        await eventually(lambda: node._snapshot_index > before, timeout_s=300)
        probe.stop()
        stop.set()
        await asyncio.gather(*writers)
        p99_ms = samples.quantile(0.99) * 1000
        print(f"loop lag during the snapshot: p99 {p99_ms:.1f} ms, n={len(samples.values)}")
        assert p99_ms < 50
    finally:
        await node.stop()
        gc.set_threshold(*thresholds)
