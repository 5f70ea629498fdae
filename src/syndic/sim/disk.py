"""A member's simulated disk: what was synced survives a crash, nothing else must.

Each Ready is persisted as one record (its snapshot, entries and hard state
under one checksum), so a record is either wholly there or detectably torn.
Writes go to a volatile buffer (the page cache). ``sync()`` makes them durable,
as ``fsync`` does. At a crash the buffer is lost; with disk faults on, the
"kernel" may already have flushed a prefix of it, and the first record it did
not finish may be left torn. A torn record fails its checksum at restart and is
discarded, as a write-ahead log does with a torn tail (ZooKeeper, etcd's WAL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndic.raft import Entry, HardState, PersistentState, Snapshot

if TYPE_CHECKING:
    import random

# A runtime that never syncs would grow the page cache without bound; a sound
# runtime syncs at least once per Ready, so this many pending writes means a bug.
MAX_UNSYNCED_RECORDS = 100_000


class DiskError(RuntimeError):
    """The runtime wrote something no correct runtime writes (a gap in the log)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One write. ``intact`` is False for a torn write: its checksum will not match."""

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    intact: bool = True


@dataclass(frozen=True, slots=True)
class CrashReport:
    unsynced_lost: int
    flushed_anyway: int
    torn: bool


class SimDisk:
    """Durable image (hard state, snapshot, entries after it) plus a volatile buffer."""

    __slots__ = (
        "_entries",
        "_hard_state",
        "_snapshot",
        "_torn_tail",
        "_unsynced",
        "syncs",
        "torn_discarded",
        "writes",
    )

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []
        self._unsynced: list[Record] = []
        self._torn_tail: Record | None = None
        self.writes = 0
        self.syncs = 0
        self.torn_discarded = 0

    # --- writes -----------------------------------------------------------

    def _write(self, record: Record) -> None:
        if len(self._unsynced) >= MAX_UNSYNCED_RECORDS:
            raise DiskError(f"more than {MAX_UNSYNCED_RECORDS} writes without a sync")
        self.writes += 1
        self._unsynced.append(record)

    def write(
        self,
        *,
        hard_state: HardState | None = None,
        entries: tuple[Entry, ...] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Append one record; applied in the order snapshot, entries, hard state."""
        if hard_state is None and not entries and snapshot is None:
            return
        self._write(Record(hard_state, entries, snapshot))

    def sync(self) -> None:
        self.syncs += 1
        for record in self._unsynced:
            self._make_durable(record)
        self._unsynced.clear()

    @property
    def unsynced_count(self) -> int:
        return len(self._unsynced)

    # --- durable image ----------------------------------------------------

    @property
    def durable_hard_state(self) -> HardState:
        return self._hard_state

    @property
    def durable_last_index(self) -> int:
        if self._entries:
            return self._entries[-1].index
        return self._snapshot.meta.index if self._snapshot is not None else 0

    def _make_durable(self, record: Record) -> None:
        if record.snapshot is not None:
            self._install(record.snapshot)
        if record.entries:
            self._append(record.entries)
        if record.hard_state is not None:
            self._hard_state = record.hard_state

    def _append(self, entries: tuple[Entry, ...]) -> None:
        floor = self._snapshot.meta.index if self._snapshot is not None else 0
        fresh = [e for e in entries if e.index > floor]
        if not fresh:
            return
        first = fresh[0].index
        if first > self.durable_last_index + 1:
            raise DiskError(
                f"entries start at index {first} but the log ends at {self.durable_last_index}"
            )
        # Raft §5.3: a conflicting suffix is replaced by the new entries.
        keep = first - floor - 1
        del self._entries[keep:]
        self._entries.extend(fresh)

    def _install(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        if self._snapshot is not None and index <= self._snapshot.meta.index:
            return
        floor = self._snapshot.meta.index if self._snapshot is not None else 0
        pos = index - floor - 1
        matches = 0 <= pos < len(self._entries) and self._entries[pos].term == snapshot.meta.term
        # Keep the suffix only if it continues the snapshot (etcd: ApplySnapshot / Compact).
        self._entries = self._entries[pos + 1 :] if matches else []
        self._snapshot = snapshot

    # --- crash and restart ------------------------------------------------

    def crash(self, rng: random.Random, disk_faults: bool) -> CrashReport:
        """Lose the volatile buffer; with ``disk_faults`` a prefix may have been
        flushed and the next write torn."""
        pending = self._unsynced
        self._unsynced = []
        flushed = 0
        torn = False
        if disk_faults and pending:
            flushed = rng.randint(0, len(pending))
            for record in pending[:flushed]:
                self._make_durable(record)
            if flushed < len(pending) and rng.random() < 0.5:
                r = pending[flushed]
                self._torn_tail = Record(r.hard_state, r.entries, r.snapshot, intact=False)
                torn = True
        return CrashReport(len(pending) - flushed, flushed, torn)

    def load(self) -> PersistentState:
        """What a restarting member reads: the durable image, minus a torn tail."""
        if self._unsynced:
            raise DiskError("load() with unsynced writes: crash() the disk first")
        if self._torn_tail is not None:
            # The record's checksum fails: it is the tail of the log, so it is
            # an interrupted write and is dropped (never skipped mid-log).
            assert not self._torn_tail.intact
            self._torn_tail = None
            self.torn_discarded += 1
        return PersistentState(
            hard_state=self._hard_state, snapshot=self._snapshot, entries=tuple(self._entries)
        )
