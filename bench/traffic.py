"""syndic.traffic against its peers: per-call overhead, limiter accuracy, balancing.

Overhead: each subject wraps the same trivial callee (or, for limiters, is
called bare), in the same call form; a subject's overhead is its median
ns per call minus the median of the unwrapped baseline of that form. Each
figure is the median of ``REPEATS`` runs, each run sized to last about
``RUN_S``. The ratio is peer overhead / syndic overhead, so > 1 means syndic
is cheaper; the goal is a ratio >= 2.

Peers, at equal semantics (trip after 5 failures, 30 s open; grant while
under the limit; 3 attempts, zero backoff):
  breakers   pybreaker (sync), aiobreaker (async), purgatory (both),
             circuitbreaker (both)
  limiters   limits (fixed window, moving window and sliding window counter,
             in-memory storage; sync and asyncio), aiolimiter (asyncio)
  retries    tenacity (sync and asyncio)

Accuracy: every syndic rate limiter under 10x overload on a ManualClock for
10 simulated seconds; granted rate within 1 % of the configured rate.

Retries in the sync form get an injected no-op sleep (both libraries take
one); the asyncio form keeps the real ``asyncio.sleep(0)`` in both.

Balancing: max/mean picks per endpoint for each algorithm (10 endpoints,
64 requests in flight), and the share of keys that move when one of 10
endpoints is removed from a ring hash and a Maglev table (ideal: 1/10).

Run: ``.venv/bin/python bench/traffic.py [--quick]``; writes bench/results/traffic.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiobreaker
import aiolimiter
import circuitbreaker
import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import purgatory
import pybreaker
import tenacity

from syndic.traffic.balancer import (
    LeastRequest,
    Maglev,
    RingHash,
    ShortestResponse,
    SmoothWeightedRoundRobin,
    WeightedRandom,
    ZoneAware,
)
from syndic.traffic.breaker import BreakerConfig, CircuitBreaker
from syndic.traffic.clock import ManualClock
from syndic.traffic.endpoints import Endpoint
from syndic.traffic.policy import Policy
from syndic.traffic.ratelimit import (
    FixedWindow,
    HotParamLimiter,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    WarmUpBucket,
)
from syndic.traffic.retry import Backoff, Retry, RetryConfig
from syndic.traffic.rules import parse_rules

RESULTS_PATH = Path(__file__).parent / "results" / "traffic.json"
REPEATS = 5
RUN_S_FULL = 0.25
RUN_S_QUICK = 0.04
#: Calls per run at most: bounds a run whatever the calibration says.
CALLS_PER_RUN_MAX = 2_000_000
GOAL_RATIO = 2.0
FAIL_MAX = 5
OPEN_S = 30.0
#: "Grant everything" limits: far above what a run can ask for.
HUGE_RATE_PER_S = 1e9
#: Moving-window limiters keep one entry per permit, so they run at a
#: realistic limit, at which most calls in a run are refusals.
LOG_LIMIT = 1000

Sync = Callable[[], object]
Async = Callable[[], Awaitable[object]]


# -- callees -----------------------------------------------------------------------


def target() -> None:
    return None


async def atarget() -> None:
    return None


class Flaky:
    """Fails twice, then succeeds: every third call answers."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
        if self.n % 3:
            raise ConnectionError("transient")


class AFlaky(Flaky):
    async def run(self) -> None:
        self()


# -- timing ------------------------------------------------------------------------


def _time_sync(fn: Sync, n: int) -> float:
    gc.disable()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    t1 = time.perf_counter_ns()
    gc.enable()
    return (t1 - t0) / n


async def _time_async(fn: Async, n: int) -> float:
    gc.disable()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await fn()
    t1 = time.perf_counter_ns()
    gc.enable()
    return (t1 - t0) / n


def measure(make: Callable[[], Any], is_async: bool, run_s: float) -> float:
    """Median ns per call over REPEATS runs; ``make`` builds a fresh subject per run."""

    def once(n: int) -> float:
        fn = make()
        if is_async:
            return asyncio.run(_time_async(fn, n))
        return _time_sync(fn, n)

    probe_ns = once(2_000)
    n = max(1_000, min(CALLS_PER_RUN_MAX, int(run_s * 1e9 / max(probe_ns, 1.0))))
    return statistics.median(once(n) for _ in range(REPEATS))


