"""Durable storage: a segmented write-ahead log and snapshot files.

Synchronous and thread-agnostic: the server runtime calls it from a worker
thread, the simulator from its own loop. A member's restart is::

    wal = Wal.open(data_dir / "wal")          # locks, repairs a torn tail, replays
    store = SnapshotStore(data_dir / "snap")
    restored = recover(wal.read_all(), store).state   # -> RaftNode(restored=...)

and each Ready is persisted with ``store.save(ready.snapshot)`` (when present)
followed by ``wal.save(ready.hard_state, ready.entries,
snapshot=ready.snapshot.meta, must_sync=ready.must_sync)``, or with several
``wal.append`` calls and one ``wal.sync()`` per cycle.
"""

from syndic.storage.errors import (
    DataDirError,
    RecoveryError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
    StorageArgumentError,
    StorageError,
    WalClosedError,
    WalCorruptError,
    WalError,
    WalLockedError,
)
from syndic.storage.records import RecordType, SnapshotMarker
from syndic.storage.recovery import Recovery, recover
from syndic.storage.snapshots import SkippedSnapshot, SnapshotLoad, SnapshotStore
from syndic.storage.wal import Wal, WalOptions, WalRepair, WalState, WalStatus

__all__ = [
    "DataDirError",
    "RecordType",
    "Recovery",
    "RecoveryError",
    "SkippedSnapshot",
    "SnapshotCorruptError",
    "SnapshotError",
    "SnapshotLoad",
    "SnapshotMarker",
    "SnapshotNotFoundError",
    "SnapshotStore",
    "StorageArgumentError",
    "StorageError",
    "Wal",
    "WalClosedError",
    "WalCorruptError",
    "WalError",
    "WalLockedError",
    "WalOptions",
    "WalRepair",
    "WalState",
    "WalStatus",
    "recover",
]
