"""Consul's check status rules, on the pure tracker (time passed in)."""

from __future__ import annotations

import pytest

from syndic.agent.status import CheckTracker, http_status_result, script_exit_result
from syndic.registry.model import CHECK_OUTPUT_BYTES_MAX, CheckState, HealthStatus

P, W, C = HealthStatus.PASSING, HealthStatus.WARNING, HealthStatus.CRITICAL


def test_success_before_passing_and_failures_before_critical() -> None:
    t = CheckTracker(C, success_before_passing=3, failures_before_critical=2)
    assert t.observe(P, "ok", 0) is None
    assert t.observe(P, "ok", 1) is None
    assert t.observe(P, "ok", 2) == CheckState(P, "ok")
    assert t.observe(C, "down", 3) is None  # one failure is not enough
    assert t.observe(P, "ok", 4) is None  # a success resets the failure count; no change
    assert t.observe(C, "down", 5) is None
    assert t.observe(C, "down", 6) == CheckState(C, "down")


def test_only_changes_are_written() -> None:
    t = CheckTracker(C)
    writes = [t.observe(s, "x", i) for i, s in enumerate([P, P, P, W, W, C, C, P])]
    assert [w.status if w else None for w in writes] == [P, None, None, W, None, C, None, P]


def test_ttl_expiry_and_rearm() -> None:
    t = CheckTracker(C, ttl_ms=1000, now_ms=0)
    assert t.update_ttl(P, "fine", 100) == CheckState(P, "fine")
    assert t.expire(1000) is None  # deadline is 1100
    assert t.expire(1100) == CheckState(C, "TTL expired")
    assert t.expire(5000) is None  # expires once


def test_ttl_update_with_new_output_is_written() -> None:
    t = CheckTracker(P, ttl_ms=1000)
    assert t.update_ttl(P, "a", 0) == CheckState(P, "a")
    assert t.update_ttl(P, "a", 1) is None


def test_reap_after_deregister_delay_only_while_critical() -> None:
    t = CheckTracker(P, deregister_critical_after_ms=500)
    assert t.observe(C, "down", 100) is not None
    assert not t.should_reap(599)
    assert t.should_reap(600)
    t.observe(P, "up", 601)
    assert not t.should_reap(10_000)


def test_output_is_bounded() -> None:
    t = CheckTracker(C)
    state = t.observe(P, "x" * (CHECK_OUTPUT_BYTES_MAX * 3), 0)
    assert state is not None
    assert len(state.output.encode()) <= CHECK_OUTPUT_BYTES_MAX


@pytest.mark.parametrize(
    ("code", "status"), [(200, P), (204, P), (299, P), (429, W), (300, C), (404, C), (503, C)]
)
def test_http_verdicts(code: int, status: HealthStatus) -> None:
    assert http_status_result(code) is status


def test_script_verdicts() -> None:
    assert [script_exit_result(c) for c in (0, 1, 2, 127)] == [P, W, C, C]
