"""Alert rules: parsing refuses malformed rules with the field named; the engine's
threshold, rate, absence and for-duration semantics; detectors on synthetic
series; the Prometheus export accepted by promtool."""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from syndic.observability.alerts.detectors import (
    EwmaDetector,
    MadDetector,
    SeasonalDetector,
    make_detector,
)
from syndic.observability.alerts.engine import AlertEngine, Transition
from syndic.observability.alerts.notify import WebhookError, check_webhook_url
from syndic.observability.alerts.promrules import prometheus_rules
from syndic.observability.alerts.rules import Rule, RuleError, default_rules, parse_rules
from syndic.observability.samples import SERIES, Sample

ZERO = Sample(0.0, *([0.0] * len(SERIES)))


def at(t: float, **values: float) -> Sample:
    return dataclasses.replace(ZERO, at_unix_s=t, **values)


def run(engine: AlertEngine, samples: list[Sample]) -> list[tuple[float, str, str]]:
    return [(t.at_unix_s, t.name, t.state) for s in samples for t in engine.evaluate(s)]


def test_threshold_waits_for_its_duration_then_fires_and_resolves() -> None:
    rule = Rule("NoLeader", "threshold", "has_leader", "<", 1, for_s=10)
    seen: list[Transition] = []
    engine = AlertEngine([rule], seen.append)
    samples = [at(t, has_leader=0 if 5 <= t <= 30 else 1) for t in range(0, 50, 5)]
    assert run(engine, samples) == [(15, "NoLeader", "firing"), (35, "NoLeader", "resolved")]
    assert [t.state for t in seen] == ["firing", "resolved"]


def test_a_short_breach_never_fires() -> None:
    engine = AlertEngine([Rule("Slow", "threshold", "fsync_ms_p99", ">", 100, for_s=20)])
    samples = [at(t, fsync_ms_p99=500 if t == 10 else 1) for t in range(0, 60, 5)]
    assert run(engine, samples) == []


def test_rate_of_change_over_a_window() -> None:
    rule = Rule("Flapping", "rate", "leader_changes", ">", 3, window_s=60)
    engine = AlertEngine([rule])
    changes = [0, 0, 1, 2, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    samples = [at(i * 10, leader_changes=c) for i, c in enumerate(changes)]
    assert run(engine, samples) == [(40, "Flapping", "firing"), (90, "Flapping", "resolved")]


def test_absence_fires_after_a_full_window_of_nothing() -> None:
    rule = Rule("NoTraffic", "absence", "request_rate", window_s=30)
    engine = AlertEngine([rule])
    rates = [5, 5, 0, 0, 0, 0, 0, 0, 3]
    samples = [at(i * 10, request_rate=r) for i, r in enumerate(rates)]
    assert run(engine, samples) == [(50, "NoTraffic", "firing"), (80, "NoTraffic", "resolved")]


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"name": "x y", "kind": "threshold", "series": "watchers"}, "name"),
        ({"name": "A", "kind": "magic", "series": "watchers"}, "kind"),
        ({"name": "A", "kind": "threshold", "series": "nope"}, "series"),
        ({"name": "A", "kind": "threshold", "series": "watchers", "op": "=="}, "op"),
        ({"name": "A", "kind": "threshold", "series": "watchers", "value": "1"}, "value"),
        ({"name": "A", "kind": "threshold", "series": "watchers", "value": math.nan}, "value"),
        ({"name": "A", "kind": "threshold", "series": "watchers", "for_s": -1}, "for_s"),
        ({"name": "A", "kind": "rate", "series": "watchers"}, "window_s"),
        ({"name": "A", "kind": "anomaly", "series": "watchers", "detector": "x"}, "detector"),
        (
            {"name": "A", "kind": "anomaly", "series": "watchers", "detector": "seasonal"},
            "period_samples",
        ),
        ({"name": "A", "kind": "threshold", "series": "watchers", "extra": 1}, "extra"),
        ({"name": "A", "series": "watchers"}, "kind"),
        ({"name": "A", "kind": "threshold", "series": "watchers", "severity": "meh"}, "severity"),
    ],
)
def test_malformed_rules_are_refused_with_the_field_named(
    rule: dict[str, object], field: str
) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([rule])
    assert info.value.field == field


def test_rule_set_shape_is_checked() -> None:
    with pytest.raises(RuleError, match="list"):
        parse_rules({"name": "A"})
    one = {"name": "A", "kind": "threshold", "series": "watchers"}
    with pytest.raises(RuleError, match="twice"):
        parse_rules([one, one])
    with pytest.raises(RuleError, match="at most"):
        parse_rules([dict(one, name=f"A{i}") for i in range(201)])


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://h/x",
        "http:///nohost",
        "http://user:pw@h/x",
        "http://h:0/x",
        "http://h:99999/x",
        "http://h/x y",
        "javascript:alert(1)",
        "http://h/" + "a" * 3000,
        7,
    ],
)
def test_malformed_webhook_urls_are_refused(url: object) -> None:
    with pytest.raises(WebhookError):
        check_webhook_url(url)


def test_good_webhook_urls_pass() -> None:
    for url in ("http://127.0.0.1:9093/hook", "https://alerts.example/x?a=1"):
        assert check_webhook_url(url) == url


def spike_series(seed: int, n: int = 400) -> tuple[list[float], set[int]]:
    rng = random.Random(seed)
    values = [100 + rng.gauss(0, 5) for _ in range(n)]
    spikes = {150, 260, 330}
    for i in spikes:
        values[i] += 80
    return values, spikes


@pytest.mark.parametrize("name", ["ewma", "mad"])
def test_detectors_find_spikes_without_false_alarms(name: str) -> None:
    values, spikes = spike_series(1)
    detector = make_detector(name, 6.0)
    flagged = {i for i, v in enumerate(values) if detector.score(v) > detector.threshold}
    assert flagged == spikes


def test_seasonal_detector_ignores_the_daily_pattern_but_not_a_break_in_it() -> None:
    period = 48
    rng = random.Random(2)
    values = [
        100 + 60 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 2) for i in range(period * 8)
    ]
    values[300] += 40
    seasonal = SeasonalDetector(period, threshold=6.0)
    mad = MadDetector(threshold=6.0)
    seasonal_flags = {i for i, v in enumerate(values) if seasonal.score(v) > 6.0}
    mad_flags = {i for i, v in enumerate(values) if mad.score(v) > 6.0}
    # A break of 40 inside a swing of 120 is invisible without the season.
    assert 300 in seasonal_flags and len(seasonal_flags) <= 3
    assert 300 not in mad_flags


def test_detector_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        EwmaDetector(alpha=0)
    with pytest.raises(ValueError, match="window"):
        MadDetector(window=1)


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) not on PATH")
def test_promtool_accepts_the_exported_rules(tmp_path: Path) -> None:
    path = tmp_path / "syndic-rules.yml"
    path.write_text(prometheus_rules(default_rules()))
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(default_rules())} rules found" in done.stdout
    # A broken expression is caught by the same check: the test can fail.
    path.write_text(prometheus_rules([Rule("Bad", "threshold", "watchers", promql="rate(x[5m]")]))
    bad = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], check=False, capture_output=True, timeout=60
    )
    assert bad.returncode != 0
