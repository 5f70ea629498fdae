"""Serialise a member's state in a forked child process.

A snapshot of a large store takes seconds of Python to serialise (3.7 s for
1,000,000 keys of 256 B; 0.7 s for one key with 300,000 revisions). In a
worker thread that time is shared with the event loop through the
interpreter lock, so every snapshot slowed the member's writes and reads for
as long as it lasted, and freezing the store for the thread cost the loop
another 0.2 s per million keys.

``fork()`` is the capture instead: the child holds the state exactly as it is
at the fork, copy-on-write, and the parent goes on applying. The fork stops
the loop only to copy page tables (5 ms at 170 MB resident, 19 ms at 530 MB).
The child writes the bytes to an anonymous memory file and exits; the parent
reads them in one system call, in a worker thread, without the interpreter
lock.

The child runs only the serialiser and ``os._exit``: no event loop, no
logging (another thread may have held a handler's lock at the fork), no
``atexit`` handlers. ``syndic serve`` runs on POSIX systems only (uvloop),
all of which fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import tempfile
import traceback
from collections.abc import Callable
from typing import Final

# The child's exit codes.
_EXIT_OK: Final = 0
_EXIT_FAILED: Final = 70  # EX_SOFTWARE
_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
# Bytes per read of the result: Linux reads at most about 2 GiB per call.
_READ_BYTES_MAX: Final = 1 << 30


class SerializationError(Exception):
    """The child failed or was killed before it wrote its result."""


class ForkedSerialization:
    """One serialisation, in a child forked at construction; ``serialize``
    returns the bytes, or their pieces in order.

    Construct it where the state must be captured (on the event loop, at the
    applied index wanted), then ``await result()``; or ``cancel()``, which
    kills the child and, if nothing awaits the result, reaps it."""

    def __init__(self, serialize: Callable[[], bytes | list[bytes]]) -> None:
        self._out = _anonymous_file()
        # The worker thread's wait for the child, once result() started it.
        self._collection: asyncio.Future[bytes] | None = None
        # Once reaped, the child's pid may be another process's.
        self._reaped = False
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child, which never returns
            _run_child(serialize, self._out, parent)

    async def result(self) -> bytes:
        """The serialised bytes, once the child has exited; raises
        :class:`SerializationError` if it failed or was killed."""
        if self._collection is not None or self._reaped:
            raise RuntimeError("the result of a serialisation is collected once")
        self._collection = asyncio.get_running_loop().run_in_executor(None, self._collect)
        try:
            # Cancelled, the thread runs on and reaps the child killed below.
            return await asyncio.shield(self._collection)
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def ended(self) -> None:
        """Until the child is reaped: at once after :meth:`cancel`, unless a
        cancelled :meth:`result` left its thread to reap it. The child holds
        the member's descriptors (its WAL lock) until then, so a member that
        stops waits here before it may be started again."""
        if self._collection is not None:
            await asyncio.wait({self._collection})
            if not self._collection.cancelled():
                self._collection.exception()  # retrieved: its failure was reported

    def cancel(self) -> None:
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self._collection is None:
            with contextlib.suppress(SerializationError):
                self._collect()

    def _collect(self) -> bytes:
        try:
            try:
                _, status = os.waitpid(self.pid, 0)
            finally:
                self._reaped = True
            if os.WIFSIGNALED(status):
                signame = signal.Signals(os.WTERMSIG(status)).name
                raise SerializationError(f"snapshot child {self.pid} was killed by {signame}")
            code = os.waitstatus_to_exitcode(status)
            if code != _EXIT_OK:
                raise SerializationError(
                    f"snapshot child {self.pid} failed (exit {code}); its traceback is in the log"
                )
            return _read_all(self._out)
        finally:
            os.close(self._out)


def _anonymous_file() -> int:
    """A file that lives in memory, with no name, freed when closed."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("syndic-snapshot", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as file:  # pragma: no cover - Linux has memfd
        return os.dup(file.fileno())


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    if size <= _READ_BYTES_MAX:
        data = os.pread(fd, size, 0)
    else:
        data = b"".join(
            os.pread(fd, min(_READ_BYTES_MAX, size - at), at)
            for at in range(0, size, _READ_BYTES_MAX)
        )
    if len(data) != size:
        raise SerializationError(f"snapshot child wrote {size} bytes, {len(data)} read back")
    return data


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    """Have the kernel kill this child if the member dies (Linux), so a
    SIGKILLed member leaves no orphan serialising for seconds."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took hold
        os._exit(_EXIT_FAILED)


def _run_child(  # pragma: no cover - runs in the child
    serialize: Callable[[], bytes | list[bytes]], out: int, parent: int
) -> None:
    code = _EXIT_FAILED
    try:
        # Signals meant for the member (Ctrl-C reaches the whole process
        # group) stop the child outright, and never reach the parent's loop
        # through the wake-up descriptor the two share.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        # The child shares the member's descriptors (its ports, its data
        # directory's lock, its peers' connections): it must not outlive
        # the member, or a member killed and restarted at once would find
        # them taken. Closing them here instead would pull them from under
        # threads a library restarts in the child (grpcio's poller).
        _die_with_parent(parent)
        # A collection would touch every object, copying the parent's pages.
        gc.disable()
        # Pieces are written one by one: joined, they would be a second copy.
        result = serialize()
        for part in result if isinstance(result, list) else [result]:
            view = memoryview(part)
            while view:
                view = view[os.write(out, view) :]
        code = _EXIT_OK
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(2, f"snapshot child {os.getpid()}:\n{traceback.format_exc()}".encode())
    finally:
        os._exit(code)
