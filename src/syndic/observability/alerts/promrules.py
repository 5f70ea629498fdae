"""The alert rules as a Prometheus alerting-rules file (``promtool check rules``)."""

from __future__ import annotations

from typing import Any

import yaml

from syndic.observability.alerts.rules import Rule


def _duration(seconds: float) -> str:
    return f"{round(seconds)}s"


def prometheus_rules(rules: list[Rule], group: str = "syndic") -> str:
    """YAML for Prometheus: one alert per rule that has a PromQL twin."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        if not rule.promql:
            continue
        entry: dict[str, Any] = {"alert": rule.name, "expr": rule.promql}
        if rule.for_s:
            entry["for"] = _duration(rule.for_s)
        entry["labels"] = {"severity": rule.severity}
        entry["annotations"] = {"summary": rule.summary or rule.name}
        out.append(entry)
    return yaml.safe_dump({"groups": [{"name": group, "rules": out}]}, sort_keys=False)
