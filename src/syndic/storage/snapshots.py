"""Snapshot files: one checksummed file per Raft snapshot, written atomically.

File ``{index:016x}-{term:016x}.snap`` (names sort by index)::

    header (76 bytes, little-endian)
      0  magic          8 bytes   b"\\x89SYNSNP\\n"
      8  version        u16       SNAPSHOT_FORMAT_VERSION
     10  reserved       u16       0
     12  index          u64
     20  term           u64
     28  conf_length    u32       length of the msgpack conf state
     32  data_length    u64       length of the state machine data
     40  sha256         32 bytes  SHA-256 of conf bytes + data
     72  header_crc     u32       CRC-32 of bytes 0..72
    then the conf state (msgpack [voters, learners, voters_outgoing]) and the data.

A snapshot is written to ``<name>.tmp``, fsynced, renamed into place and the
directory fsynced (so the rename itself survives a power cut), then older
files beyond ``snapshots_retained_max`` are deleted. A crash at any point
leaves either the previous set of snapshots or the new one, never a
half-written file under a ``.snap`` name.

Example::

    >>> import tempfile
    >>> from syndic.raft import ConfState, Snapshot, SnapshotMeta
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = SnapshotStore(d)
    ...     meta = SnapshotMeta(index=5, term=2, conf_state=ConfState(voters=frozenset({1})))
    ...     _ = store.save(Snapshot(meta=meta, data=b"state"))
    ...     store.load_latest().snapshot.data
    b'state'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgpack

from syndic.raft.errors import InvalidArgumentError
from syndic.raft.messages import ConfState, Snapshot, SnapshotMeta
from syndic.storage.disk import Disk, FsyncFn, OsDisk
from syndic.storage.durable import write_atomically
from syndic.storage.errors import (
    DataDirError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
    StorageArgumentError,
)

log = logging.getLogger(__name__)

SNAPSHOT_MAGIC: Final = b"\x89SYNSNP\n"
SNAPSHOT_FORMAT_VERSION: Final = 1
SNAPSHOT_SUFFIX: Final = ".snap"
TEMP_SUFFIX: Final = ".tmp"
_HEADER_BODY = struct.Struct("<8sHHQQIQ32s")
_HEADER = struct.Struct("<8sHHQQIQ32sI")
HEADER_SIZE_BYTES: Final = _HEADER.size  # 76
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
# A conf state lists node ids (<= 9 msgpack bytes each); 1 MiB is ~100k nodes,
# far past any real cluster, and keeps a hostile header from forcing a big read.
CONF_STATE_SIZE_BYTES_MAX: Final = 1024 * 1024
GIB: Final = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SkippedSnapshot:
    """A snapshot file passed over by :meth:`SnapshotStore.load_latest`, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class SnapshotLoad:
    """The result of :meth:`SnapshotStore.load_latest`."""

    snapshot: Snapshot | None
    path: str | None
    skipped: tuple[SkippedSnapshot, ...]


def snapshot_file_name(index: int, term: int) -> str:
    return f"{index:016x}-{term:016x}{SNAPSHOT_SUFFIX}"


def _encode_conf_state(conf_state: ConfState) -> bytes:
    return msgpack.packb(
        [sorted(conf_state.voters), sorted(conf_state.learners), sorted(conf_state.voters_outgoing)]
    )


