"""The simulated disk keeps what was synced, loses what was not, drops torn tails."""

from __future__ import annotations

import random

import pytest

from syndic.raft import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from syndic.sim.disk import DiskError, SimDisk


def E(index: int, term: int) -> Entry:
    return Entry(term=term, index=index, data=f"{index}".encode())


def test_synced_state_survives_a_crash() -> None:
    disk = SimDisk()
    disk.write(hard_state=HardState(term=1, vote=2, commit=1), entries=(E(1, 1),))
    disk.sync()
    disk.crash(random.Random(0), disk_faults=False)
    state = disk.load()
    assert state.hard_state == HardState(term=1, vote=2, commit=1)
    assert state.entries == (E(1, 1),)


def test_unsynced_writes_are_lost_at_a_crash() -> None:
    disk = SimDisk()
    disk.write(hard_state=HardState(term=1, vote=1), entries=(E(1, 1),))
    disk.sync()
    disk.write(hard_state=HardState(term=2, vote=3, commit=1), entries=(E(2, 2),))
    report = disk.crash(random.Random(0), disk_faults=False)
    assert report.unsynced_lost == 1
    state = disk.load()
    assert state.hard_state.term == 1
    assert [e.index for e in state.entries] == [1]


def test_torn_tail_is_discarded_at_restart() -> None:
    # Find an rng draw that flushes nothing and tears the first pending record.
    for seed in range(200):
        disk = SimDisk()
        disk.write(entries=(E(1, 1),))
        disk.sync()
        disk.write(entries=(E(2, 1),))
        disk.write(entries=(E(3, 1),))
        report = disk.crash(random.Random(seed), disk_faults=True)
        if report.torn and report.flushed_anyway == 0:
            break
    else:
        pytest.fail("no torn write in 200 draws")
    state = disk.load()
    assert [e.index for e in state.entries] == [1]
    assert disk.torn_discarded == 1
    # A second restart finds a clean log.
    disk.load()
    assert disk.torn_discarded == 1


def test_disk_faults_may_flush_a_prefix_but_never_reorder() -> None:
    kept = set()
    for seed in range(50):
        disk = SimDisk()
        for i in range(1, 5):
            disk.write(entries=(E(i, 1),))
        disk.crash(random.Random(seed), disk_faults=True)
        indexes = [e.index for e in disk.load().entries]
        assert indexes == list(range(1, len(indexes) + 1))
        kept.add(len(indexes))
    assert len(kept) > 2  # different prefixes were flushed


def test_conflicting_suffix_is_replaced() -> None:
    disk = SimDisk()
    disk.write(entries=(E(1, 1), E(2, 1), E(3, 1)))
    disk.write(hard_state=HardState(term=2), entries=(E(2, 2),))
    disk.sync()
    assert [(e.index, e.term) for e in disk.load().entries] == [(1, 1), (2, 2)]


def test_gap_in_the_log_is_refused() -> None:
    disk = SimDisk()
    disk.write(entries=(E(1, 1),))
    disk.write(entries=(E(3, 1),))
    with pytest.raises(DiskError, match="start at index 3"):
        disk.sync()


def test_snapshot_drops_covered_entries_and_keeps_a_matching_suffix() -> None:
    disk = SimDisk()
    disk.write(hard_state=HardState(term=1, commit=3), entries=(E(1, 1), E(2, 1), E(3, 1)))
    snap = Snapshot(SnapshotMeta(index=2, term=1, conf_state=ConfState(frozenset({1}))), b"s")
    disk.write(snapshot=snap)
    disk.sync()
    state = disk.load()
    assert state.snapshot == snap
    assert [e.index for e in state.entries] == [3]


def test_load_before_crash_is_refused() -> None:
    disk = SimDisk()
    disk.write(entries=(E(1, 1),))
    with pytest.raises(DiskError):
        disk.load()
