"""When a member snapshots its state and compacts its log (etcd: --snapshot-count)."""

from __future__ import annotations

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


def snapshot_pays(
    log_bytes: int, state_size_bytes: int, log_bytes_min: int = STOP_SNAPSHOT_LOG_BYTES_MIN
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

    def __init__(self, every_entries: int, index: int, log_bytes_min: int = LOG_BYTES_MIN) -> None:
        if every_entries <= 0:
            raise ValueError(f"snapshot every_entries must be positive: {every_entries}")
        self.every_entries = every_entries
        self.log_bytes_min = log_bytes_min
        self.index = index
        # Entry bytes applied by this process, and that count when the newest
        # snapshot's state was captured.
        self.applied_bytes = 0
        self._applied_bytes_at_snapshot = 0

    def due(self, applied_index: int, state_bytes: int) -> bool:
        if applied_index - self.index >= self.every_entries:
            return True
        return snapshot_pays(self.bytes_since, state_bytes, self.log_bytes_min)

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
