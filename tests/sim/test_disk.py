"""The simulated disk under the production WAL: synced state survives a crash,
unsynced state may not, torn tails are repaired, bit flips are reported with
their file and offset, and a failed fsync makes the WAL refuse further use."""

from __future__ import annotations

import random

import pytest

from syndic.raft import Entry, HardState
from syndic.sim.disk import DiskError, SimDisk
from syndic.storage import Wal, WalCorruptError, WalError, WalLockedError
from syndic.storage.records import SEGMENT_HEADER_SIZE_BYTES

WAL = "/data/wal"


def E(index: int, term: int = 1) -> Entry:
    return Entry(term=term, index=index, data=f"value-{index}".encode())


def _reopen(disk: SimDisk) -> tuple[HardState, list[int]]:
    with Wal.open(WAL, disk=disk) as wal:
        state = wal.read_all()
    return state.hard_state, [e.index for e in state.entries]


def _segment(disk: SimDisk) -> str:
    (name,) = [n for n in disk.list_dir(WAL) if n.endswith(".wal")]
    return f"{WAL}/{name}"


def test_synced_state_survives_a_crash() -> None:
    disk = SimDisk()
    wal = Wal.open(WAL, disk=disk)
    wal.save(HardState(term=1, vote=2, commit=1), [E(1), E(2)])
    disk.crash(random.Random(0))
    assert _reopen(disk) == (HardState(term=1, vote=2, commit=1), [1, 2])


def test_unsynced_writes_are_lost_without_faults() -> None:
    disk = SimDisk()
    wal = Wal.open(WAL, disk=disk)
    wal.save(HardState(term=1, vote=1, commit=1), [E(1)])
    wal.save(HardState(term=2, vote=2, commit=1), [E(2, 2)], must_sync=False)
    wal.flush()
    report = disk.crash(None)
    assert report.unsynced_bytes_lost > 0 and report.flushed_bytes == 0
    assert _reopen(disk) == (HardState(term=1, vote=1, commit=1), [1])


def test_a_torn_tail_is_repaired_to_a_record_boundary() -> None:
    torn_seen = 0
    for seed in range(60):
        disk = SimDisk()
        wal = Wal.open(WAL, disk=disk)
        wal.save(HardState(term=1, vote=1, commit=2), [E(1), E(2)])
        wal.save(None, [E(i) for i in range(3, 9)], must_sync=False)
        wal.flush()
        report = disk.crash(random.Random(seed))
        torn_seen += report.torn
        hard_state, indexes = _reopen(disk)
        # Whatever prefix survived, the log is contiguous and keeps what was synced.
        assert hard_state == HardState(term=1, vote=1, commit=2)
        assert indexes == list(range(1, len(indexes) + 1)) and len(indexes) >= 2
    assert torn_seen > 10


def test_a_bit_flip_mid_log_is_reported_with_file_and_offset() -> None:
    disk = SimDisk()
    with Wal.open(WAL, disk=disk) as wal:
        wal.save(HardState(term=1, vote=1, commit=3), [E(1), E(2), E(3)])
    path = _segment(disk)
    offset = SEGMENT_HEADER_SIZE_BYTES + 40  # inside an early record, not the last one
    disk.flip_bit(path, offset, 3)
    with pytest.raises(WalCorruptError) as info:
        Wal.open(WAL, disk=disk)
    assert info.value.path == path
    assert SEGMENT_HEADER_SIZE_BYTES <= info.value.offset <= offset


def test_a_failed_fsync_stops_the_wal() -> None:
    disk = SimDisk()
    wal = Wal.open(WAL, disk=disk)
    wal.save(HardState(term=1, vote=1), [E(1)])
    disk.fail_next_fsync()
    with pytest.raises(WalError):
        wal.save(HardState(term=1, vote=1, commit=1), [E(2)])
    with pytest.raises(WalError):  # refused from now on, even with a healthy disk
        wal.save(HardState(term=1, vote=1, commit=1), [E(2)])
    disk.crash(None)
    assert _reopen(disk) == (HardState(term=1, vote=1), [1])


def test_the_directory_lock_is_exclusive_until_a_crash() -> None:
    disk = SimDisk()
    Wal.open(WAL, disk=disk)
    with pytest.raises(WalLockedError):
        Wal.open(WAL, disk=disk)
    disk.crash(None)
    Wal.open(WAL, disk=disk).close()


def test_a_rename_is_durable_only_after_the_directory_sync() -> None:
    disk = SimDisk()
    disk.make_dir("/d")
    handle = disk.open_write("/d/a.tmp", create=True)
    disk.write(handle, b"new")
    disk.fsync(handle)
    disk.close(handle)
    disk.rename("/d/a.tmp", "/d/a")
    disk.crash(None)
    assert disk.list_dir("/d") == []


def test_flipping_an_unsynced_byte_is_refused() -> None:
    disk = SimDisk()
    disk.make_dir("/d")
    handle = disk.open_write("/d/f", create=True)
    disk.write(handle, b"abc")
    with pytest.raises(DiskError):
        disk.flip_bit("/d/f", 0, 0)
