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
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

from syndic.traffic.clock import Clock
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.errors import RuleError

P = ParamSpec("P")
T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Fallback(Generic[T]):
    """See the module docstring."""

    __slots__ = (
        "_clock",
        "_handler",
        "_last_good",
        "_last_good_at_s",
        "_max_age_s",
        "_on",
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
            if clock is None:
                raise RuleError("fallback.clock", "is required with last_good_max_age_s")
        self._value = value
        self._handler = handler
        self._max_age_s = last_good_max_age_s
        self._clock = clock
        self._on = tuple(cls for cls in on if issubclass(cls, Exception))
        self._last_good: T = MISSING
        self._last_good_at_s = 0.0
        self.used_total = 0

    def remember(self, result: T) -> None:
        """Keep ``result`` as the last good answer (when last-good is enabled)."""
        if self._max_age_s is not None and self._clock is not None:
            self._last_good = result
            self._last_good_at_s = self._clock.now_s()

    def _fresh_last_good(self) -> Any:
        if self._last_good is MISSING or self._clock is None or self._max_age_s is None:
            return MISSING
        if self._clock.now_s() - self._last_good_at_s > self._max_age_s:
            return MISSING
        return self._last_good

    def handles(self, exc: BaseException) -> bool:
        # Only Exceptions: cancellation and interrupts always propagate.
        return isinstance(exc, Exception) and isinstance(exc, self._on)

    async def recover(self, exc: BaseException) -> T:
        """The fallback answer for ``exc``, or ``exc`` re-raised when none applies."""
        if not self.handles(exc):
            raise exc
        result = self._fresh_last_good()
        if result is not MISSING:
            self.used_total += 1
            return result  # type: ignore[no-any-return]
        if self._handler is not None:
            answer = self._handler(exc)
            if inspect.isawaitable(answer):
                answer = await answer
            self.used_total += 1
            return answer
        if self._value is not MISSING:
            self.used_total += 1
            return self._value
        raise exc

    def recover_sync(self, exc: BaseException) -> T:
        """Synchronous :meth:`recover`; a coroutine handler is an error here."""
        if not self.handles(exc):
            raise exc
        result = self._fresh_last_good()
        if result is not MISSING:
            self.used_total += 1
            return result  # type: ignore[no-any-return]
        if self._handler is not None:
            answer = self._handler(exc)
            if inspect.isawaitable(answer):
                close = getattr(answer, "close", None)
                if close is not None:
                    close()
                raise TypeError("a coroutine fallback handler cannot serve a synchronous call")
            self.used_total += 1
            return answer
        if self._value is not MISSING:
            self.used_total += 1
            return self._value
        raise exc

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            return await self.recover(exc)
        self.remember(result)
        return result

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            return self.recover_sync(exc)
        self.remember(result)
        return result

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function or coroutine function."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call_sync(fn, *args, **kwargs)

        return wrapper
