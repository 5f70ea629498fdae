"""Circuit breaker: windows, thresholds, the transition table, half-open probes."""

from __future__ import annotations

import asyncio
import math

import pytest

from syndic.traffic.breaker import (
    TRANSITIONS,
    BreakerConfig,
    BreakerProtocolError,
    CircuitBreaker,
    Event,
    State,
    StateChange,
)
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import CircuitOpenError, RuleError


def boom() -> None:
    raise ConnectionError("refused")


def fail_n(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            breaker.call_sync(boom)


def ok_n(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert breaker.call_sync(lambda: 1) == 1


def make(clock: ManualClock, **kw: object) -> CircuitBreaker:
    cfg = {"window_size": 10, "minimum_calls": 4, "failure_ratio": 0.5, "open_wait_s": 10.0}
    cfg.update(kw)
    return CircuitBreaker(BreakerConfig(**cfg), clock=clock)  # type: ignore[arg-type]


# -- table ----------------------------------------------------------------------


def test_every_state_has_operator_transitions_and_unknown_inputs_raise() -> None:
    for state in State:
        for event in (Event.RESET, Event.FORCE_OPEN, Event.DISABLE):
            assert (state, event) in TRANSITIONS
    assert (State.OPEN, Event.PROBE_FAILED) not in TRANSITIONS
    breaker = make(ManualClock())
    with pytest.raises(BreakerProtocolError, match=r"probe_failed.*closed"):
        breaker._fire(Event.PROBE_FAILED)
    assert breaker.state is State.CLOSED


# -- tripping --------------------------------------------------------------------


def test_trips_on_failure_ratio_only_after_minimum_calls() -> None:
    clock = ManualClock()
    breaker = make(clock)
    fail_n(breaker, 3)
    assert breaker.state is State.CLOSED  # 3 < minimum_calls
    ok_n(breaker, 1)
    # 3 failures of 4 calls = 75% >= 50%: the success that reached the minimum trips it.
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call_sync(lambda: 1)
    assert info.value.retry_after_s == pytest.approx(10.0)


def test_below_ratio_stays_closed_and_old_outcomes_slide_out() -> None:
    breaker = make(ManualClock(), window_size=4, minimum_calls=4, failure_ratio=0.75)
    fail_n(breaker, 2)
    ok_n(breaker, 2)
    assert breaker.state is State.CLOSED  # 50% < 75%
    ok_n(breaker, 2)  # the two failures slide out
    assert breaker.metrics().failures == 0
    assert breaker.metrics().calls == 4


def test_trips_on_failure_count() -> None:
    breaker = make(ManualClock(), failure_ratio=None, failure_count=3, minimum_calls=1)
    ok_n(breaker, 7)
    fail_n(breaker, 2)
    assert breaker.state is State.CLOSED
    fail_n(breaker, 1)
    assert breaker.state is State.OPEN


def test_trips_on_slow_call_ratio() -> None:
    clock = ManualClock()
    breaker = make(clock, failure_ratio=None, slow_call_ratio=0.5, slow_call_s=1.0, minimum_calls=2)

    def slow() -> int:
        clock.advance(1.5)
        return 1

    breaker.call_sync(slow)
    ok_n(breaker, 1)
    assert breaker.state is State.OPEN
    assert breaker.metrics().slow_calls == 1  # the window is kept while open


def test_time_window_forgets_old_buckets() -> None:
    clock = ManualClock()
    breaker = make(
        clock, window="time", window_s=10.0, window_buckets=10, minimum_calls=4, failure_ratio=0.5
    )
    fail_n(breaker, 3)
    clock.advance(10.0)  # every bucket is stale now
    assert breaker.metrics().calls == 0
    ok_n(breaker, 3)
    fail_n(breaker, 1)
    assert breaker.state is State.CLOSED  # 1 of 4
    fail_n(breaker, 1)
    assert breaker.state is State.CLOSED  # 2 of 5: the 3 stale failures were forgotten


def test_time_window_trip_is_ratio_exact() -> None:
    clock = ManualClock()
    breaker = make(
        clock, window="time", window_s=10.0, window_buckets=5, minimum_calls=4, failure_ratio=0.5
    )
    ok_n(breaker, 3)
    fail_n(breaker, 2)
    assert breaker.state is State.CLOSED  # 2/5 = 40%
    fail_n(breaker, 1)
    assert breaker.state is State.OPEN  # 3/6 = 50%


# -- open, half-open ---------------------------------------------------------------


def test_open_waits_then_single_probe_closes() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_probes=1)
    fail_n(breaker, 4)
    clock.advance(9.999)
    with pytest.raises(CircuitOpenError):
        breaker.call_sync(lambda: 1)
    clock.advance(0.001)
    assert breaker.call_sync(lambda: 2) == 2
    assert breaker.state is State.CLOSED
    assert breaker.metrics().calls == 0  # closing starts a fresh window


def test_probe_failure_reopens_with_exponential_wait_capped() -> None:
    clock = ManualClock()
    breaker = make(clock, open_wait_s=1.0, open_wait_multiplier=2.0, open_wait_max_s=5.0)
    fail_n(breaker, 4)
    waits = []
    for _ in range(5):
        waits.append(breaker._open_until_s - clock.now_s())
        clock.advance(waits[-1])
        fail_n(breaker, 1)  # the probe fails
        assert breaker.state is State.OPEN
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    clock.advance(5.0)
    ok_n(breaker, 1)
    assert breaker.state is State.CLOSED
    fail_n(breaker, 4)
    assert breaker._open_until_s - clock.now_s() == 1.0  # closing reset the growth


def test_half_open_needs_enough_successes_and_rejects_beyond_probes() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_probes=3, half_open_successes=2)
    fail_n(breaker, 4)
    clock.advance(10)
    t1 = breaker.acquire()
    t2 = breaker.acquire()
    t3 = breaker.acquire()
    with pytest.raises(CircuitOpenError, match="probe slots"):
        breaker.acquire()
    breaker.on_success(t1)
    assert breaker.state is State.HALF_OPEN
    breaker.on_success(t2)
    assert breaker.state is State.CLOSED
    breaker.on_error(t3, ConnectionError())  # stale probe: ignored
    assert breaker.state is State.CLOSED
    assert breaker.metrics().failures == 0


