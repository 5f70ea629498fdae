"""Passing a lock's fencing token to the storage it guards.

A lock alone cannot make a write safe: a holder paused (GC, SIGSTOP, a slow
disk) past its lease's TTL still believes it holds the lock while the next
holder writes. The storage must refuse the late writer; it can, if every
write carries the holder's fencing token (the lock key's create revision,
strictly larger for each later acquisition) and the storage refuses a token
below the highest it has accepted (Kleppmann, "How to do distributed
locking", 2016).

- :class:`TokenGate` is that rule in memory, for a resource in this process.
- :class:`FencedFile` applies it to a file: the highest accepted token is
  kept next to the file and checked and updated under an exclusive
  ``flock``, so writers in several processes are fenced too.
- For keys in the store itself, :meth:`Lock.is_owner` in a Txn is exact.

Example::

    target = FencedFile("/srv/report.csv")
    async with Lock(session, "report") as lock:
        target.write(lock.fencing_token, render())
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from syndic.client.concurrency.errors import StaleTokenError
from syndic.client.errors import InvalidRequestError

# The suffix of the file that remembers the highest token accepted.
TOKEN_FILE_SUFFIX: Final = ".fence"


def _check_token(token: object) -> int:
    if type(token) is not int or token <= 0:
        raise InvalidRequestError(f"a fencing token is a positive int, got {token!r}")
    return token


class TokenGate:
    """Accepts a token not older than the highest accepted so far; thread-safe.

    Equal tokens are accepted: one holder writes many times under one token.
    """

    def __init__(self) -> None:
        self._highest = 0
        self._mutex = threading.Lock()

    @property
    def highest(self) -> int:
        return self._highest

    def admit(self, token: int) -> None:
        """Accept ``token`` (remembering it) or raise StaleTokenError."""
        token = _check_token(token)
        with self._mutex:
            if token < self._highest:
                raise StaleTokenError(token, self._highest)
            self._highest = token


class FencedFile:
    """A file whose writes carry a fencing token; stale writers are refused."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path)
        self.token_path = self.path.with_name(self.path.name + TOKEN_FILE_SUFFIX)

    def highest_token(self) -> int:
        try:
            return int(self.token_path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def write(self, token: int, data: bytes | str) -> None:
        """Replace the file's content if ``token`` is not stale; atomic (rename)."""
        payload = _payload(data)

        def replace() -> None:
            temporary = self.path.with_name(f".{self.path.name}.{token}.tmp")
            temporary.write_bytes(payload)
            os.replace(temporary, self.path)

        self._fenced(token, replace)

    def append(self, token: int, data: bytes | str) -> None:
        """Append to the file if ``token`` is not stale: a log of the holders' writes,
        in the order the file accepted them."""
        payload = _payload(data)

        def append() -> None:
            with self.path.open("ab") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())

        self._fenced(token, append)

    def _fenced(self, token: int, action: Callable[[], None]) -> None:
        """Run ``action`` under an exclusive flock of the token file if ``token`` is not
        stale, then record it as the highest; StaleTokenError otherwise."""
        token = _check_token(token)
        fd = os.open(self.token_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            highest = int(os.pread(fd, 32, 0) or b"0")
            if token < highest:
                raise StaleTokenError(token, highest)
            action()
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(token).encode(), 0)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock


def _payload(data: object) -> bytes:
    payload = data.encode() if isinstance(data, str) else data
    if not isinstance(payload, bytes):
        raise InvalidRequestError(f"data must be bytes or str, got {type(data).__name__}")
    return payload
