"""Typed errors of the storage layer.

Every error that concerns a file names it, and a corrupt WAL record names the
byte offset where the damage starts, so an operator can inspect it with
``xxd -s OFFSET FILE``.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised on purpose by syndic.storage."""


class StorageArgumentError(StorageError, ValueError):
    """A caller handed the storage layer a malformed or out-of-order value; nothing was written."""


class DataDirError(StorageError):
    """A data directory cannot be used (it is a file, unreadable, or not writable)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class WalLockedError(DataDirError):
    """Another process (or another open handle) holds the WAL directory's lock."""


class WalError(StorageError):
    """A write-ahead log operation failed."""


class WalClosedError(WalError):
    """The WAL was closed (or abandoned); it accepts no more calls."""


class WalCorruptError(WalError):
    """A WAL file holds bytes that are not a valid record where one must be.

    Raised for damage anywhere but the very tail of the last segment: such
    damage is never skipped, because the records after it would be replayed
    out of context (DESIGN: "never silently skipped in the middle of a log").
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class SnapshotError(StorageError):
    """A snapshot file operation failed."""


class SnapshotCorruptError(SnapshotError):
    """A snapshot file fails its header or checksum validation."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SnapshotNotFoundError(SnapshotError):
    """No snapshot file with the requested index and term exists."""


class RecoveryError(StorageError):
    """The WAL and the snapshot files do not add up to a state Raft can restart from."""
