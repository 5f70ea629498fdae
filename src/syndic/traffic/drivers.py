"""The two drivers that run stages: :func:`run` awaits, :func:`run_sync` blocks.

They are the only code in ``syndic.traffic`` that differs between
coroutines and blocking functions; every component decides in a
:class:`~syndic.traffic.stages.Stage` and calls these (STYLE 12). The
stages in ``stages`` nest outermost first: ``stages[0]`` wraps
``stages[1]``, which wraps ... the call ``fn(*args, **kwargs)``.

Per stage, a driver: enters it (a refusal propagates; QUEUE is awaited by
the asyncio driver; an answer is returned without calling in); runs the
inner part, under the stage's ``timeout_s`` if it has one; hands the
outcome to ``exit``; and then lets it stand, sleeps and tries the inner
part again (:class:`~syndic.traffic.stages.DoSleep`), or answers instead.

Where the two differ, and why:

* waiting: the asyncio driver awaits (queues, sleeps, coroutine answers);
  the blocking driver never queues (``Admission.can_wait`` is false) and
  sleeps with the stage's ``sleep_sync``;
* timeouts: the asyncio driver cancels a try at its deadline; the blocking
  one cannot interrupt a call, so it publishes the deadline to nested code
  and refuses to start a try once it has passed;
* hedging: only the asyncio driver can race copies of a try.

>>> import asyncio
>>> from syndic.traffic.stages import Stage
>>> async def double(x: int) -> int:
...     return x * 2
>>> asyncio.run(run((Stage(),), double, (21,), {}))
42
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from syndic.traffic import deadline as _deadline
from syndic.traffic.errors import DeadlineExceededError
from syndic.traffic.stages import (
    ASYNC,
    BLOCKING,
    QUEUE,
    Action,
    Admission,
    Detour,
    DoReturn,
    DoSleep,
    Stage,
)


async def run(
    stages: Sequence[Stage],
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    admission: Admission = ASYNC,
    depth: int = 0,
) -> Any:
    """Await ``fn(*args, **kwargs)`` through ``stages[depth:]`` (at least one stage)."""
    stage = stages[depth]
    ticket = stage.passive
    if ticket is None:
        ticket = stage.enter(admission)
        if stage.detours and isinstance(ticket, Detour):
            if ticket is QUEUE:
                ticket = await stage.wait_turn(admission)
            else:
                return await _answer(ticket)  # type: ignore[arg-type]
    depth += 1
    innermost = depth == len(stages)
    while True:
        try:
            if stage.wraps:
                result = await _wrapped(stage, stages, fn, args, kwargs, admission, depth)
            elif innermost:
                # ``f(*a, **k)`` copies ``k`` into a new dict: skip it when empty.
                result = await (fn(*args, **kwargs) if kwargs else fn(*args))
            else:
                result = await run(stages, fn, args, kwargs, admission, depth)
        except BaseException as error:
            action = stage.exit(ticket, None, error)
            if action is None:
                raise
        else:
            if stage.passive is not None:
                return result  # still passive: a success changes nothing
            action = stage.exit(ticket, result, None)
            if action is None:
                return result
        if type(action) is DoSleep:
            await stage._clock.sleep(action.delay_s)
            continue
        return await _answer(action)


async def _wrapped(
    stage: Stage,
    stages: Sequence[Stage],
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    admission: Admission,
    depth: int,
) -> Any:
    """One try of the inner part under the stage's timeout, raced if it hedges.

    Kept out of :func:`run` so the closure's cells do not slow every call.
    """

    def attempt() -> Awaitable[Any]:
        if depth == len(stages):
            return fn(*args, **kwargs)
        return run(stages, fn, args, kwargs, admission, depth)

    if stage.timeout_s is None:
        return await stage.race(attempt)
    async with _deadline.timeout(stage.timeout_s, clock=stage._clock):
        return await (stage.race(attempt) if stage.races else attempt())


def run_sync(
    stages: Sequence[Stage],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    admission: Admission = BLOCKING,
    depth: int = 0,
) -> Any:
    """Call ``fn(*args, **kwargs)`` through ``stages[depth:]`` (at least one stage), blocking."""
    stage = stages[depth]
    ticket = stage.passive
    if ticket is None:
        ticket = stage.enter(admission)
        if stage.detours and isinstance(ticket, Detour):
            if ticket is QUEUE:
                raise RuntimeError(f"{type(stage).__name__} asked a blocking caller to queue")
            return _answer_sync(ticket)  # type: ignore[arg-type]
    depth += 1
    innermost = depth == len(stages)
    while True:
        try:
            if stage.timeout_s is not None:
                result = _scoped_sync(stage, stages, fn, args, kwargs, admission, depth)
            elif innermost:
                result = fn(*args, **kwargs) if kwargs else fn(*args)
            else:
                result = run_sync(stages, fn, args, kwargs, admission, depth)
        except BaseException as error:
            action = stage.exit(ticket, None, error)
            if action is None:
                raise
        else:
            if stage.passive is not None:
                return result  # still passive: a success changes nothing
            action = stage.exit(ticket, result, None)
            if action is None:
                return result
        if type(action) is DoSleep:
            stage.sleep_sync(action.delay_s)
            continue
        return _answer_sync(action)


def _scoped_sync(
    stage: Stage,
    stages: Sequence[Stage],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    admission: Admission,
    depth: int,
) -> Any:
    """One try under the stage's deadline: published, and checked before the try starts."""
    with _deadline.scope(stage.timeout_s, clock=stage._clock) as deadline:
        if deadline is not None and deadline.expired():
            late_s = deadline.clock.now_s() - deadline.expires_at_s
            raise DeadlineExceededError(f"deadline passed {late_s:.3f}s before the try started")
        if depth == len(stages):
            return fn(*args, **kwargs)
        return run_sync(stages, fn, args, kwargs, admission, depth)


