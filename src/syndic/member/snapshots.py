"""When a member snapshots its state and compacts its log (etcd: --snapshot-count)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# A restart replays the WAL held past the newest snapshot, decoding and
# applying every entry: on the benchmark machine about 29 CPU s per GiB of log
# (1M keys of 256 B in txns of 128 puts: 270 MiB, 7.8 s), against about 9 CPU
# s per GiB of state to load a snapshot (bench/scale.py). Writing one costs
# about as much again, so a snapshot pays once the log is half the state.
LOG_TO_STATE_RATIO_MIN: Final = 0.5
# At a clean stop: below this a replay takes well under a second.
STOP_SNAPSHOT_LOG_BYTES_MIN: Final = 16 * 1024 * 1024
# While running (besides every --snapshot-count entries, as a count of
# entries does not bound the replay when entries are txns of many puts): a
# higher floor, so a small busy store is not serialised over and over.
LOG_BYTES_MIN: Final = 64 * 1024 * 1024
# The members of a cluster apply the same entries at nearly the same moment,
# so with one threshold they would all snapshot together: each forking,
# serialising and writing its file at once, on the same cores and disks, and
# the quorum's fsyncs queued behind those writes. Each snapshot's threshold
# is instead drawn between this share below the configured one and the
# configured one: snapshots come at least as often as configured, and
# members seldom take theirs together (a follower's alone leaves the leader
# a quorum that is not snapshotting).
SPREAD_SHARE: Final = 0.25


def snapshot_pays(
    log_bytes: float, state_size_bytes: int, log_bytes_min: int = STOP_SNAPSHOT_LOG_BYTES_MIN
) -> bool:
    """Whether replaying ``log_bytes`` of log would cost more than loading a
    snapshot of the state: at a clean stop (the default floor), so that the
    restart loads the state instead; and while running, for a member killed
    outright. etcd needs no such rule: its backend file is its state, and
    its restart replays the WAL only into Raft's log."""
    return log_bytes >= log_bytes_min and log_bytes >= LOG_TO_STATE_RATIO_MIN * state_size_bytes


class SnapshotSchedule:
    """Tracks the newest snapshot this member holds and says when the next is
    due: by count of entries, or by the entry bytes applied since it."""

    def __init__(
        self,
        every_entries: int,
        index: int,
        log_bytes_min: int = LOG_BYTES_MIN,
        *,
        draw: Callable[[], float] | None = None,
    ) -> None:
        """``draw``: the driver's chance, a float in [0, 1), for spreading
        thresholds (see :data:`SPREAD_SHARE`); None keeps the configured ones."""
        if every_entries <= 0:
            raise ValueError(f"snapshot every_entries must be positive: {every_entries}")
        self.every_entries = every_entries
        self.log_bytes_min = log_bytes_min
        self.index = index
        # Entry bytes applied by this process, and that count when the newest
        # snapshot's state was captured.
        self.applied_bytes = 0
        self._applied_bytes_at_snapshot = 0
        self._draw = draw
        # The share of the configured thresholds at which the next snapshot
        # is due, in (1 - SPREAD_SHARE, 1].
        self.share = 1.0
        self._spread()

    def _spread(self) -> None:
        if self._draw is not None:
            self.share = 1.0 - SPREAD_SHARE * self._draw()

    def due(self, applied_index: int, state_bytes: int) -> bool:
        if applied_index - self.index >= self.every_entries * self.share:
            return True
        # The log counts for more by as much as the entry threshold shrank.
        return snapshot_pays(self.bytes_since / self.share, state_bytes, self.log_bytes_min)

    @property
    def bytes_since(self) -> int:
        """Entry bytes applied since the newest snapshot: what a restart would replay."""
        return self.applied_bytes - self._applied_bytes_at_snapshot

    def taken(self, index: int, applied_bytes: int | None = None) -> None:
        """A snapshot at ``index`` is durable (taken here or installed from the
        leader); ``applied_bytes``: the count when its state was captured
        (default: now)."""
        if index > self.index:
            self.index = index
            self._applied_bytes_at_snapshot = (
                self.applied_bytes if applied_bytes is None else applied_bytes
            )
            self._spread()
