"""The member's own metrics over the last hour, as an in-memory ring.

Every ``interval_s`` the sampler reads the member's Prometheus collectors and
its request observer and appends one :class:`Sample`; the console draws
charts from the ring and the alert engine evaluates rules on it, so neither
needs a Prometheus server.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Protocol

from syndic.observability.requests import RequestObserver

SAMPLE_INTERVAL_S_DEFAULT: Final = 5.0
# One hour at the default interval.
SAMPLES_MAX_DEFAULT: Final = 720


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading. Rates are per second over the interval before ``at_unix_s``."""

    at_unix_s: float
    request_rate: float
    latency_ms_p99: float
    proposals_rate: float
    proposals_pending: float
    fsync_ms_p99: float
    watchers: float
    has_leader: float
    leader_changes: float
    term: float
    db_size_bytes: float
    db_quota_fraction: float
    peers_unreachable: float
    instances_critical: float
    # Age of the oldest config change not yet handed to a watcher (push_lag).
    config_push_lag_s: float = 0.0


SERIES: Final = tuple(f.name for f in fields(Sample) if f.name != "at_unix_s")


class CollectorLike(Protocol):
    def collect(self) -> Any: ...


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def histogram_buckets(collector: CollectorLike) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` pairs of an unlabelled Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    for family in collector.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), float(s.value)))
    return buckets


def bucket_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    """The ``q`` quantile of what was observed between two readings, by the
    upper bound of its bucket (Prometheus' histogram_quantile, without
    interpolation); 0 when nothing was observed."""
    old = dict(before)
    deltas = [(le, count - old.get(le, 0.0)) for le, count in after]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return 0.0
    wanted = q * total
    finite = [le for le, _ in deltas if not math.isinf(le)]
    for le, count in deltas:
        if count >= wanted:
            return le if not math.isinf(le) else (finite[-1] if finite else 0.0)
    return finite[-1] if finite else 0.0


def counter_value(collector: CollectorLike) -> float:
    """The sum of a (possibly labelled) counter's ``_total`` samples, or a gauge's value."""
    total = 0.0
    for family in collector.collect():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            total += float(s.value)
    return total


class SampleRing:
    """The last ``samples_max`` samples, oldest dropped first."""

    def __init__(self, samples_max: int = SAMPLES_MAX_DEFAULT) -> None:
        if samples_max < 2:
            raise ValueError(f"samples_max must be >= 2, got {samples_max}")
        self._samples: collections.deque[Sample] = collections.deque(maxlen=samples_max)

    def append(self, sample: Sample) -> None:
        self._samples.append(sample)

    def samples(self, since_unix_s: float = 0.0) -> list[Sample]:
        return [s for s in self._samples if s.at_unix_s >= since_unix_s]

    def latest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def series(self, name: str) -> list[tuple[float, float]]:
        if name not in SERIES:
            raise KeyError(f"unknown series {name!r}; known: {', '.join(SERIES)}")
        return [(s.at_unix_s, float(getattr(s, name))) for s in self._samples]

    def as_json(self) -> dict[str, Any]:
        return {"series": list(SERIES), "samples": [asdict(s) for s in self._samples]}


class NodeLike(Protocol):
    """What the sampler reads from a member (``MemberNode`` has all of it)."""

    metrics: Any

    def status(self) -> Any: ...

    def debug_status(self) -> dict[str, object]: ...


def _quota_bytes(node: Any) -> float:
    config = getattr(node, "config", None)
    quota = getattr(config, "quota_bytes", 0) or 0
    return float(quota)


def _peers_unreachable(debug: dict[str, object]) -> float:
    peers = debug.get("peers")
    if not isinstance(peers, dict):
        return 0.0
    down = 0
    for stats in peers.values():
        if isinstance(stats, dict) and stats.get("connected") is False:
            down += 1
    return float(down)


class SampleGauges:
    """The derived readings, exported on the member's /metrics so the Prometheus
    twin of each alert rule has a series to read."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Gauge

        r = registry
        self.quota = Gauge("syndic_db_quota_fraction", "Database size / quota.", registry=r)
        self.peers = Gauge("syndic_peers_unreachable", "Peer links down.", registry=r)
        self.critical = Gauge(
            "syndic_registry_instances_critical",
            "Registered instances with a critical check.",
            registry=r,
        )
        self.push_lag = Gauge(
            "syndic_config_push_lag_seconds",
            "Age of the oldest config change applied here and not yet handed to a watcher.",
            registry=r,
        )
        self.latency = Gauge(
            "syndic_request_latency_p99_seconds",
            "p99 of client request latency over the last sampling interval.",
            registry=r,
        )

    def set(self, sample: Sample) -> None:
        self.quota.set(sample.db_quota_fraction)
        self.peers.set(sample.peers_unreachable)
        self.critical.set(sample.instances_critical)
        self.push_lag.set(sample.config_push_lag_s)
        self.latency.set(sample.latency_ms_p99 / 1000.0)


class Sampler:
    """Turns a member's counters into one :class:`Sample` per call of :meth:`take`."""

    def __init__(self, node: NodeLike, observer: RequestObserver, ring: SampleRing) -> None:
        self.node = node
        self.observer = observer
        self.ring = ring
        self._last_at = time.monotonic()
        self._last_requests = observer.requests_total
        self._last_committed = counter_value(node.metrics.proposals_committed)
        self._last_fsync = histogram_buckets(node.metrics.fsync_duration)
        self.gauges = SampleGauges(node.metrics.registry)

    def take(self, instances_critical: int = 0, config_push_lag_s: float = 0.0) -> Sample:
        now = time.monotonic()
        elapsed_s = max(now - self._last_at, 1e-6)
        m = self.node.metrics
        committed = counter_value(m.proposals_committed)
        fsync = histogram_buckets(m.fsync_duration)
        status = self.node.status()
        quota = _quota_bytes(self.node)
        sample = Sample(
            at_unix_s=time.time(),
            request_rate=(self.observer.requests_total - self._last_requests) / elapsed_s,
            latency_ms_p99=percentile(self.observer.drain_latencies_ms(), 0.99),
            proposals_rate=max(committed - self._last_committed, 0.0) / elapsed_s,
            proposals_pending=counter_value(m.proposals_pending),
            fsync_ms_p99=bucket_quantile(self._last_fsync, fsync, 0.99) * 1000.0,
            watchers=counter_value(m.watchers),
            has_leader=1.0 if status.leader_id else 0.0,
            leader_changes=counter_value(m.leader_changes),
            term=float(status.raft_term),
            db_size_bytes=float(status.db_size_bytes),
            db_quota_fraction=status.db_size_bytes / quota if quota else 0.0,
            peers_unreachable=_peers_unreachable(self.node.debug_status()),
            instances_critical=float(instances_critical),
            config_push_lag_s=config_push_lag_s,
        )
        self._last_at = now
        self._last_requests = self.observer.requests_total
        self._last_committed = committed
        self._last_fsync = fsync
        self.ring.append(sample)
        self.gauges.set(sample)
        return sample
