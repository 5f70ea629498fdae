"""Alert rules: what they say, how they are parsed from JSON, and the default set.

A rule watches one series of the member's samples (see
:data:`syndic.observability.samples.SERIES`):

* ``threshold``: the value compared with ``value`` (``op``: > >= < <=);
* ``rate``: the change of the series over ``window_s``, compared likewise;
* ``absence``: no sample, or only zeros, for ``window_s`` (a member that
  stopped serving, a gauge that stopped moving up);
* ``anomaly``: a detector (``ewma``, ``mad``, ``seasonal``) scores each value;
  over ``value`` counts as breached.

The rule fires once it has been breached for ``for_s`` and resolves when it
no longer is. Each rule carries its PromQL twin for the exported file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from syndic.observability.alerts.detectors import DETECTORS
from syndic.observability.samples import SERIES

KINDS: Final = ("threshold", "rate", "absence", "anomaly")
OPS: Final = (">", ">=", "<", "<=")
SEVERITIES: Final = ("info", "warning", "critical")
NAME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
SUMMARY_CHARS_MAX: Final = 500
PROMQL_CHARS_MAX: Final = 2000
# A rule looks back at most an hour: the sample ring's length.
WINDOW_S_MAX: Final = 3600.0
FOR_S_MAX: Final = 86_400.0
RULES_MAX: Final = 200


class RuleError(ValueError):
    """A malformed rule, with the rule and field it concerns."""

    def __init__(self, rule: str, field: str, message: str) -> None:
        super().__init__(f"rule {rule!r:.70}: {field}: {message}")
        self.rule = rule
        self.field = field


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: str
    series: str
    op: str = ">"
    value: float = 0.0
    window_s: float = 0.0
    for_s: float = 0.0
    detector: str = ""
    period_samples: int = 0
    severity: str = "warning"
    summary: str = ""
    promql: str = ""

    def __post_init__(self) -> None:
        def bad(field: str, message: str) -> RuleError:
            return RuleError(str(self.name), field, message)

        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise bad("name", "must match [A-Za-z][A-Za-z0-9_]{0,63}")
        if self.kind not in KINDS:
            raise bad("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r:.40}")
        if self.series not in SERIES:
            raise bad("series", f"unknown series {self.series!r:.60}; known: {', '.join(SERIES)}")
        if self.op not in OPS:
            raise bad("op", f"must be one of {' '.join(OPS)}, got {self.op!r:.10}")
        for field, high in (("value", 1e18), ("window_s", WINDOW_S_MAX), ("for_s", FOR_S_MAX)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise bad(field, f"must be a finite number, got {v!r:.40}")
            if field != "value" and not 0 <= v <= high:
                raise bad(field, f"must be in [0, {high}], got {v}")
        if self.kind in ("rate", "absence") and self.window_s <= 0:
            raise bad("window_s", f"a {self.kind} rule needs window_s > 0")
        if self.kind == "anomaly":
            if self.detector not in DETECTORS:
                raise bad("detector", f"must be one of {', '.join(DETECTORS)}")
            if self.detector == "seasonal" and not 2 <= self.period_samples <= 100_000:
                raise bad("period_samples", "a seasonal detector needs a period of 2..100000")
        elif self.detector:
            raise bad("detector", "only anomaly rules take a detector")
        if self.severity not in SEVERITIES:
            raise bad("severity", f"must be one of {', '.join(SEVERITIES)}")
        if not isinstance(self.summary, str) or len(self.summary) > SUMMARY_CHARS_MAX:
            raise bad("summary", f"must be a string of at most {SUMMARY_CHARS_MAX} chars")
        if not isinstance(self.promql, str) or len(self.promql) > PROMQL_CHARS_MAX:
            raise bad("promql", f"must be a string of at most {PROMQL_CHARS_MAX} chars")


_FIELDS: Final = frozenset(Rule.__dataclass_fields__)


def parse_rule(data: object) -> Rule:
    if not isinstance(data, dict):
        raise RuleError("?", "rule", "must be a JSON object")
    name = str(data.get("name", "?"))
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RuleError(name, unknown[0], f"unknown field; known: {', '.join(sorted(_FIELDS))}")
    for field in ("name", "kind", "series"):
        if field not in data:
            raise RuleError(name, field, "is required")
    try:
        return Rule(**data)
    except TypeError as exc:
        raise RuleError(name, "rule", str(exc)) from None


def parse_rules(data: object) -> list[Rule]:
    if not isinstance(data, list):
        raise RuleError("?", "rules", "must be a JSON list of rules")
    if len(data) > RULES_MAX:
        raise RuleError("?", "rules", f"at most {RULES_MAX} rules, got {len(data)}")
    rules = [parse_rule(item) for item in data]
    names = [r.name for r in rules]
    for name in names:
        if names.count(name) > 1:
            raise RuleError(name, "name", "appears twice")
    return rules


def default_rules() -> list[Rule]:
    """etcd's usual alerts (etcd-mixin), on a member's own samples."""
    return [
        Rule(
            "SyndicNoLeader",
            "threshold",
            "has_leader",
            "<",
            1,
            for_s=10,
            severity="critical",
            summary="the member has no leader",
            promql="etcd_server_has_leader == 0",
        ),
        Rule(
            "SyndicFrequentLeaderChanges",
            "rate",
            "leader_changes",
            ">",
            3,
            window_s=900,
            severity="warning",
            summary="more than 3 leader changes in 15 minutes",
            promql="increase(etcd_server_leader_changes_seen_total[15m]) > 3",
        ),
        Rule(
            "SyndicFsyncSlow",
            "threshold",
            "fsync_ms_p99",
            ">",
            500,
            for_s=60,
            severity="warning",
            summary="WAL fsync p99 above 500 ms",
            promql="histogram_quantile(0.99, "
            "rate(etcd_disk_wal_fsync_duration_seconds_bucket[5m])) > 0.5",
        ),
        Rule(
            "SyndicDatabaseNearQuota",
            "threshold",
            "db_quota_fraction",
            ">",
            0.8,
            for_s=60,
            severity="warning",
            summary="database above 80% of its quota",
            promql="syndic_db_quota_fraction > 0.8",
        ),
        Rule(
            "SyndicPeerUnreachable",
            "threshold",
            "peers_unreachable",
            ">",
            0,
            for_s=30,
            severity="warning",
            summary="a peer link is down",
            promql="syndic_peers_unreachable > 0",
        ),
        Rule(
            "SyndicInstancesCritical",
            "threshold",
            "instances_critical",
            ">",
            0,
            for_s=30,
            severity="warning",
            summary="registered instances have critical checks",
            promql="syndic_registry_instances_critical > 0",
        ),
        Rule(
            # 1 s: ten times the push goal (100 ms p99), so a slow client or
            # a busy member shows before SDKs run on stale config for long.
            "SyndicConfigPushLag",
            "threshold",
            "config_push_lag_s",
            ">",
            1.0,
            for_s=30,
            severity="warning",
            summary="config changes wait over 1 s to leave the member for their watchers",
            promql="syndic_config_push_lag_seconds > 1",
        ),
        Rule(
            "SyndicLatencyAnomaly",
            "anomaly",
            "latency_ms_p99",
            value=6,
            for_s=15,
            detector="mad",
            severity="info",
            summary="request latency p99 far outside its recent range",
            promql="abs(syndic_request_latency_p99_seconds - "
            "avg_over_time(syndic_request_latency_p99_seconds[1h])) > "
            "6 * stddev_over_time(syndic_request_latency_p99_seconds[1h])",
        ),
    ]


def rule_json(rule: Rule) -> dict[str, Any]:
    return {f: getattr(rule, f) for f in Rule.__dataclass_fields__}
