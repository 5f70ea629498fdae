"""The disk port: every file operation the WAL and the snapshot store make.

The storage layer reaches files only through a :class:`Disk`, so the same WAL
encoder, decoder and recovery run on the operating system (:class:`OsDisk`,
what ``syndic serve`` uses) and on the simulator's faulty disk
(``syndic.sim.simdisk.SimDisk``: lost unsynced writes, torn tails, bit flips,
failing fsyncs), as FoundationDB and TigerBeetle put their production storage
code inside their simulators.

The port is deliberately small and POSIX-shaped: files are written through a
handle (``open_write`` positions it at the end; ``write`` writes every byte),
read whole, and replaced only with ``rename``. A failed operation raises
``OSError``; the callers turn that into their own typed errors.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from typing import Protocol

from syndic.storage.errors import DataDirError, WalLockedError

FsyncFn = Callable[[int], None]

# Bytes of the lock file read back to name the process holding it.
_LOCK_HOLDER_BYTES_MAX = 32


class Disk(Protocol):
    """What syndic.storage needs from a file system. Paths are plain strings."""

    def stat_dir(self, path: str) -> bool | None:
        """None if ``path`` does not exist, else whether it is a usable
        (readable, writable, searchable) directory; raises NotADirectoryError
        when it is something else."""
        ...

    def make_dir(self, path: str) -> None:
        """Create ``path`` (and its parents), mode 0700."""
        ...

    def list_dir(self, path: str) -> list[str]: ...

    def lock(self, dir_path: str, lock_name: str) -> int:
        """Take the directory's exclusive lock; raises WalLockedError if held.
        The returned handle holds the lock until :meth:`close`."""
        ...

    def open_write(self, path: str, *, create: bool) -> int:
        """A write handle positioned at the end of ``path`` (truncated when ``create``)."""
        ...

    def write(self, handle: int, data: bytes | bytearray | memoryview) -> None:
        """Write every byte of ``data`` at the handle's position."""
        ...

    def fsync(self, handle: int) -> None: ...

    def close(self, handle: int) -> None: ...

    def fsync_dir(self, path: str) -> None:
        """Make the directory's entries (a rename, a new or removed file) durable."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def file_size(self, path: str) -> int: ...

    def truncate(self, path: str, size_bytes: int) -> None:
        """Cut ``path`` to ``size_bytes`` and make the file durable."""
        ...

    def rename(self, source: str, target: str) -> None: ...

    def remove(self, path: str) -> None:
        """Delete ``path``; FileNotFoundError if it is not there."""
        ...


class OsDisk:
    """The real file system. ``fsync`` is injectable so tests can count or fail syncs.

    Each method is one or two system calls: the WAL's append and fsync path
    costs the same as calling ``os`` directly (bench/wal.py measures it).
    """

    __slots__ = ("_fsync",)

    def __init__(self, fsync: FsyncFn = os.fsync) -> None:
        self._fsync = fsync

    def stat_dir(self, path: str) -> bool | None:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return os.access(path, os.R_OK | os.W_OK | os.X_OK)

    def make_dir(self, path: str) -> None:
        os.makedirs(path, mode=0o700)

    def list_dir(self, path: str) -> list[str]:
        return os.listdir(path)

    def lock(self, dir_path: str, lock_name: str) -> int:
        lock_path = os.path.join(dir_path, lock_name)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(lock_path, f"cannot open lock file: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raw = os.pread(fd, _LOCK_HOLDER_BYTES_MAX, 0)
            holder = raw.decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise WalLockedError(
                    dir_path, f"WAL directory is in use (lock held by pid {holder})"
                ) from exc
            raise DataDirError(lock_path, f"cannot lock: {exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def open_write(self, path: str, *, create: bool) -> int:
        if create:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd = os.open(path, os.O_WRONLY)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def write(self, handle: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:  # os.write may write fewer bytes than asked
            view = view[os.write(handle, view) :]

    def fsync(self, handle: int) -> None:
        self._fsync(handle)

    def close(self, handle: int) -> None:
        os.close(handle)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def file_size(self, path: str) -> int:
        return os.stat(path).st_size

    def truncate(self, path: str, size_bytes: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size_bytes)
            self._fsync(fd)
        finally:
            os.close(fd)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def remove(self, path: str) -> None:
        os.unlink(path)
