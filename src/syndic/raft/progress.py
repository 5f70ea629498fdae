"""What a leader knows about each follower's log, and how fast it may send to it.

Modelled on etcd-io/raft tracker/progress.go and tracker/inflights.go:

- PROBE: the leader does not know where the follower's log matches; it sends one
  APPEND per heartbeat round and waits for the answer.
- REPLICATE: the follower is known to match up to ``match``; the leader streams
  APPENDs optimistically, bounded by the in-flight window (messages and bytes).
- SNAPSHOT: the follower needs entries the leader compacted; the leader sent a
  snapshot and sends nothing else until it learns the outcome.

Invariant: ``match < next``.
"""

from __future__ import annotations

import enum
from collections import deque

from syndic.raft.errors import InvariantError


class ProgressState(enum.Enum):
    PROBE = 1
    REPLICATE = 2
    SNAPSHOT = 3


class Inflights:
    """A FIFO window of unacknowledged APPENDs: ``(last index, payload bytes)`` each.

    Full when it holds ``max_messages`` messages or ``max_bytes`` bytes; a single
    message larger than ``max_bytes`` is still admitted into an empty window, or a
    huge entry could never be sent.
    """

    __slots__ = ("_window", "bytes", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._window: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._window)

    def full(self) -> bool:
        return len(self._window) >= self.max_messages or self.bytes >= self.max_bytes

    def add(self, last_index: int, size_bytes: int) -> None:
        if self.full():
            raise InvariantError("inflights: add to a full window")
        if self._window and last_index <= self._window[-1][0]:
            raise InvariantError(f"inflights: index {last_index} not after {self._window[-1][0]}")
        self._window.append((last_index, size_bytes))
        self.bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Free every message whose last index is <= ``index`` (acknowledged)."""
        while self._window and self._window[0][0] <= index:
            _, size = self._window.popleft()
            self.bytes -= size

    def free_first_one(self) -> None:
        if self._window:
            _, size = self._window.popleft()
            self.bytes -= size

    def reset(self) -> None:
        self._window.clear()
        self.bytes = 0


class Progress:
    """The leader's view of one follower (or learner)."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "recent_active",
        "snapshot_elapsed_ticks",
        "state",
    )

    def __init__(
        self, next_index: int, max_inflight_messages: int, max_inflight_bytes: int
    ) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        # Heard from within the current election timeout (check-quorum, etcd RecentActive).
        self.recent_active = False
        # In PROBE, one APPEND was sent and the leader waits for a reply or a heartbeat.
        self.msg_app_flow_paused = False
        self.is_learner = False
        # Ticks spent in SNAPSHOT state; a snapshot lost without report_snapshot()
        # would otherwise stall this follower for ever.
        self.snapshot_elapsed_ticks = 0
        self.inflights = Inflights(max_inflight_messages, max_inflight_bytes)

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.snapshot_elapsed_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot, the follower holds at least the snapshot: probe right after it.
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index
        self.next = snapshot_index + 1

    def sent_entries(self, last_index: int | None, size_bytes: int) -> None:
        """Account for an APPEND carrying entries up to ``last_index`` (None: empty)."""
        if self.state is ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index, size_bytes)
        elif self.state is ProgressState.PROBE:
            self.msg_app_flow_paused = True
        else:
            raise InvariantError("sending entries to a follower in SNAPSHOT state")

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged ``index``; True when that is news."""
        updated = self.match < index
        if updated:
            self.match = index
            self.msg_app_flow_paused = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an APPEND at ``rejected``; back off using its hint.

        False when the rejection is stale (answers an APPEND we since moved past).
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            # Replication is optimistic: restart from just after the known match.
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def check(self, node_id: int, last_index: int) -> None:
        if not self.match < self.next:
            raise InvariantError(f"progress of {node_id}: match {self.match} !< next {self.next}")
        if self.match > last_index:
            raise InvariantError(
                f"progress of {node_id}: match {self.match} beyond leader last {last_index}"
            )
        inflight = len(self.inflights._window)  # not len(): one call less, per step
        if inflight > self.inflights.max_messages:
            raise InvariantError(f"progress of {node_id}: inflight window overflow")
        if inflight and self.state is not ProgressState.REPLICATE:
            raise InvariantError(f"progress of {node_id}: inflights outside REPLICATE")

    def describe(self) -> dict[str, object]:
        return {
            "state": self.state.name.lower(),
            "match": self.match,
            "next": self.next,
            "inflight": len(self.inflights),
            "learner": self.is_learner,
            "recent_active": self.recent_active,
        }
