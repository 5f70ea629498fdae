"""Outlier detection on a manual clock: detectors, ejection timing, ejection cap."""

from __future__ import annotations

import math
import random

import pytest

from syndic.traffic.clock import ManualClock
from syndic.traffic.endpoints import Endpoint
from syndic.traffic.errors import RuleError
from syndic.traffic.outlier import OutlierConfig, OutlierDetector


def hosts(n: int) -> list[Endpoint]:
    return [Endpoint(f"h{i}") for i in range(n)]


def fail(od: OutlierDetector, e: Endpoint, times: int) -> None:
    for _ in range(times):
        od.report(e, ok=False)


def test_consecutive_errors_eject_and_a_success_resets_the_count() -> None:
    clock = ManualClock()
    h = hosts(10)
    od = OutlierDetector(h, clock=clock)
    fail(od, h[0], 4)
    od.report(h[0], ok=True)
    fail(od, h[0], 4)
    assert not od.is_ejected(h[0])
    od.report(h[0], ok=False)
    assert od.is_ejected(h[0])
    assert od.healthy(h) == h[1:]
    assert od.events[-1].reason == "consecutive_errors"
    od.check_invariants()


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    clock = ManualClock()
    e = hosts(1)[0]
    cfg = OutlierConfig(base_ejection_time_s=30, max_ejection_time_s=70, interval_s=1000)
    od = OutlierDetector([e], clock=clock, config=cfg)
    durations = []
    for _ in range(4):
        fail(od, e, 5)
        assert od.is_ejected(e)
        start = clock.now_s()
        while od.is_ejected(e):
            clock.advance(1.0)
        durations.append(clock.now_s() - start)
    assert durations == [30.0, 60.0, 70.0, 70.0]


def test_ejection_multiplier_decays_while_healthy() -> None:
    clock = ManualClock()
    e = hosts(1)[0]
    od = OutlierDetector([e], clock=clock, config=OutlierConfig(interval_s=10))
    fail(od, e, 5)
    clock.advance(30.0)
    assert not od.is_ejected(e)
    fail(od, e, 5)  # second ejection: 60 s
    assert od.events[-1].ejection_time_s == 60.0
    clock.advance(60.0)
    assert not od.is_ejected(e)
    clock.advance(25.0)  # healthy through intervals: multiplier 2 -> 0
    od.is_ejected(e)
    fail(od, e, 5)
    assert od.events[-1].ejection_time_s == 30.0


@pytest.mark.parametrize(("percent", "expected"), [(10, 1), (30, 3), (50, 5), (0, 1)])
def test_max_ejection_percent_caps_ejections_but_always_allows_one(
    percent: float, expected: int
) -> None:
    clock = ManualClock()
    h = hosts(10)
    od = OutlierDetector(h, clock=clock, config=OutlierConfig(max_ejection_percent=percent))
    for e in h[:8]:
        fail(od, e, 5)
    assert od.ejected_count == expected
    assert len(od.healthy(h)) == 10 - expected
    od.check_invariants()


def test_success_rate_ejects_the_outlier_at_the_interval_only() -> None:
    clock = ManualClock()
    h = hosts(10)
    od = OutlierDetector(h, clock=clock, config=OutlierConfig(consecutive_errors=10**6))
    rng = random.Random(3)
    for e in h:
        for _ in range(200):
            rate = 0.5 if e == h[7] else 0.99
            od.report(e, ok=rng.random() < rate)
    assert not od.is_ejected(h[7]), "success rate is evaluated on the interval"
    clock.advance(10.0)
    assert od.is_ejected(h[7])
    assert [e for e in h if od.is_ejected(e)] == [h[7]]
    assert od.events[-1].reason == "success_rate"


def test_success_rate_needs_enough_hosts_with_enough_volume() -> None:
    clock = ManualClock()
    h = hosts(4)  # below success_rate_minimum_hosts = 5
    od = OutlierDetector(h, clock=clock, config=OutlierConfig(consecutive_errors=10**6))
    for e in h:
        for i in range(200):
            od.report(e, ok=(e != h[0]) or i % 2 == 0)
    clock.advance(10.0)
    assert od.healthy(h) == h


def test_failure_percentage_ejects_when_enabled() -> None:
    clock = ManualClock()
    h = hosts(6)
    cfg = OutlierConfig(
        consecutive_errors=10**6,
        enforcing_success_rate=0,
        enforcing_failure_percentage=100,
        max_ejection_percent=50,
    )
    od = OutlierDetector(h, clock=clock, config=cfg)
    for e in h:
        for i in range(100):
            od.report(e, ok=(i % 10 == 0) if e in h[:2] else True)  # 90 % failures
    clock.advance(10.0)
    assert [e for e in h if od.is_ejected(e)] == h[:2]
    assert {ev.reason for ev in od.events} == {"failure_percentage"}
    # Off by default (Envoy's enforcing_failure_percentage = 0).
    quiet = OutlierDetector(h, clock=clock, config=OutlierConfig(consecutive_errors=10**6))
    for i in range(100):
        quiet.report(h[0], ok=i % 10 == 0)
    clock.advance(10.0)
    assert not quiet.is_ejected(h[0])


def test_endpoint_updates_keep_history_and_ignore_removed() -> None:
    clock = ManualClock()
    h = hosts(3)
    od = OutlierDetector(h, clock=clock)
    fail(od, h[0], 5)
    od.update([*h, Endpoint("new")])
    assert od.is_ejected(h[0])
    od.update(h[1:])
    assert od.ejected_count == 0
    od.report(h[0], ok=False)  # late report for a removed endpoint: ignored
    od.check_invariants()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("interval_s", 0, "outlier.interval_s: must be in"),
        ("interval_s", math.nan, "outlier.interval_s: must not be NaN"),
        ("base_ejection_time_s", -1, "outlier.base_ejection_time_s"),
        ("max_ejection_time_s", 1e12, "outlier.max_ejection_time_s"),
        ("max_ejection_percent", 101, "outlier.max_ejection_percent: must be a percentage"),
        ("consecutive_errors", 0, "outlier.consecutive_errors: must be an int"),
        ("consecutive_errors", 2.5, "outlier.consecutive_errors: must be an int"),
        ("success_rate_stdev_factor", -1, "outlier.success_rate_stdev_factor"),
        ("enforcing_success_rate", True, "must be a number"),
    ],
)
def test_invalid_config_is_a_rule_error(field: str, value: object, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        OutlierConfig(**{field: value})  # type: ignore[arg-type]


def test_hostile_reports_raise_and_change_nothing() -> None:
    clock = ManualClock()
    h = hosts(1)
    od = OutlierDetector(h, clock=clock)
    with pytest.raises(ValueError, match="ok must be bool"):
        od.report(h[0], ok=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an Endpoint"):
        od.report("h0", ok=False)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="duplicate"):
        od.update([h[0], h[0]])
    fail(od, h[0], 4)
    assert not od.is_ejected(h[0])


def test_the_documented_example_runs() -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "traffic" / "outlier.md"
    (code,) = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    exec(compile(code, str(page), "exec"), {"__name__": "__doc_example__"})
