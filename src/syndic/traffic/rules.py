"""Policy rules as data: parse and validate a dict, JSON or YAML document.

A rule document describes one :class:`~syndic.traffic.policy.Policy`; every
section is optional and a missing section switches that stage off::

    name: orders-api
    degrade:    {feature: orders.recommendations}
    rate_limit: {limiter: orders, permits: 1}
    bulkhead:   {max_concurrent: 10, max_queue: 20, max_wait_s: 0.5}
    breaker:    {window: count, window_size: 100, minimum_calls: 20,
                 failure_ratio: 0.5, open_wait_s: 30, half_open_probes: 3}
    retry:      {max_attempts: 3, per_try_timeout_s: 1.0, idempotent: true,
                 backoff: {base_s: 0.05, cap_s: 2.0, multiplier: 2, jitter: full}}
    budget:     {ratio: 0.2, min_retries_per_s: 10, window_s: 10}
    timeout:    {overall_s: 5}
    hedge:      {delay_s: 0.05, max_hedges: 1}
    fallback:   {value: [], last_good_max_age_s: 60}

Validation is strict, as a configuration centre must be: unknown keys are
rejected, types are exact (``true`` is not a number, ``"3"`` is not an
integer), numbers must be finite and in range, and the error names the
path of the bad field, e.g. ``breaker.failure_ratio: must be in (0, 1],
got 1.5``. Parsing builds new values only, so a rejected document changes
nothing. Documents are bounded in size (:data:`RULES_DOCUMENT_BYTES_MAX`)
and in nesting (:data:`FALLBACK_VALUE_NODES_MAX`).

>>> rules = parse_rules({"name": "orders", "retry": {"max_attempts": 2}})
>>> rules.retry.max_attempts
2
>>> parse_rules({"breaker": {"failure_ratio": 1.5}})
Traceback (most recent call last):
...
syndic.traffic.errors.RuleError: breaker.failure_ratio: must be in (0, 1], got 1.5
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from syndic.traffic.breaker import BreakerConfig
from syndic.traffic.budget import BUDGET_MIN_RETRIES_PER_S_MAX, BUDGET_WINDOW_S_MAX
from syndic.traffic.bulkhead import BulkheadConfig
from syndic.traffic.deadline import check_timeout_s
from syndic.traffic.degrade import check_feature_name
from syndic.traffic.errors import RuleError
from syndic.traffic.fallback import MISSING
from syndic.traffic.hedge import HedgeConfig
from syndic.traffic.retry import Backoff, RetryConfig
from syndic.traffic.validation import check_int, check_number, shown, type_name

if TYPE_CHECKING:
    from syndic.traffic.policy import Policy

# A rule document is a page of settings; a megabyte is already absurd and
# keeps a hostile upload from costing more than one parse.
RULES_DOCUMENT_BYTES_MAX = 1 << 20
# The fallback value is user data returned on failure; bound its shape so a
# document cannot smuggle in a huge structure (or a YAML alias bomb).
FALLBACK_VALUE_NODES_MAX = 10_000
FALLBACK_VALUE_DEPTH_MAX = 32
PERMITS_MAX = 1_000_000
POLICY_NAME_LENGTH_MAX = 200
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """Take ``permits`` from the named limiter before each call.

    The permits are released when the call ends, which returns them to a
    concurrency limiter and is a no-op for a rate limiter (the
    ``syndic.traffic.ratelimit`` contract).
    """

    limiter: str
    permits: int = 1

    def __post_init__(self) -> None:
        check_feature_name("limiter", self.limiter)
        check_int("permits", self.permits, 1, PERMITS_MAX)


@dataclass(frozen=True, slots=True)
class BudgetRule:
    ratio: float = 0.2
    min_retries_per_s: float = 10.0
    window_s: float = 10.0

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, 0.0, 1.0, low_open=False)
        check_number(
            "min_retries_per_s",
            self.min_retries_per_s,
            0.0,
            BUDGET_MIN_RETRIES_PER_S_MAX,
            low_open=False,
        )
        check_number("window_s", self.window_s, 0.0, BUDGET_WINDOW_S_MAX, low_open=True)


@dataclass(frozen=True, slots=True)
class FallbackRule:
    """A constant answer and/or the last good answer within a max age."""

    value: Any = MISSING
    last_good_max_age_s: float | None = None

    def __post_init__(self) -> None:
        if self.last_good_max_age_s is not None:
            check_timeout_s("last_good_max_age_s", self.last_good_max_age_s)
        if self.value is not MISSING:
            _check_json_value("value", self.value)


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """Everything a Policy does, as one immutable value."""

    name: str = "policy"
    degrade_feature: str | None = None
    rate_limit: RateLimitRule | None = None
    bulkhead: BulkheadConfig | None = None
    breaker: BreakerConfig | None = None
    retry: RetryConfig | None = None
    budget: BudgetRule | None = None
    timeout_s: float | None = None
    hedge: HedgeConfig | None = None
    fallback: FallbackRule | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not (
            0 < len(self.name) <= POLICY_NAME_LENGTH_MAX and _NAME.fullmatch(self.name)
        ):
            raise RuleError(
                "name",
                f"must be 1..{POLICY_NAME_LENGTH_MAX} characters of [A-Za-z0-9_.:/-], "
                f"got {shown(self.name)}",
            )
        if self.degrade_feature is not None:
            check_feature_name("degrade.feature", self.degrade_feature)
        if self.timeout_s is not None:
            check_timeout_s("timeout.overall_s", self.timeout_s)


def _bool(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RuleError(path, f"must be a boolean, got {type_name(value)}")
    return value


def _check_json_value(path: str, value: object) -> None:
    """Reject non-JSON values and oversized or deeply nested structures."""
    budget = [FALLBACK_VALUE_NODES_MAX]

    def walk(node: object, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise RuleError(path, f"is larger than {FALLBACK_VALUE_NODES_MAX} nodes")
        if depth > FALLBACK_VALUE_DEPTH_MAX:
            raise RuleError(path, f"is nested deeper than {FALLBACK_VALUE_DEPTH_MAX} levels")
        if node is None or isinstance(node, bool | int | str):
            if isinstance(node, str) and len(node) > RULES_DOCUMENT_BYTES_MAX:
                raise RuleError(path, "contains a string longer than the document limit")
            return
        if isinstance(node, float):
            if not math.isfinite(node):
                raise RuleError(path, f"contains a non-finite number {node!r}")
            return
        if isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
            return
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise RuleError(path, f"has a non-string key {shown(key)}")
                walk(item, depth + 1)
            return
        raise RuleError(path, f"must be JSON data, got {type_name(node)}")

    walk(value, 0)


# -- the schema walker ---------------------------------------------------------
# Each section: allowed keys -> a checker that returns the Python value.

_Checker = Callable[[str, object], object]


def _opt(check: _Checker) -> _Checker:
    def checked(path: str, value: object) -> object:
        return None if value is None else check(path, value)

    return checked


def _num_any(path: str, value: object) -> float:
    # Range checks live in the config classes; here only the type.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, f"must be a number, got {type_name(value)}")
    return value


def _int_any(path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be an integer, got {type_name(value)}")
    return value


def _str_any(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise RuleError(path, f"must be a string, got {type_name(value)}")
    if len(value) > POLICY_NAME_LENGTH_MAX:
        raise RuleError(path, f"must be at most {POLICY_NAME_LENGTH_MAX} characters")
    return value


def _any_json(path: str, value: object) -> object:
    _check_json_value(path, value)
    return value


def _section(path: str, value: object, fields: Mapping[str, _Checker]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleError(path or "$", f"must be a mapping, got {type_name(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise RuleError(path or "$", f"has a non-string key {shown(key)}")
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise RuleError(f"{path}.{key}" if path else key, f"unknown key (allowed: {allowed})")
        out[key] = fields[key](f"{path}.{key}" if path else key, item)
    return out


def _build(path: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Construct a config; its RuleError paths are re-rooted under ``path``."""
    for spec in dataclasses.fields(factory):  # type: ignore[arg-type]
        required = spec.default is dataclasses.MISSING and (
            spec.default_factory is dataclasses.MISSING
        )
        if required and spec.name not in kwargs:
            raise RuleError(f"{path}.{spec.name}", "is required")
    try:
        return factory(**kwargs)
    except RuleError as exc:
        message = str(exc)[len(exc.path) + 2 :]
        raise RuleError(f"{path}.{exc.path}", message) from None


