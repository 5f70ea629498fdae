"""etcd-style slow-request warnings and a bounded slow log.

etcd logs ``"apply request took too long"`` with the request's kind, size and
duration when a request runs past ``warning-apply-duration`` (100 ms); syndic
does the same for every client request, and keeps the latest ones in a ring
the admin API serves at ``/debug/slowlog``.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final

log = logging.getLogger("syndic.slow")

# etcd's default warning-apply-duration.
SLOW_REQUEST_THRESHOLD_MS_DEFAULT: Final = 100.0
# Enough to see a burst, small enough that the ring is never a memory concern
# (an entry is about 300 bytes).
SLOW_LOG_ENTRIES_MAX_DEFAULT: Final = 256
# Warning lines written per second at most. An overloaded member makes every
# queued request slow (4,096 puts in flight wait about a second each), and a
# line per request cost about 30 us of CPU per put, a quarter of the member's
# CPU, which deepened the overload. Past this rate the ring still keeps every
# request, and the next line written says how many lines were left out.
SLOW_LOG_LINES_PER_S_MAX_DEFAULT: Final = 10


@dataclass(frozen=True, slots=True)
class SlowRequest:
    kind: str
    size_bytes: int
    duration_ms: float
    code: str
    at_unix_s: float
    request_id: str = ""
    trace_id: str = ""


class SlowLog:
    """The latest slow requests, oldest dropped first."""

    def __init__(
        self,
        threshold_ms: float = SLOW_REQUEST_THRESHOLD_MS_DEFAULT,
        entries_max: int = SLOW_LOG_ENTRIES_MAX_DEFAULT,
        lines_per_s_max: int = SLOW_LOG_LINES_PER_S_MAX_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold_ms < 0:
            raise ValueError(f"slow request threshold_ms must be >= 0, got {threshold_ms}")
        if entries_max < 1:
            raise ValueError(f"slow log entries_max must be >= 1, got {entries_max}")
        if lines_per_s_max < 1:
            raise ValueError(f"slow log lines_per_s_max must be >= 1, got {lines_per_s_max}")
        self.threshold_ms = threshold_ms
        self._entries: collections.deque[SlowRequest] = collections.deque(maxlen=entries_max)
        self.recorded = 0
        self.lines_per_s_max = lines_per_s_max
        self._clock = clock
        self._second_started_s = -math.inf
        self._lines_this_second = 0
        self.lines_left_out = 0  # since the last line written

    def is_slow(self, duration_ms: float) -> bool:
        return duration_ms >= self.threshold_ms

    def record(self, entry: SlowRequest) -> None:
        self._entries.append(entry)
        self.recorded += 1
        if not self._may_write_line():
            self.lines_left_out += 1
            return
        left_out, self.lines_left_out = self.lines_left_out, 0
        # etcd: "request took too long" with took/expected-duration/request.
        log.warning(
            "request took too long: kind=%s size_bytes=%d duration_ms=%.1f code=%s%s",
            entry.kind,
            entry.size_bytes,
            entry.duration_ms,
            entry.code,
            f" ({left_out} slow requests before it not logged)" if left_out else "",
            extra={
                "slow_request": asdict(entry),
                "slow_requests_not_logged": left_out,
                "request_id": entry.request_id,
                "trace_id": entry.trace_id,
            },
        )

    def _may_write_line(self) -> bool:
        now_s = self._clock()
        if now_s - self._second_started_s >= 1.0:
            self._second_started_s = now_s
            self._lines_this_second = 0
        if self._lines_this_second >= self.lines_per_s_max:
            return False
        self._lines_this_second += 1
        return True

    def entries(self, limit: int | None = None) -> list[SlowRequest]:
        """Newest first."""
        items = list(reversed(self._entries))
        return items if limit is None else items[:limit]


def now_unix_s() -> float:
    return time.time()