@dataclass
class Row:
    group: str
    mode: str  # sync | async
    subject: str
    make: Callable[[], Any]
    baseline: str  # key of the baseline row
    vs: str | None = None  # key of the syndic row a peer is compared with
    ns: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.group}/{self.mode}/{self.subject}"


# -- subjects ----------------------------------------------------------------------


def syndic_breaker() -> CircuitBreaker:
    cfg = BreakerConfig(
        window_size=FAIL_MAX,
        minimum_calls=FAIL_MAX,
        failure_ratio=None,
        failure_count=FAIL_MAX,
        open_wait_s=OPEN_S,
    )
    return CircuitBreaker(cfg)  # as written: the monotonic clock by default


def no_sleep(delay_s: float) -> None:
    """Zero backoff without the sleep(0) system call, injected into both retry
    libraries alike: time.sleep(0) yields the CPU and costs ~50-100 us on a
    busy machine, which would hide the wrappers' own cost."""


def zero_retry() -> Retry:
    return Retry(
        RetryConfig(
            max_attempts=3, backoff=Backoff(base_s=0.0, cap_s=0.0, jitter="none"), idempotent=True
        ),
        sync_sleep=no_sleep,
    )


def tenacity_kwargs() -> dict[str, Any]:
    return {
        "stop": tenacity.stop_after_attempt(3),
        "wait": tenacity.wait_none(),
        "retry": tenacity.retry_if_exception_type(Exception),
        "reraise": True,
    }


def purgatory_async() -> Async:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=FAIL_MAX, default_ttl=OPEN_S)
    return factory("bench")(atarget)  # type: ignore[no-any-return]