_BREAKER_FIELDS: dict[str, _Checker] = {
    "window": _str_any,
    "window_size": _int_any,
    "window_s": _num_any,
    "window_buckets": _int_any,
    "minimum_calls": _int_any,
    "failure_ratio": _opt(_num_any),
    "failure_count": _opt(_int_any),
    "slow_call_ratio": _opt(_num_any),
    "slow_call_s": _opt(_num_any),
    "open_wait_s": _num_any,
    "open_wait_multiplier": _num_any,
    "open_wait_max_s": _opt(_num_any),
    "half_open_probes": _int_any,
    "half_open_successes": _opt(_int_any),
    "half_open_max_s": _opt(_num_any),
}
_BACKOFF_FIELDS: dict[str, _Checker] = {
    "base_s": _num_any,
    "cap_s": _num_any,
    "multiplier": _num_any,
    "jitter": _str_any,
}
_BULKHEAD_FIELDS: dict[str, _Checker] = {
    "max_concurrent": _int_any,
    "max_queue": _int_any,
    "max_wait_s": _opt(_num_any),
}
_BUDGET_FIELDS: dict[str, _Checker] = {
    "ratio": _num_any,
    "min_retries_per_s": _num_any,
    "window_s": _num_any,
}
_HEDGE_FIELDS: dict[str, _Checker] = {"delay_s": _num_any, "max_hedges": _int_any}
_RATE_FIELDS: dict[str, _Checker] = {
    "limiter": _str_any,
    "permits": _int_any,
}
_FALLBACK_FIELDS: dict[str, _Checker] = {
    "value": _any_json,
    "last_good_max_age_s": _opt(_num_any),
}


