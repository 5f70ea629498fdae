"""Retry budget: retries stay within ratio * requests + a floor, over a sliding window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import RuleError


def test_ratio_of_requests_can_retry() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_s=0.0, window_s=10.0, clock=ManualClock())
    for _ in range(50):
        budget.record_request()
    granted = sum(budget.try_spend() for _ in range(100))
    assert granted == 10


def test_low_traffic_still_retries_through_the_floor() -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_s=0.5, window_s=10.0, clock=ManualClock())
    granted = sum(budget.try_spend() for _ in range(100))
    assert granted == 5


def test_window_slides_and_refills() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.5, min_retries_per_s=0.0, window_s=10.0, clock=clock)
    for _ in range(4):
        budget.record_request()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.advance(10.0)
    assert budget.requests == 0 and budget.retries == 0
    assert not budget.try_spend()
    budget.record_request()
    budget.record_request()
    assert budget.try_spend()
    budget.check_invariants()


@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    floor=st.sampled_from([0.0, 0.1, 1.0, 3.0]),
    ops=st.lists(
        st.one_of(
            st.just("request"),
            st.just("retry"),
            st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 2.5, 7.0])),
        ),
        max_size=300,
    ),
)
def test_retries_never_exceed_ratio_times_requests_plus_floor(
    ratio: float, floor: float, ops: list[object]
) -> None:
    window_s = 5.0
    clock = ManualClock()
    budget = RetryBudget(
        ratio=ratio, min_retries_per_s=floor, window_s=window_s, clock=clock, buckets=5
    )
    bucket_s = window_s / 5
    requests: list[float] = []
    retries: list[float] = []
    for op in ops:
        if op == "request":
            budget.record_request()
            requests.append(clock.now_s())
        elif op == "retry":
            if budget.try_spend():
                now = clock.now_s()
                retries.append(now)
                # Any interval of length window_s - bucket_s ending now lies inside the
                # counted window, which lies inside the last window_s seconds.
                recent_retries = sum(1 for t in retries if t > now - window_s + bucket_s)
                window_requests = sum(1 for t in requests if t > now - window_s)
                assert recent_retries <= ratio * window_requests + floor * window_s + 1e-9
        else:
            assert isinstance(op, tuple)
            clock.advance(op[1])
        budget.check_invariants()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"ratio": -0.1}, "ratio"),
        ({"min_retries_per_s": -1}, "min_retries_per_s"),
        ({"min_retries_per_s": math.inf}, "min_retries_per_s"),
        ({"window_s": 0}, "window_s"),
        ({"window_s": 10**7}, "window_s"),
        ({"buckets": 0}, "buckets"),
        ({"buckets": 10**6}, "buckets"),
        ({"ratio": "0.2"}, "ratio: must be a number"),
    ],
)
def test_bad_settings_rejected(kwargs: dict[str, object], match: str) -> None:
    settings: dict[str, object] = {"ratio": 0.2, "min_retries_per_s": 1.0, "window_s": 10.0}
    settings.update(kwargs)
    with pytest.raises(RuleError, match=match):
        RetryBudget(clock=ManualClock(), **settings)  # type: ignore[arg-type]