def test_ignored_and_cancelled_probes_return_their_slot() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=1, open_wait_s=1),
        clock=clock,
        ignore_exceptions=(KeyError,),
    )
    fail_n(breaker, 1)
    clock.advance(1)
    with pytest.raises(KeyError):
        breaker.call_sync(lambda: {}["x"])
    assert breaker.state is State.HALF_OPEN
    ticket = breaker.acquire()
    breaker.on_error(ticket, asyncio.CancelledError())
    assert breaker.state is State.HALF_OPEN
    assert breaker.call_sync(lambda: 5) == 5  # the slot came back
    assert breaker.state is State.CLOSED


def test_half_open_gives_up_when_probes_hang() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_max_s=3.0)
    fail_n(breaker, 4)
    clock.advance(10)
    breaker.acquire()  # a probe that never answers
    clock.advance(3)
    with pytest.raises(CircuitOpenError, match="timed out"):
        breaker.acquire()
    assert breaker.state is State.OPEN


async def test_half_open_admits_at_most_n_concurrent_probes() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_probes=2)
    fail_n(breaker, 4)
    clock.advance(10)
    gate = asyncio.Event()
    inside = 0
    peak = 0

    async def probe() -> str:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1
        return "ok"

    tasks = [asyncio.create_task(breaker.call(probe)) for _ in range(20)]
    await asyncio.sleep(0)
    assert inside == 2
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2
    assert sum(1 for r in results if r == "ok") == 2
    assert all(isinstance(r, CircuitOpenError) for r in results if r != "ok")
    assert breaker.state is State.CLOSED


def test_outcome_of_call_admitted_before_trip_is_not_a_probe() -> None:
    clock = ManualClock()
    breaker = make(clock)
    early = breaker.acquire()
    fail_n(breaker, 4)
    clock.advance(10)
    assert breaker.state is State.HALF_OPEN
    breaker.on_success(early)
    assert breaker.state is State.HALF_OPEN


# -- classification -------------------------------------------------------------------


def test_unrecorded_exceptions_count_as_success_and_result_predicate_fails() -> None:
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, failure_ratio=1.0),
        clock=ManualClock(),
        record_exceptions=(ConnectionError,),
        failure_if=lambda r: r == 503,
    )
    with pytest.raises(ValueError):
        breaker.call_sync(lambda: int("x"))
    assert breaker.metrics().failures == 0
    assert breaker.call_sync(lambda: 503) == 503
    assert breaker.call_sync(lambda: 503) == 503
    m = breaker.metrics()
    assert (m.calls, m.failures) == (3, 2)
    assert breaker.state is State.CLOSED  # 2/3 < 100%
    breaker.call_sync(lambda: 503)
    breaker.call_sync(lambda: 503)
    assert breaker.state is State.OPEN