def _retry(path: str, value: object) -> RetryConfig:
    fields: dict[str, _Checker] = {
        "max_attempts": _int_any,
        "per_try_timeout_s": _opt(_num_any),
        "idempotent": _bool,
        "backoff": lambda p, v: _build(p, Backoff, _section(p, v, _BACKOFF_FIELDS)),
    }
    kwargs = _section(path, value, fields)
    return _build(path, RetryConfig, kwargs)  # type: ignore[no-any-return]


def parse_rules(document: object) -> PolicyRules:
    """Validate a rule document into :class:`PolicyRules`; the one parser for rules.

    ``document`` is a decoded mapping, or the text of a JSON or YAML
    document (``str`` or UTF-8 ``bytes``, at most
    :data:`RULES_DOCUMENT_BYTES_MAX`). A configuration centre calls this at
    publish time, and a :class:`~syndic.traffic.policy.Policy` calls it on
    :meth:`~syndic.traffic.policy.Policy.swap_rules`, so a document the
    centre accepted is one every client accepts. Raises :class:`RuleError`
    whose ``path`` names the bad field (``$`` for the document itself).

    >>> parse_rules('{"retry": {"max_attempts": 2}}').retry.max_attempts
    2
    >>> parse_rules(b"breaker: {window_size: 0}")
    Traceback (most recent call last):
    ...
    syndic.traffic.errors.RuleError: breaker.window_size: must be in [1, 1000000], got 0
    """
    if isinstance(document, str | bytes | bytearray):
        return _parse_text(bytes(document) if isinstance(document, bytearray) else document)
    return _parse_document(document)


