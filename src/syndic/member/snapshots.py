"""When a member snapshots its state and compacts its log (etcd: --snapshot-count)."""

from __future__ import annotations


class SnapshotSchedule:
    """Tracks the newest snapshot this member holds and says when the next is due."""

    def __init__(self, every_entries: int, index: int) -> None:
        if every_entries <= 0:
            raise ValueError(f"snapshot every_entries must be positive: {every_entries}")
        self.every_entries = every_entries
        self.index = index

    def due(self, applied_index: int) -> bool:
        return applied_index - self.index >= self.every_entries

    def taken(self, index: int) -> None:
        """A snapshot at ``index`` is durable (taken here or installed from the leader)."""
        self.index = max(self.index, index)
