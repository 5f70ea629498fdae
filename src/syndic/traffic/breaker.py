"""Circuit breaker: stop calling a dependency that is failing, probe it, recover.

The breaker is a state machine whose transitions live in one table,
:data:`TRANSITIONS` (state x event -> state); an input with no entry raises
:class:`BreakerProtocolError`, as h11 does for its connection states.

::

    CLOSED --threshold_exceeded--> OPEN --wait_elapsed--> HALF_OPEN
    HALF_OPEN --probes_succeeded--> CLOSED
    HALF_OPEN --probe_failed / half_open_timed_out--> OPEN
    any --reset--> CLOSED, any --force_open--> FORCED_OPEN, any --disable--> DISABLED

CLOSED records each call's outcome in a sliding window (the last N calls,
or the last T seconds as a ring of buckets; O(1) per call) and trips when,
with at least ``minimum_calls`` in the window, the failure ratio, the
failure count or the slow-call ratio reaches its threshold (Resilience4j's
CircuitBreakerConfig; Sentinel's ERROR_RATIO / ERROR_COUNT / SLOW_REQUEST_RATIO).
OPEN rejects every call with :class:`CircuitOpenError` until its wait
elapses (fixed, or growing geometrically with consecutive openings up to a
cap). HALF_OPEN admits at most ``half_open_probes`` calls in total and
rejects every other caller; ``half_open_successes`` probe successes close
the circuit and any probe failure reopens it.

Outcomes of calls admitted under an earlier state are dropped: a slow call
admitted while CLOSED that finishes during HALF_OPEN is not a probe.

The breaker never awaits, so the async path needs no lock: each method runs
to completion on the event loop. It is not thread-safe; give each thread or
loop its own breaker.

Calls go through ``await breaker.call(fn, ...)`` (coroutines),
``breaker.call_sync(fn, ...)`` (blocking functions), ``@breaker`` on
either kind, or ``with breaker:`` / ``async with breaker:`` around a block.
``CircuitBreaker(config)`` runs on the monotonic clock; tests inject a
:class:`~syndic.traffic.clock.ManualClock`:

>>> from syndic.traffic.clock import ManualClock
>>> clock = ManualClock()
>>> breaker = CircuitBreaker(
...     BreakerConfig(window_size=4, minimum_calls=2, failure_ratio=0.5, open_wait_s=10),
...     clock=clock,
... )
>>> def boom() -> None:
...     raise ConnectionError("refused")
>>> for _ in range(2):
...     try:
...         breaker.call_sync(boom)
...     except ConnectionError:
...         pass
>>> breaker.state
<State.OPEN: 'open'>
>>> clock.advance(10)
>>> breaker.call_sync(lambda: "ok")  # the single probe succeeds
'ok'
>>> breaker.state
<State.CLOSED: 'closed'>
"""

from __future__ import annotations

import contextvars
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from syndic.traffic import drivers
from syndic.traffic.clock import Clock, default_clock
from syndic.traffic.errors import CircuitOpenError, RuleError, TrafficError
from syndic.traffic.stages import ASYNC, BLOCKING, Admission, Stage
from syndic.traffic.validation import check_int, check_number

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

# Bounds: a window is an array held per breaker; a million calls or
# buckets is far past any useful statistic and caps memory at a few MB.
WINDOW_SIZE_MAX = 1_000_000
WINDOW_BUCKETS_MAX = 10_000
WINDOW_S_MAX = 86_400.0
OPEN_WAIT_S_MAX = 86_400.0
# Probes are real traffic sent to a dependency that just failed; more than
# a thousand defeats the point of half-open.
HALF_OPEN_PROBES_MAX = 1_000
MINIMUM_CALLS_MAX = WINDOW_SIZE_MAX
NAME_LENGTH_MAX = 200


