"""Hedged requests: when the first attempt is slow, race a second one.

The first attempt starts at once. If no attempt has answered after
``delay_s``, another starts, up to ``max_hedges`` extra attempts. The first
success wins and every other attempt is cancelled (and awaited, so none
outlives the call). This follows gRPC's hedging policy (gRFC A6): an
attempt that fails with a non-fatal error (``hedge_on``) starts the next
hedge at once instead of waiting out the delay; a fatal error ends the call.
Each hedge is extra load, so with a :class:`RetryBudget` every hedge spends
a retry token, and a hedge the budget refuses is not sent ("The Tail at
Scale", Dean & Barroso 2013, bounds hedges to a small percentage).

Hedge only idempotent operations: two attempts may both reach the callee.

>>> import asyncio
>>> from syndic.traffic.clock import ManualClock
>>> clock = ManualClock()
>>> hedge = Hedge(HedgeConfig(delay_s=0.05, max_hedges=1), clock=clock)
>>> async def main() -> str:
...     async def lookup() -> str:
...         return "answer"
...     return await hedge.call(lookup)
>>> asyncio.run(main())
'answer'
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from syndic.traffic import drivers
from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.errors import RuleError
from syndic.traffic.stages import ASYNC, Admission, Stage

P = ParamSpec("P")
T = TypeVar("T")

# gRPC caps maxAttempts at 5 for hedging; more parallel copies of one
# request multiply load for little tail gain.
MAX_HEDGES_MAX = 4


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    delay_s: float
    max_hedges: int = 1

    def __post_init__(self) -> None:
        check_timeout_s("delay_s", self.delay_s)
        if isinstance(self.max_hedges, bool) or not isinstance(self.max_hedges, int):
            raise RuleError(
                "max_hedges", f"must be an integer, got {type(self.max_hedges).__name__}"
            )
        if not 1 <= self.max_hedges <= MAX_HEDGES_MAX:
            raise RuleError(
                "max_hedges", f"must be in [1, {MAX_HEDGES_MAX}], got {self.max_hedges}"
            )


class Hedge(Stage):
    """Runs up to ``1 + max_hedges`` staggered attempts; first success wins.

    ``await hedge.call(fn, ...)`` or ``@hedge`` on a coroutine function.
    There is no blocking form: racing needs concurrency, and the blocking
    driver runs a hedge stage's inner part once. ``clock`` (which times the
    delay) defaults to the monotonic clock.
    """

    races = True
    wraps = True

    __slots__ = (
        "_budget",
        "_clock",
        "_counts_requests",
        "_hedge_on",
        "_stages",
        "config",
        "hedges_sent",
    )

    def __init__(
        self,
        config: HedgeConfig,
        *,
        clock: Clock | None = None,
        budget: RetryBudget | None = None,
        hedge_on: tuple[type[BaseException], ...] = (Exception,),
        counts_requests: bool = True,
    ) -> None:
        self.config = config
        self._clock = default_clock(clock)
        self._budget = budget
        self._hedge_on = tuple(hedge_on)
        self._counts_requests = counts_requests
        self.hedges_sent = 0
        self._stages = (self,)

    def _may_hedge(self) -> bool:
        return self._budget is None or self._budget.try_spend()

    def enter(self, admission: Admission = ASYNC) -> None:
        """Count the request in the budget that hedges spend from (Stage protocol)."""
        if self._budget is not None and self._counts_requests:
            self._budget.record_request()

    def call(
        self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]:
        """Await the first successful attempt of ``fn(*args, **kwargs)``."""
        return drivers.run(self._stages, fn, args, kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate a coroutine function."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("hedging races concurrent attempts: decorate a coroutine function")
        return drivers.decorate_stages(self._stages, fn)

    async def race(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Race staggered copies of ``attempt()`` (the asyncio driver calls this)."""
        loop = asyncio.get_running_loop()

        running: set[asyncio.Future[T]] = {asyncio.ensure_future(attempt())}
        hedges_left = self.config.max_hedges
        timer: asyncio.Task[None] | None = None
        last_error: BaseException | None = None
        try:
            while running:
                if hedges_left and timer is None:
                    timer = loop.create_task(self._clock.sleep(self.config.delay_s))
                waiting: set[asyncio.Future[Any]] = set(running)
                if timer is not None:
                    waiting.add(timer)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                launch = False
                if timer is not None and timer in done:
                    timer = None
                    launch = True
                for task in running & done:
                    running.discard(task)
                    if task.cancelled():
                        last_error = asyncio.CancelledError()
                        continue
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, self._hedge_on):
                        raise error  # fatal: no other attempt will do better
                    last_error = error
                    launch = True  # gRFC A6: a non-fatal failure sends the next hedge now
                if launch and hedges_left:
                    if self._may_hedge():
                        hedges_left -= 1
                        self.hedges_sent += 1
                        running.add(asyncio.ensure_future(attempt()))
                        if timer is not None:
                            timer.cancel()
                            timer = None
                    else:
                        hedges_left = 0
            assert last_error is not None
            raise last_error
        finally:
            leftovers: list[asyncio.Future[Any]] = list(running)
            if timer is not None:
                leftovers.append(timer)
            for future in leftovers:
                future.cancel()
            if leftovers:
                # Wait for the losers to unwind so none outlives the call.
                await asyncio.wait(leftovers)
