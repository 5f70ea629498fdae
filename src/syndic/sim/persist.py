"""A simulated member's persistence: the production WAL, snapshot store and
recovery over its :class:`~syndic.sim.disk.SimDisk`.

The order is the server's: a Ready's snapshot file is saved (written to a
temporary name, fsynced, renamed) before the WAL records its marker; entries
and hard state are appended and handed to the disk at once (so a crash before
the fsync completes can keep any prefix of them), and made durable by one
``Wal.sync()`` when the fsync completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndic.frozen import fast_frozen_init
from syndic.raft import Entry, HardState, PersistentState, Snapshot
from syndic.storage import SnapshotStore, Wal, WalOptions, recover

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from syndic.sim.disk import CrashReport, SimDisk

WAL_DIR = "/data/wal"
SNAP_DIR = "/data/snap"

# Small segments so that a run cuts segments and releases old ones after
# snapshots: those paths run under faults too. A simulated entry is well under
# a kilobyte; the segment must hold a head plus one maximal record.
SIM_RECORD_SIZE_BYTES_MAX = 16 * 1024
SIM_SEGMENT_SIZE_BYTES_MAX = 48 * 1024


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class DurableMark:
    """What a member had made durable at its last completed sync: recovery must
    never come back with less (an older term, another vote, fewer committed entries)."""

    hard_state: HardState
    last_index: int


def wal_options(planted_bugs: frozenset[str]) -> WalOptions:
    return WalOptions(
        segment_size_bytes_max=SIM_SEGMENT_SIZE_BYTES_MAX,
        record_size_bytes_max=SIM_RECORD_SIZE_BYTES_MAX,
        write_buffer_size_bytes_max=0,
        planted_bugs=planted_bugs,
    )


class MemberStorage:
    """One open WAL and snapshot store; built by :meth:`open`, which recovers."""

    __slots__ = ("_store", "_wal", "disk", "durable", "records_unsynced", "repairs")

    def __init__(self, disk: SimDisk, wal: Wal, store: SnapshotStore) -> None:
        self.disk = disk
        self._wal = wal
        self._store = store
        self.durable = DurableMark(wal.hard_state, wal.last_index)
        # WAL records appended since the last sync (for the transcript).
        self.records_unsynced = 0
        self.repairs: tuple[str, ...] = ()

    @classmethod
    def open(cls, disk: SimDisk, options: WalOptions) -> tuple[MemberStorage, PersistentState]:
        """Open and recover; raises :class:`syndic.storage.StorageError` (a corrupt
        WAL names its file and offset) when the disk cannot be trusted."""
        wal = Wal.open(WAL_DIR, options, disk=disk)
        try:
            store = SnapshotStore(SNAP_DIR, disk=disk, snapshots_retained_max=2)
            recovered = recover(wal.read_all(), store)
        except BaseException:
            wal.abandon()
            raise
        storage = cls(disk, wal, store)
        storage.repairs = tuple(
            f"{r.path} at {r.offset}: dropped {r.dropped_bytes} B ({r.reason})"
            for r in wal.read_all().repairs
        )
        return storage, recovered.state

    def write(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
    ) -> None:
        """Persist a Ready without syncing: the bytes reach the (volatile) page cache."""
        if hard_state is None and not entries and snapshot is None:
            # Most Readys carry only messages: no record to validate or frame.
            # flush() still refuses a WAL that failed or was closed, as save() would.
            self._wal.flush()
            return
        if snapshot is not None:
            self._store.save(snapshot)
        self.records_unsynced += len(entries) + (hard_state is not None) + (snapshot is not None)
        self._wal.save(
            hard_state,
            entries,
            snapshot=snapshot.meta if snapshot is not None else None,
            must_sync=False,
        )
        self._wal.flush()

    def sync(self) -> None:
        self._wal.sync()
        self.durable = DurableMark(self._wal.hard_state, self._wal.last_index)
        self.records_unsynced = 0

    def describe(self) -> str:
        """The WAL's position, for the transcript."""
        status = self._wal.status()
        segment = status.segment_path.rsplit("/", 1)[-1]
        return (
            f"last index {status.last_index}, {status.segment_count} segment(s), "
            f"{segment} at {status.synced_size_bytes} B"
        )

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A local compaction: the file, then its marker, synced; then old segments go."""
        self._store.save(snapshot)
        self._wal.append_snapshot_marker(snapshot.meta)
        self.sync()
        self._wal.release_before(snapshot.meta.index)

    def crash(self, rng: random.Random | None) -> CrashReport:
        """The process dies: nothing more is written, the disk keeps what it keeps."""
        self._wal.abandon()
        return self.disk.crash(rng)

    @property
    def fsyncs(self) -> int:
        return self.disk.fsyncs