class BreakerProtocolError(TrafficError):
    """An event arrived that the breaker's transition table has no entry for."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(
            f"circuit breaker: no transition for event {event.value!r} in {state.value!r}"
        )
        self.state = state
        self.event = event


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class Event(enum.Enum):
    THRESHOLD_EXCEEDED = "threshold_exceeded"
    WAIT_ELAPSED = "wait_elapsed"
    PROBES_SUCCEEDED = "probes_succeeded"
    PROBE_FAILED = "probe_failed"
    HALF_OPEN_TIMED_OUT = "half_open_timed_out"
    RESET = "reset"
    FORCE_OPEN = "force_open"
    DISABLE = "disable"


_C, _O, _H, _F, _D = (
    State.CLOSED,
    State.OPEN,
    State.HALF_OPEN,
    State.FORCED_OPEN,
    State.DISABLED,
)

#: The whole state machine. Operator events (reset, force_open, disable)
#: apply in every state, as Resilience4j's transitionTo* methods do.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (_C, Event.THRESHOLD_EXCEEDED): _O,
    (_O, Event.WAIT_ELAPSED): _H,
    (_H, Event.PROBES_SUCCEEDED): _C,
    (_H, Event.PROBE_FAILED): _O,
    (_H, Event.HALF_OPEN_TIMED_OUT): _O,
    **{(s, Event.RESET): _C for s in State},
    **{(s, Event.FORCE_OPEN): _F for s in State},
    **{(s, Event.DISABLE): _D for s in State},
}


@dataclass(frozen=True, slots=True)
class StateChange:
    """Emitted to listeners on every transition."""

    breaker: str
    from_state: State
    to_state: State
    event: Event
    at_s: float


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of the sliding window and the state."""

    state: State
    calls: int
    failures: int
    slow_calls: int
    rejected_total: int
    consecutive_opens: int


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds and timings; validated on construction (paths name the field).

    ``window``: ``"count"`` keeps the last ``window_size`` outcomes; ``"time"``
    keeps the last ``window_s`` seconds in ``window_buckets`` buckets (the
    window's resolution is ``window_s / window_buckets``).

    Tripping needs ``minimum_calls`` in the window and any of: failures /
    calls >= ``failure_ratio``; failures >= ``failure_count``; slow calls
    (duration >= ``slow_call_s``) / calls >= ``slow_call_ratio``.

    OPEN lasts ``open_wait_s * open_wait_multiplier ** (k - 1)`` for the k-th
    consecutive opening, capped at ``open_wait_max_s``; multiplier 1 keeps it
    fixed. HALF_OPEN admits ``half_open_probes`` calls, closes after
    ``half_open_successes`` (default: all probes) succeed, and gives up
    after ``half_open_max_s`` without a verdict (probes that hang).
    """

    window: Literal["count", "time"] = "count"
    window_size: int = 100
    window_s: float = 60.0
    window_buckets: int = 10
    minimum_calls: int = 10
    failure_ratio: float | None = 0.5
    failure_count: int | None = None
    slow_call_ratio: float | None = None
    slow_call_s: float | None = None
    open_wait_s: float = 30.0
    open_wait_multiplier: float = 1.0
    open_wait_max_s: float | None = None
    half_open_probes: int = 1
    half_open_successes: int | None = None
    half_open_max_s: float | None = None

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise RuleError("window", f"must be 'count' or 'time', got {self.window!r}")
        check_int("window_size", self.window_size, 1, WINDOW_SIZE_MAX)
        check_number("window_s", self.window_s, 0.0, WINDOW_S_MAX)
        check_int("window_buckets", self.window_buckets, 1, WINDOW_BUCKETS_MAX)
        check_int("minimum_calls", self.minimum_calls, 1, MINIMUM_CALLS_MAX)
        if self.window == "count" and self.minimum_calls > self.window_size:
            raise RuleError(
                "minimum_calls",
                f"must be <= window_size ({self.window_size}) or the breaker can never trip, "
                f"got {self.minimum_calls}",
            )
        if self.failure_ratio is not None:
            check_number("failure_ratio", self.failure_ratio, 0.0, 1.0)
        if self.failure_count is not None:
            check_int("failure_count", self.failure_count, 1, WINDOW_SIZE_MAX)
        if self.slow_call_ratio is not None:
            check_number("slow_call_ratio", self.slow_call_ratio, 0.0, 1.0)
        if self.slow_call_s is not None:
            check_number("slow_call_s", self.slow_call_s, 0.0, WINDOW_S_MAX)
        if (self.slow_call_ratio is None) != (self.slow_call_s is None):
            raise RuleError(
                "slow_call_s" if self.slow_call_s is None else "slow_call_ratio",
                "slow_call_ratio and slow_call_s must be set together",
            )
        if (
            self.failure_ratio is None
            and self.failure_count is None
            and self.slow_call_ratio is None
        ):
            raise RuleError(
                "failure_ratio",
                "at least one of failure_ratio, failure_count, slow_call_ratio must be set",
            )
        check_number("open_wait_s", self.open_wait_s, 0.0, OPEN_WAIT_S_MAX)
        check_number("open_wait_multiplier", self.open_wait_multiplier, 1.0, 100.0, low_open=False)
        if self.open_wait_max_s is not None:
            check_number("open_wait_max_s", self.open_wait_max_s, 0.0, OPEN_WAIT_S_MAX)
            if self.open_wait_max_s < self.open_wait_s:
                raise RuleError(
                    "open_wait_max_s",
                    f"must be >= open_wait_s ({self.open_wait_s:g}), got {self.open_wait_max_s:g}",
                )
        check_int("half_open_probes", self.half_open_probes, 1, HALF_OPEN_PROBES_MAX)
        if self.half_open_successes is not None:
            check_int("half_open_successes", self.half_open_successes, 1, self.half_open_probes)
        if self.half_open_max_s is not None:
            check_number("half_open_max_s", self.half_open_max_s, 0.0, OPEN_WAIT_S_MAX)

    def open_wait_for(self, consecutive_opens: int) -> float:
        """How long the k-th consecutive opening lasts (k >= 1)."""
        cap = self.open_wait_max_s if self.open_wait_max_s is not None else self.open_wait_s
        if self.open_wait_multiplier == 1.0:
            return self.open_wait_s
        # Bound the exponent so a long outage cannot overflow the float.
        exponent = min(consecutive_opens - 1, 1_000)
        try:
            wait = self.open_wait_s * self.open_wait_multiplier**exponent
        except OverflowError:
            return cap
        return min(wait, cap)


# Outcome codes: bit 0 = failure, bit 1 = slow. 0 is a fast success.
_OK = 0
_FAIL = 1
_SLOW = 2
# What CountWindow.record reports back.
_TRIPPED = 1
# The window is full and holds only fast successes: recording another
# success changes nothing, so the hot path may skip recording entirely.
_CLEAN = 2


class _Thresholds:
    __slots__ = ("fail_count", "fail_ratio", "min_calls", "slow_ratio")

    def __init__(self, config: BreakerConfig) -> None:
        self.min_calls = config.minimum_calls
        self.fail_ratio = config.failure_ratio if config.failure_ratio is not None else math.inf
        self.fail_count = config.failure_count if config.failure_count is not None else math.inf
        self.slow_ratio = config.slow_call_ratio if config.slow_call_ratio is not None else math.inf


class CountWindow:
    """The outcomes of the last ``size`` calls in a ring; O(1) per record."""

    __slots__ = ("_buf", "_calls", "_fail", "_i", "_size", "_slow", "_t")

    def __init__(self, size: int, thresholds: _Thresholds) -> None:
        self._size = size
        self._buf = bytearray(size)
        self._i = 0
        self._calls = 0
        self._fail = 0
        self._slow = 0
        self._t = thresholds

    def record(self, code: int) -> int:
        """Add an outcome; returns _TRIPPED, _CLEAN (full of fast successes) or 0."""
        i = self._i
        buf = self._buf
        old = buf[i]
        buf[i] = code
        i += 1
        self._i = 0 if i == self._size else i
        calls = self._calls
        if calls < self._size:
            calls += 1
            self._calls = calls
        if old != code:
            self._fail += (code & 1) - (old & 1)
            self._slow += (code >> 1) - (old >> 1)
        fail = self._fail
        slow = self._slow
        if fail == 0 and slow == 0:
            return _CLEAN if calls == self._size else 0
        t = self._t
        if calls >= t.min_calls and (
            fail >= t.fail_ratio * calls or fail >= t.fail_count or slow >= t.slow_ratio * calls
        ):
            return _TRIPPED
        return 0

    def reset(self) -> None:
        self._buf = bytearray(self._size)
        self._i = self._calls = self._fail = self._slow = 0

    def totals(self) -> tuple[int, int, int]:
        return self._calls, self._fail, self._slow

    def check_invariants(self) -> None:
        assert self._calls <= self._size
        assert self._fail == sum(b & 1 for b in self._buf)
        assert self._slow == sum(b >> 1 for b in self._buf)
        assert 0 <= self._fail <= self._calls and 0 <= self._slow <= self._calls


class TimeWindow:
    """Outcomes of the last ``window_s`` seconds in a ring of buckets.

    Each record rolls the ring forward to the current bucket, clearing at
    most ``buckets`` stale buckets, so a record is O(1) amortized and
    O(buckets) at worst after a long idle spell.
    """

    __slots__ = (
        "_bucket_s",
        "_calls",
        "_clock",
        "_epoch",
        "_fails",
        "_n",
        "_slows",
        "_t",
        "_tot_calls",
        "_tot_fail",
        "_tot_slow",
    )

    def __init__(
        self, window_s: float, buckets: int, thresholds: _Thresholds, clock: Clock
    ) -> None:
        self._n = buckets
        self._bucket_s = window_s / buckets
        self._clock = clock
        self._t = thresholds
        self.reset()

    def reset(self) -> None:
        n = self._n
        self._calls = [0] * n
        self._fails = [0] * n
        self._slows = [0] * n
        self._tot_calls = self._tot_fail = self._tot_slow = 0
        self._epoch = int(self._clock.now_s() // self._bucket_s)

    def _roll(self) -> int:
        epoch = int(self._clock.now_s() // self._bucket_s)
        n = self._n
        if epoch != self._epoch:
            stale = min(epoch - self._epoch, n)
            for step in range(1, stale + 1):
                slot = (self._epoch + step) % n
                self._tot_calls -= self._calls[slot]
                self._tot_fail -= self._fails[slot]
                self._tot_slow -= self._slows[slot]
                self._calls[slot] = self._fails[slot] = self._slows[slot] = 0
            self._epoch = epoch
        return epoch % n

    def record(self, code: int) -> int:
        """Add an outcome; returns _TRIPPED or 0 (a time window is never "clean")."""
        slot = self._roll()
        self._calls[slot] += 1
        calls = self._tot_calls + 1
        self._tot_calls = calls
        if code:
            self._fails[slot] += code & 1
            self._slows[slot] += code >> 1
            self._tot_fail += code & 1
            self._tot_slow += code >> 1
        fail = self._tot_fail
        slow = self._tot_slow
        if fail == 0 and slow == 0:
            return 0
        t = self._t
        if calls >= t.min_calls and (
            fail >= t.fail_ratio * calls or fail >= t.fail_count or slow >= t.slow_ratio * calls
        ):
            return _TRIPPED
        return 0

    def totals(self) -> tuple[int, int, int]:
        self._roll()
        return self._tot_calls, self._tot_fail, self._tot_slow

    def check_invariants(self) -> None:
        assert self._tot_calls == sum(self._calls)
        assert self._tot_fail == sum(self._fails)
        assert self._tot_slow == sum(self._slows)
        assert 0 <= self._tot_fail <= self._tot_calls


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= NAME_LENGTH_MAX:
        raise RuleError("name", f"must be a string of 1..{NAME_LENGTH_MAX} characters")
    return name


class CircuitBreaker(Stage):
    """A circuit breaker with a sliding window; see the module docstring.

    ``clock`` defaults to the process's monotonic clock; tests pass a
    :class:`~syndic.traffic.clock.ManualClock`.

    ``record_exceptions``: exception types that count as failures (default:
    every ``Exception``); other exceptions count as successes.
    ``ignore_exceptions``: types that count as neither (wins over record).
    ``failure_if``: a predicate on a returned value that marks it a failure.
    ``BaseException``s that are not ``Exception``s (cancellation,
    KeyboardInterrupt) are never recorded; a cancelled probe returns its slot.
    """

    __slots__ = (
        "_cfg",
        "_clean",
        "_clock",
        "_consecutive_opens",
        "_failure_if",
        "_gen",
        "_half_open_since_s",
        "_ignore",
        "_listeners",
        "_open_until_s",
        "_plain",
        "_probe_successes",
        "_probes_admitted",
        "_probes_max",
        "_record",
        "_record_exc",
        "_rejected",
        "_scope",
        "_slow_s",
        "_stages",
        "_state",
        "_successes_needed",
        "_timed",
        "_window",
        "name",
        "passive",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        name: str = "breaker",
        record_exceptions: tuple[type[BaseException], ...] = (Exception,),
        ignore_exceptions: tuple[type[BaseException], ...] = (),
        failure_if: Callable[[Any], bool] | None = None,
    ) -> None:
        cfg = config if config is not None else BreakerConfig()
        self.name = _check_name(name)
        self._cfg = cfg
        clock = default_clock(clock)
        self._clock = clock
        self._record_exc = tuple(record_exceptions)
        self._ignore = tuple(ignore_exceptions)
        self._failure_if = failure_if
        thresholds = _Thresholds(cfg)
        self._window: CountWindow | TimeWindow
        if cfg.window == "count":
            self._window = CountWindow(cfg.window_size, thresholds)
        else:
            self._window = TimeWindow(cfg.window_s, cfg.window_buckets, thresholds, clock)
        self._record = self._window.record
        self._timed = cfg.slow_call_s is not None
        # No clock read and no result inspection needed per call.
        self._plain = not self._timed and failure_if is None
        self._slow_s = cfg.slow_call_s if cfg.slow_call_s is not None else math.inf
        self._probes_max = cfg.half_open_probes
        self._successes_needed = (
            cfg.half_open_successes if cfg.half_open_successes is not None else cfg.half_open_probes
        )
        self._state = State.CLOSED
        self._clean = False
        self.passive: int | None = None
        self._gen = 0
        self._open_until_s = 0.0
        self._half_open_since_s = 0.0
        self._consecutive_opens = 0
        self._probes_admitted = 0
        self._probe_successes = 0
        self._rejected = 0
        self._listeners: list[Callable[[StateChange], None]] = []
        self._scope: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
            f"syndic_breaker_{id(self)}", default=None
        )
        self._stages = (self,)

    # -- introspection -------------------------------------------------------

    @property
    def config(self) -> BreakerConfig:
        return self._cfg

    @property
    def state(self) -> State:
        """The current state; an OPEN breaker whose wait elapsed reads HALF_OPEN."""
        if self._state is State.OPEN and self._clock.now_s() >= self._open_until_s:
            self._fire(Event.WAIT_ELAPSED)
        return self._state

    def metrics(self) -> BreakerMetrics:
        calls, failures, slow = self._window.totals()
        return BreakerMetrics(
            state=self.state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            rejected_total=self._rejected,
            consecutive_opens=self._consecutive_opens,
        )

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        """Call ``listener`` with a :class:`StateChange` after every transition."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[StateChange], None]) -> None:
        self._listeners.remove(listener)

    # -- operator controls ---------------------------------------------------

    def reset(self) -> None:
        self._fire(Event.RESET)

    def force_open(self) -> None:
        self._fire(Event.FORCE_OPEN)

    def disable(self) -> None:
        self._fire(Event.DISABLE)

    # -- the state machine ---------------------------------------------------

    def _fire(self, event: Event) -> None:
        from_state = self._state
        to_state = TRANSITIONS.get((from_state, event))
        if to_state is None:
            raise BreakerProtocolError(from_state, event)
        now = self._clock.now_s()
        self._state = to_state
        self._gen += 1
        self._clean = False
        self.passive = None
        if to_state is State.OPEN:
            self._consecutive_opens += 1
            self._open_until_s = now + self._cfg.open_wait_for(self._consecutive_opens)
        elif to_state is State.HALF_OPEN:
            self._probes_admitted = 0
            self._probe_successes = 0
            self._half_open_since_s = now
        elif to_state is State.CLOSED:
            self._consecutive_opens = 0
            self._window.reset()
        if self._listeners:
            change = StateChange(self.name, from_state, to_state, event, now)
            for listener in tuple(self._listeners):
                try:
                    listener(change)
                except Exception:
                    # A broken listener must not wedge the breaker half-way.
                    log.exception("circuit breaker %s: listener failed", self.name)

    def _reject(self, why: str, retry_after_s: float | None) -> CircuitOpenError:
        self._rejected += 1
        return CircuitOpenError(f"circuit breaker {self.name!r} {why}", retry_after_s=retry_after_s)

    def acquire(self) -> int:
        """Ask permission for one call; returns a ticket for :meth:`on_success` & co.

        Raises :class:`CircuitOpenError` when the call must not be made.
        """
        state = self._state
        if state is State.CLOSED or state is State.DISABLED:
            return self._gen
        if state is State.OPEN:
            now = self._clock.now_s()
            if now < self._open_until_s:
                raise self._reject("is open", self._open_until_s - now)
            self._fire(Event.WAIT_ELAPSED)
        elif state is State.FORCED_OPEN:
            raise self._reject("is forced open", None)
        # HALF_OPEN.
        cfg_max_s = self._cfg.half_open_max_s
        if cfg_max_s is not None and self._clock.now_s() - self._half_open_since_s >= cfg_max_s:
            self._fire(Event.HALF_OPEN_TIMED_OUT)
            raise self._reject("is open (half-open probes timed out)", self._cfg.open_wait_s)
        if self._probes_admitted >= self._probes_max:
            raise self._reject(
                f"is half-open and all {self._probes_max} probe slots are taken", None
            )
        self._probes_admitted += 1
        return self._gen

    def _settle(self, ticket: int, code: int) -> None:
        """Record an outcome (code: _OK/_FAIL/_SLOW bits) for a ticket."""
        if ticket != self._gen:
            return  # admitted under an earlier state: not evidence about this one
        state = self._state
        if state is State.CLOSED:
            if code:
                self._clean = False
                self.passive = None
            verdict = self._record(code)
            if verdict == _TRIPPED:
                self._fire(Event.THRESHOLD_EXCEEDED)
            elif verdict == _CLEAN and self._plain:
                # A window of nothing but plain successes: another success
                # changes nothing, so the drivers may skip enter and exit.
                self._clean = True
                self.passive = self._gen
        elif state is State.HALF_OPEN:
            if code:
                self._fire(Event.PROBE_FAILED)
            else:
                self._probe_successes += 1
                if self._probe_successes >= self._successes_needed:
                    self._fire(Event.PROBES_SUCCEEDED)

    def _release_probe(self, ticket: int) -> None:
        if ticket == self._gen and self._state is State.HALF_OPEN:
            self._probes_admitted -= 1

    def on_success(self, ticket: int, duration_s: float = 0.0, result: object = None) -> None:
        code = _FAIL if self._failure_if is not None and self._failure_if(result) else _OK
        if duration_s >= self._slow_s:
            code |= _SLOW
        self._settle(ticket, code)

    def on_error(self, ticket: int, exc: BaseException, duration_s: float = 0.0) -> None:
        if not isinstance(exc, Exception) or (self._ignore and isinstance(exc, self._ignore)):
            self._release_probe(ticket)
            return
        code = _FAIL if isinstance(exc, self._record_exc) else _OK
        if duration_s >= self._slow_s:
            code |= _SLOW
        self._settle(ticket, code)

    # -- the stage: decide around one call; the drivers run it -------------------

    def enter(self, admission: Admission = ASYNC) -> Any:
        """Admit one call (Stage protocol); raises CircuitOpenError when it must not run.

        The ticket is the state generation the call was admitted under, with
        the start time when slow calls are measured.
        """
        if self._state is _C and self._plain:
            return self._gen  # hot path: no clock read, no allocation
        ticket = self.acquire()
        if self._timed:
            return (ticket, self._clock.now_s())
        return ticket

    def exit(self, ticket: Any, result: Any, error: BaseException | None) -> None:
        """Record the outcome of a call admitted with ``ticket`` (Stage protocol)."""
        if self._plain:
            if error is not None:
                self.on_error(ticket, error)
            elif not self._clean and ticket == self._gen:
                self._settle(ticket, _OK)
            return
        duration_s = 0.0
        if self._timed:
            ticket, start_s = ticket
            duration_s = self._clock.now_s() - start_s
        if error is None:
            self.on_success(ticket, duration_s, result)
        else:
            self.on_error(ticket, error, duration_s)

    # -- calling: ``await call``, ``call_sync``, ``@breaker``, ``with``/``async with`` -

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn(*args, **kwargs)`` under the breaker."""
        return drivers.run(self._stages, fn, args, kwargs)

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the blocking ``fn(*args, **kwargs)`` under the breaker."""
        return drivers.run_sync(self._stages, fn, args, kwargs)  # type: ignore[no-any-return]

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a function or coroutine function."""
        return drivers.decorate_stages(self._stages, fn)

    # The ticket of ``with breaker:`` lives in a per-breaker ContextVar, so
    # concurrent tasks (each with its own context) and nesting in one context
    # both stay correct.

    def __enter__(self) -> CircuitBreaker:
        self._scope.set((self.enter(BLOCKING), self._scope.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._scope.get()
        if scope is None:
            raise RuntimeError(f"circuit breaker {self.name!r}: __exit__ without __enter__")
        ticket, outer = scope
        self._scope.set(outer)
        self.exit(ticket, None, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def check_invariants(self) -> None:
        """Assert the breaker's internal consistency (for tests and simulation)."""
        assert 0 <= self._probes_admitted <= self._probes_max
        assert 0 <= self._probe_successes <= self._probes_admitted
        assert self._probe_successes < self._successes_needed or self._state is not State.HALF_OPEN
        if self._state is State.OPEN or self._state is State.HALF_OPEN:
            assert self._consecutive_opens >= 1
        if self._state is State.CLOSED:
            assert self._consecutive_opens == 0
        assert self.passive is None or (self._clean and self.passive == self._gen)
        if self._clean:
            assert self._state is State.CLOSED and self._plain
            calls, failures, slow = self._window.totals()
            assert failures == 0 and slow == 0 and calls == self._cfg.window_size
        self._window.check_invariants()
