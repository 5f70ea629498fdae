"""When a member snapshots its state and compacts its log (etcd: --snapshot-count)."""

from __future__ import annotations

from typing import Final

# Besides every --snapshot-count entries, a snapshot is due once the log
# applied since the last one is at least half the state (the measure a clean
# stop uses, syndic.storage.recovery) and at least this many bytes: a member
# killed outright replays that log, and a count of entries does not bound the
# replay when entries are txns of many puts. The floor keeps a small busy
# store from being serialised over and over.
LOG_BYTES_MIN: Final = 64 * 1024 * 1024
LOG_TO_STATE_RATIO_MIN: Final = 0.5


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
        since = self.bytes_since
        return since >= self.log_bytes_min and since >= LOG_TO_STATE_RATIO_MIN * state_bytes

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
