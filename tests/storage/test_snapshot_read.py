"""Reading a snapshot file from the operating system puts its data straight
into its own bytes object, and still checks the header's claims against the
file before reading what they claim."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from syndic.raft import ConfState, Snapshot, SnapshotMeta
from syndic.storage import SnapshotCorruptError, SnapshotStore
from tests.storage._util import no_fsync
from tests.storage.test_snapshots import _reheader


def _snapshot(data: bytes) -> Snapshot:
    return Snapshot(SnapshotMeta(5, 2, ConfState(voters=frozenset({1, 2}))), data)


def test_the_data_read_is_the_data_saved(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    data = bytes(range(256)) * 4096
    path = store.save(_snapshot(data))
    got = store.read(path)
    assert got == _snapshot(data)


def test_a_claimed_length_past_the_file_is_refused_before_reading_it(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    path = store.save(_snapshot(b"small"))
    # Within snapshot_size_bytes_max, so only the file's own size refutes it.
    Path(path).write_bytes(_reheader(Path(path).read_bytes(), data=1 << 30))
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotCorruptError, match="header says"):
            store.read(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1 << 20