def rows() -> list[Row]:
    out: list[Row] = []

    def add(
        group: str,
        mode: str,
        subject: str,
        make: Callable[[], Any],
        baseline: str,
        vs: str | None = None,
    ) -> None:
        out.append(Row(group, mode, subject, make, baseline, vs))

    # Baselines: the bare callee (and, for limiters, a bare no-op call).
    add("baseline", "sync", "call", lambda: target, "")
    add("baseline", "async", "call", lambda: atarget, "")

    def bare_flaky() -> Sync:
        flaky = Flaky()

        def run() -> None:
            for _ in range(3):
                try:  # noqa: SIM105 -- the plain try/except a retry loop itself costs
                    flaky()
                except ConnectionError:
                    pass

        return run

    def bare_aflaky() -> Async:
        flaky = AFlaky()

        async def run() -> None:
            for _ in range(3):
                try:  # noqa: SIM105 -- the plain try/except a retry loop itself costs
                    await flaky.run()
                except ConnectionError:
                    pass

        return run

    add("baseline", "sync", "flaky", bare_flaky, "")
    add("baseline", "async", "flaky", bare_aflaky, "")
    b_sync, b_async = "baseline/sync/call", "baseline/async/call"

    # Circuit breakers, closed, on the success path.
    def s_call() -> Sync:
        b = syndic_breaker()
        return lambda: b.call_sync(target)

    def s_acall() -> Async:
        b = syndic_breaker()
        return lambda: b.call(atarget)

    add("breaker", "sync", "syndic .call_sync", s_call, b_sync)
    add("breaker", "sync", "syndic @decorator", lambda: syndic_breaker()(target), b_sync)
    add("breaker", "async", "syndic .call", s_acall, b_async)
    add("breaker", "async", "syndic @decorator", lambda: syndic_breaker()(atarget), b_async)

    def pyb() -> Sync:
        cb = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=OPEN_S)
        return lambda: cb.call(target)

    def aiob() -> Async:
        cb = aiobreaker.CircuitBreaker(
            fail_max=FAIL_MAX, timeout_duration=timedelta(seconds=OPEN_S)
        )
        return lambda: cb.call_async(atarget)

    def purg_sync() -> Sync:
        factory = purgatory.SyncCircuitBreakerFactory(
            default_threshold=FAIL_MAX, default_ttl=OPEN_S
        )
        return factory("bench")(target)  # type: ignore[no-any-return]

    add("breaker", "sync", "pybreaker .call", pyb, b_sync, "breaker/sync/syndic .call_sync")
    add(
        "breaker",
        "sync",
        "purgatory @decorator",
        purg_sync,
        b_sync,
        "breaker/sync/syndic @decorator",
    )
    add(
        "breaker",
        "sync",
        "circuitbreaker @circuit",
        lambda: circuitbreaker.circuit(failure_threshold=FAIL_MAX, recovery_timeout=OPEN_S)(target),
        b_sync,
        "breaker/sync/syndic @decorator",
    )
    add(
        "breaker",
        "async",
        "aiobreaker .call_async",
        aiob,
        b_async,
        "breaker/async/syndic .call",
    )
    add(
        "breaker",
        "async",
        "purgatory @decorator",
        purgatory_async,
        b_async,
        "breaker/async/syndic @decorator",
    )
    add(
        "breaker",
        "async",
        "circuitbreaker @circuit",
        lambda: circuitbreaker.circuit(failure_threshold=FAIL_MAX, recovery_timeout=OPEN_S)(
            atarget
        ),
        b_async,
        "breaker/async/syndic @decorator",
    )

    # Rate limiters: the limiter call itself (baseline: a bare no-op call).
    huge = int(HUGE_RATE_PER_S)

    def tb_try() -> Sync:
        return TokenBucket(HUGE_RATE_PER_S, 1_000_000).try_acquire

    def fw_try() -> Sync:
        return FixedWindow(huge, 1.0).try_acquire

    def swc_try() -> Sync:
        return SlidingWindowCounter(huge, 1.0).try_acquire

    def log_try() -> Sync:
        return SlidingWindowLog(LOG_LIMIT, 1.0).try_acquire

    add("limiter", "sync", "syndic TokenBucket.try_acquire", tb_try, b_sync)
    add("limiter", "sync", "syndic FixedWindow.try_acquire", fw_try, b_sync)
    add("limiter", "sync", "syndic SlidingWindowCounter.try_acquire", swc_try, b_sync)
    add("limiter", "sync", "syndic SlidingWindowLog.try_acquire (at limit)", log_try, b_sync)

    def limits_sync(strategy: Any, amount: int) -> Callable[[], Sync]:
        def make() -> Sync:
            limiter = strategy(limits.storage.MemoryStorage())
            item = limits.RateLimitItemPerSecond(amount)
            return lambda: limiter.hit(item, "k")

        return make

    add(
        "limiter",
        "sync",
        "limits FixedWindow.hit",
        limits_sync(limits.strategies.FixedWindowRateLimiter, huge),
        b_sync,
        "limiter/sync/syndic FixedWindow.try_acquire",
    )
    add(
        "limiter",
        "sync",
        "limits SlidingWindowCounter.hit",
        limits_sync(limits.strategies.SlidingWindowCounterRateLimiter, huge),
        b_sync,
        "limiter/sync/syndic SlidingWindowCounter.try_acquire",
    )
    add(
        "limiter",
        "sync",
        "limits MovingWindow.hit (at limit)",
        limits_sync(limits.strategies.MovingWindowRateLimiter, LOG_LIMIT),
        b_sync,
        "limiter/sync/syndic SlidingWindowLog.try_acquire (at limit)",
    )
    add(
        "limiter",
        "sync",
        "limits FixedWindow.hit (vs TokenBucket)",
        limits_sync(limits.strategies.FixedWindowRateLimiter, huge),
        b_sync,
        "limiter/sync/syndic TokenBucket.try_acquire",
    )

    def tb_acq() -> Async:
        return TokenBucket(HUGE_RATE_PER_S, 1_000_000).acquire

    def fw_acq() -> Async:
        return FixedWindow(huge, 1.0).acquire

    def aiolim() -> Async:
        return aiolimiter.AsyncLimiter(HUGE_RATE_PER_S, 1.0).acquire

    def limits_async(strategy: Any, amount: int) -> Callable[[], Async]:
        def make() -> Async:
            limiter = strategy(limits.aio.storage.MemoryStorage())
            item = limits.RateLimitItemPerSecond(amount)
            return lambda: limiter.hit(item, "k")

        return make

    add("limiter", "async", "syndic TokenBucket.acquire", tb_acq, b_async)
    add("limiter", "async", "syndic FixedWindow.acquire", fw_acq, b_async)
    add(
        "limiter",
        "async",
        "aiolimiter.acquire",
        aiolim,
        b_async,
        "limiter/async/syndic TokenBucket.acquire",
    )
    add(
        "limiter",
        "async",
        "limits.aio FixedWindow.hit",
        limits_async(limits.aio.strategies.FixedWindowRateLimiter, huge),
        b_async,
        "limiter/async/syndic FixedWindow.acquire",
    )
    add(
        "limiter",
        "async",
        "limits.aio MovingWindow.hit (vs TokenBucket)",
        limits_async(limits.aio.strategies.MovingWindowRateLimiter, huge),
        b_async,
        "limiter/async/syndic TokenBucket.acquire",
    )

    # Retries: success on the first try, and two failures then success.
    def s_retry_ok() -> Sync:
        r = zero_retry()
        return lambda: r.call_sync(target)

    def s_retry_flaky() -> Sync:
        r, flaky = zero_retry(), Flaky()
        return lambda: r.call_sync(flaky)

    def t_retry_ok() -> Sync:
        r = tenacity.Retrying(sleep=no_sleep, **tenacity_kwargs())
        return lambda: r(target)

    def t_retry_flaky() -> Sync:
        r, flaky = tenacity.Retrying(sleep=no_sleep, **tenacity_kwargs()), Flaky()
        return lambda: r(flaky)

    def s_aretry_ok() -> Async:
        r = zero_retry()
        return lambda: r.call(atarget)

    def s_aretry_flaky() -> Async:
        r, flaky = zero_retry(), AFlaky()
        return lambda: r.call(flaky.run)

    def t_aretry_ok() -> Async:
        r = tenacity.AsyncRetrying(**tenacity_kwargs())
        return lambda: r(atarget)

    def t_aretry_flaky() -> Async:
        r, flaky = tenacity.AsyncRetrying(**tenacity_kwargs()), AFlaky()
        return lambda: r(flaky.run)

    add("retry", "sync", "syndic first-try success", s_retry_ok, b_sync)
    add("retry", "sync", "syndic 2 failures + success", s_retry_flaky, "baseline/sync/flaky")
    add("retry", "async", "syndic first-try success", s_aretry_ok, b_async)
    add("retry", "async", "syndic 2 failures + success", s_aretry_flaky, "baseline/async/flaky")
    add(
        "retry",
        "sync",
        "tenacity first-try success",
        t_retry_ok,
        b_sync,
        "retry/sync/syndic first-try success",
    )
    add(
        "retry",
        "sync",
        "tenacity 2 failures + success",
        t_retry_flaky,
        "baseline/sync/flaky",
        "retry/sync/syndic 2 failures + success",
    )
    add(
        "retry",
        "async",
        "tenacity first-try success",
        t_aretry_ok,
        b_async,
        "retry/async/syndic first-try success",
    )
    add(
        "retry",
        "async",
        "tenacity 2 failures + success",
        t_aretry_flaky,
        "baseline/async/flaky",
        "retry/async/syndic 2 failures + success",
    )

    # A composed policy (retry around a breaker), first-try success: the
    # path every SDK call takes, and the one traffic spans must not slow
    # while tracing is off.
    def s_policy() -> Policy:
        return Policy(
            parse_rules(
                {
                    "retry": {"max_attempts": 3, "idempotent": True, "backoff": {"base_s": 0}},
                    "breaker": {"failure_count": FAIL_MAX, "open_wait_s": OPEN_S},
                }
            )
        )

    def s_policy_sync() -> Sync:
        p = s_policy()
        return lambda: p.call_sync(target)

    def s_policy_async() -> Async:
        p = s_policy()
        return lambda: p.call(atarget)

    def t_policy_sync() -> Sync:
        r = tenacity.Retrying(sleep=no_sleep, **tenacity_kwargs())
        cb = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=OPEN_S)
        return lambda: r(cb.call, target)

    def t_policy_async() -> Async:
        r = tenacity.AsyncRetrying(**tenacity_kwargs())
        cb = aiobreaker.CircuitBreaker(
            fail_max=FAIL_MAX, timeout_duration=timedelta(seconds=OPEN_S)
        )
        return lambda: r(cb.call_async, atarget)

    add("policy", "sync", "syndic Policy.call_sync", s_policy_sync, b_sync)
    add("policy", "async", "syndic Policy.call", s_policy_async, b_async)
    add(
        "policy",
        "sync",
        "tenacity around pybreaker",
        t_policy_sync,
        b_sync,
        "policy/sync/syndic Policy.call_sync",
    )
    add(
        "policy",
        "async",
        "tenacity around aiobreaker",
        t_policy_async,
        b_async,
        "policy/async/syndic Policy.call",
    )
    return out


