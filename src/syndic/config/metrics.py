"""Prometheus metrics of the configuration SDK.

=======================================  =======  =========  ===============================
``syndic_config_snapshot_starts_total``  counter  namespace  configs started from a snapshot
``syndic_config_from_snapshot``          gauge    namespace  configs served from one now
``syndic_config_failover_active``        gauge    namespace  configs a failover file overrides
``syndic_config_changes_total``          counter  namespace  changes delivered to listeners
=======================================  =======  =========  ===============================
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class ConfigMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.snapshot_starts = Counter(
            "syndic_config_snapshot_starts_total",
            "Configs served from the local snapshot because the centre was unreachable.",
            ["namespace"],
            registry=registry,
        )
        self.from_snapshot = Gauge(
            "syndic_config_from_snapshot",
            "Configs currently served from the local snapshot.",
            ["namespace"],
            registry=registry,
        )
        self.failover_active = Gauge(
            "syndic_config_failover_active",
            "Configs currently overridden by a failover file.",
            ["namespace"],
            registry=registry,
        )
        self.changes = Counter(
            "syndic_config_changes_total",
            "Config changes delivered to listeners.",
            ["namespace"],
            registry=registry,
        )


_default: ConfigMetrics | None = None


def default_metrics() -> ConfigMetrics:
    """One set in the process-wide registry (registering twice would raise)."""
    global _default  # noqa: PLW0603 - a process-wide singleton, as the registry is
    if _default is None:
        _default = ConfigMetrics()
    return _default
