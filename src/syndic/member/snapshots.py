"""When a member snapshots its state and compacts its log (etcd: --snapshot-count)."""

from __future__ import annotations


class SnapshotSchedule:
    """Tracks the newest snapshot this member holds and says when the next is
    due by count of entries; counts the entry bytes applied since, for a
    driver that also snapshots by size."""

    def __init__(self, every_entries: int, index: int) -> None:
        if every_entries <= 0:
            raise ValueError(f"snapshot every_entries must be positive: {every_entries}")
        self.every_entries = every_entries
        self.index = index
        # Entry bytes applied by this process, and that count when the newest
        # snapshot's state was captured.
        self.applied_bytes = 0
        self._applied_bytes_at_snapshot = 0

    def due(self, applied_index: int) -> bool:
        return applied_index - self.index >= self.every_entries

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
