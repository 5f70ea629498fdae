"""The breaker against a tiny reference model, on random outcome/time sequences."""

from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from syndic.traffic.breaker import BreakerConfig, CircuitBreaker, State
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import CircuitOpenError

WINDOW = 5
MINIMUM = 3
RATIO = 0.5
WAIT_S = 4.0
MULTIPLIER = 2.0
WAIT_MAX_S = 10.0
PROBES = 2


@dataclass
class Model:
    """Sequential calls only: every probe answers before the next call starts."""

    state: str = "closed"
    window: collections.deque[bool] = field(
        default_factory=lambda: collections.deque(maxlen=WINDOW)
    )
    open_until_s: float = 0.0
    opens: int = 0
    probe_successes: int = 0

    def trip(self, now_s: float) -> None:
        self.state = "open"
        self.opens += 1
        self.open_until_s = now_s + min(WAIT_S * MULTIPLIER ** (self.opens - 1), WAIT_MAX_S)

    def call(self, failed: bool, now_s: float) -> str:
        """Returns 'rejected' or 'called'."""
        if self.state == "open":
            if now_s < self.open_until_s:
                return "rejected"
            self.state = "half_open"
            self.probe_successes = 0
        if self.state == "half_open":
            if failed:
                self.trip(now_s)
            else:
                self.probe_successes += 1
                if self.probe_successes >= PROBES:
                    self.state = "closed"
                    self.window.clear()
                    self.opens = 0
            return "called"
        self.window.append(failed)
        calls = len(self.window)
        failures = sum(self.window)
        if calls >= MINIMUM and failures >= RATIO * calls:
            self.trip(now_s)
        return "called"


steps = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0, 4.0, 8.0, 11.0])),
    ),
    max_size=80,
)


@given(steps)
def test_breaker_follows_the_model(ops: list[tuple[str, object]]) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(
            window_size=WINDOW,
            minimum_calls=MINIMUM,
            failure_ratio=RATIO,
            open_wait_s=WAIT_S,
            open_wait_multiplier=MULTIPLIER,
            open_wait_max_s=WAIT_MAX_S,
            half_open_probes=PROBES,
        ),
        clock=clock,
    )
    model = Model()
    for op, arg in ops:
        if op == "advance":
            assert isinstance(arg, float)
            clock.advance(arg)
            continue
        failed = bool(arg)
        expected = model.call(failed, clock.now_s())

        def fn(failed: bool = failed) -> int:
            if failed:
                raise ConnectionError
            return 1

        try:
            breaker.call_sync(fn)
            outcome = "called"
        except CircuitOpenError:
            outcome = "rejected"
        except ConnectionError:
            outcome = "called"
        assert outcome == expected
        assert breaker._state.value == model.state
        breaker.check_invariants()


@given(
    st.lists(
        st.one_of(
            st.just(("start",)),
            st.tuples(
                st.just("finish"), st.integers(0, 50), st.sampled_from(["ok", "fail", "cancel"])
            ),
            st.tuples(st.just("advance"), st.sampled_from([1.0, 5.0, 20.0])),
        ),
        max_size=120,
    )
)
def test_half_open_never_has_more_than_n_probes_outstanding(
    ops: list[tuple[object, ...]],
) -> None:
    """Interleaved starts and finishes (as concurrent callers produce)."""
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=2, open_wait_s=5.0, half_open_probes=PROBES),
        clock=clock,
    )
    outstanding: list[int] = []
    for op in ops:
        if op[0] == "start":
            with contextlib.suppress(CircuitOpenError):
                outstanding.append(breaker.acquire())
        elif op[0] == "finish" and outstanding:
            index = int(op[1]) % len(outstanding)  # type: ignore[call-overload]
            ticket = outstanding.pop(index)
            if op[2] == "ok":
                breaker.on_success(ticket)
            elif op[2] == "fail":
                breaker.on_error(ticket, ConnectionError())
            else:
                import asyncio

                breaker.on_error(ticket, asyncio.CancelledError())
        elif op[0] == "advance":
            clock.advance(float(op[1]))  # type: ignore[arg-type]
        if breaker._state is State.HALF_OPEN:
            probes_now = sum(1 for t in outstanding if t == breaker._gen)
            assert probes_now <= PROBES
            assert breaker._probes_admitted <= PROBES
        breaker.check_invariants()
