"""Writing files so that a crash leaves either the old file or the new one.

The sequence (write a temporary file, fsync it, rename it over the target,
fsync the directory) is what makes the rename itself durable; every file
syndic replaces in place (WAL segment heads, snapshots, saved snapshots,
a member's identity) goes through :func:`write_atomically`.
"""

from __future__ import annotations

import contextlib
import os

from syndic.storage.disk import Disk, FsyncFn, OsDisk

TEMP_SUFFIX = ".tmp"

__all__ = ["TEMP_SUFFIX", "FsyncFn", "fsync_dir", "write_all", "write_atomically"]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (it may write fewer)."""
    OsDisk().write(fd, data)


def fsync_dir(path: str | os.PathLike[str], fsync: FsyncFn = os.fsync) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    OsDisk(fsync).fsync_dir(os.fspath(path))


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    fsync: FsyncFn = os.fsync,
    temp_suffix: str = TEMP_SUFFIX,
    disk: Disk | None = None,
) -> None:
    """Replace ``path`` with ``data`` durably; on failure the temporary file is removed
    and the exception propagates, leaving ``path`` as it was.

    ``disk`` defaults to the operating system (with ``fsync`` as its sync)."""
    io = disk if disk is not None else OsDisk(fsync)
    target = os.fspath(path)
    temp_path = target + temp_suffix
    try:
        handle = io.open_write(temp_path, create=True)
        try:
            io.write(handle, data)
            io.fsync(handle)
        finally:
            io.close(handle)
        io.rename(temp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            io.remove(temp_path)
        raise
    io.fsync_dir(os.path.dirname(os.path.abspath(target)))
