"""Rule documents: strict validation with field paths; malformed, oversized, hostile input."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.traffic.clock import ManualClock
from syndic.traffic.errors import RuleError
from syndic.traffic.policy import Policy
from syndic.traffic.rules import (
    RULES_DOCUMENT_BYTES_MAX,
    PolicyRules,
    build_policy,
    parse_rules,
    parse_rules_json,
    parse_rules_yaml,
)

FULL = {
    "name": "orders-api",
    "degrade": {"feature": "orders.recommendations"},
    "rate_limit": {"limiter": "orders", "permits": 2},
    "bulkhead": {"max_concurrent": 10, "max_queue": 20, "max_wait_s": 0.5},
    "breaker": {
        "window": "time",
        "window_s": 30,
        "window_buckets": 10,
        "minimum_calls": 20,
        "failure_ratio": 0.5,
        "slow_call_ratio": 0.8,
        "slow_call_s": 2.0,
        "open_wait_s": 5,
        "open_wait_multiplier": 2,
        "open_wait_max_s": 60,
        "half_open_probes": 3,
        "half_open_successes": 2,
    },
    "retry": {
        "max_attempts": 3,
        "per_try_timeout_s": 1.0,
        "idempotent": True,
        "backoff": {"base_s": 0.05, "cap_s": 2.0, "multiplier": 2, "jitter": "decorrelated"},
    },
    "budget": {"ratio": 0.2, "min_retries_per_s": 10, "window_s": 10},
    "timeout": {"overall_s": 5},
    "hedge": {"delay_s": 0.05, "max_hedges": 1},
    "fallback": {"value": {"items": []}, "last_good_max_age_s": 60},
}

YAML = """
name: orders-api
breaker: {window: count, window_size: 50, minimum_calls: 10, failure_ratio: 0.25}
retry:
  max_attempts: 2
  backoff: {base_s: 0.1, jitter: full}
