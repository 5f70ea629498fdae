"""A share of each loop pass for bulk request bytes, so that no burst of them delays the rest.

An event loop reads every ready socket once per pass, up to the transport's
read size (256 KiB under uvloop). Hundreds of connections pushing large
requests at once (``bench/hostile.py``'s partial requests: 300 connections
each sending most of a 1 MiB Put) make one pass read and parse hundreds of
megabytes, and everything else waits for the pass to end: a small call
needs a few passes (connection set-up, the request, a ReadIndex round with
the followers, the answer), so it took seconds though the loop was busy only
a third of the time. Flow control cannot stop it: a unary request's window is
a whole request, so that honest large Puts never wait for a WINDOW_UPDATE.

So the server counts the bytes of large reads in each pass. Past
``read_bytes_per_pass_max``, a connection whose read was large stops being
read (its bytes wait in the kernel, and TCP slows its sender) and joins a
queue; each later pass resumes connections from the queue's head, as many
as the share allows, in turn. While the server's budget of buffered request
bytes is spent, a large read holds its connection back whatever the share,
and it waits for the budget: its bytes could only be refused
(RESOURCE_EXHAUSTED) or dropped, and reading them is the attacker's win.
Connections holding part of a request are the exception: their bytes
finish requests, which frees the budget, so honest uploads that filled it
still complete.
Small reads (below one maximum-size frame) are never held back: they are
the calls, pings and window updates of every other client, and cost little.
Honest bulk clients lose nothing when the server is quiet; under a flood
each gets its turn.

Pure bookkeeping: the asyncio driver pauses, resumes and schedules the pass.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol

from syndic.server.h2.frames import DEFAULT_MAX_FRAME_BYTES
from syndic.server.h2.limits import SharedBudget

# A read this small is never held back (see the module's text).
SMALL_READ_BYTES_MAX: Final = DEFAULT_MAX_FRAME_BYTES
# What one resumed connection is expected to deliver in a pass: uvloop's
# read size, so that resuming share // this many connections fills the share.
READ_BYTES_EXPECTED: Final = 256 * 1024
# While the request budget is spent, the queue is looked at this often: a
# pass-by-pass look would keep the loop from ever sleeping. Buffered bytes
# are freed as handlers take requests or the stall timeout ends streams.
BUDGET_RECHECK_S: Final = 0.05


class Throttled(Protocol):
    """A connection the share can hold back and let go."""

    def resume_from_share(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def holds_request_bytes(self) -> bool:
        """Part of a request has arrived and waits for the rest."""


class ReadShare:
    """One server's bulk-read budget per loop pass and its queue of held-back connections."""

    __slots__ = ("_budget", "bytes_max", "held", "pass_scheduled", "spent_bytes")

    def __init__(self, bytes_max: int, budget: SharedBudget) -> None:
        if bytes_max <= 0:
            raise ValueError(f"read_bytes_per_pass_max must be positive, got {bytes_max}")
        self._budget = budget  # the server's buffered request bytes
        self.bytes_max = bytes_max
        self.spent_bytes = 0  # large reads' bytes in this pass
        self.held: deque[Throttled] = deque()
        self.pass_scheduled = False  # the driver has asked for next_pass at the pass's end

    def spend(self, size: int, holds_request_bytes: bool) -> bool:
        """Count a read of ``size`` bytes by a connection that now holds part of
        a request (or not); False if the connection must stop reading."""
        if size < SMALL_READ_BYTES_MAX:
            return True
        self.spent_bytes += size
        if self.spent_bytes > self.bytes_max:
            return False
        return holds_request_bytes or not self._budget_spent()

    def _budget_spent(self) -> bool:
        """No room left for one more large read: partial requests hold the
        budget to within a read of its bound, since those that would pass
        it are refused."""
        budget = self._budget
        return budget.held_bytes + READ_BYTES_EXPECTED > budget.bytes_max

    def hold(self, connection: Throttled) -> None:
        self.held.append(connection)

    def next_pass(self) -> float | None:
        """A new pass: the count starts again, and connections at the queue's
        head are let go, as many as the share allows (at least one), unless
        the request budget is spent. Returns when the driver should look
        again (seconds from now; 0 for the next pass), or None if no
        connection is held."""
        self.spent_bytes = 0
        budget_spent = self._budget_spent()
        turns = max(1, self.bytes_max // READ_BYTES_EXPECTED)
        waiting: deque[Throttled] = deque()  # for the budget, in their order
        held = self.held
        while held and turns:
            connection = held.popleft()
            if connection.closed:
                continue
            if budget_spent and not connection.holds_request_bytes:
                waiting.append(connection)
                continue
            connection.resume_from_share()
            turns -= 1
        waiting.extend(held)
        self.held = waiting
        if not waiting:
            return None
        return 0.0 if not turns else BUDGET_RECHECK_S
