"""A member's simulated disk: the storage port (:class:`syndic.storage.disk.Disk`)
in memory, with the faults real disks have.

The simulated members persist through the production ``Wal`` and
``SnapshotStore`` and restart through the production ``recover()``, so the
WAL's framing, CRCs, torn-tail repair and replay all run under the faults:

* **lost unsynced writes**: file bytes and directory entries reach the
  "platter" only when ``fsync``/``fsync_dir`` says so; :meth:`SimDisk.crash`
  throws the rest away;
* **torn last record**: with faults on, a crash may first flush a random
  byte-prefix of a file's unsynced tail, optionally followed by zeros (blocks
  allocated but never written), which cuts the last record anywhere;
* **bit flips**: :meth:`SimDisk.flip_bit` damages one durable byte; the WAL's
  CRCs must catch it and recovery must name the file and offset;
* **fsync failures**: an armed failure makes the next ``fsync`` raise ``EIO``;
  the WAL then refuses further use and the member must stop.

Files are modelled as inodes (a rename moves the inode), and every file is
only ever appended to between syncs (the storage layer truncates through
:meth:`truncate`, which syncs), so a file's synced bytes are always a prefix
of its current bytes.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndic.storage.errors import WalLockedError
from syndic.storage.wal import SECTOR_SIZE_BYTES

if TYPE_CHECKING:
    import random

# A runtime that never syncs would grow the page cache without bound; a sound
# runtime syncs at least once per Ready, so this many unsynced bytes in one
# file is a bug in the runtime, not a workload.
UNSYNCED_BYTES_MAX = 64 * 1024 * 1024

# A torn crash leaves zeros after the kept bytes this often (the rest of the
# time the file simply ends early); zeros start on a sector boundary.
ZEROED_TAIL_SHARE = 0.3


class DiskError(RuntimeError):
    """The storage layer used the simulated disk in a way no real disk allows."""


@dataclass(slots=True)
class _Inode:
    data: bytearray
    synced_size: int = 0


@dataclass(frozen=True, slots=True)
class CrashReport:
    """What a crash did to the unsynced state."""

    unsynced_bytes_lost: int
    flushed_bytes: int
    torn: bool


def _split(path: str) -> tuple[str, str]:
    head, name = os.path.split(path)
    return head or "/", name


class SimDisk:
    """An in-memory file system for one member. Paths are absolute strings.

    >>> from syndic.raft import Entry, HardState
    >>> from syndic.storage import Wal
    >>> disk = SimDisk()
    >>> with Wal.open("/wal", disk=disk) as wal:
    ...     wal.save(HardState(term=1, vote=1, commit=0), [Entry(term=1, index=1)])
    >>> _ = disk.crash(None)
    >>> with Wal.open("/wal", disk=disk) as wal:
    ...     [e.index for e in wal.read_all().entries]
    [1]
    """

    __slots__ = (
        "_dirs",
        "_durable_dirs",
        "_fail_next_fsync",
        "_handles",
        "_locks",
        "_next_handle",
        "bytes_written",
        "fsyncs",
    )

    def __init__(self) -> None:
        # directory path -> {name: inode}; what a reader sees now ...
        self._dirs: dict[str, dict[str, _Inode]] = {"/": {}}
        # ... and what survives a crash (entries made durable by fsync_dir).
        self._durable_dirs: dict[str, dict[str, _Inode]] = {"/": {}}
        self._handles: dict[int, _Inode | str] = {}
        self._locks: set[str] = set()
        self._next_handle = 3
        self._fail_next_fsync = False
        self.fsyncs = 0
        self.bytes_written = 0

    # --- the Disk port ----------------------------------------------------

    def stat_dir(self, path: str) -> bool | None:
        if path in self._dirs:
            return True
        parent, name = _split(path)
        if name in self._dirs.get(parent, {}):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return None

    def make_dir(self, path: str) -> None:
        parent, _ = _split(path)
        if parent not in self._dirs:
            self.make_dir(parent)
        # Directory creation is made durable at once: the storage layer fsyncs
        # the parent right after, and nothing is decided in between.
        self._dirs.setdefault(path, {})
        self._durable_dirs.setdefault(path, {})

    def list_dir(self, path: str) -> list[str]:
        return sorted(self._dir(path))

    def lock(self, dir_path: str, lock_name: str) -> int:
        if dir_path in self._locks:
            raise WalLockedError(dir_path, "WAL directory is in use (lock held by this process)")
        self._locks.add(dir_path)
        return self._new_handle(dir_path)

    def open_write(self, path: str, *, create: bool) -> int:
        parent, name = _split(path)
        entries = self._dir(parent)
        if create:
            entries[name] = _Inode(bytearray())
        elif name not in entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return self._new_handle(entries[name])

    def write(self, handle: int, data: bytes | bytearray | memoryview) -> None:
        inode = self._inode(handle)
        inode.data += data
        self.bytes_written += len(data)
        if len(inode.data) - inode.synced_size > UNSYNCED_BYTES_MAX:
            raise DiskError(f"more than {UNSYNCED_BYTES_MAX} unsynced bytes in one file")

    def fsync(self, handle: int) -> None:
        inode = self._inode(handle)
        self._maybe_fail()
        inode.synced_size = len(inode.data)
        self.fsyncs += 1

    def close(self, handle: int) -> None:
        target = self._handles.pop(handle, None)
        if isinstance(target, str):
            self._locks.discard(target)

    def fsync_dir(self, path: str) -> None:
        self._maybe_fail()
        self._durable_dirs[path] = dict(self._dir(path))

    def read_file(self, path: str) -> bytes:
        return bytes(self._lookup(path).data)

    def file_size(self, path: str) -> int:
        return len(self._lookup(path).data)

    def truncate(self, path: str, size_bytes: int) -> None:
        inode = self._lookup(path)
        self._maybe_fail()
        del inode.data[size_bytes:]
        inode.synced_size = len(inode.data)

    def rename(self, source: str, target: str) -> None:
        src_dir, src_name = _split(source)
        dst_dir, dst_name = _split(target)
        inode = self._dir(src_dir).pop(src_name, None)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        self._dir(dst_dir)[dst_name] = inode

    def remove(self, path: str) -> None:
        parent, name = _split(path)
        if self._dir(parent).pop(name, None) is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)

    # --- faults -----------------------------------------------------------

    def fail_next_fsync(self) -> None:
        """Make the next fsync (of a file or a directory) fail with EIO."""
        self._fail_next_fsync = True

    def crash(self, rng: random.Random | None) -> CrashReport:
        """Power loss: keep what was synced; with ``rng`` (disk faults on), each
        file may also keep a random prefix of its unsynced tail, then zeros."""
        lost = flushed = 0
        torn = False
        self._dirs = {path: dict(entries) for path, entries in self._durable_dirs.items()}
        for entries in self._dirs.values():
            for inode in entries.values():
                unsynced = len(inode.data) - inode.synced_size
                if unsynced <= 0:
                    continue
                keep = 0
                zeros = 0
                if rng is not None:
                    keep = rng.randint(0, unsynced)
                    if keep < unsynced and rng.random() < ZEROED_TAIL_SHARE:
                        # The file was extended but later sectors never written:
                        # the kept bytes end on a sector boundary, zeros follow.
                        end = inode.synced_size + keep
                        keep = max(0, end - end % SECTOR_SIZE_BYTES - inode.synced_size)
                        zeros = rng.randint(1, unsynced - keep)
                    torn = torn or keep < unsynced
                flushed += keep
                lost += unsynced - keep
                del inode.data[inode.synced_size + keep :]
                inode.data += bytes(zeros)
                inode.synced_size = len(inode.data)
        self._handles.clear()
        self._locks.clear()
        self._fail_next_fsync = False
        return CrashReport(unsynced_bytes_lost=lost, flushed_bytes=flushed, torn=torn and lost > 0)

    def flip_bit(self, path: str, offset: int, bit: int) -> None:
        """Damage one durable byte, as a latent sector error would."""
        inode = self._lookup(path)
        if not 0 <= offset < inode.synced_size or not 0 <= bit < 8:
            raise DiskError(f"cannot flip bit {bit} at {offset} of {path} ({inode.synced_size} B)")
        inode.data[offset] ^= 1 << bit

    def synced_size(self, path: str) -> int:
        return self._lookup(path).synced_size

    # --- internals --------------------------------------------------------

    def _maybe_fail(self) -> None:
        if self._fail_next_fsync:
            self._fail_next_fsync = False
            raise OSError(errno.EIO, "simulated fsync failure")

    def _new_handle(self, target: _Inode | str) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = target
        return handle

    def _inode(self, handle: int) -> _Inode:
        target = self._handles.get(handle)
        if not isinstance(target, _Inode):
            raise OSError(errno.EBADF, f"bad file handle {handle}")
        return target

    def _dir(self, path: str) -> dict[str, _Inode]:
        entries = self._dirs.get(path)
        if entries is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return entries

    def _lookup(self, path: str) -> _Inode:
        parent, name = _split(path)
        inode = self._dir(parent).get(name)
        if inode is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return inode