def run_overhead(run_s: float) -> list[dict[str, Any]]:
    table = rows()
    by_key = {r.key: r for r in table}
    for r in table:
        r.ns = measure(r.make, r.mode == "async", run_s)
    results = []
    for r in table:
        if r.group == "baseline":
            continue
        overhead = max(r.ns - by_key[r.baseline].ns, 1.0)
        entry: dict[str, Any] = {
            "group": r.group,
            "mode": r.mode,
            "subject": r.subject,
            "ns_per_call": round(r.ns, 1),
            "overhead_ns": round(overhead, 1),
        }
        if r.vs is not None:
            syndic = by_key[r.vs]
            syndic_overhead = max(syndic.ns - by_key[syndic.baseline].ns, 1.0)
            ratio = overhead / syndic_overhead
            entry.update(
                {"vs": syndic.subject, "ratio": round(ratio, 2), "goal_met": ratio >= GOAL_RATIO}
            )
        results.append(entry)
    return results


# -- accuracy ----------------------------------------------------------------------

RATE_PER_S = 100.0
OFFERED_X = 10  # offered load as a multiple of the rate
SIM_S = 10.0


def accuracy() -> list[dict[str, Any]]:
    def subjects(clock: ManualClock) -> dict[str, Callable[[], bool]]:
        hot = HotParamLimiter(RATE_PER_S, 1, clock=clock)
        return {
            "TokenBucket": TokenBucket(RATE_PER_S, 1, clock=clock).try_acquire,
            "LeakyBucket": LeakyBucket(RATE_PER_S, clock=clock).try_acquire,
            "FixedWindow": FixedWindow(int(RATE_PER_S), 1.0, clock=clock).try_acquire,
            "SlidingWindowLog": SlidingWindowLog(int(RATE_PER_S), 1.0, clock=clock).try_acquire,
            "SlidingWindowCounter": SlidingWindowCounter(
                int(RATE_PER_S), 1.0, clock=clock
            ).try_acquire,
            "WarmUpBucket (after warm-up)": WarmUpBucket(RATE_PER_S, 1.0, clock=clock).try_acquire,
            "HotParamLimiter (one key)": lambda: hot.try_acquire_key("k"),
        }

    out = []
    step_s = 1.0 / (RATE_PER_S * OFFERED_X)
    steps = int(SIM_S / step_s)
    for name in subjects(ManualClock()):
        clock = ManualClock(start_s=1000.0)
        fn = subjects(clock)[name]
        if name.startswith("WarmUp"):
            for _ in range(steps):  # saturate first: measure the warm rate
                fn()
                clock.advance(step_s)
        granted = 0
        for _ in range(steps):
            granted += fn()
            clock.advance(step_s)
        rate = granted / SIM_S
        error = (rate - RATE_PER_S) / RATE_PER_S
        out.append(
            {
                "limiter": name,
                "configured_per_s": RATE_PER_S,
                "granted_per_s": round(rate, 2),
                "error_pct": round(100 * error, 3),
                "within_1pct": abs(error) <= 0.01,
            }
        )
    return out


