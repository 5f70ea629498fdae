"""Pairing WAL and snapshot files into the state a RaftNode restarts from."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndic.raft import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from syndic.storage import RecoveryError, SnapshotStore, Wal, recover
from tests.storage._util import make_entries, no_fsync

CONF = ConfState(voters=frozenset({1, 2, 3}))


def snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index=index, term=term, conf_state=CONF), f"s{index}".encode())


def persist_snapshot(wal: Wal, store: SnapshotStore, snapshot: Snapshot) -> None:
    store.save(snapshot)  # the file first, then the marker that points at it
    wal.save(None, [], snapshot=snapshot.meta)


def test_recover_without_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=3), make_entries(1, 4))
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        recovery = recover(wal.read_all(), store)
    assert recovery.state.snapshot is None
    assert [e.index for e in recovery.state.entries] == [1, 2, 3, 4]
    assert recovery.state.hard_state.commit == 3


def test_recover_from_latest_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=8), make_entries(1, 10))
        persist_snapshot(wal, store, snap(4))
        persist_snapshot(wal, store, snap(8))
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        recovery = recover(wal.read_all(), store)
    assert recovery.state.snapshot == snap(8)
    assert [e.index for e in recovery.state.entries] == [9, 10]


def test_damaged_newest_snapshot_falls_back_when_wal_still_has_entries(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=8), make_entries(1, 10))
        persist_snapshot(wal, store, snap(4))
        persist_snapshot(wal, store, snap(8))
    newest = store.list()[-1][2]
    Path(newest).write_bytes(Path(newest).read_bytes()[:-1])
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        recovery = recover(wal.read_all(), store)
    assert recovery.state.snapshot == snap(4)
    assert [e.index for e in recovery.state.entries] == [5, 6, 7, 8, 9, 10]
    assert [skip.path for skip in recovery.skipped_snapshots] == [newest]


def test_snapshot_saved_but_marker_lost_is_used_when_the_log_agrees(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=5), make_entries(1, 10))
        store.save(snap(7))  # crash before the marker; commit lags (written lazily)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        recovery = recover(wal.read_all(), store)
    assert recovery.state.snapshot == snap(7)
    assert recovery.state.hard_state.commit == 7  # a snapshot holds committed state only
    assert [e.index for e in recovery.state.entries] == [8, 9, 10]


def test_snapshot_that_the_log_contradicts_is_not_used(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=5), make_entries(1, 10))
        store.save(snap(7, term=3))
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        recovery = recover(wal.read_all(), store)
    assert recovery.state.snapshot is None
    assert len(recovery.state.entries) == 10


def test_missing_snapshot_after_release_is_an_error(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=no_fsync)
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=2, vote=1, commit=20), make_entries(1, 5))
        persist_snapshot(wal, store, snap(20, term=2))  # a leader's snapshot: log replaced
    for _, _, path in store.list():
        Path(path).write_bytes(b"garbage")
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        state = wal.read_all()
    with pytest.raises(RecoveryError, match="no valid snapshot"):
        recover(state, store)


def test_entries_of_a_newer_term_than_the_hard_state_adopt_it_without_a_vote(
    tmp_path: Path,
) -> None:
    # A crash kept a Ready's entries but not the hard state written after them.
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=1), [Entry(term=1, index=1)])
        wal.save(None, [Entry(term=3, index=2)])
    with Wal.open(tmp_path / "wal", fsync=no_fsync) as wal:
        state = recover(wal.read_all(), SnapshotStore(tmp_path / "snap", fsync=no_fsync)).state
    assert state.hard_state == HardState(term=3, vote=0, commit=1)
    assert [e.index for e in state.entries] == [1, 2]
