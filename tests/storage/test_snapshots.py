"""Snapshot files: atomic save, checksums, fallback past damaged files, retention."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from syndic.raft import ConfState, Snapshot, SnapshotMeta
from syndic.storage import (
    DataDirError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
    SnapshotStore,
    StorageArgumentError,
)
from syndic.storage.snapshots import HEADER_SIZE_BYTES, encode_snapshot, snapshot_file_name
from tests.storage._util import FsyncCounter, no_fsync

CONF = ConfState(voters=frozenset({1, 2, 3}), learners=frozenset({4}))


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    meta = SnapshotMeta(index=index, term=term, conf_state=CONF)
    return Snapshot(meta=meta, data=data if data is not None else f"state@{index}".encode())


def test_round_trip(tmp_path: Path, fsync_counter: FsyncCounter) -> None:
    store = SnapshotStore(tmp_path / "snap", fsync=fsync_counter)
    joint = SnapshotMeta(
        index=9,
        term=3,
        conf_state=ConfState(voters=frozenset({1, 2}), voters_outgoing=frozenset({1, 2, 3})),
    )
    original = Snapshot(meta=joint, data=os.urandom(5000))
    path = store.save(original)
    assert os.path.basename(path) == snapshot_file_name(9, 3)
    loaded = store.load_latest()
    assert loaded.snapshot == original and loaded.path == path and loaded.skipped == ()
    assert store.load(9, 3) == original
    with pytest.raises(SnapshotNotFoundError):
        store.load(9, 4)


def test_save_fsyncs_file_and_directory(tmp_path: Path, fsync_counter: FsyncCounter) -> None:
    store = SnapshotStore(tmp_path, fsync=fsync_counter)
    before_files, before_dirs = fsync_counter.files, fsync_counter.dirs
    store.save(snap(1))
    assert fsync_counter.files == before_files + 1
    assert fsync_counter.dirs == before_dirs + 1  # the rename is made durable


def test_crash_between_temp_write_and_rename_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    store.save(snap(5))

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(SnapshotError, match="No space left"):
        store.save(snap(10))
    monkeypatch.undo()
    assert store.load_latest().snapshot == snap(5)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


def test_leftover_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    store.save(snap(5))
    # A process killed after writing the temp file, before the rename.
    leftover = tmp_path / (snapshot_file_name(10, 1) + ".tmp")
    leftover.write_bytes(encode_snapshot(snap(10))[:100])
    assert store.load_latest().snapshot == snap(5)
    reopened = SnapshotStore(tmp_path, fsync=no_fsync)
    assert reopened.removed_temp_files == (str(leftover),)
    assert not leftover.exists()
    assert reopened.load_latest().snapshot == snap(5)


def _damage(path: str, position: int) -> None:
    raw = bytearray(Path(path).read_bytes())
    raw[position] ^= 0x40
    Path(path).write_bytes(bytes(raw))


@pytest.mark.parametrize("position", [0, 9, 14, 30, 45, HEADER_SIZE_BYTES + 2, -1])
def test_damaged_newest_snapshot_falls_back_to_older(tmp_path: Path, position: int) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    store.save(snap(5))
    newest = store.save(snap(10, data=b"x" * 300))
    _damage(newest, position if position >= 0 else os.path.getsize(newest) - 1)
    loaded = store.load_latest()
    assert loaded.snapshot == snap(5)
    assert [skip.path for skip in loaded.skipped] == [newest]
    with pytest.raises(SnapshotCorruptError) as caught:
        store.load(10, 1)
    assert caught.value.path == newest


def test_every_byte_flip_is_detected(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    path = store.save(snap(7, data=b"payload" * 10))
    pristine = Path(path).read_bytes()
    for position in range(len(pristine)):
        damaged = bytearray(pristine)
        damaged[position] ^= 1 << (position % 8)
        Path(path).write_bytes(bytes(damaged))
        with pytest.raises(SnapshotCorruptError):
            store.read(path)


@pytest.mark.parametrize(
    ("contents", "match"),
    [
        (b"", "shorter than the header"),
        (b"\x89SYNSNP\n" + b"\0" * 100, "CRC"),
        (b"NOTASNAP" + b"\0" * 100, "magic"),
    ],
)
def test_hostile_files(tmp_path: Path, contents: bytes, match: str) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    path = tmp_path / snapshot_file_name(3, 1)
    path.write_bytes(contents)
    with pytest.raises(SnapshotCorruptError, match=match):
        store.read(str(path))
    assert store.load_latest().snapshot is None
    assert len(store.load_latest().skipped) == 1


def _reheader(raw: bytes, **fields: int) -> bytes:
    import zlib

    names = ["magic", "version", "reserved", "index", "term", "conf", "data", "sha"]
    values = dict(zip(names, struct.unpack_from("<8sHHQQIQ32s", raw), strict=True))
    values.update(fields)
    body = struct.pack("<8sHHQQIQ32s", *values.values())
    return body + struct.pack("<I", zlib.crc32(body)) + raw[HEADER_SIZE_BYTES:]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"version": 2}, "version 2"),
        ({"data": 2**62}, "over the bounds"),
        ({"conf": 2**31}, "over the bounds"),
        ({"data": 3}, "header says"),
        ({"index": 4}, "header says index/term"),
    ],
)
def test_headers_with_valid_crc_but_hostile_fields(
    tmp_path: Path, fields: dict[str, int], match: str
) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    path = store.save(snap(3))
    Path(path).write_bytes(_reheader(Path(path).read_bytes(), **fields))
    with pytest.raises(SnapshotCorruptError, match=match):
        store.read(path)


def test_retention_keeps_the_newest_n(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, snapshots_retained_max=3, fsync=no_fsync)
    for index in range(1, 8):
        store.save(snap(index))
    assert [index for index, _, _ in store.list()] == [5, 6, 7]


def test_list_sorts_by_index_not_term(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    store.save(snap(20, term=1))
    store.save(snap(3, term=9))
    assert store.load_latest().snapshot == snap(20, term=1)


def test_accept_filter(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=no_fsync)
    store.save(snap(5))
    store.save(snap(10))
    loaded = store.load_latest(accept=lambda index, term: index <= 7)
    assert loaded.snapshot == snap(5)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(StorageArgumentError):
        SnapshotStore(tmp_path, snapshots_retained_max=1)
    with pytest.raises(StorageArgumentError):
        SnapshotStore(tmp_path, snapshot_size_bytes_max=-1)
    store = SnapshotStore(tmp_path, snapshot_size_bytes_max=10, fsync=no_fsync)
    with pytest.raises(StorageArgumentError, match="snapshot_size_bytes_max"):
        store.save(snap(1, data=b"x" * 11))
    with pytest.raises(StorageArgumentError, match="index 0"):
        store.save(Snapshot(SnapshotMeta(index=0, term=0, conf_state=CONF), b""))
    with pytest.raises(StorageArgumentError, match="Snapshot"):
        store.save(b"raw bytes")  # type: ignore[arg-type]
    assert store.list() == []


def test_snapshot_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    path.write_text("file")
    with pytest.raises(DataDirError, match="not a directory"):
        SnapshotStore(path)
    with pytest.raises(DataDirError, match="does not exist"):
        SnapshotStore(tmp_path / "absent", create=False)
