"""Evaluates alert rules on each sample; pending -> firing -> resolved.

The decisions are pure (:meth:`AlertEngine.evaluate` returns the
transitions); the notifier delivers them to the log and to webhooks.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from syndic.observability.alerts.detectors import Detector, make_detector
from syndic.observability.alerts.rules import Rule
from syndic.observability.samples import Sample

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
# Samples a rate or absence rule looks back over (an hour at 5 s).
HISTORY_SAMPLES_MAX: Final = 720


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changing state: ``firing`` or ``resolved``."""

    name: str
    state: str
    at_unix_s: float
    value: float
    severity: str
    summary: str


@dataclass(slots=True)
class _RuleState:
    rule: Rule
    detector: Detector | None
    breached_since: float = 0.0
    firing_since: float = 0.0
    value: float | None = None


class AlertEngine:
    def __init__(self, rules: list[Rule], notify: Callable[[Transition], None] | None = None):
        self._history: collections.deque[Sample] = collections.deque(maxlen=HISTORY_SAMPLES_MAX)
        self.notify = notify
        self._states: dict[str, _RuleState] = {}
        self.set_rules(rules)

    @property
    def rules(self) -> list[Rule]:
        return [s.rule for s in self._states.values()]

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace the rule set; a rule kept unchanged keeps its state."""
        old = self._states
        self._states = {}
        for rule in rules:
            kept = old.get(rule.name)
            if kept is not None and kept.rule == rule:
                self._states[rule.name] = kept
            else:
                detector = (
                    make_detector(rule.detector, rule.value, rule.period_samples)
                    if rule.kind == "anomaly"
                    else None
                )
                self._states[rule.name] = _RuleState(rule, detector)

    def evaluate(self, sample: Sample) -> list[Transition]:
        self._history.append(sample)
        out: list[Transition] = []
        for st in self._states.values():
            breached, value = self._breached(st, sample)
            st.value = value
            t = self._step(st, breached, sample.at_unix_s, value)
            if t is not None:
                out.append(t)
                if self.notify is not None:
                    self.notify(t)
        return out

    def _breached(self, st: _RuleState, sample: Sample) -> tuple[bool, float]:
        rule = st.rule
        current = float(getattr(sample, rule.series))
        compare = _OPS[rule.op]
        if rule.kind == "threshold":
            return compare(current, rule.value), current
        if rule.kind == "anomaly":
            assert st.detector is not None
            score = st.detector.score(current)
            return score > rule.value, current
        window = [s for s in self._history if s.at_unix_s >= sample.at_unix_s - rule.window_s]
        if rule.kind == "rate":
            change = current - float(getattr(window[0], rule.series))
            return compare(change, rule.value), change
        # absence: every sample in the window is zero, and the window is full.
        covered = sample.at_unix_s - window[0].at_unix_s >= rule.window_s * 0.9
        absent = all(float(getattr(s, rule.series)) == 0.0 for s in window)
        return covered and absent, current

    @staticmethod
    def _step(st: _RuleState, breached: bool, now: float, value: float) -> Transition | None:
        rule = st.rule
        if not breached:
            st.breached_since = 0.0
            if st.firing_since:
                st.firing_since = 0.0
                return Transition(rule.name, "resolved", now, value, rule.severity, rule.summary)
            return None
        if not st.breached_since:
            st.breached_since = now
        if not st.firing_since and now - st.breached_since >= rule.for_s:
            st.firing_since = now
            return Transition(rule.name, "firing", now, value, rule.severity, rule.summary)
        return None

    def status(self) -> list[dict[str, Any]]:
        out = []
        for st in self._states.values():
            state = "firing" if st.firing_since else "pending" if st.breached_since else "ok"
            out.append(
                {
                    "name": st.rule.name,
                    "state": state,
                    "since_unix_s": st.firing_since or st.breached_since or 0.0,
                    "value": st.value,
                    "severity": st.rule.severity,
                    "summary": st.rule.summary,
                }
            )
        return out