# -- balancers ---------------------------------------------------------------------

ENDPOINTS = 10
IN_FLIGHT = 64


def balancer_quality(picks: int) -> list[dict[str, Any]]:
    eps = [Endpoint(f"10.0.0.{i}:80", zone="a" if i < 5 else "b") for i in range(ENDPOINTS)]
    clock = ManualClock()
    makers: dict[str, Callable[[], Any]] = {
        "SmoothWeightedRoundRobin": lambda: SmoothWeightedRoundRobin(eps),
        "WeightedRandom": lambda: WeightedRandom(eps, rng=random.Random(1)),
        "LeastRequest (P2C)": lambda: LeastRequest(eps, rng=random.Random(1)),
        "ShortestResponse": lambda: ShortestResponse(eps, clock=clock, rng=random.Random(1)),
        "ZoneAware (over RR)": lambda: ZoneAware(
            eps, local_zone="a", make_balancer=SmoothWeightedRoundRobin
        ),
        "RingHash": lambda: RingHash(eps),
        "RingHash (bounded 1.25)": lambda: RingHash(eps, balance_factor=1.25, rng=random.Random(1)),
        "Maglev": lambda: Maglev(eps),
    }
    rng = random.Random(42)
    keys = [f"user-{rng.getrandbits(48)}" for _ in range(min(picks, 200_000))]
    out = []
    for name, make in makers.items():
        b = make()
        hashed = name.startswith(("RingHash", "Maglev"))
        loads: collections.Counter[str] = collections.Counter()
        flight: collections.deque[Any] = collections.deque()
        t0 = time.perf_counter()
        for i in range(picks):
            e = b.pick(keys[i % len(keys)] if hashed else None)
            loads[e.address] += 1
            flight.append(e)
            if len(flight) >= IN_FLIGHT:
                done = flight.popleft()
                b.report(done, 0.01, True)
                b.release(done)
            if not i & 1023:
                clock.advance(0.001)
        elapsed = time.perf_counter() - t0
        served = [e for e in eps if e.zone == "a"] if name.startswith("Zone") else eps
        counts = [loads.get(e.address, 0) for e in served]
        mean = picks / len(served)
        out.append(
            {
                "balancer": name,
                "picks": picks,
                "max_over_mean": round(max(counts) / mean, 4),
                "min_over_mean": round(min(counts) / mean, 4),
                "ns_per_pick": round(elapsed / picks * 1e9, 1),
                "note": "over the 5 local-zone endpoints (all healthy: no spill)"
                if name.startswith("Zone")
                else "",
            }
        )
    return out


