"""Per-request records of a member: counts, latency, the slow log, capture.

The gRPC ``guard`` wrapper and the admin app's middleware call
:meth:`RequestObserver.finish` once per request. The observer for a member is
found from its ``ServerMetrics`` (the one object the gRPC layer already
holds), so no constructor signature changes.
"""

from __future__ import annotations

import collections
import weakref
from dataclasses import dataclass
from typing import Final

from syndic.observability.logs import request_id_var
from syndic.observability.slowlog import SlowLog, SlowRequest, now_unix_s

# Latencies kept per sampling interval for the p99: a reservoir this size gives
# a p99 within about a percentile point; older ones are overwritten.
LATENCY_RESERVOIR_MAX: Final = 2048
# Captured requests kept when a capture is armed (debug), whatever N asked.
CAPTURE_ENTRIES_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    kind: str
    duration_ms: float
    code: str
    size_bytes: int
    at_unix_s: float
    trace_id: str
    request: str


class RequestObserver:
    """Counts, latencies and slow requests of one member."""

    __slots__ = (
        "__weakref__",
        "_capture_kind",
        "_capture_left",
        "_latencies_ms",
        "captured",
        "requests_total",
        "slow_log",
    )

    def __init__(self, slow_log: SlowLog | None = None) -> None:
        self.slow_log = slow_log or SlowLog()
        self.requests_total = 0
        self._latencies_ms: collections.deque[float] = collections.deque(
            maxlen=LATENCY_RESERVOIR_MAX
        )
        self._capture_kind = ""
        self._capture_left = 0
        self.captured: collections.deque[CapturedRequest] = collections.deque(
            maxlen=CAPTURE_ENTRIES_MAX
        )

    def finish(
        self,
        kind: str,
        duration_ms: float,
        code: str,
        request: object = None,
        trace_id: str = "",
        client_request: bool = True,
    ) -> None:
        """Record one request; admin-API requests (``client_request=False``: the
        console polling, scrapes) reach the slow log but not the client request
        rate and latency."""
        if client_request:
            self.requests_total += 1
            self._latencies_ms.append(duration_ms)
        slow = duration_ms >= self.slow_log.threshold_ms
        if slow or self._capture_left:
            self._record(kind, duration_ms, code, request, trace_id, slow)

    def _record(
        self, kind: str, duration_ms: float, code: str, request: object, trace_id: str, slow: bool
    ) -> None:
        # Sizing a message is the costly part: only for the few recorded.
        size = _size_bytes(request)
        if slow:
            self.slow_log.record(
                SlowRequest(
                    kind, size, duration_ms, code, now_unix_s(), request_id_var.get(), trace_id
                )
            )
        if self._capture_left and (self._capture_kind in ("", kind)):
            self._capture_left -= 1
            self.captured.append(
                CapturedRequest(
                    kind, duration_ms, code, size, now_unix_s(), trace_id, _describe(request)
                )
            )

    def arm_capture(self, kind: str, count: int) -> None:
        """Record the next ``count`` requests of ``kind`` ("" = any) in full."""
        if not 0 < count <= CAPTURE_ENTRIES_MAX:
            raise ValueError(f"capture count must be in 1..{CAPTURE_ENTRIES_MAX}, got {count}")
        self.captured.clear()
        self._capture_kind = kind
        self._capture_left = count

    @property
    def capture_left(self) -> int:
        return self._capture_left

    @property
    def capture_kind(self) -> str:
        return self._capture_kind

    def drain_latencies_ms(self) -> list[float]:
        """The latencies since the last drain (the sampler's interval)."""
        items = list(self._latencies_ms)
        self._latencies_ms.clear()
        return items


# Describing a captured request: bounded so a 1.5 MiB value never lands in memory twice.
_DESCRIBE_CHARS_MAX: Final = 2000


def _describe(request: object) -> str:
    if request is None:
        return ""
    text = str(request)
    return text if len(text) <= _DESCRIBE_CHARS_MAX else text[:_DESCRIBE_CHARS_MAX] + "..."


def _size_bytes(request: object) -> int:
    byte_size = getattr(request, "ByteSize", None)
    if callable(byte_size):
        size = byte_size()
        return size if isinstance(size, int) else 0
    if isinstance(request, bytes | bytearray):
        return len(request)
    return 0


_observers: weakref.WeakKeyDictionary[object, RequestObserver] = weakref.WeakKeyDictionary()


def observer_for(owner: object) -> RequestObserver:
    """The observer of the member owning ``owner`` (its ``ServerMetrics``)."""
    observer = _observers.get(owner)
    if observer is None:
        observer = _observers[owner] = RequestObserver()
    return observer
