"""Helpers shared by the storage tests."""

from __future__ import annotations

import os
import stat

from syndic.raft import Entry


class FsyncCounter:
    """An injectable fsync that really syncs and counts file vs directory calls."""

    def __init__(self) -> None:
        self.files = 0
        self.dirs = 0

    def __call__(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.dirs += 1
        else:
            self.files += 1
        os.fsync(fd)

    @property
    def total(self) -> int:
        return self.files + self.dirs


def no_fsync(fd: int) -> None:
    """For tests that do not measure durability: skip the real fsync to stay fast."""


def make_entries(first: int, count: int, term: int = 1, size: int = 8) -> list[Entry]:
    return [
        Entry(term=term, index=index, data=index.to_bytes(8, "big") * (size // 8 or 1))
        for index in range(first, first + count)
    ]


def segment_paths(wal_dir: str | os.PathLike[str]) -> list[str]:
    names = sorted(name for name in os.listdir(wal_dir) if name.endswith(".wal"))
    return [os.path.join(wal_dir, name) for name in names]
