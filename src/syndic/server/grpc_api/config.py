"""Limits and intervals of the gRPC service layer, each named with its unit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from syndic.api.services import DEFAULT_MAX_REQUEST_BYTES

# etcd: v3rpc progressReportInterval, 10 minutes between progress
# notifications to watchers created with progress_notify.
PROGRESS_NOTIFY_INTERVAL_S_DEFAULT: Final = 600.0
# etcd puts no bound on watchers per stream; syndic does so one client
# cannot grow the hub without limit. Matches the hub's own default.
WATCHERS_PER_STREAM_MAX_DEFAULT: Final = 10_000
# Responses pulled from the hub per send cycle: etcd's per-stream channel
# holds 128 responses; pulling at most that many keeps one cycle short.
WATCH_PULL_RESPONSES_MAX_DEFAULT: Final = 128
# The sender wakes at least this often even when nothing is signalled, so a
# missed wake-up costs latency, not liveness.
WATCH_WAIT_TIMEOUT_S_DEFAULT: Final = 1.0
# etcd: maintenanceServer.Snapshot sends the database in 32 KiB chunks.
SNAPSHOT_CHUNK_BYTES_DEFAULT: Final = 32 * 1024


@dataclass(frozen=True, slots=True)
class GrpcApiConfig:
    """Settings of the etcd v3 gRPC services of one member."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    watchers_per_stream_max: int = WATCHERS_PER_STREAM_MAX_DEFAULT
    progress_notify_interval_s: float = PROGRESS_NOTIFY_INTERVAL_S_DEFAULT
    watch_pull_responses_max: int = WATCH_PULL_RESPONSES_MAX_DEFAULT
    watch_wait_timeout_s: float = WATCH_WAIT_TIMEOUT_S_DEFAULT
    snapshot_chunk_bytes: int = SNAPSHOT_CHUNK_BYTES_DEFAULT

    def __post_init__(self) -> None:
        for name in (
            "max_request_bytes",
            "watchers_per_stream_max",
            "watch_pull_responses_max",
            "snapshot_chunk_bytes",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"GrpcApiConfig.{name} must be a positive int, got {value!r}")
        for name in ("progress_notify_interval_s", "watch_wait_timeout_s"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"GrpcApiConfig.{name} must be a positive number, got {value!r}")
