"""Fallback: what to answer when the call fails or is refused.

Three sources, tried in this order:

1. the last good result, if one was seen within ``last_good_max_age_s``
   (a stale answer is often better than none: a cached price list, the
   previous recommendations);
2. ``handler(exc)``, a function (or coroutine function) given the error;
3. ``value``, a constant.

If none applies the original error propagates. Only errors of the types in
``on`` are handled (default ``Exception``, which includes every
:class:`~syndic.traffic.errors.RejectedError`, as Sentinel's
``blockHandler``/``fallback`` do); cancellation and ``KeyboardInterrupt``
are never swallowed.

>>> import asyncio
>>> fallback = Fallback(value=[])
>>> async def recommendations() -> list[str]:
...     raise ConnectionError("recommender down")
>>> asyncio.run(fallback.call(recommendations))
[]
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar

from syndic.traffic import drivers
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.errors import RuleError
from syndic.traffic.stages import Answer, DoAnswer, DoReturn, Stage

P = ParamSpec("P")
T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Fallback(Stage, Generic[T]):
    """See the module docstring.

    ``await fallback.call(fn, ...)`` for coroutines, ``fallback.call_sync(fn,
    ...)`` for blocking functions, ``@fallback`` on either. The last good
    answer's age is read on ``clock`` (the monotonic clock unless injected).
    """

    __slots__ = (
        "_clock",
        "_handler",
        "_last_good",
        "_last_good_at_s",
        "_max_age_s",
        "_on",
        "_stages",
        "_value",
        "used_total",
    )

    def __init__(
        self,
        *,
        value: T = MISSING,
        handler: Callable[[BaseException], T | Awaitable[T]] | None = None,
        last_good_max_age_s: float | None = None,
        clock: Clock | None = None,
        on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if value is MISSING and handler is None and last_good_max_age_s is None:
            raise RuleError(
                "fallback", "needs at least one of value, handler or last_good_max_age_s"
            )
        if handler is not None and not callable(handler):
            raise RuleError("fallback.handler", f"must be callable, got {type(handler).__name__}")
        if last_good_max_age_s is not None:
            check_timeout_s("fallback.last_good_max_age_s", last_good_max_age_s)
        self._value = value
        self._handler = handler
        self._max_age_s = last_good_max_age_s
        self._clock = default_clock(clock)
        self._on = tuple(cls for cls in on if issubclass(cls, Exception))
        self._last_good: T = MISSING
        self._last_good_at_s = 0.0
        self.used_total = 0
        self._stages = (self,)

    def remember(self, result: T) -> None:
        """Keep ``result`` as the last good answer (when last-good is enabled)."""
        if self._max_age_s is not None:
            self._last_good = result
            self._last_good_at_s = self._clock.now_s()

    def _fresh_last_good(self) -> Any:
        if self._last_good is MISSING or self._max_age_s is None:
            return MISSING
        if self._clock.now_s() - self._last_good_at_s > self._max_age_s:
            return MISSING
        return self._last_good

    def handles(self, exc: BaseException) -> bool:
        # Only Exceptions: cancellation and interrupts always propagate.
        return isinstance(exc, Exception) and isinstance(exc, self._on)

    def decide(self, exc: BaseException) -> Answer | None:
        """The answer for ``exc``, or None when ``exc`` must propagate."""
        if not self.handles(exc):
            return None
        result = self._fresh_last_good()
        if result is not MISSING:
            self.used_total += 1
            return DoReturn(result)
        if self._handler is not None:
            self.used_total += 1
            return DoAnswer(functools.partial(self._handler, exc))
        if self._value is not MISSING:
            self.used_total += 1
            return DoReturn(self._value)
        return None

    # -- the stage: decide around one call; the drivers run it -------------------

    def exit(self, ticket: object, result: Any, error: BaseException | None) -> Answer | None:
        """Remember a good result; answer for a handled error (Stage protocol)."""
        if error is None:
            self.remember(result)
            return None
        return self.decide(error)

    # -- calling -----------------------------------------------------------------

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)``; answer from the fallback if it fails."""
        return drivers.run(self._stages, fn, args, kwargs)

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the blocking ``fn(*args, **kwargs)``; a coroutine handler is a TypeError here."""
        return drivers.run_sync(self._stages, fn, args, kwargs)  # type: ignore[no-any-return]

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function or coroutine function."""
        return drivers.decorate_stages(self._stages, fn)
