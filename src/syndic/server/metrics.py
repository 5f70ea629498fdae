"""A member's Prometheus metrics.

Metrics that mean what etcd's mean carry etcd's names, so the dashboards and
alerts a team already runs against etcd work against syndic unchanged.
Each member has its own registry, so several members can share one process
in tests without their counters mixing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# fsync and apply take from tens of microseconds (page cache, tiny batch) to
# seconds (a stalled disk); etcd's buckets cover 1 ms .. 8 s by powers of two.
_DISK_BUCKETS_S = tuple(0.0005 * 2**i for i in range(15))
# Event-loop lag: 100 µs (a busy loop between two probes) .. 6.5 s (a stall
# past any election timeout), by powers of two.
_LOOP_LAG_BUCKETS_S = tuple(0.0001 * 2**i for i in range(17))


class ServerMetrics:
    """Every metric a member exports, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.has_leader = Gauge(
            "etcd_server_has_leader", "Whether a leader exists (1) or not (0).", registry=r
        )
        self.is_leader = Gauge(
            "etcd_server_is_leader", "Whether this member is the leader.", registry=r
        )
        self.term = Gauge("syndic_raft_term", "The member's current Raft term.", registry=r)
        self.leader_changes = Counter(
            "etcd_server_leader_changes_seen",
            "Leader changes this member has seen.",
            registry=r,
        )
        self.proposals_committed = Gauge(
            "etcd_server_proposals_committed_total", "Committed log index.", registry=r
        )
        self.proposals_applied = Gauge(
            "etcd_server_proposals_applied_total", "Applied log index.", registry=r
        )
        self.proposals_pending = Gauge(
            "etcd_server_proposals_pending", "Proposals waiting to commit.", registry=r
        )
        self.proposals_failed = Counter(
            "etcd_server_proposals_failed", "Proposals that failed.", registry=r
        )
        self.fsync_duration = Histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "Time of one WAL fsync (one per node cycle with new entries).",
            buckets=_DISK_BUCKETS_S,
            registry=r,
        )
        self.apply_duration = Histogram(
            "syndic_server_apply_duration_seconds",
            "Time to apply one cycle's committed entries to the store.",
            buckets=_DISK_BUCKETS_S,
            registry=r,
        )
        self.loop_lag = Histogram(
            "syndic_event_loop_lag_seconds",
            "How late the member's event loop ran a timer that was due; "
            "heartbeats and client calls wait as long.",
            buckets=_LOOP_LAG_BUCKETS_S,
            registry=r,
        )
        self.too_many_requests = Counter(
            "syndic_server_requests_refused",
            "Requests refused early with 'too many requests', by kind.",
            ["kind"],
            registry=r,
        )
        self.db_size = Gauge(
            "etcd_mvcc_db_total_size_in_bytes", "Estimated size of the store.", registry=r
        )
        self.keys = Gauge("etcd_debugging_mvcc_keys_total", "Live keys in the store.", registry=r)
        self.watchers = Gauge(
            "etcd_debugging_mvcc_watcher_total", "Watchers on this member.", registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "gRPC calls completed, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