def _decode_conf_state(path: str, raw: bytes) -> ConfState:
    try:
        value = msgpack.unpackb(raw, max_map_len=0, max_ext_len=0, max_str_len=0)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SnapshotCorruptError(path, f"conf state is not valid msgpack: {exc}") from exc
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, list) for v in value)
    ):
        raise SnapshotCorruptError(path, f"conf state must be three id lists, got {value!r:.80}")
    try:
        voters, learners, outgoing = (frozenset(ids) for ids in value)
        return ConfState(voters=voters, learners=learners, voters_outgoing=outgoing)
    except (TypeError, InvalidArgumentError) as exc:
        raise SnapshotCorruptError(path, f"conf state is invalid: {exc}") from exc


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The complete file contents for ``snapshot``."""
    conf = _encode_conf_state(snapshot.meta.conf_state)
    digest = hashlib.sha256(conf)
    digest.update(snapshot.data)
    body = _HEADER_BODY.pack(
        SNAPSHOT_MAGIC,
        SNAPSHOT_FORMAT_VERSION,
        0,
        snapshot.meta.index,
        snapshot.meta.term,
        len(conf),
        len(snapshot.data),
        digest.digest(),
    )
    return b"".join((body, struct.pack("<I", zlib.crc32(body)), conf, snapshot.data))


def decode_snapshot(path: str, raw: bytes, *, snapshot_size_bytes_max: int) -> Snapshot:
    """Parse and verify a snapshot file's bytes; raises :class:`SnapshotCorruptError`."""
    header = _Header.parse(path, raw, snapshot_size_bytes_max)
    expected_size = HEADER_SIZE_BYTES + header.conf_length + header.data_length
    if len(raw) != expected_size:
        raise SnapshotCorruptError(path, f"file is {len(raw)} bytes, header says {expected_size}")
    body = memoryview(raw)[HEADER_SIZE_BYTES:]
    conf, data = body[: header.conf_length], body[header.conf_length :]
    return header.snapshot(path, conf, bytes(data))


@dataclass(frozen=True, slots=True)
class _Header:
    """A snapshot file's header, checked on its own (its CRC, version, bounds)."""

    index: int
    term: int
    conf_length: int
    data_length: int
    sha256: bytes

    @classmethod
    def parse(cls, path: str, raw: bytes, snapshot_size_bytes_max: int) -> _Header:
        if len(raw) < HEADER_SIZE_BYTES:
            raise SnapshotCorruptError(path, f"file is {len(raw)} bytes, shorter than the header")
        magic, version, reserved, index, term, conf_length, data_length, sha, crc = (
            _HEADER.unpack_from(raw)
        )
        if magic != SNAPSHOT_MAGIC:
            raise SnapshotCorruptError(path, f"bad magic {magic!r}, expected {SNAPSHOT_MAGIC!r}")
        if zlib.crc32(raw[: HEADER_SIZE_BYTES - 4]) != crc:
            raise SnapshotCorruptError(path, "header CRC mismatch")
        if version != SNAPSHOT_FORMAT_VERSION:
            raise SnapshotCorruptError(
                path,
                f"unsupported snapshot format version {version} (reads {SNAPSHOT_FORMAT_VERSION})",
            )
        if reserved != 0:
            raise SnapshotCorruptError(path, f"reserved header field is {reserved}, expected 0")
        if conf_length > CONF_STATE_SIZE_BYTES_MAX or data_length > snapshot_size_bytes_max:
            raise SnapshotCorruptError(
                path,
                f"header claims {conf_length} conf bytes and {data_length} data bytes, "
                f"over the bounds {CONF_STATE_SIZE_BYTES_MAX} / {snapshot_size_bytes_max}",
            )
        return cls(index, term, conf_length, data_length, sha)

    def snapshot(self, path: str, conf: bytes | memoryview, data: bytes) -> Snapshot:
        """The snapshot of these parts, once they match the header's digest."""
        digest = hashlib.sha256(conf)
        digest.update(data)
        if digest.digest() != self.sha256:
            raise SnapshotCorruptError(path, "SHA-256 of conf state and data does not match")
        conf_state = _decode_conf_state(path, bytes(conf))
        try:
            meta = SnapshotMeta(index=self.index, term=self.term, conf_state=conf_state)
        except InvalidArgumentError as exc:
            raise SnapshotCorruptError(path, f"invalid snapshot metadata: {exc}") from exc
        return Snapshot(meta=meta, data=data)


