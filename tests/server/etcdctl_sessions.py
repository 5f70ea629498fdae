"""etcdctl runs that last: ``watch`` and ``elect`` print as events arrive and
stop only when told. A :class:`Background` process reads its output line by
line as it comes, so a test can wait for a line instead of sleeping, and then
stop the process and compare everything it printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Final

from tests.server.processes import ETCDCTL

# What one wait allows on a loaded 2-core machine, where three members, a
# test and a few etcdctl processes share the CPU. The waits end as soon as
# the line arrives; only a failing run waits this long.
WAIT_S: Final = 30.0
# Output kept per stream; a watch in these tests prints a few dozen lines,
# so a run past this is a runaway.
LINES_MAX: Final = 10_000


def etcdctl_argv(endpoints: str, *args: str) -> list[str]:
    return [ETCDCTL or "etcdctl", f"--endpoints={endpoints}", "--command-timeout=5s", *args]


def etcdctl_env() -> dict[str, str]:
    return dict(os.environ, ETCDCTL_API="3")


class Background:
    """One etcdctl process whose stdout and stderr are read as they come.

    Example::

        watch = Background(endpoints, "watch", "-i", interactive=True)
        watch.send("watch /a --prefix")
        watch.send("progress")
        watch.wait_for(lambda lines: any(x.startswith("progress notify") for x in lines))
        returncode, stdout, stderr = watch.end_input()
    """

    def __init__(self, endpoints: str, *args: str, interactive: bool = False) -> None:
        self.args = args
        self.process = subprocess.Popen(
            etcdctl_argv(endpoints, *args),
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=etcdctl_env(),
        )
        self._changed = threading.Condition()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                if len(lines) < LINES_MAX:
                    lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def send(self, line: str) -> None:
        """One line of input to an interactive etcdctl (``watch -i``)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(
        self, predicate: Callable[[list[str]], bool], what: str, timeout_s: float = WAIT_S
    ) -> None:
        """Return once ``predicate(stdout lines)`` holds; fail naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self.stdout):
                left_s = deadline - time.monotonic()
                if left_s <= 0 or (self.process.poll() is not None and not self._reading()):
                    raise AssertionError(
                        f"etcdctl {' '.join(self.args)}: no {what} in {timeout_s:.0f}s; "
                        f"exit {self.process.poll()}, stdout {self.stdout!r}, "
                        f"stderr {self.stderr[-20:]!r}"
                    )
                self._changed.wait(min(left_s, 1.0))

    def wait_for_tail(self, tail: list[str], timeout_s: float = WAIT_S) -> None:
        """Return once stdout ends with the lines ``tail``."""
        self.wait_for(lambda lines: lines[-len(tail) :] == tail, f"output ending {tail}", timeout_s)

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def _finish(self, timeout_s: float) -> tuple[int, str, str]:
        returncode = self.process.wait(timeout_s)
        for reader in self._readers:
            reader.join(timeout_s)
        with self._changed:
            return returncode, "".join(f"{x}\n" for x in self.stdout), "\n".join(self.stderr)

    def terminate(self, timeout_s: float = WAIT_S) -> tuple[int, str, str]:
        """SIGTERM (etcdctl elect resigns on it), then the exit code and all output."""
        self.process.send_signal(signal.SIGTERM)
        return self._finish(timeout_s)

    def end_input(self, timeout_s: float = WAIT_S) -> tuple[int, str, str]:
        """Close stdin of an interactive etcdctl, which then exits; its code and output."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self._finish(timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)