def test_keyboard_interrupt_is_never_recorded() -> None:
    breaker = make(ManualClock(), minimum_calls=1)

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call_sync(interrupt)
    assert breaker.metrics().calls == 0


# -- listeners and operator controls ------------------------------------------------------


def test_listeners_receive_frozen_events_and_a_failing_listener_is_contained() -> None:
    clock = ManualClock()
    breaker = make(clock)
    seen: list[StateChange] = []

    def bad(_: StateChange) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(bad)
    breaker.add_listener(seen.append)
    fail_n(breaker, 4)
    clock.advance(10)
    ok_n(breaker, 1)
    assert [(c.from_state, c.to_state, c.event) for c in seen] == [
        (State.CLOSED, State.OPEN, Event.THRESHOLD_EXCEEDED),
        (State.OPEN, State.HALF_OPEN, Event.WAIT_ELAPSED),
        (State.HALF_OPEN, State.CLOSED, Event.PROBES_SUCCEEDED),
    ]
    assert seen[0] == StateChange(
        "breaker", State.CLOSED, State.OPEN, Event.THRESHOLD_EXCEEDED, 0.0
    )
    with pytest.raises(AttributeError):
        seen[0].to_state = State.CLOSED  # type: ignore[misc]


def test_force_open_disable_reset() -> None:
    breaker = make(ManualClock())
    breaker.force_open()
    with pytest.raises(CircuitOpenError, match="forced"):
        breaker.call_sync(lambda: 1)
    breaker.disable()
    fail_n(breaker, 20)
    assert breaker.state is State.DISABLED
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert breaker.metrics().calls == 0


# -- call shapes -------------------------------------------------------------------------


async def test_decorators_and_context_managers_record_outcomes() -> None:
    breaker = make(ManualClock(), window_size=20, minimum_calls=20)

    @breaker
    def sync_fn(x: int) -> int:
        return x + 1

    @breaker
    async def async_fn(x: int) -> int:
        return x * 2

    assert sync_fn(1) == 2
    assert await async_fn(3) == 6
    with breaker:
        pass
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError
    async with breaker:
        pass
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    m = breaker.metrics()
    assert (m.calls, m.failures) == (6, 2)
    breaker.check_invariants()


async def test_context_manager_tickets_are_per_task() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_probes=2)
    fail_n(breaker, 4)
    clock.advance(10)
    release = asyncio.Event()

    async def worker(fail: bool) -> None:
        async with breaker:
            await release.wait()
            if fail:
                raise ConnectionError

    a = asyncio.create_task(worker(False))
    b = asyncio.create_task(worker(False))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(a, b)
    assert breaker.state is State.CLOSED


# -- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"failure_ratio": 1.5}, r"failure_ratio: must be in \(0, 1\], got 1.5"),
        ({"failure_ratio": math.nan}, "failure_ratio"),
        ({"failure_ratio": 0}, "failure_ratio"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": True}, "window_size: must be an integer"),
        ({"window_size": 10**9}, "window_size"),
        ({"minimum_calls": 200, "window_size": 100}, "minimum_calls"),
        ({"open_wait_s": -1}, "open_wait_s"),
        ({"open_wait_s": math.inf}, "open_wait_s"),
        ({"open_wait_max_s": 1.0, "open_wait_s": 5.0}, "open_wait_max_s"),
        ({"slow_call_ratio": 0.5}, "slow_call_s"),
        ({"half_open_successes": 5, "half_open_probes": 2}, "half_open_successes"),
        ({"failure_ratio": None}, "at least one"),
        ({"window": "sliding"}, "window"),
        ({"half_open_probes": "3"}, "half_open_probes: must be an integer, got str"),
    ],
)
def test_config_rejects_bad_values_with_the_field_path(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(RuleError, match=match):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_name_rejected() -> None:
    with pytest.raises(RuleError, match="name"):
        CircuitBreaker(clock=ManualClock(), name="x" * 500)


async def test_clean_window_fast_path_still_sees_failures() -> None:
    """A full window of successes skips recording; the next failures must still trip."""
    breaker = make(ManualClock(), window_size=4, minimum_calls=4, failure_ratio=0.5)

    @breaker
    async def call(fail: bool) -> int:
        if fail:
            raise ConnectionError
        return 1

    for _ in range(10):
        assert await call(False) == 1
    assert breaker._clean
    breaker.check_invariants()
    with pytest.raises(ConnectionError):
        await call(True)
    assert not breaker._clean and breaker.state is State.CLOSED  # 1 of 4
    with pytest.raises(ConnectionError):
        await call(True)
    assert breaker.state is State.OPEN  # 2 of 4
    breaker.check_invariants()
