"""The Raft log: a snapshot offset, then entries, split into a stable and an unstable part.

Layout (etcd-io/raft log.go, in one list)::

    snapshot.index | first_index ... unstable_from-1 | unstable_from ... last_index
      (compacted)  |        persisted (stable)       |   not yet persisted
                             applied <= committed <= last_index

Invariant: ``offset <= applied <= committed <= last_index``, entries are contiguous
from ``offset + 1`` and their terms never decrease.
"""

from __future__ import annotations

from syndic.raft.errors import InvariantError, SnapshotOutOfDateError
from syndic.raft.messages import Entry, Snapshot


class RaftLog:
    """Entries after the latest snapshot, with commit and apply cursors."""

    __slots__ = (
        "_dropped",
        "_entries",
        "applied",
        "committed",
        "offset",
        "offset_term",
        "snapshot",
        "unstable_from",
        "unstable_snapshot",
    )

    def __init__(self, snapshot: Snapshot | None = None, entries: tuple[Entry, ...] = ()) -> None:
        self.snapshot: Snapshot | None = snapshot
        # A restored snapshot not yet handed to the runtime for persistence.
        self.unstable_snapshot: Snapshot | None = None
        self.offset = snapshot.meta.index if snapshot is not None else 0
        self.offset_term = snapshot.meta.term if snapshot is not None else 0
        self._entries: list[Entry] = []
        # Entries a compaction or a restored snapshot dropped, freed a slice
        # per release_dropped() call: freeing a whole log at once (100,000
        # entries after a snapshot) held the member's loop for 60-120 ms.
        self._dropped: list[list[Entry]] = []
        self.committed = self.offset
        self.applied = self.offset
        if entries:
            self._append_unchecked(entries)
        # Everything handed in at construction is already on stable storage.
        self.unstable_from = self.last_index() + 1

    # -- queries ---------------------------------------------------------

    def first_index(self) -> int:
        return self.offset + 1

    def last_index(self) -> int:
        return self.offset + len(self._entries)

    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.offset_term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when compacted away or beyond the log."""
        offset = self.offset
        if index == offset:
            return self.offset_term
        position = index - offset - 1
        if position < 0 or position >= len(self._entries):
            return None
        return self._entries[position].term

    def match_term(self, index: int, term: int) -> bool:
        found = self.term(index)
        return found is not None and found == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: the later term wins; on equal terms the longer log."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def entry(self, index: int) -> Entry:
        if not self.offset < index <= self.last_index():
            raise InvariantError(f"entry {index} not held (log holds {self.offset + 1}..)")
        return self._entries[index - self.offset - 1]

    def slice(
        self, lo: int, hi: int, max_bytes: int | None = None, max_count: int | None = None
    ) -> tuple[Entry, ...]:
        """Entries ``[lo, hi)`` clipped to what is held; bounded by bytes and count, but
        always at least one entry when any is in range, so a huge entry still moves."""
        # The core slices its log several times per message: no method calls here.
        offset = self.offset
        entries = self._entries
        lo = max(lo, offset + 1)
        hi = min(hi, offset + len(entries) + 1)
        if lo >= hi:
            return ()
        if max_count is not None:
            hi = min(hi, lo + max(1, max_count))
        window = entries[lo - offset - 1 : hi - offset - 1]
        if max_bytes is None:
            return tuple(window)
        total = 0
        for count, entry in enumerate(window):
            total += len(entry.data)  # entry.size_bytes(), without a call per entry
            if total > max_bytes and count > 0:
                return tuple(window[:count])
        return tuple(window)

    def unstable_entries(self) -> tuple[Entry, ...]:
        """``slice(unstable_from, last_index + 1)``, asked once per Ready."""
        start = self.unstable_from - self.offset - 1
        return tuple(self._entries[start:] if start > 0 else self._entries)

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or disagrees on term; 0 when all match."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast back-off, etcd
        findConflictByTerm); lets a leader skip a whole divergent term per round trip."""
        index = min(index, self.last_index())
        while index > self.offset:
            found = self.term(index)
            if found is not None and found <= term:
                return index
            index -= 1
        return index

    # -- mutation ----------------------------------------------------------

    def _append_unchecked(self, entries: tuple[Entry, ...]) -> None:
        expected = self.last_index() + 1
        previous_term = self.last_term()
        for entry in entries:
            if entry.index != expected:
                raise InvariantError(f"append: expected index {expected}, got {entry.index}")
            if entry.term < previous_term:
                raise InvariantError(
                    f"append: term goes down at index {entry.index} ({previous_term} -> "
                    f"{entry.term})"
                )
            self._entries.append(entry)
            expected += 1
            previous_term = entry.term

    def append(self, entries: tuple[Entry, ...]) -> int:
        """Append, truncating any held suffix from ``entries[0].index``; returns last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise InvariantError(f"append would overwrite committed index {self.committed}")
        if after < self.last_index():
            del self._entries[after - self.offset :]
        self._append_unchecked(entries)
        self.unstable_from = min(self.unstable_from, entries[0].index)
        return self.last_index()

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Follower side of AppendEntries (Raft §5.3): None when the log does not hold
        ``(prev_index, prev_term)``; else the index of the last entry the message
        vouches for. Raises InvariantError if the message rewrites committed entries."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvariantError(
                    f"entry {conflict} conflicts with committed index {self.committed}"
                )
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise InvariantError(f"commit {index} beyond last index {self.last_index()}")
        self.committed = index
        return True

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit ``index`` only if it carries ``term`` (Raft §5.4.2's current-term rule)."""
        return index > self.committed and self.match_term(index, term) and self.commit_to(index)

    def applied_to(self, index: int) -> None:
        if index > self.committed or index < self.applied:
            raise InvariantError(
                f"applied {index} outside [{self.applied}, committed {self.committed}]"
            )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """The runtime persisted entries up to ``(index, term)``. Ignored when the log
        was rewritten meanwhile (the entry no longer carries that term)."""
        if index >= self.unstable_from and self.match_term(index, term):
            self.unstable_from = index + 1

    def stable_last_index(self) -> int:
        """The last index the runtime has persisted."""
        return min(self.unstable_from - 1, self.offset + len(self._entries))

    def stable_snapshot_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.meta.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (follower side of InstallSnapshot, §7)."""
        if snapshot.meta.index <= self.committed:
            raise SnapshotOutOfDateError(
                f"snapshot at {snapshot.meta.index} is not past commit {self.committed}"
            )
        self.snapshot = snapshot
        self.unstable_snapshot = snapshot
        self.offset = snapshot.meta.index
        self.offset_term = snapshot.meta.term
        self._drop(self._entries)
        self._entries = []
        self.committed = snapshot.meta.index
        self.unstable_from = self.offset + 1

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries up to ``snapshot.meta.index`` (stable and applied); keep the rest."""
        index = snapshot.meta.index
        if index <= self.offset:
            raise SnapshotOutOfDateError(f"index {index} already compacted (offset {self.offset})")
        if index > self.applied:
            raise InvariantError(f"compact {index} beyond applied {self.applied}")
        cut = index - self.offset
        self._drop(self._entries[:cut])
        del self._entries[:cut]  # the copy above still holds them: nothing is freed here
        self.offset = index
        self.offset_term = snapshot.meta.term
        self.snapshot = snapshot
        self.unstable_from = max(self.unstable_from, index + 1)

    def _drop(self, entries: list[Entry]) -> None:
        if entries:
            self._dropped.append(entries)

    @property
    def dropped_entries(self) -> int:
        """Entries dropped from the log and not yet released."""
        return sum(len(chunk) for chunk in self._dropped)

    def release_dropped(self, limit: int) -> None:
        """Free at most ``limit`` of the dropped entries (newest first)."""
        dropped = self._dropped
        while dropped and limit > 0:
            chunk = dropped[-1]
            count = min(limit, len(chunk))
            del chunk[len(chunk) - count :]
            limit -= count
            if not chunk:
                dropped.pop()

    def check(self) -> None:
        """Boundary checks cheap enough to run after every step."""
        # Between restoring a snapshot and the runtime applying it, applied lags offset.
        applied_floor = self.offset if self.unstable_snapshot is None else 0
        last_index = self.offset + len(self._entries)
        if not (
            applied_floor <= self.applied <= self.committed
            and self.offset <= self.committed <= last_index
        ):
            raise InvariantError(
                f"log cursors out of order: offset {self.offset} applied {self.applied} "
                f"committed {self.committed} last {self.last_index()}"
            )
        if not self.offset < self.unstable_from <= last_index + 1:
            raise InvariantError(
                f"unstable_from {self.unstable_from} outside ({self.offset}, "
                f"{self.last_index() + 1}]"
            )
        if self._entries:
            first, last = self._entries[0], self._entries[-1]
            if first.index != self.offset + 1 or last.index != last_index:
                raise InvariantError("log entries not contiguous with the offset")
            if first.term < self.offset_term or last.term < first.term:
                raise InvariantError("log terms decrease")