def key_disruption(keys_n: int) -> list[dict[str, Any]]:
    eps = [Endpoint(f"10.0.1.{i}:80") for i in range(ENDPOINTS)]
    rng = random.Random(7)
    keys = [f"session-{rng.getrandbits(48)}" for _ in range(keys_n)]
    out = []
    for name, make in (("RingHash", lambda: RingHash(eps)), ("Maglev", lambda: Maglev(eps))):
        b = make()
        before = [b.pick(k).address for k in keys]
        removed = eps[3].address
        b.update([e for e in eps if e.address != removed])
        after = [b.pick(k).address for k in keys]
        moved = sum(1 for x, y in zip(before, after, strict=True) if x != y)
        orphaned = sum(1 for x in before if x == removed)
        extra = moved - orphaned
        out.append(
            {
                "balancer": name,
                "keys": keys_n,
                "moved_fraction": round(moved / keys_n, 4),
                "ideal_fraction": round(1 / ENDPOINTS, 4),
                "moved_beyond_removed_fraction": round(extra / keys_n, 4),
            }
        )
    return out


# -- report ------------------------------------------------------------------------


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nper-call overhead (median of {REPEATS} runs; ratio = peer / syndic overhead)")
    print(f"{'group':8} {'mode':5} {'subject':48} {'ns/call':>9} {'ovh ns':>9} {'ratio':>7}  2x?")
    for r in report["overhead"]:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        goal = ("yes" if r["goal_met"] else "NO") if "ratio" in r else ""
        print(
            f"{r['group']:8} {r['mode']:5} {r['subject']:48} {r['ns_per_call']:9.1f} "
            f"{r['overhead_ns']:9.1f} {ratio:>7}  {goal}"
        )
    print(f"\nlimiter accuracy ({OFFERED_X}x overload, {SIM_S:g} s on a ManualClock)")
    for a in report["accuracy"]:
        print(
            f"  {a['limiter']:30} {a['granted_per_s']:8.2f}/s of {a['configured_per_s']:g}/s "
            f"error {a['error_pct']:+.3f}%  {'ok' if a['within_1pct'] else 'OVER 1%'}"
        )
    print(f"\nbalancer load ({ENDPOINTS} endpoints, {IN_FLIGHT} in flight)")
    for b in report["balancers"]:
        print(
            f"  {b['balancer']:26} picks {b['picks']:>9}  max/mean {b['max_over_mean']:.4f}  "
            f"min/mean {b['min_over_mean']:.4f}  {b['ns_per_pick']:8.1f} ns/pick  {b['note']}"
        )
    print("\nkey disruption on removing 1 of 10 endpoints")
    for d in report["disruption"]:
        print(
            f"  {d['balancer']:10} moved {d['moved_fraction']:.4f} "
            f"(ideal {d['ideal_fraction']:.4f}); beyond the removed endpoint's keys "
            f"{d['moved_beyond_removed_fraction']:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 30 s)")
    args = parser.parse_args()
    started = time.perf_counter()
    run_s = RUN_S_QUICK if args.quick else RUN_S_FULL
    picks = 50_000 if args.quick else 1_000_000
    report: dict[str, Any] = {
        "suite": "traffic",
        "quick": args.quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "repeats": REPEATS,
        "overhead": run_overhead(run_s),
        "accuracy": accuracy(),
        "balancers": balancer_quality(picks),
        "disruption": key_disruption(20_000 if args.quick else 200_000),
    }
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_tables(report)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS_PATH} in {report['elapsed_s']} s")


if __name__ == "__main__":
    main()
