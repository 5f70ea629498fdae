"""Rate limiters on a manual clock: the rate bound, accuracy, and each family's rules."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.traffic.clock import ManualClock, MonotonicClock
from syndic.traffic.errors import RuleError
from syndic.traffic.ratelimit import (
    AdaptiveThrottle,
    ConcurrencyLimiter,
    FixedWindow,
    HotParamLimiter,
    KeyedLimiter,
    LeakyBucket,
    Limiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    SystemProtection,
    TokenBucket,
    WarmUpBucket,
)

PERMITS_MAX = 3  # most permits one request asks for in the property tests


class _Keyed:
    """Adapts one key of a HotParamLimiter to the try_acquire shape."""

    def __init__(self, limiter: HotParamLimiter) -> None:
        self.limiter = limiter

    def try_acquire(self, permits: int = 1) -> bool:
        return self.limiter.try_acquire_key("hot", permits)


# name -> (factory(rate, size, clock) -> limiter, rate_per_s(rate, size), burst_bound(rate, size))
# Each limiter's documented guarantee: permits granted over any interval of
# length T are at most rate_per_s * T + burst_bound.
FAMILIES: dict[str, tuple[Callable[..., Any], Callable[..., float], Callable[..., float]]] = {
    "token_bucket": (
        lambda r, n, c: TokenBucket(r, n, clock=c),
        lambda r, n: r,
        lambda r, n: n,
    ),
    "leaky_bucket": (
        lambda r, n, c: LeakyBucket(r, clock=c),
        lambda r, n: r,
        lambda r, n: PERMITS_MAX,
    ),
    "fixed_window": (
        lambda r, n, c: FixedWindow(n, n / r, clock=c),
        lambda r, n: r,
        lambda r, n: 2 * n,  # the boundary burst fixed windows are known for
    ),
    "sliding_log": (
        lambda r, n, c: SlidingWindowLog(n, n / r, clock=c),
        lambda r, n: r,
        lambda r, n: n,
    ),
    "sliding_counter": (
        lambda r, n, c: SlidingWindowCounter(n, n / r, clock=c),
        lambda r, n: r,
        lambda r, n: 2 * n,
    ),
    "warm_up": (
        lambda r, n, c: WarmUpBucket(r, 1.0, clock=c),
        lambda r, n: r,
        lambda r, n: PERMITS_MAX,
    ),
    "hot_param": (
        lambda r, n, c: _Keyed(HotParamLimiter(r, n, clock=c)),
        lambda r, n: r,
        lambda r, n: n,
    ),
}


def _max_excess(grants: list[tuple[float, int]], rate: float) -> float:
    """max over intervals [t_i, t_j] of granted - rate * (t_j - t_i)."""
    worst = -math.inf
    for i in range(len(grants)):
        total = 0
        for j in range(i, len(grants)):
            total += grants[j][1]
            worst = max(worst, total - rate * (grants[j][0] - grants[i][0]))
    return worst


@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(
    rate=st.floats(min_value=0.5, max_value=500.0),
    size=st.integers(min_value=3, max_value=20),
    steps=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.3)),
            st.integers(min_value=1, max_value=PERMITS_MAX),
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_never_grants_more_than_rate_times_elapsed_plus_burst(
    family: str, rate: float, size: int, steps: list[tuple[float, int]]
) -> None:
    make, rate_of, burst_of = FAMILIES[family]
    clock = ManualClock(1000.0)
    limiter = make(rate, size, clock)
    grants: list[tuple[float, int]] = []
    for dt, permits in steps:
        clock.advance(dt)
        if limiter.try_acquire(permits):
            grants.append((clock.now_s(), permits))
    if grants:
        assert _max_excess(grants, rate_of(rate, size)) <= burst_of(rate, size) + 1e-6


def _saturate(limiter: Any, clock: ManualClock, duration_s: float, step_s: float) -> int:
    """Demand far above the rate: at every step, ask until refused."""
    granted = 0
    for _ in range(round(duration_s / step_s)):
        for _ in range(10_000):  # bound: far more than any limiter here grants per step
            if not limiter.try_acquire():
                break
            granted += 1
        clock.advance(step_s)
    return granted


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("token_bucket", lambda c: TokenBucket(100, 5, clock=c)),
        ("token_bucket_odd_rate", lambda c: TokenBucket(333, 5, clock=c)),
        ("leaky_bucket", lambda c: LeakyBucket(100, clock=c)),
        ("fixed_window", lambda c: FixedWindow(100, 1.0, clock=c)),
        ("sliding_log", lambda c: SlidingWindowLog(100, 1.0, clock=c)),
        ("sliding_counter", lambda c: SlidingWindowCounter(100, 1.0, clock=c)),
        ("hot_param", lambda c: _Keyed(HotParamLimiter(100, 5, clock=c))),
    ],
)
def test_saturating_demand_gets_the_configured_rate_within_one_percent(
    name: str, make: Callable[[ManualClock], Any]
) -> None:
    clock = ManualClock()
    limiter = make(clock)
    expected = {"token_bucket_odd_rate": 3330}.get(name, 1000)
    granted = _saturate(limiter, clock, 10.0, 0.001)
    assert abs(granted - expected) <= 0.01 * expected, granted


def test_warm_up_reaches_the_configured_rate_within_one_percent_once_warm() -> None:
    clock = ManualClock()
    w = WarmUpBucket(100, 2.0, clock=clock)
    _saturate(w, clock, 3.0, 0.001)  # past warmup_s of saturating demand
    assert abs(_saturate(w, clock, 10.0, 0.001) - 1000) <= 10


def test_warm_up_curve_starts_at_rate_over_cold_factor_and_speeds_up_monotonically() -> None:
    clock = ManualClock()
    w = WarmUpBucket(100, 2.0, clock=clock, cold_factor=3)
    times: list[float] = []
    for _ in range(40_000):  # 4 s in 0.1 ms steps
        if w.try_acquire():
            times.append(clock.now_s())
        clock.advance(0.0001)
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps[0] == pytest.approx(0.030, abs=0.0002)  # cold: 100/s / 3
    # Non-increasing up to the 0.1 ms poll granularity.
    assert all(b <= a + 0.0001 + 1e-9 for a, b in pairwise(gaps))
    # Full rate is reached after warmup_s of demand, not before.
    first_stable = next(t for t, g in zip(times[1:], gaps, strict=False) if g <= 0.0101)
    assert 1.8 <= first_stable <= 2.2, first_stable
    assert all(g == pytest.approx(0.010, abs=0.00011) for g in gaps[-50:])
    # Idle for warmup_s makes it cold again.
    clock.advance(5.0)
    assert w.current_interval_s() == pytest.approx(0.030)


def test_leaky_bucket_spaces_try_acquire_at_one_over_rate() -> None:
    clock = ManualClock()
    lb = LeakyBucket(20, clock=clock)
    times: list[float] = []
    for _ in range(1000):
        if lb.try_acquire():
            times.append(clock.now_s())
        clock.advance(0.001)
    gaps = {round(b - a, 6) for a, b in pairwise(times)}
    assert gaps == {0.05}


def test_fixed_window_resets_at_the_aligned_boundary() -> None:
    clock = ManualClock(0.5)
    w = FixedWindow(3, 1.0, clock=clock)
    assert [w.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.49)
    assert not w.try_acquire()
    clock.advance(0.01)  # t = 1.0: a new window
    assert [w.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_sliding_log_admits_only_as_entries_leave_the_window() -> None:
    clock = ManualClock()
    w = SlidingWindowLog(2, 1.0, clock=clock)
    assert w.try_acquire()
    clock.advance(0.5)
    assert w.try_acquire()
    assert not w.try_acquire()
    clock.advance(0.5)  # the first entry leaves
    assert w.try_acquire()
    assert not w.try_acquire()


def test_sliding_counter_weights_the_previous_window_by_overlap() -> None:
    clock = ManualClock()
    w = SlidingWindowCounter(10, 1.0, clock=clock)
    for _ in range(10):
        assert w.try_acquire()
    clock.advance(1.25)  # 75 % of the previous window still overlaps: 7.5 estimated
    assert w.estimate() == pytest.approx(7.5)
    assert [w.try_acquire() for _ in range(3)] == [True, True, False]


def test_hot_param_limits_each_key_separately_and_honours_overrides() -> None:
    clock = ManualClock()
    hp = HotParamLimiter(1, 2, clock=clock, overrides={"vip": (10, 5)})
    assert [hp.try_acquire_key("a") for _ in range(3)] == [True, True, False]
    assert [hp.try_acquire_key("b") for _ in range(3)] == [True, True, False]
    assert sum(hp.try_acquire_key("vip") for _ in range(10)) == 5
    clock.advance(1.0)
    assert hp.try_acquire_key("a")
    assert not hp.try_acquire_key("a")


def test_hot_param_lru_stays_within_keys_max_and_keeps_hot_keys() -> None:
    clock = ManualClock()
    hp = HotParamLimiter(1, 1, clock=clock, keys_max=100)
    assert hp.try_acquire_key("hot")
    for i in range(10_000):
        hp.try_acquire_key(f"k{i}")
        hp.try_acquire_key("hot")  # refused, but touched: stays recent
        assert hp.keys <= 100
    hp.check_invariants()
    assert hp.keys == 100
    assert hp.evictions == 10_000 - 99
    assert not hp.try_acquire_key("hot"), "a hot key must not be evicted and refilled"


def test_hot_param_refuses_hostile_keys_without_storing_them() -> None:
    hp = HotParamLimiter(1, 1, clock=ManualClock())
    with pytest.raises(ValueError, match="KEY_LENGTH_MAX"):
        hp.try_acquire_key("x" * 5000)
    with pytest.raises(ValueError, match="hashable"):
        hp.try_acquire_key(["unhashable"])  # type: ignore[arg-type]
    assert hp.keys == 0


def _formula(requests: int, accepts: int, k: float) -> float:
    return max(0.0, (requests - k * accepts) / (requests + 1))


def test_sre_throttle_rejects_with_exactly_the_formula_probability() -> None:
    clock = ManualClock()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(42), k=2.0)
    mirror = random.Random(42)
    accepts = 0
    backend = random.Random(7)
    for requests in range(5000):
        p = _formula(requests, accepts, 2.0)
        assert throttle.rejection_probability() == pytest.approx(p)
        expected = not (p > 0.0 and mirror.random() < p)
        assert throttle.try_acquire() is expected
        if expected:
            ok = backend.random() < 0.3  # backend accepts 30 %
            throttle.record(ok)
            accepts += ok
    throttle.check_invariants()


def test_sre_throttle_lets_about_k_times_the_backend_capacity_through() -> None:
    clock = ManualClock()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(1), window_s=10.0, buckets=10)
    sent = 0
    for step in range(30_000):  # 1000 requests/s for 30 s; backend takes 100/s
        if step % 1000 == 0:
            capacity = 100
        clock.advance(0.001)
        if throttle.try_acquire():
            if step >= 10_000:
                sent += 1
            accepted = capacity > 0
            capacity -= accepted
            throttle.record(accepted)
    # Steady state: requests sent ~= K * accepts = 2 * 100/s over 20 s.
    assert sent == pytest.approx(4000, rel=0.05)


def test_sre_throttle_forgets_outside_its_window() -> None:
    clock = ManualClock()
    throttle = AdaptiveThrottle(clock=clock, rng=random.Random(1), window_s=10.0, buckets=10)
    for _ in range(100):
        throttle.try_acquire()
        throttle.record(False)
    assert throttle.rejection_probability() > 0.9
    clock.advance(11.0)
    assert throttle.rejection_probability() == 0.0
    assert throttle.requests == 0


def test_concurrency_limiter_counts_in_flight_and_refuses_over_release() -> None:
    c = ConcurrencyLimiter(3, clock=ManualClock())
    assert c.try_acquire(2)
    assert not c.try_acquire(2)
    assert c.try_acquire()
    c.release(3)
    assert c.in_flight == 0
    with pytest.raises(ValueError, match="only 0 are held"):
        c.release()
    assert c.in_flight == 0
    c.check_invariants()


def test_concurrency_limiter_throughput_follows_littles_law() -> None:
    clock = ManualClock()
    c = ConcurrencyLimiter(5, clock=clock)
    hold_s = 0.05
    ends: list[float] = []
    done = 0
    for _ in range(10_000):  # 10 s in 1 ms steps
        now = clock.now_s()
        while ends and ends[0] <= now + 1e-9:
            ends.pop(0)
            c.release()
            done += 1
        while c.try_acquire():
            ends.append(now + hold_s)
        clock.advance(0.001)
    assert done == pytest.approx(5 / hold_s * 10, rel=0.01)


def test_system_protection_sheds_only_past_capacity_while_cpu_is_high() -> None:
    clock = ManualClock(0.05)  # mid-bucket, so float sums of 0.1 never straddle an edge
    cpu = [0.2]
    sp = SystemProtection(clock=clock, cpu_usage=lambda: cpu[0], window_s=1.0, buckets=10)
    # Learn capacity: 100 completions per 0.1 s bucket at 20 ms -> 1000/s * 0.02 s = 20.
    for _ in range(10):
        for _ in range(100):
            assert sp.try_acquire()
            sp.release(latency_s=0.02)
        clock.advance(0.1)
    assert sp.max_in_flight() == pytest.approx(20.0)
    held = sum(sp.try_acquire() for _ in range(30))
    assert held == 30, "low CPU: nothing is shed"
    for _ in range(30):
        sp.release(latency_s=0.02)
    cpu[0] = 0.95
    held = sum(sp.try_acquire() for _ in range(30))
    assert held == 21, "high CPU: admit while in_flight <= 20"
    cpu[0] = 0.1
    assert not sp.try_acquire(), "cool-down keeps shedding just after a drop"
    clock.advance(1.01)
    assert sp.try_acquire(), "after the cool-down low CPU admits again"


def test_system_protection_rejects_a_lying_cpu_probe() -> None:
    sp = SystemProtection(clock=ManualClock(), cpu_usage=lambda: math.nan)
    assert sp.try_acquire() and sp.try_acquire()
    with pytest.raises(ValueError, match="cpu_usage"):
        sp.try_acquire()
    assert sp.in_flight == 2


def test_every_limiter_satisfies_the_protocols() -> None:
    c = ManualClock()
    limiters = [
        TokenBucket(1, 1, clock=c),
        LeakyBucket(1, clock=c),
        FixedWindow(1, 1, clock=c),
        SlidingWindowLog(1, 1, clock=c),
        SlidingWindowCounter(1, 1, clock=c),
        WarmUpBucket(1, 1, clock=c),
        ConcurrencyLimiter(1, clock=c),
        AdaptiveThrottle(clock=c),
        SystemProtection(clock=c, cpu_usage=lambda: 0.0),
    ]
    for limiter in limiters:
        assert isinstance(limiter, Limiter)
    assert isinstance(HotParamLimiter(1, 1, clock=c), KeyedLimiter)


def test_monotonic_clock_works_on_the_fast_path() -> None:
    bucket = TokenBucket(1e6, 10, clock=MonotonicClock())
    assert bucket.try_acquire()


BAD: list[tuple[Callable[[], object], str]] = [
    (lambda: TokenBucket(-1, 1, clock=ManualClock()), "rate_per_s: must be > 0"),
    (lambda: TokenBucket(0, 1, clock=ManualClock()), "rate_per_s: must be > 0"),
    (lambda: TokenBucket(math.nan, 1, clock=ManualClock()), "rate_per_s: must not be NaN"),
    (lambda: TokenBucket(math.inf, 1, clock=ManualClock()), "rate_per_s: must be <="),
    (lambda: TokenBucket(1e300, 1, clock=ManualClock()), "rate_per_s: must be <="),
    (lambda: TokenBucket(True, 1, clock=ManualClock()), "rate_per_s: must be a number"),
    (lambda: TokenBucket(1, 0, clock=ManualClock()), "burst: must be in"),
    (lambda: TokenBucket(1, 1.5, clock=ManualClock()), "burst: must be an int"),  # type: ignore[arg-type]
    (lambda: TokenBucket(1, 10**12, clock=ManualClock()), "burst: must be in"),
    (lambda: TokenBucket(1, 1, clock=ManualClock(), max_wait_s=-1), "max_wait_s: must be >= 0"),
    (lambda: LeakyBucket(1, clock=ManualClock(), max_queue_s=math.nan), "max_queue_s"),
    (lambda: FixedWindow(0, 1, clock=ManualClock()), "limit: must be in"),
    (lambda: FixedWindow(1, 0, clock=ManualClock()), "window_s: must be > 0"),
    (lambda: SlidingWindowLog(10**7, 1, clock=ManualClock()), "limit: must be in"),
    (lambda: SlidingWindowCounter(1, -5, clock=ManualClock()), "window_s: must be > 0"),
    (lambda: WarmUpBucket(1, 1, clock=ManualClock(), cold_factor=1), "cold_factor: must be > 1"),
    (lambda: WarmUpBucket(1, math.inf, clock=ManualClock()), "warmup_s: must be <="),
    (lambda: ConcurrencyLimiter(0, clock=ManualClock()), "max_concurrency: must be in"),
    (lambda: HotParamLimiter(1, 1, clock=ManualClock(), keys_max=0), "keys_max: must be in"),
    (
        lambda: HotParamLimiter(1, 1, clock=ManualClock(), overrides={"k": (0, 1)}),
        "overrides['k'].rate_per_s: must be > 0",
    ),
    (lambda: AdaptiveThrottle(clock=ManualClock(), k=0.5), "k: must be >= 1"),
    (lambda: AdaptiveThrottle(clock=ManualClock(), buckets=0), "buckets: must be in"),
    (
        lambda: SystemProtection(clock=ManualClock(), cpu_usage=lambda: 0.0, cpu_threshold=1.5),
        "cpu_threshold: must be <= 1",
    ),
    (lambda: SystemProtection(clock=ManualClock(), cpu_usage=0.5), "cpu_usage: must be a callable"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_invalid_configuration_is_a_rule_error_naming_the_field(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(RuleError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("permits", [0, -1, 1.5, True, 11])
def test_bad_permits_raise_and_take_nothing(permits: object) -> None:
    clock = ManualClock()
    bucket = TokenBucket(1, 10, clock=clock)
    if permits is True:
        assert bucket.try_acquire(permits)  # type: ignore[arg-type]
        return  # True is 1 on the fast path: harmless
    with pytest.raises(ValueError, match="permits"):
        bucket.try_acquire(permits)  # type: ignore[arg-type]
    assert bucket.available() == pytest.approx(10)


def test_the_documented_example_runs() -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "traffic" / "rate-limiting.md"
    (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
