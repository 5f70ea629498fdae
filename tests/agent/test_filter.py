"""``?filter=``: the expression language on its own, then on the catalog, health and agent
endpoints (raw HTTP and py-consul), with malformed and hostile expressions refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import consul
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndic.agent.filter import (
    FILTER_CHARS_MAX,
    FILTER_DEPTH_MAX,
    FILTER_MATCHES_MAX,
    FilterError,
    parse_filter,
)
from tests.agent.conftest import AgentHandle

DOC: dict[str, Any] = {
    "Node": {"Node": "node-1", "Address": "10.0.0.9"},
    "Service": {
        "ID": "web-1",
        "Service": "web",
        "Tags": ["v1", "blue"],
        "Meta": {"env": "prod", "team-name": "core"},
        "Port": 8080,
        "EnableTagOverride": False,
        "Address": "",
    },
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing"},
        {"CheckID": "service:web-1", "Status": "critical"},
    ],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Service == "web"', True),
        ("Service.Service == web", True),
        ("Service.Service != web", False),
        ("Service.Port == 8080", True),
        ("Service.EnableTagOverride == false", True),
        ("Service.Meta.env == prod", True),
        ('Service.Meta["team-name"] == core', True),
        ("Service.Meta.missing == x", False),
        ("v1 in Service.Tags", True),
        ('"green" in Service.Tags', False),
        ('"green" not in Service.Tags', True),
        ("Service.Tags contains blue", True),
        ("Service.Tags not contains blue", False),
        ("env in Service.Meta", True),
        ("Service.Meta contains nope", False),
        ("Service.Service contains we", True),
        ("Service.Address is empty", True),
        ("Service.Tags is not empty", True),
        ("Service.Nothing is empty", True),
        ('Service.Service matches "^w.b$"', True),
        ("Service.Service not matches `^api`", True),
        # A selector through a list: any element for the positive forms, none for negations.
        ("Checks.Status == critical", True),
        ("Checks.Status != critical", False),
        ("Checks.Status != warning", True),
        ("Checks.CheckID matches `^service:`", True),
        # Precedence: not > and > or, and parentheses.
        ("Service.Port == 1 or Service.Port == 8080 and v1 in Service.Tags", True),
        ("(Service.Port == 1 or Service.Port == 8080) and green in Service.Tags", False),
        ("not Service.Port == 8080", False),
        ("not (Service.Port == 1) and not not v1 in Service.Tags", True),
        # Field names fall back to a case-insensitive match (py-consul users write lower case).
        ("service.port == 8080", True),
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    assert parse_filter(expression).matches(DOC) is expected


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "empty expression"),
        ("Service.Port ==", "expected a value"),
        ("Service.Port 8080", "expected an operator"),
        ("(Service.Port == 1", "expected ')'"),
        ("Service.Port == 1)", "unexpected ')'"),
        ("Service.Port == 1 and", "expected"),
        ("Service.Tags is full", "expected 'empty'"),
        ("Service.Meta[env] == x", "quoted map key"),
        ("Service.Port == 1 ; drop", "unexpected character ';'"),
        ("Service.Port == 'single'", "unexpected character"),
        ("a\x00b == c", "NUL"),
        ('Service.ID matches "("', "invalid pattern"),
    ],
)
def test_malformed_expressions_are_refused(expression: str, problem: str) -> None:
    with pytest.raises(FilterError, match="Failed to create boolean expression evaluator") as err:
        parse_filter(expression)
    assert problem in err.value.problem


@pytest.mark.parametrize(
    "pattern",
    ["(a+)+$", "((a+))+", "(a|aa)*$", "(?:a*)*b", r"(x)\1", "(?=a)a", "(.*a){20}"],
)
def test_patterns_that_backtrack_without_bound_are_refused(pattern: str) -> None:
    with pytest.raises(FilterError, match="backtrack"):
        parse_filter(f"Service.ID matches `{pattern}`")


def test_hostile_sizes_hit_named_limits_quickly() -> None:
    started = time.perf_counter()
    deep = "(" * (FILTER_DEPTH_MAX + 1) + "a == b" + ")" * (FILTER_DEPTH_MAX + 1)
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter(deep)
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter("not " * 100 + "a == b")
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("a == b or " * 1000 + "a == b")
    many = " or ".join(["a == b"] * (FILTER_MATCHES_MAX + 1))
    assert len(many) <= FILTER_CHARS_MAX
    with pytest.raises(FilterError, match="comparisons"):
        parse_filter(many)
    # Within the limits, the deepest and widest expressions still parse and evaluate.
    ok = "(" * FILTER_DEPTH_MAX + "Service.Port == 8080" + ")" * FILTER_DEPTH_MAX
    assert parse_filter(ok).matches(DOC)
    assert time.perf_counter() - started < 2.0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        parsed = parse_filter(text)
    except FilterError:
        return
    assert isinstance(parsed.matches(DOC), bool)


def test_unknown_fields_are_refused_when_checked() -> None:
    parsed = parse_filter("Service.Port == 1 and Bogus.Field == 2")
    with pytest.raises(FilterError, match=r'Selector "Bogus\.Field" is not valid'):
        parsed.check_fields(["Node", "Service", "Checks"])


# -- on the endpoints -------------------------------------------------------------


async def register(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    r = await http.put(f"{url}/v1/agent/service/register", json=body)
    assert r.status == 200, await r.text()


async def get_json(http: aiohttp.ClientSession, url: str, path: str, expr: str) -> Any:
    r = await http.get(f"{url}{path}", params={"filter": expr})
    assert r.status == 200, await r.text()
    if not path.startswith("/v1/agent"):
        assert int(r.headers["X-Consul-Index"]) > 0
    return await r.json()


async def until_registered(http: aiohttp.ClientSession, url: str, count: int) -> None:
    for _ in range(200):
        r = await http.get(f"{url}/v1/health/service/web")
        if len(await r.json()) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("instances not visible")


async def test_filters_on_catalog_health_and_agent(agent_http: AgentHandle) -> None:
    url = agent_http.url
    async with aiohttp.ClientSession() as http:
        await register(
            http,
            url,
            {
                "Name": "web",
                "ID": "web-1",
                "Port": 8080,
                "Tags": ["v1"],
                "Meta": {"env": "prod"},
                "Check": {"TTL": "30s", "Status": "passing"},
            },
        )
        await register(
            http,
            url,
            {
                "Name": "web",
                "ID": "web-2",
                "Port": 8081,
                "Tags": ["v2", "canary"],
                "Meta": {"env": "staging"},
                "Check": {"TTL": "30s", "Status": "critical"},
            },
        )
        await register(http, url, {"Name": "api", "ID": "api-1", "Port": 9000})
        await until_registered(http, url, 2)

        health = await get_json(http, url, "/v1/health/service/web", "Service.Meta.env == prod")
        assert [e["Service"]["ID"] for e in health] == ["web-1"]
        health = await get_json(http, url, "/v1/health/service/web", "Checks.Status == critical")
        assert [e["Service"]["ID"] for e in health] == ["web-2"]
        catalog = await get_json(
            http, url, "/v1/catalog/service/web", '"canary" not in ServiceTags'
        )
        assert [e["ServiceID"] for e in catalog] == ["web-1"]
        services = await get_json(http, url, "/v1/catalog/services", "ServiceMeta.env == nope")
        assert services == {}
        services = await get_json(http, url, "/v1/catalog/services", "ServiceName matches `^a`")
        assert services == {"api": []}
        checks = await get_json(http, url, "/v1/health/checks/web", "Status == critical")
        assert [c["ServiceID"] for c in checks] == ["web-2"]
        state = await get_json(http, url, "/v1/health/state/any", "ServiceName == web")
        assert sorted(c["ServiceID"] for c in state) == ["web-1", "web-2"]
        agent = await get_json(http, url, "/v1/agent/services", "Service == web and Port == 8081")
        assert list(agent) == ["web-2"]
        nodes = await get_json(http, url, "/v1/catalog/nodes", "Node == node-1")
        assert [n["Node"] for n in nodes] == ["node-1"]

        # Refused with Consul's 400 and text, never an empty answer.
        for bad in ("Service.Port ==", "Nope == 1", "(" * 100 + "a == b", "x" * 5000):
            r = await http.get(f"{url}/v1/health/service/web", params={"filter": bad})
            assert r.status == 400, bad
            assert (await r.text()).startswith("Failed to create boolean expression evaluator")


async def test_py_consul_filter_expressions(agent_http: AgentHandle) -> None:
    c = consul.Consul(host="127.0.0.1", port=agent_http.port)
    for sid, env in (("web-1", "prod"), ("web-2", "staging")):
        await asyncio.to_thread(
            c.agent.service.register,
            "web",
            service_id=sid,
            port=8080,
            meta={"env": env},
            check=consul.Check.ttl("30s"),
        )
    services = await asyncio.to_thread(c.agent.services, filter_expr="Meta.env == staging")
    assert list(services) == ["web-2"]
    checks = await asyncio.to_thread(c.agent.checks, filter_expr='ServiceID == "web-1"')
    assert list(checks) == ["service:web-1"]