timeout: {overall_s: 3}
"""


def test_full_document_parses_into_typed_rules() -> None:
    rules = parse_rules(FULL)
    assert rules.name == "orders-api"
    assert rules.degrade_feature == "orders.recommendations"
    assert rules.rate_limit is not None and rules.rate_limit.permits == 2
    assert rules.breaker is not None and rules.breaker.window == "time"
    assert rules.retry is not None and rules.retry.backoff.jitter == "decorrelated"
    assert rules.timeout_s == 5
    assert rules.fallback is not None and rules.fallback.value == {"items": []}
    assert parse_rules_json(json.dumps(FULL)) == rules
    policy = build_policy(
        FULL, clock=ManualClock(), rng=random.Random(0), limiters={"orders": object()}
    )
    assert isinstance(policy, Policy) and policy.rules == rules


def test_yaml_and_empty_documents() -> None:
    rules = parse_rules_yaml(YAML)
    assert rules.breaker is not None and rules.breaker.failure_ratio == 0.25
    assert rules.timeout_s == 3
    assert parse_rules({}) == PolicyRules()


BAD: list[tuple[Any, str]] = [
    (
        {"breaker": {"failure_ratio": 1.5}},
        r"^breaker\.failure_ratio: must be in \(0, 1\], got 1.5$",
    ),
    ({"breaker": {"failure_ratio": math.nan}}, r"^breaker\.failure_ratio: must be in"),
    ({"breaker": {"failure_ratio": "0.5"}}, r"^breaker\.failure_ratio: must be a number, got str$"),
    ({"breaker": {"window_size": True}}, r"^breaker\.window_size: must be an integer, got bool$"),
    ({"breaker": {"window_size": 2.0}}, r"^breaker\.window_size: must be an integer, got float$"),
    ({"breaker": {"window_size": 10**30}}, r"^breaker\.window_size: must be in \[1, 1000000\]"),
    ({"breaker": {"open_wait_s": -5}}, r"^breaker\.open_wait_s: must be in"),
    ({"breaker": {"open_wait_s": 1e308 * 10}}, r"^breaker\.open_wait_s"),
    ({"breaker": {"bogus": 1}}, r"^breaker\.bogus: unknown key \(allowed: "),
    ({"breaker": []}, r"^breaker: must be a mapping, got list$"),
    ({"breaker": None}, r"^breaker: must be a mapping, got null$"),
    ({"retry": {"backoff": {"jitter": "equal"}}}, r"^retry\.backoff\.jitter: must be"),
    ({"retry": {"backoff": {"base_s": -1}}}, r"^retry\.backoff\.base_s: must be"),
    ({"retry": {"backoff": {"extra": 1}}}, r"^retry\.backoff\.extra: unknown key"),
    ({"retry": {"max_attempts": 0}}, r"^retry\.max_attempts: must be in \[1, 100\], got 0$"),
    ({"retry": {"max_attempts": -(10**12)}}, r"^retry\.max_attempts"),
    ({"retry": {"idempotent": "true"}}, r"^retry\.idempotent: must be a boolean, got str$"),
    ({"retry": {"per_try_timeout_s": 0}}, r"^retry\.per_try_timeout_s: must be in"),
    ({"budget": {"ratio": -0.1}}, r"^budget\.ratio: must be in \[0, 1\], got -0.1$"),
    ({"budget": {"window_s": math.inf}}, r"^budget\.window_s"),
    ({"bulkhead": {"max_concurrent": 0}}, r"^bulkhead\.max_concurrent: must be in"),
    ({"bulkhead": {"max_queue": -1}}, r"^bulkhead\.max_queue: must be in"),
    ({"hedge": {"delay_s": 0.1, "max_hedges": 50}}, r"^hedge\.max_hedges: must be in \[1, 4\]"),
    ({"hedge": {}}, r"^hedge\.delay_s: is required$"),
    ({"timeout": {"overall_s": -1}}, r"^timeout\.overall_s: must be in"),
    ({"timeout": {}}, r"^timeout\.overall_s: is required$"),
    ({"degrade": {}}, r"^degrade\.feature: is required$"),
    ({"degrade": {"feature": "has spaces"}}, r"^degrade\.feature: must be"),
    ({"rate_limit": {"permits": 1}}, r"^rate_limit\.limiter: is required$"),
    ({"rate_limit": {"limiter": "x", "permits": 0}}, r"^rate_limit\.permits: must be in"),
    ({"fallback": {}}, r"^fallback: needs value or last_good_max_age_s$"),
    ({"fallback": {"value": float("nan")}}, r"^fallback\.value: contains a non-finite number"),
    ({"fallback": {"value": object()}}, r"^fallback\.value: must be JSON data"),
    ({"name": ""}, r"^name: must be"),
    ({"name": 5}, r"^name: must be a string, got int$"),
    ({"surprise": {}}, r"^surprise: unknown key"),
    ({1: {}}, r"has a non-string key 1"),
    ([], r"must be a mapping, got list"),
    ("breaker", r"must be a mapping, got str"),
    (None, r"must be a mapping, got null"),
]


@pytest.mark.parametrize(("document", "pattern"), BAD)
def test_bad_documents_name_the_bad_field(document: Any, pattern: str) -> None:
    with pytest.raises(RuleError, match=pattern):
        parse_rules(document)


def test_deeply_nested_and_huge_fallback_values_are_refused() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(RuleError, match="nested deeper"):
        parse_rules({"fallback": {"value": deep}})
    with pytest.raises(RuleError, match="larger than"):
        parse_rules({"fallback": {"value": list(range(100_000))}})


def test_oversized_text_is_refused_before_parsing() -> None:
    big = '{"name": "' + "x" * (10 * 1024 * 1024) + '"}'
    with pytest.raises(RuleError, match=f"limit is {RULES_DOCUMENT_BYTES_MAX} bytes"):
        parse_rules_json(big)
    with pytest.raises(RuleError, match="limit"):
        parse_rules_yaml(big)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("{", "malformed JSON"),
        ('{"breaker": {"failure_ratio": NaN}}', "non-finite number NaN"),
        ('{"breaker": {"open_wait_s": Infinity}}', "non-finite number Infinity"),
        ('{"retry": {"max_attempts": ' + "9" * 5000 + "}}", "malformed JSON"),
        ("[" * 100_000, "malformed JSON"),
    ],
)
def test_malformed_json(text: str, pattern: str) -> None:
    with pytest.raises(RuleError, match=pattern):
        parse_rules_json(text)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("breaker: [unclosed", "malformed YAML"),
        ("!!python/object/apply:os.system ['echo hi']", "malformed YAML"),
        ("breaker: {failure_ratio: .nan}", r"breaker\.failure_ratio"),
        ("retry: {max_attempts: yes}", r"retry\.max_attempts: must be an integer, got bool"),
        (
            "a: &a ['x','x','x','x','x','x','x','x','x']\n"
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "fallback: {value: [*d,*d,*d,*d,*d,*d,*d,*d,*d]}\n",
            "unknown key",
        ),
        (
            "x: &a ['x','x','x','x','x','x','x','x','x']\n"
            "fallback: {value: &d [[*a,*a,*a,*a,*a,*a,*a,*a,*a],[*a,*a,*a,*a,*a,*a,*a]]}\n",
            "unknown key",
        ),
    ],
)
def test_malformed_and_hostile_yaml(text: str, pattern: str) -> None:
    with pytest.raises(RuleError, match=pattern):
        parse_rules_yaml(text)


def test_yaml_alias_bomb_inside_fallback_value_is_bounded() -> None:
    layers = ["l0: &l0 [" + ",".join(["'x'"] * 10) + "]"]
    for i in range(1, 7):
        layers.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    text = (
        "fallback:\n  value: {"
        + ", ".join(f"{line.split(':')[0]}: {line.split(':', 1)[1].strip()}" for line in layers)
        + "}\n"
    )
    with pytest.raises(RuleError, match=r"fallback\.value: is larger than"):
        parse_rules_yaml(text)


async def test_rejected_swap_changes_nothing() -> None:
    policy = Policy(_without(FULL, "rate_limit"), clock=ManualClock(), rng=random.Random(0))
    before = policy.rules
    breaker = policy.breaker
    for document, _ in BAD:
        with pytest.raises(RuleError):
            policy.swap_rules(document)
        assert policy.rules is before
        assert policy.breaker is breaker


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["breaker", "retry", "x", "window_size", "jitter"]),
                children,
                max_size=3,
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_documents_either_parse_or_raise_rule_error(document: Any) -> None:
    try:
        parse_rules(document)
    except RuleError as exc:
        assert exc.path
        assert str(exc).startswith(exc.path)


def test_parse_rules_reads_mappings_json_and_yaml_text_alike() -> None:
    from_mapping = parse_rules(FULL)
    assert parse_rules(json.dumps(FULL)) == from_mapping
    assert parse_rules(json.dumps(FULL).encode()) == from_mapping
    assert parse_rules(bytearray(json.dumps(FULL).encode())) == from_mapping
    assert parse_rules(YAML) == parse_rules_yaml(YAML)
    assert parse_rules(YAML.encode()) == parse_rules_yaml(YAML)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"^\$: must be a mapping, got null$"),
        ('{"breaker": {"failure_ratio": NaN}}', r"^\$: non-finite number NaN"),
        ("{", r"^\$: malformed JSON"),
        ("breaker: [", r"^\$: malformed YAML"),
        (b"breaker: \xc3\x28", r"^\$: malformed YAML"),
        ("retry: {max_attempts: 0}", r"^retry\.max_attempts: must be in \[1, 100\], got 0$"),
        ("breaker:\n  window_size: 0\n", r"^breaker\.window_size: must be in"),
        ("x" * (RULES_DOCUMENT_BYTES_MAX + 1), r"^\$: document is \d+ bytes"),
    ],
)
def test_parse_rules_text_errors_carry_the_path(text: str | bytes, pattern: str) -> None:
    with pytest.raises(RuleError, match=pattern) as caught:
        parse_rules(text)
    assert str(caught.value).startswith(caught.value.path + ": ")


def test_swap_rules_accepts_text_and_returns_the_rules_in_force() -> None:
    policy = Policy({}, clock=ManualClock(), rng=random.Random(0))
    rules = policy.swap_rules(YAML)
    assert rules == parse_rules_yaml(YAML) and policy.rules is rules
    with pytest.raises(RuleError, match=r"^\$: malformed YAML"):
        policy.swap_rules("breaker: [")
    assert policy.rules is rules
