"""Stages: what each traffic component decides around one call, and nothing else.

Every component that wraps a call (circuit breaker, bulkhead, rate limit,
degrade switch, deadline, retry, hedging, fallback) is a :class:`Stage`:
plain code that decides and never waits. The drivers in
:mod:`syndic.traffic.drivers` carry the decisions out, one for coroutines
and one for blocking functions, so a component states its logic once
(STYLE 12; tenacity's ``iter()`` returning DoAttempt/DoSleep).

A stage answers two questions for the driver:

``enter(admission) -> ticket``
    May this call start? Return a ticket, the call's state in this stage,
    which the driver hands back to ``exit``; raise a
    :class:`~syndic.traffic.errors.RejectedError` to refuse. A stage whose
    ``detours`` is true may also return :data:`QUEUE` (only when
    ``admission.can_wait``: the asyncio driver then awaits
    ``wait_turn(admission)`` for the ticket) or an answer
    (:class:`DoReturn`, :class:`DoAnswer`) to answer without calling in.

``exit(ticket, result, error) -> action | None``
    The inner part ended, with ``result`` or with ``error`` (any
    ``BaseException``, cancellation included, so a stage can give back what
    it took). None lets the outcome stand; :class:`DoSleep` asks for another
    try of the inner part after a delay; an answer replaces the outcome.

A stage may publish a ``passive`` ticket while admitting needs no
decision and a success needs no record (see the attribute): the drivers
then skip both calls. ``timeout_s`` bounds each try of the inner part (the asyncio driver
cancels it; the blocking driver publishes it as the deadline, since it
cannot interrupt a blocking call), and a stage whose ``races`` is true is
handed the inner part to race copies of (hedging; the blocking driver just
runs it once).

>>> class Count(Stage):
...     __slots__ = ("calls",)
...     def __init__(self) -> None:
...         self.calls = 0
...     def enter(self, admission: Admission) -> None:
...         self.calls += 1
>>> from syndic.traffic.drivers import run_sync
>>> count = Count()
>>> run_sync((count,), lambda x: x * 2, (21,), {})
42
>>> count.calls
1
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from syndic.traffic.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Admission:
    """How a call asks to start: may it queue, and is it safe to repeat.

    ``can_wait`` is true for the asyncio driver only: a blocking caller
    never queues, since a blocking wait would stall its thread (and the
    event loop, if it runs on one). ``idempotent`` overrides the retry
    rule's own setting for this call (None: use the rule).
    """

    can_wait: bool
    idempotent: bool | None = None


_ADMISSIONS = {
    (can_wait, idempotent): Admission(can_wait, idempotent)
    for can_wait in (False, True)
    for idempotent in (None, False, True)
}


def admission(can_wait: bool, idempotent: bool | None = None) -> Admission:
    """The shared Admission value (no allocation on the call path)."""
    return _ADMISSIONS[(can_wait, idempotent)]


ASYNC = admission(True)
BLOCKING = admission(False)


class Detour:
    """A ticket that is not a ticket: the driver must do something first."""

    __slots__ = ()


class _Queue(Detour):
    __slots__ = ()

    def __repr__(self) -> str:
        return "QUEUE"


#: Returned by ``enter`` to ask the asyncio driver to ``await stage.wait_turn()``.
QUEUE = _Queue()


@dataclass(frozen=True, slots=True)
class DoSleep:
    """Wait ``delay_s`` seconds, then try the inner part again."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class DoReturn(Detour):
    """Answer with ``value`` instead of the outcome (or instead of calling in)."""

    value: Any


@dataclass(frozen=True, slots=True)
class DoAnswer(Detour):
    """Answer with ``fn()``; the asyncio driver awaits it if it is awaitable.

    A blocking caller cannot await, so there an awaitable answer is a
    TypeError (a coroutine fallback for a synchronous call).
    """

    fn: Callable[[], Any]


Answer = DoReturn | DoAnswer
Action = DoSleep | DoReturn | DoAnswer


class Stage:
    """Base of every stage: admits everything, lets every outcome stand."""

    __slots__ = ()

    #: ``enter`` may return QUEUE or an answer (the driver checks only then).
    detours: ClassVar[bool] = False
    #: ``race`` runs the inner part (hedging); the blocking driver ignores it.
    races: ClassVar[bool] = False
    #: Bound on each try of the inner part; None: inherit the caller's deadline.
    timeout_s: float | None = None
    #: ``timeout_s is not None or races``, kept as one flag because the
    #: drivers read it on every call.
    wraps: bool = False
    #: When not None: the ticket ``enter`` would return right now, with
    #: nothing to record if the call succeeds while it stays so. The drivers
    #: then skip ``enter``, and ``exit`` on success (a closed breaker whose
    #: window holds only successes: the hot path). Errors still reach
    #: ``exit``, which must let every outcome under a passive ticket stand
    #: (return None): a passive stage never retries or answers.
    passive: Any = None
    #: The clock timeouts and sleeps are measured on (stages that use them set it).
    _clock: Clock

    def enter(self, admission: Admission) -> Any:
        return None

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> Action | None:
        return None

    async def wait_turn(self, admission: Admission) -> Any:
        raise RuntimeError(f"{type(self).__name__} returned QUEUE but cannot queue")

    async def race(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await attempt()

    def sleep_sync(self, delay_s: float) -> None:
        """How the blocking driver waits out a DoSleep (injectable in tests)."""
        time.sleep(delay_s)
