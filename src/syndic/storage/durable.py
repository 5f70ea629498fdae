"""Writing files so that a crash leaves either the old file or the new one.

The sequence (write a temporary file, fsync it, rename it over the target,
fsync the directory) is what makes the rename itself durable; every file
syndic replaces in place (WAL segment heads, snapshots, saved snapshots,
a member's identity) goes through :func:`write_atomically`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

FsyncFn = Callable[[int], None]

TEMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (it may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str | os.PathLike[str], fsync: FsyncFn = os.fsync) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    fsync: FsyncFn = os.fsync,
    temp_suffix: str = TEMP_SUFFIX,
) -> None:
    """Replace ``path`` with ``data`` durably; on failure the temporary file is removed
    and the exception propagates, leaving ``path`` as it was."""
    target = os.fspath(path)
    temp_path = target + temp_suffix
    try:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
            fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(target)), fsync)
