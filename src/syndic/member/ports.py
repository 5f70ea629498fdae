"""What the member runtime needs from its driver.

The runtime never waits and never reads a clock of its own: time comes in as
the driver's :data:`Clock`, peer traffic goes out through a :class:`PeerPort`,
and a client's request is finished through a :class:`Completion`, which an
``asyncio.Future`` already is (the server hands its futures straight in) and
which the simulator implements as a callback into its client model.

Persistence stays the driver's: between :meth:`MemberRuntime.begin` and
:meth:`MemberRuntime.finish` the driver writes the Ready to its
:class:`LogPort` (the server in a worker thread, one fsync per cycle; the
simulator on its simulated disk, the fsync taking virtual time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from syndic.raft import Entry, HardState, Message, Snapshot

# The member's own monotonic clock in ms: meaningful on this member only
# (DESIGN: lease time is the leader's alone).
Clock = Callable[[], int]


class Completion(Protocol):
    """One waiting caller; finished at most once (``done`` says whether it was)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class PeerPort(Protocol):
    """The peer network as the runtime sees it; sending never blocks."""

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None: ...

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        """Hand entry data to the leader ``to_id``; False if it cannot go now."""
        ...

    def forward_renewals(self, to_id: int, batch_id: int, lease_ids: list[int]) -> bool:
        """Hand keep-alives to the leader ``to_id``; False if they cannot go
        now. The driver hands the answer back to
        :meth:`MemberRuntime.renewals_answered` (or ``renewals_refused``)
        with ``batch_id``."""
        ...


class LogPort(Protocol):
    """A member's durable log, written in the Ready contract's order: the
    snapshot file, then the entries and hard state, then one sync."""

    def write(
        self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None
    ) -> None: ...

    def sync(self) -> None: ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A local compaction: the snapshot durable, then the log before it released."""
        ...
