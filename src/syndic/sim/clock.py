"""Virtual time and the simulator's single event queue.

Time is an integer number of virtual milliseconds; a Raft tick is every
``tick_ms`` of it. Events due at the same instant run in the order they were
scheduled (a sequence number breaks ties), so the order never depends on
anything but the seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

# A runaway schedule (an event that reschedules itself at the same instant) would
# spin forever without advancing time; no sound run comes near this many events.
MAX_EVENTS_PER_RUN = 5_000_000


class SimulationError(RuntimeError):
    """The simulator itself was misused (time going backwards, event budget blown)."""


# One queued event: (due_ms, seq, action, label). A plain tuple, compared
# in C on (due_ms, seq) with seq unique, so the action is never compared; no
# object is built per event beyond the tuple itself.
_Scheduled = tuple[int, int, Callable[[], None], str]


class VirtualClock:
    """A clock that only moves when the next event is taken from the queue.

    >>> clock = VirtualClock(tick_ms=10)
    >>> clock.schedule(25, lambda: None, "x")
    >>> action, label = clock.pop_due()
    >>> label, clock.now_ms, clock.now_ticks
    ('x', 25, 2)
    """

    __slots__ = ("_events_run", "_queue", "_seq", "now_ms", "tick_ms")

    def __init__(self, tick_ms: int = 10) -> None:
        if tick_ms < 1:
            raise SimulationError(f"tick_ms must be >= 1, got {tick_ms}")
        self.tick_ms = tick_ms
        self.now_ms = 0
        self._queue: list[_Scheduled] = []
        self._seq = 0
        self._events_run = 0

    @property
    def now_ticks(self) -> int:
        return self.now_ms // self.tick_ms

    def schedule(self, delay_ms: int, action: Callable[[], None], label: str = "") -> None:
        """Run ``action`` ``delay_ms`` from now (0 = after everything already due now)."""
        if delay_ms < 0:
            raise SimulationError(f"cannot schedule {label!r} in the past ({delay_ms} ms)")
        self._seq += 1
        due = self.now_ms + delay_ms
        heapq.heappush(self._queue, (due, self._seq, action, label))

    def pending(self) -> int:
        return len(self._queue)

    def next_due_ms(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self) -> tuple[Callable[[], None], str]:
        """Take the next event and move time to it: its action and its label."""
        if not self._queue:
            raise SimulationError("no event scheduled")
        due_ms, _, action, label = heapq.heappop(self._queue)
        self._events_run += 1
        if self._events_run > MAX_EVENTS_PER_RUN:
            raise SimulationError(f"more than {MAX_EVENTS_PER_RUN} events in one run")
        self.now_ms = due_ms
        return action, label

    @property
    def events_run(self) -> int:
        return self._events_run


PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class MemberClock:
    """One member's own clock: ``offset_ms`` from true time, running ``rate_ppm``
    parts per million fast (negative: slow). Its ticks drive the member's Raft
    timers, so members' election timeouts and heartbeats drift apart as real
    crystals do; its readings are what the member would take for "now".

    >>> clock = MemberClock(offset_ms=3_600_000, rate_ppm=10_000)  # +1 h, 1 % fast
    >>> clock.local_ms(1000), clock.tick_due_ms(1, tick_ms=10)
    (3601010, 10)
    >>> MemberClock(offset_ms=0, rate_ppm=-10_000).tick_due_ms(100, tick_ms=10)
    1011
    """

    offset_ms: int
    rate_ppm: int

    def __post_init__(self) -> None:
        if not -PPM < self.rate_ppm < PPM:
            raise SimulationError(f"clock rate must be within +-{PPM} ppm, got {self.rate_ppm}")

    def local_ms(self, true_ms: int) -> int:
        return self.offset_ms + true_ms * (PPM + self.rate_ppm) // PPM

    def tick_due_ms(self, tick: int, tick_ms: int) -> int:
        """The true time at which this clock has counted ``tick`` ticks (rounded up)."""
        rate = PPM + self.rate_ppm
        return (tick * tick_ms * PPM + rate - 1) // rate

    def describe(self) -> str:
        sign = "+" if self.offset_ms >= 0 else "-"
        minutes = abs(self.offset_ms) // 60_000
        return f"{sign}{minutes // 60}h{minutes % 60:02d}m {self.rate_ppm / 10_000:+.2f}%"