def _parse_text(text: str | bytes) -> PolicyRules:
    # JSON is tried as JSON (so NaN and Infinity are refused with a JSON
    # message); everything else is read as YAML, of which JSON is a subset.
    _check_size(text)
    head = text.lstrip()[:1]
    if head in ("{", b"{"):
        return parse_rules_json(text)
    return parse_rules_yaml(text)


def _parse_document(document: object) -> PolicyRules:
    top: dict[str, _Checker] = {
        "name": _str_any,
        "degrade": lambda p, v: _section(p, v, {"feature": _str_any}).get("feature"),
        "rate_limit": lambda p, v: _build(p, RateLimitRule, _section(p, v, _RATE_FIELDS)),
        "bulkhead": lambda p, v: _build(p, BulkheadConfig, _section(p, v, _BULKHEAD_FIELDS)),
        "breaker": lambda p, v: _build(p, BreakerConfig, _section(p, v, _BREAKER_FIELDS)),
        "retry": _retry,
        "budget": lambda p, v: _build(p, BudgetRule, _section(p, v, _BUDGET_FIELDS)),
        "timeout": lambda p, v: _section(p, v, {"overall_s": _num_any}).get("overall_s"),
        "hedge": lambda p, v: _build(p, HedgeConfig, _section(p, v, _HEDGE_FIELDS)),
        "fallback": lambda p, v: _build(p, FallbackRule, _section(p, v, _FALLBACK_FIELDS)),
    }
    sections = _section("", document, top)
    kwargs: dict[str, Any] = {
        "name": sections.get("name", "policy"),
        "degrade_feature": sections.get("degrade"),
        "rate_limit": sections.get("rate_limit"),
        "bulkhead": sections.get("bulkhead"),
        "breaker": sections.get("breaker"),
        "retry": sections.get("retry"),
        "budget": sections.get("budget"),
        "timeout_s": sections.get("timeout"),
        "hedge": sections.get("hedge"),
        "fallback": sections.get("fallback"),
    }
    if isinstance(document, Mapping):  # a known section present but empty
        if "degrade" in document and kwargs["degrade_feature"] is None:
            raise RuleError("degrade.feature", "is required")
        if "timeout" in document and kwargs["timeout_s"] is None:
            raise RuleError("timeout.overall_s", "is required")
    if kwargs["fallback"] is not None:
        fb: FallbackRule = kwargs["fallback"]
        if fb.value is MISSING and fb.last_good_max_age_s is None:
            raise RuleError("fallback", "needs value or last_good_max_age_s")
    return PolicyRules(**kwargs)


def _check_size(text: str | bytes) -> None:
    if len(text) > RULES_DOCUMENT_BYTES_MAX:
        raise RuleError(
            "$",
            f"document is {len(text)} bytes; the limit is {RULES_DOCUMENT_BYTES_MAX} bytes",
        )


def _reject_constant(token: str) -> float:
    raise RuleError("$", f"non-finite number {token} is not valid JSON")


def parse_rules_json(text: str | bytes) -> PolicyRules:
    """Parse a JSON rule document (NaN and Infinity are refused)."""
    _check_size(text)
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RuleError:
        raise
    except (ValueError, RecursionError) as exc:
        raise RuleError("$", f"malformed JSON: {exc}") from None
    return _parse_document(document)


def parse_rules_yaml(text: str | bytes) -> PolicyRules:
    """Parse a YAML rule document with the safe loader (no Python objects)."""
    _check_size(text)
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise RuleError("$", f"malformed YAML: {exc}") from None
    return _parse_document(document)


def build_policy(document: Mapping[str, Any] | PolicyRules, **kwargs: Any) -> Policy:
    """Validate ``document`` and build a :class:`~syndic.traffic.policy.Policy`.

    ``kwargs`` go to the Policy constructor (``clock``, ``rng``, ``limiters``,
    ``switches``, exception classification).
    """
    from syndic.traffic.policy import Policy

    rules = document if isinstance(document, PolicyRules) else parse_rules(document)
    return Policy(rules, **kwargs)
