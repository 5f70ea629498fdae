"""How late the event loop runs what is due: the lag every client call and
every heartbeat waits behind.

A timer is armed every ``interval_s``; when it fires, the difference between
the time it fired and the time it was due is the loop's lag at that moment
(whatever ran in between held the loop). Observed into
``syndic_event_loop_lag_seconds``, a histogram, so a p99 can be read from
Prometheus. The same measure as Node's ``perf_hooks.monitorEventLoopDelay``
and aiomonitor's, at a fraction of their resolution.
"""

from __future__ import annotations

import asyncio
from typing import Final

from prometheus_client import Histogram

# Ten probes a second: a stall of 100 ms is seen whatever its phase, and the
# probe costs the loop about 10 µs a second.
LOOP_LAG_PROBE_INTERVAL_S: Final = 0.1


class LoopLagProbe:
    """Arms itself on the running loop; observes each firing's lateness."""

    def __init__(self, histogram: Histogram, interval_s: float = LOOP_LAG_PROBE_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._histogram = histogram
        self._interval_s = interval_s
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.worst_s = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self._interval_s
        self._handle = loop.call_at(self._due, self._fire, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        lag_s = max(0.0, now - self._due)
        self._histogram.observe(lag_s)
        self.worst_s = max(self.worst_s, lag_s)
        # Next probe one interval from now, not from the missed due time: a
        # long stall counts once, not once per interval it swallowed.
        self._due = now + self._interval_s
        self._handle = loop.call_at(self._due, self._fire, loop)