def _read_os_file(path: str, size_bytes_max: int) -> Snapshot:
    """Read a snapshot file from the operating system with its data going
    straight into its own bytes object: reading the file whole and slicing
    the data out copies all of it once more (300 MiB for a million keys)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(HEADER_SIZE_BYTES)
        header = _Header.parse(path, head, size_bytes_max)
        expected = HEADER_SIZE_BYTES + header.conf_length + header.data_length
        # Checked before reading: a read allocates what it is asked for.
        if size != expected:
            raise SnapshotCorruptError(path, f"file is {size} bytes, header says {expected}")
        conf = handle.read(header.conf_length)
        data = handle.read(header.data_length)
    if len(conf) + len(data) != size - HEADER_SIZE_BYTES:
        raise SnapshotError(f"{path}: changed while it was read")
    return header.snapshot(path, conf, data)


class SnapshotStore:
    """A directory of snapshot files. Not thread-safe; one process per directory.

    ``snapshots_retained_max``: how many newest snapshot files to keep (etcd
    keeps 5 by default, ``--max-snapshots``); at least 2, so that the file a
    WAL marker points at survives while a newer one is saved before its
    marker. ``snapshot_size_bytes_max`` bounds both what is saved and what a
    file header may claim (default 8 GiB). ``disk`` replaces the operating
    system (the simulator's disk); ``fsync`` is then not used.
    """

    def __init__(
        self,
        dir_path: str | os.PathLike[str],
        *,
        snapshots_retained_max: int = 5,
        snapshot_size_bytes_max: int = 8 * GIB,
        fsync: FsyncFn = os.fsync,
        create: bool = True,
        disk: Disk | None = None,
    ) -> None:
        if (
            not isinstance(snapshots_retained_max, int)
            or isinstance(snapshots_retained_max, bool)
            or snapshots_retained_max < 2
        ):
            raise StorageArgumentError(
                f"snapshots_retained_max must be an int >= 2: {snapshots_retained_max!r}"
            )
        if (
            not isinstance(snapshot_size_bytes_max, int)
            or isinstance(snapshot_size_bytes_max, bool)
            or snapshot_size_bytes_max < 0
        ):
            raise StorageArgumentError(
                f"snapshot_size_bytes_max must be an int >= 0: {snapshot_size_bytes_max!r}"
            )
        self._dir_path = os.fspath(dir_path)
        self._retained_max = snapshots_retained_max
        self._size_max = snapshot_size_bytes_max
        self._disk: Disk = disk if disk is not None else OsDisk(fsync)
        self._prepare_dir(create)
        self.removed_temp_files: tuple[str, ...] = self._remove_temp_files()

    @property
    def dir_path(self) -> str:
        return self._dir_path

    def _prepare_dir(self, create: bool) -> None:
        path = self._dir_path
        try:
            usable = self._disk.stat_dir(path)
        except NotADirectoryError:
            raise DataDirError(path, "snapshot path exists and is not a directory") from None
        except OSError as exc:
            raise DataDirError(path, f"cannot stat snapshot directory: {exc}") from exc
        if usable is None:
            if not create:
                raise DataDirError(path, "snapshot directory does not exist")
            try:
                self._disk.make_dir(path)
            except OSError as exc:
                raise DataDirError(path, f"cannot create snapshot directory: {exc}") from exc
            self._disk.fsync_dir(os.path.dirname(os.path.abspath(path)))
            return
        if not usable:
            raise DataDirError(path, "snapshot directory is not readable and writable")

    def _remove_temp_files(self) -> tuple[str, ...]:
        # A temp file is a save that crashed before its rename: never valid.
        removed = []
        for name in self._disk.list_dir(self._dir_path):
            if name.endswith(SNAPSHOT_SUFFIX + TEMP_SUFFIX):
                path = os.path.join(self._dir_path, name)
                with contextlib.suppress(FileNotFoundError):
                    self._disk.remove(path)
                    removed.append(path)
                    log.warning("removed unfinished snapshot file %s", path)
        return tuple(removed)

    def list(self) -> list[tuple[int, int, str]]:
        """``(index, term, path)`` of every snapshot file, oldest first."""
        found = []
        for name in self._disk.list_dir(self._dir_path):
            match = _NAME.match(name)
            if match is not None:
                found.append(
                    (
                        int(match.group(1), 16),
                        int(match.group(2), 16),
                        os.path.join(self._dir_path, name),
                    )
                )
        found.sort()
        return found

    def save(self, snapshot: Snapshot) -> str:
        """Write ``snapshot`` durably and apply retention; returns its path."""
        if not isinstance(snapshot, Snapshot):
            raise StorageArgumentError(f"expected a Snapshot, got {type(snapshot).__name__}")
        if snapshot.meta.index == 0:
            raise StorageArgumentError("cannot save the empty snapshot (index 0)")
        if len(snapshot.data) > self._size_max:
            raise StorageArgumentError(
                f"snapshot data of {len(snapshot.data)} bytes exceeds "
                f"snapshot_size_bytes_max {self._size_max}"
            )
        contents = encode_snapshot(snapshot)
        name = snapshot_file_name(snapshot.meta.index, snapshot.meta.term)
        path = os.path.join(self._dir_path, name)
        try:
            write_atomically(path, contents, temp_suffix=TEMP_SUFFIX, disk=self._disk)
        except OSError as exc:
            raise SnapshotError(f"{path}: cannot save snapshot: {exc}") from exc
        self._apply_retention()
        return path

    def _apply_retention(self) -> None:
        files = self.list()
        for _, _, path in files[: max(0, len(files) - self._retained_max)]:
            with contextlib.suppress(FileNotFoundError):
                self._disk.remove(path)
        # Not fsyncing the directory here: an old snapshot that reappears after
        # a crash is harmless and is deleted by the next save.

    def read(self, path: str) -> Snapshot:
        """Read and verify one snapshot file; the header must agree with its name."""
        try:
            size = self._disk.file_size(path)
            size_max = HEADER_SIZE_BYTES + CONF_STATE_SIZE_BYTES_MAX + self._size_max
            if size > size_max:
                raise SnapshotCorruptError(
                    path, f"file is {size} bytes, over the bound of {size_max}"
                )
            if isinstance(self._disk, OsDisk):
                snapshot = _read_os_file(path, self._size_max)
            else:
                raw = self._disk.read_file(path)
                snapshot = decode_snapshot(path, raw, snapshot_size_bytes_max=self._size_max)
        except OSError as exc:
            raise SnapshotError(f"{path}: cannot read snapshot: {exc}") from exc
        expected = snapshot_file_name(snapshot.meta.index, snapshot.meta.term)
        if os.path.basename(path) != expected:
            raise SnapshotCorruptError(path, f"header says index/term of {expected}")
        return snapshot

    def load(self, index: int, term: int) -> Snapshot:
        """The snapshot at exactly ``(index, term)``; raises if missing or damaged."""
        path = os.path.join(self._dir_path, snapshot_file_name(index, term))
        if os.path.basename(path) not in self._disk.list_dir(self._dir_path):
            raise SnapshotNotFoundError(f"{path}: no snapshot at index {index} term {term}")
        return self.read(path)

    def load_latest(self, accept: Callable[[int, int], bool] | None = None) -> SnapshotLoad:
        """The newest valid snapshot (among those ``accept(index, term)`` allows).

        Damaged files are skipped, logged and listed in the result's
        ``skipped``; an older valid snapshot is returned instead.
        """
        skipped: list[SkippedSnapshot] = []
        for index, term, path in reversed(self.list()):
            if accept is not None and not accept(index, term):
                continue
            try:
                snapshot = self.read(path)
            except SnapshotError as exc:
                log.warning("skipping damaged snapshot: %s", exc)
                skipped.append(SkippedSnapshot(path=path, reason=str(exc)))
                continue
            return SnapshotLoad(snapshot=snapshot, path=path, skipped=tuple(skipped))
        return SnapshotLoad(snapshot=None, path=None, skipped=tuple(skipped))
