"""Deadlines that travel with the call, and timeouts measured on a Clock.

An overall deadline is stored in a :class:`contextvars.ContextVar`, so every
coroutine (and every task created from it) sees the deadline of the call it
serves. A nested timeout is clipped to the outer deadline: a nested retry or
per-try timeout can never outlive the request that started it, as gRPC
deadline propagation guarantees across hops.

>>> import asyncio
>>> from syndic.traffic.clock import ManualClock
>>> from syndic.traffic import deadline
>>> clock = ManualClock()
>>> async def inner() -> float | None:
...     return deadline.remaining_s()
>>> async def outer() -> float | None:
...     async with deadline.timeout(2.0, clock=clock):
...         async with deadline.timeout(10.0, clock=clock):  # clipped to 2 s
...             return await inner()
>>> asyncio.run(outer())
2.0
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import DeadlineExceededError, RuleError

T = TypeVar("T")

# A timeout longer than a day is almost certainly a unit mistake (ms passed as s).
TIMEOUT_S_MAX = 86_400.0


class Deadline:
    """An absolute point on a clock's timeline after which the call is late."""

    __slots__ = ("clock", "enforcer", "expires_at_s")

    def __init__(self, clock: Clock, expires_at_s: float) -> None:
        self.clock = clock
        self.expires_at_s = expires_at_s
        # The task whose timeout scope cancels on expiry; a scope in the same
        # task that inherits this deadline needs no watcher of its own.
        self.enforcer: asyncio.Task[Any] | None = None

    @classmethod
    def after(cls, timeout_s: float, clock: Clock) -> Deadline:
        """A deadline ``timeout_s`` from now; raises RuleError on a bad timeout."""
        check_timeout_s("timeout_s", timeout_s)
        return cls(clock, clock.now_s() + timeout_s)

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at_s - self.clock.now_s())

    def expired(self) -> bool:
        return self.clock.now_s() >= self.expires_at_s

    def __repr__(self) -> str:
        return f"Deadline(expires_at_s={self.expires_at_s!r})"


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "syndic_traffic_deadline", default=None
)


def check_timeout_s(path: str, timeout_s: float) -> None:
    """Reject NaN, infinities, non-positive and absurd timeouts with the field path."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise RuleError(path, f"must be a number of seconds, got {type(timeout_s).__name__}")
    if not math.isfinite(timeout_s) or timeout_s <= 0 or timeout_s > TIMEOUT_S_MAX:
        raise RuleError(path, f"must be in (0, {TIMEOUT_S_MAX:g}] seconds, got {timeout_s!r}")


def current() -> Deadline | None:
    """The deadline of the call being served in this context, if any."""
    return _current.get()


def remaining_s() -> float | None:
    """Seconds left before the current deadline, or None when there is none."""
    deadline = _current.get()
    return None if deadline is None else deadline.remaining_s()


def clipped(timeout_s: float | None, clock: Clock) -> Deadline | None:
    """The earlier of ``now + timeout_s`` and the current context deadline."""
    outer = _current.get()
    if timeout_s is None:
        return outer
    expires_at_s = clock.now_s() + timeout_s
    if outer is not None and outer.expires_at_s <= expires_at_s:
        return outer
    return Deadline(clock, expires_at_s)


@contextlib.contextmanager
def scope(timeout_s: float | None, *, clock: Clock | None = None) -> Iterator[Deadline | None]:
    """Publish a (clipped) deadline to nested code without enforcing it.

    For synchronous callers, which cannot be interrupted: retries and
    nested timeouts still see the deadline and stop in time.
    """
    if timeout_s is not None:
        check_timeout_s("timeout_s", timeout_s)
    deadline = clipped(timeout_s, default_clock(clock))
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


class timeout:  # noqa: N801 - shaped like asyncio.timeout
    """``async with timeout(s, clock=c):`` — cancel the body when time is up.

    The deadline is the earlier of ``now + timeout_s`` and the enclosing
    deadline, and it is published to nested code through the context
    variable while the body runs. Expiry cancels the body and surfaces as
    :class:`DeadlineExceededError`; a cancellation from outside stays a
    cancellation (the same ``uncancel`` bookkeeping as ``asyncio.timeout``).
    ``timeout_s=None`` only inherits the enclosing deadline. ``clock``
    defaults to the monotonic clock.
    """

    __slots__ = ("_cancelling", "_clock", "_deadline", "_expired", "_task", "_token", "_watcher")

    def __init__(self, timeout_s: float | None, *, clock: Clock | None = None) -> None:
        if timeout_s is not None:
            check_timeout_s("timeout_s", timeout_s)
        clock = default_clock(clock)
        self._clock = clock
        self._deadline = clipped(timeout_s, clock)
        self._token: contextvars.Token[Deadline | None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0

    @property
    def deadline(self) -> Deadline | None:
        return self._deadline

    async def __aenter__(self) -> timeout:
        deadline = self._deadline
        if deadline is not None and deadline.expired():
            raise DeadlineExceededError(
                f"deadline passed {-(deadline.expires_at_s - self._clock.now_s()):.3f}s "
                "before the call started"
            )
        self._token = _current.set(deadline)
        if deadline is not None:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("syndic.traffic.deadline.timeout needs a running task")
            if deadline.enforcer is task:
                return self  # an enclosing scope in this task already enforces it
            if deadline.enforcer is None:
                deadline.enforcer = task
            self._task = task
            self._cancelling = task.cancelling()
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(deadline.remaining_s())
            )
        return self

    async def _watch(self, delay_s: float) -> None:
        await self._clock.sleep(delay_s)
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        # asyncio.Timeout: only our own cancel becomes a timeout error.
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise DeadlineExceededError(
                f"deadline exceeded at t={self._clock.now_s():.3f}s"
            ) from exc


async def run_with_timeout(
    fn: Callable[[], Awaitable[T]], timeout_s: float | None, *, clock: Clock | None = None
) -> T:
    """Await ``fn()`` under ``timeout(timeout_s)``; the common one-shot form."""
    if timeout_s is None and _current.get() is None:
        return await fn()
    async with timeout(timeout_s, clock=clock):
        return await fn()