async def _answer(action: Action) -> Any:
    if type(action) is DoReturn:
        return action.value
    assert not isinstance(action, DoSleep)
    value = action.fn()  # type: ignore[union-attr]
    if inspect.isawaitable(value):
        value = await value
    return value


def _answer_sync(action: Action) -> Any:
    if type(action) is DoReturn:
        return action.value
    assert not isinstance(action, DoSleep)
    value = action.fn()  # type: ignore[union-attr]
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of the error
        raise TypeError("a coroutine fallback cannot answer a synchronous call")
    return value


def decorate(
    call: Callable[..., Awaitable[Any]], call_sync: Callable[..., Any], fn: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap ``fn`` with ``call`` if it is a coroutine function, else with ``call_sync``.

    Every component's ``@component`` decorator is this, so decorating a
    coroutine function keeps it a coroutine function and a plain one plain.
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await call(fn, *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call_sync(fn, *args, **kwargs)

    return wrapper


def decorate_stages(stages: Sequence[Stage], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``decorate`` for a fixed stage list: the wrapper calls the driver directly.

    A decorated coroutine function over one stage takes that stage's
    passive path itself, so a call on the hot path is one coroutine frame
    around ``fn``, not two; anything else goes through :func:`run`.
    """
    if not inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return run_sync(stages, fn, args, kwargs)

        return wrapper

    if len(stages) != 1:

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await run(stages, fn, args, kwargs)

        return async_wrapper

    (stage,) = stages

    @functools.wraps(fn)
    async def one_stage_wrapper(*args: Any, **kwargs: Any) -> Any:
        ticket = stage.passive
        if ticket is None:
            return await run(stages, fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            # Under a passive ticket every outcome stands (Stage.passive).
            stage.exit(ticket, None, error)
            raise
        if stage.passive is None:
            stage.exit(ticket, result, None)
        return result

    return one_stage_wrapper
