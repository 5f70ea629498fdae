"""The segmented WAL: round trips, group commit, rollover, overwrite, markers, release, locking."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from syndic.raft import ConfState, Entry, EntryType, HardState, SnapshotMeta
from syndic.storage import (
    DataDirError,
    SnapshotMarker,
    StorageArgumentError,
    Wal,
    WalClosedError,
    WalError,
    WalLockedError,
    WalOptions,
)
from syndic.storage.records import (
    RecordType,
    encode_entry,
    encode_snapshot_marker,
    frame_record,
)
from tests.storage._util import FsyncCounter, make_entries, no_fsync, segment_paths

SMALL = WalOptions(
    segment_size_bytes_max=4096, record_size_bytes_max=1024, write_buffer_size_bytes_max=512
)


def reopen(path: Path, options: WalOptions | None = None) -> Wal:
    return Wal.open(path, options, fsync=no_fsync)


def test_round_trip_of_hard_state_and_entries(wal_dir: Path) -> None:
    entries = [
        *make_entries(1, 3, term=1),
        Entry(term=2, index=4, type=EntryType.CONF_CHANGE, data=b"\x00\xff" * 10),
        Entry(term=2, index=5, data=b""),
    ]
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=2, vote=3, commit=4), entries)
    with reopen(wal_dir) as wal:
        state = wal.read_all()
        assert state.hard_state == HardState(term=2, vote=3, commit=4)
        assert state.entries == tuple(entries)
        assert state.snapshot_marker is None
        assert state.repairs == ()
        assert wal.last_index == 5
        assert wal.hard_state == HardState(term=2, vote=3, commit=4)


def test_fresh_directory_replays_to_empty_state(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        state = wal.read_all()
    assert state.hard_state == HardState()
    assert state.entries == ()
    assert state.last_index == 0
    assert len(segment_paths(wal_dir)) == 1


def test_read_all_after_appends_rescans_including_buffered_records(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.append(None, make_entries(1, 2))
        assert [e.index for e in wal.read_all().entries] == [1, 2]
        wal.append(HardState(term=1, vote=1, commit=2), make_entries(3, 1))
        state = wal.read_all()
        assert [e.index for e in state.entries] == [1, 2, 3]
        assert state.hard_state.commit == 2


def test_group_commit_many_appends_one_fsync(wal_dir: Path, fsync_counter: FsyncCounter) -> None:
    with Wal.open(wal_dir, fsync=fsync_counter) as wal:
        before = fsync_counter.files
        for index in range(1, 101):
            wal.append(HardState(term=1, vote=1, commit=index - 1), make_entries(index, 1))
        assert fsync_counter.files == before  # append never syncs
        wal.sync()
        assert fsync_counter.files == before + 1
        wal.sync()  # nothing new: no second fsync
        assert fsync_counter.files == before + 1
        assert wal.status().fsync_count == 1
        assert wal.status().synced_size_bytes == wal.status().segment_size_bytes


def test_save_syncs_only_when_must_sync(wal_dir: Path, fsync_counter: FsyncCounter) -> None:
    with Wal.open(wal_dir, fsync=fsync_counter) as wal:
        before = fsync_counter.files
        wal.save(HardState(term=1, vote=0, commit=0), make_entries(1, 1), must_sync=False)
        assert fsync_counter.files == before
        assert wal.status().synced_size_bytes < wal.status().segment_size_bytes
        wal.save(None, make_entries(2, 1), must_sync=True)
        assert fsync_counter.files == before + 1


def test_write_buffer_is_bounded(wal_dir: Path) -> None:
    options = WalOptions(write_buffer_size_bytes_max=100)
    with Wal.open(wal_dir, options, fsync=no_fsync) as wal:
        wal.append(None, make_entries(1, 20, size=64))
        assert wal.status().buffered_bytes <= 100 + 100  # at most one frame past the bound


def test_segment_rollover_and_replay_across_segments(
    wal_dir: Path, fsync_counter: FsyncCounter
) -> None:
    entries = make_entries(1, 200, size=64)
    with Wal.open(wal_dir, SMALL, fsync=fsync_counter) as wal:
        for index in range(0, 200, 10):
            batch = entries[index : index + 10]
            wal.append(HardState(term=1, vote=1, commit=batch[-1].index), batch)
            wal.sync()
        assert wal.status().segment_count > 3
    paths = segment_paths(wal_dir)
    assert len(paths) > 3
    assert all(os.path.getsize(path) <= SMALL.segment_size_bytes_max for path in paths)
    # A new segment is announced with a directory fsync (the rename must survive).
    assert fsync_counter.dirs >= len(paths) - 1
    # Names carry the first index each segment expects, ascending.
    firsts = [int(os.path.basename(path).split("-")[1][:16], 16) for path in paths]
    assert firsts == sorted(firsts) and firsts[0] == 1
    with reopen(wal_dir, SMALL) as wal:
        state = wal.read_all()
    assert state.entries == tuple(entries)
    assert state.hard_state == HardState(term=1, vote=1, commit=200)


def test_segments_keep_sizes_bounded_even_without_sync(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        wal.append(None, make_entries(1, 300, size=64))
    assert all(os.path.getsize(p) <= SMALL.segment_size_bytes_max for p in segment_paths(wal_dir))
    with reopen(wal_dir, SMALL) as wal:
        assert [e.index for e in wal.read_all().entries] == list(range(1, 301))


def test_conflicting_suffix_is_truncated_on_replay(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=2), make_entries(1, 5, term=1))
        # A new leader of term 2 overwrites from index 3 (Raft §5.3).
        wal.save(HardState(term=2, vote=2, commit=2), make_entries(3, 2, term=2))
        assert wal.last_index == 4
        wal.save(None, make_entries(5, 1, term=2))
    with reopen(wal_dir) as wal:
        state = wal.read_all()
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]


def test_conflicting_suffix_across_segments(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=10), make_entries(1, 100, term=1, size=64))
        wal.save(HardState(term=2, vote=2, commit=10), make_entries(20, 3, term=2))
        assert wal.status().segment_count > 1
    with reopen(wal_dir, SMALL) as wal:
        state = wal.read_all()
    assert [e.index for e in state.entries] == list(range(1, 23))
    assert [e.term for e in state.entries[19:]] == [2, 2, 2]


def test_compaction_marker_keeps_log(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=8), make_entries(1, 10))
        wal.save(None, [], snapshot=SnapshotMarker(index=8, term=1))
    with reopen(wal_dir) as wal:
        state = wal.read_all()
    assert state.snapshot_marker == SnapshotMarker(8, 1)
    assert [e.index for e in state.entries_after(8)] == [9, 10]
    assert len(state.entries) == 10  # older entries stay for a fallback snapshot


def test_restore_marker_discards_divergent_log(wal_dir: Path) -> None:
    meta = SnapshotMeta(index=20, term=3, conf_state=ConfState(voters=frozenset({1, 2, 3})))
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=2), make_entries(1, 10, term=1))
        # A leader's snapshot at 20 replaces the whole log (Raft §7).
        wal.save(HardState(term=3, vote=0, commit=20), make_entries(21, 2, term=3), snapshot=meta)
        assert wal.last_index == 22
    with reopen(wal_dir) as wal:
        state = wal.read_all()
    assert state.snapshot_markers == (SnapshotMarker(20, 3),)
    assert [e.index for e in state.entries] == [21, 22]


def test_restore_marker_with_mismatched_term_at_held_index_discards(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=2), make_entries(1, 10, term=1))
        wal.save(HardState(term=2, vote=0, commit=5), [], snapshot=SnapshotMarker(5, 2))
        assert wal.last_index == 5
        with pytest.raises(StorageArgumentError, match="gap"):
            wal.append(None, make_entries(7, 1, term=2))
        wal.save(None, make_entries(6, 1, term=2))
    with reopen(wal_dir) as wal:
        state = wal.read_all()
    assert [(e.index, e.term) for e in state.entries] == [(6, 2)]


def test_release_before_needs_a_durable_snapshot(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=150), make_entries(1, 200, size=64))
        count = wal.status().segment_count
        assert count > 3
        with pytest.raises(StorageArgumentError, match="no durable snapshot"):
            wal.release_before(150)
        wal.append_snapshot_marker(SnapshotMarker(150, 1))
        with pytest.raises(StorageArgumentError, match="no durable snapshot"):
            wal.release_before(150)  # marker buffered, not yet synced
        wal.sync()
        with pytest.raises(StorageArgumentError, match="no durable snapshot"):
            wal.release_before(151)
        released = wal.release_before(150)
        assert released and all(not os.path.exists(path) for path in released)
        assert wal.status().segment_count == count - len(released)
        wal.save(None, make_entries(201, 5))
    with reopen(wal_dir, SMALL) as wal:
        state = wal.read_all()
    assert state.snapshot_marker == SnapshotMarker(150, 1)
    assert state.hard_state == HardState(term=1, vote=1, commit=150)
    after = state.entries_after(150)
    assert [e.index for e in after] == list(range(151, 206))


def test_release_never_deletes_the_last_segment(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=5), make_entries(1, 5))
        wal.save(None, [], snapshot=SnapshotMarker(5, 1))
        assert wal.release_before(5) == []
        assert wal.status().segment_count == 1


def test_release_keeps_state_when_marker_predates_segment(wal_dir: Path) -> None:
    # The marker and hard state are written in segment 0 just before the cut;
    # once segment 0 is released only segment 1's head restates them.
    marker_frame_bytes = len(
        frame_record(RecordType.SNAPSHOT_MARKER, encode_snapshot_marker(SnapshotMarker(99, 4)))
    )
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        index = 0
        while True:
            entry = make_entries(index + 1, 1, term=4, size=64)[0]
            frame_bytes = len(frame_record(RecordType.ENTRY, encode_entry(entry)))
            room = SMALL.segment_size_bytes_max - wal.status().segment_size_bytes
            if frame_bytes + marker_frame_bytes > room:
                break
            wal.append(None, [entry])
            index += 1
        wal.save(HardState(term=4, vote=2, commit=index), [], snapshot=SnapshotMarker(index, 4))
        assert wal.status().segment_count == 1
        wal.save(None, make_entries(index + 1, 3, term=4, size=64))
        assert wal.status().segment_count == 2
        assert len(wal.release_before(index)) == 1
    with reopen(wal_dir, SMALL) as wal:
        state = wal.read_all()
    assert state.hard_state == HardState(term=4, vote=2, commit=index)
    assert state.snapshot_marker == SnapshotMarker(index, 4)
    assert [e.index for e in state.entries] == [index + 1, index + 2, index + 3]


def test_release_then_reopen_accepts_overwrite_into_released_range(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=40), make_entries(1, 60, term=1, size=64))
        first_of_last = int(os.path.basename(wal.status().segment_path).split("-")[1][:16], 16)
        # Overwrite entries just below the new segment's first index (uncommitted ones).
        wal.save(HardState(term=2, vote=2, commit=40), make_entries(first_of_last - 2, 3, term=2))
        wal.save(HardState(term=2, vote=2, commit=first_of_last), [])
        wal.save(None, [], snapshot=SnapshotMarker(first_of_last, 2))
        assert wal.release_before(first_of_last)
    with reopen(wal_dir, SMALL) as wal:
        state = wal.read_all()
        assert state.snapshot_marker == SnapshotMarker(first_of_last, 2)
        assert state.entries[-1].index == first_of_last
        wal.save(None, make_entries(first_of_last + 1, 1, term=2))
    with reopen(wal_dir, SMALL) as wal:
        assert [e.index for e in wal.read_all().entries_after(first_of_last)] == [first_of_last + 1]


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (make_entries(3, 1), "gap"),
        ([Entry(term=1, index=1), Entry(term=1, index=3)], "gap"),
        ([Entry(term=2, index=1), Entry(term=1, index=2)], "term"),
        (["not an entry"], "Entry"),
    ],
)
def test_invalid_batches_are_refused_without_writing(
    wal_dir: Path, batch: list[Entry], match: str
) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        before = wal.status()
        with pytest.raises(StorageArgumentError, match=match):
            wal.append(HardState(term=1), batch)
        assert wal.status() == before
        assert wal.last_index == 0 and wal.hard_state == HardState()
        wal.save(None, make_entries(1, 1))
        assert [e.index for e in wal.read_all().entries] == [1]


def test_hard_state_regressions_are_refused(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=5, vote=2, commit=0), [])
        with pytest.raises(StorageArgumentError, match="below the stored term"):
            wal.append(HardState(term=4, vote=2), [])
        with pytest.raises(StorageArgumentError, match="vote"):
            wal.append(HardState(term=5, vote=3), [])
        with pytest.raises(StorageArgumentError, match="HardState"):
            wal.append("hs", [])  # type: ignore[arg-type]
        wal.append(HardState(term=6, vote=3), [])
        assert wal.hard_state == HardState(term=6, vote=3)


def test_entries_under_a_snapshot_cannot_be_rewritten(wal_dir: Path) -> None:
    with Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=5), make_entries(1, 5))
        wal.save(None, [], snapshot=SnapshotMarker(4, 1))
        with pytest.raises(StorageArgumentError, match="at or below the snapshot"):
            wal.append(None, make_entries(4, 1, term=2))
        with pytest.raises(StorageArgumentError, match="does not advance"):
            wal.append_snapshot_marker(SnapshotMarker(3, 1))
        with pytest.raises(StorageArgumentError, match="index 0"):
            wal.append_snapshot_marker(SnapshotMarker(0, 0))
        with pytest.raises(StorageArgumentError, match="SnapshotMarker or SnapshotMeta"):
            wal.save(None, [], snapshot=(5, 1))  # type: ignore[arg-type]


def test_oversized_entry_is_refused(wal_dir: Path) -> None:
    with Wal.open(wal_dir, SMALL, fsync=no_fsync) as wal:
        with pytest.raises(StorageArgumentError, match="record_size_bytes_max"):
            wal.append(None, [Entry(term=1, index=1, data=b"x" * 2000)])
        assert wal.last_index == 0
        assert wal.status().buffered_bytes == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"segment_size_bytes_max": 0},
        {"record_size_bytes_max": -1},
        {"write_buffer_size_bytes_max": -1},
        {"segment_size_bytes_max": 1000, "record_size_bytes_max": 1000},
        {"segment_size_bytes_max": True},
    ],
)
def test_options_are_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(StorageArgumentError):
        WalOptions(**kwargs)


def test_second_open_of_a_directory_is_refused_with_a_clear_error(wal_dir: Path) -> None:
    with (
        Wal.open(wal_dir, fsync=no_fsync),
        pytest.raises(WalLockedError, match=f"in use.*pid {os.getpid()}"),
    ):
        Wal.open(wal_dir, fsync=no_fsync)
    with Wal.open(wal_dir, fsync=no_fsync):
        pass  # the lock is released on close


def test_lock_excludes_another_process(wal_dir: Path) -> None:
    script = (
        "import sys\n"
        "from syndic.storage import Wal, WalLockedError\n"
        "try:\n"
        "    Wal.open(sys.argv[1])\n"
        "except WalLockedError as exc:\n"
        "    print('locked', exc)\n"
    )
    with Wal.open(wal_dir, fsync=no_fsync):
        result = subprocess.run(
            [sys.executable, "-c", script, str(wal_dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    assert result.stdout.startswith("locked"), result.stderr


def test_closed_wal_refuses_calls(wal_dir: Path) -> None:
    wal = Wal.open(wal_dir, fsync=no_fsync)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(WalClosedError):
        wal.append(None, make_entries(1, 1))
    with pytest.raises(WalClosedError):
        wal.sync()
    with pytest.raises(WalClosedError):
        wal.read_all()


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    path.write_bytes(b"not a directory")
    with pytest.raises(DataDirError, match="not a directory"):
        Wal.open(path, fsync=no_fsync)
    assert path.read_bytes() == b"not a directory"


def test_missing_dir_without_create(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="does not exist"):
        Wal.open(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def _open_as_nobody(path: str) -> str:
    """Try Wal.open in a forked child that dropped root; return what it reports."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                Wal.open(path, fsync=no_fsync)
                message = "opened"
            except DataDirError as exc:
                message = f"refused {exc}"
            os.write(write_fd, message.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as reader:
        return reader.read().decode()


def test_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = tmp_path / "wal"
        path.mkdir(mode=0o500)
        try:
            with pytest.raises(DataDirError, match="not readable and writable"):
                Wal.open(path, fsync=no_fsync)
        finally:
            path.chmod(0o700)
        return
    # root ignores permission bits: check as an unprivileged user instead.
    base = tempfile.mkdtemp()
    path = os.path.join(base, "wal")
    try:
        os.chmod(base, 0o755)
        os.mkdir(path, 0o555)
        report = _open_as_nobody(path)
        assert report.startswith("refused") and "not readable and writable" in report, report
        assert os.listdir(path) == []
    finally:
        os.rmdir(path)
        os.rmdir(base)


def test_context_manager_abandons_on_error(wal_dir: Path) -> None:
    with pytest.raises(RuntimeError), Wal.open(wal_dir, fsync=no_fsync) as wal:
        wal.append(HardState(term=1), make_entries(1, 1))
        raise RuntimeError("boom")
    with reopen(wal_dir) as wal:
        assert wal.read_all().entries == ()  # buffered, never synced: dropped


def test_failed_fsync_poisons_the_wal(wal_dir: Path) -> None:
    failing = [False]

    def failing_fsync(fd: int) -> None:
        if failing[0]:
            raise OSError(5, "Input/output error")

    wal = Wal.open(wal_dir, fsync=failing_fsync)
    wal.append(None, make_entries(1, 1))
    failing[0] = True
    with pytest.raises(WalError, match="Input/output error"):
        wal.sync()
    with pytest.raises(WalError, match="failed earlier"):
        wal.append(None, make_entries(2, 1))
    wal.close()
