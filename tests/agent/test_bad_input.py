"""Bad input gets Consul-like 400s (plain text) and stores nothing."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from syndic.client import Client
from tests.agent.conftest import AgentHandle

GOOD = {"Name": "web", "ID": "web-1", "Port": 80}


async def stored_keys(client: Client, prefix: bytes) -> list[bytes]:
    r = await client.get(prefix + b"registry/svc/", prefix=True, keys_only=True)
    return [kv.key for kv in r.kvs]


BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed", b'{"Name": "web",'),
    ("not an object", b"[1, 2]"),
    ("unknown field", b'{"Name": "web", "Colour": "red"}'),
    ("unknown check field", b'{"Name": "web", "Check": {"TTL": "10s", "Smell": 1}}'),
    ("bad duration", b'{"Name": "web", "Check": {"TTL": "ten seconds"}}'),
    ("negative duration", b'{"Name": "web", "Check": {"HTTP": "http://x", "Interval": "-1s"}}'),
    ("missing unit", b'{"Name": "web", "Check": {"TTL": "10"}}'),
    ("dot-dot name", b'{"Name": ".."}'),
    ("dot-dot id", b'{"Name": "web", "ID": ".."}'),
    ("slash id", b'{"Name": "web", "ID": "../../etc"}'),
    ("NUL name", b'{"Name": "we\\u0000b"}'),
    ("over-long name", b'{"Name": "' + b"x" * 300 + b'"}'),
    ("wrong type", b'{"Name": "web", "Port": "80"}'),
    ("port range", b'{"Name": "web", "Port": 70000}'),
    ("two check kinds", b'{"Name": "web", "Check": {"TTL": "1s", "TCP": "h:1"}}'),
    ("script disabled", b'{"Name": "web", "Check": {"Args": ["true"], "Interval": "10s"}}'),
    ("bad status", b'{"Name": "web", "Check": {"TTL": "10s", "Status": "sick"}}'),
    ("deep nesting", b'{"Name": "web", "Meta": ' + b'{"a": ' * 40 + b"1" + b"}" * 41),
    ("no name", b'{"Port": 80}'),
]


@pytest.mark.parametrize(("what", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_registrations(agent_http: AgentHandle, what: str, body: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{agent_http.url}/v1/agent/service/register", data=body)
        text = await r.text()
        assert r.status == 400, (what, r.status, text)
        assert r.content_type == "text/plain" and text
    assert await stored_keys(agent_http.client, agent_http.prefix) == []
    assert agent_http.agent.services == {}


async def test_oversized_body_is_413_and_stores_nothing(agent_http: AgentHandle) -> None:
    big = b'{"Name": "web", "Meta": {"a": "' + b"x" * (600 * 1024) + b'"}}'
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{agent_http.url}/v1/agent/service/register", data=big)
        assert r.status == 413
        key = agent_http.prefix.decode() + "big"
        r = await http.put(f"{agent_http.url}/v1/kv/{key}", data=b"x" * (600 * 1024))
        assert r.status == 413
        r = await http.get(f"{agent_http.url}/v1/kv/{key}")
        assert r.status == 404
    assert await stored_keys(agent_http.client, agent_http.prefix) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/health/service/web?index=abc", 400),
        ("GET", "/v1/health/service/web?index=-1", 400),
        ("GET", "/v1/health/service/web?wait=forever", 400),
        ("GET", "/v1/health/service/web?stale&consistent", 400),
        ("GET", "/v1/health/service/web?filter=Service.Port%20%3D%3D", 400),
        ("GET", "/v1/health/service/web?filter=Nope.Field%20%3D%3D%201", 400),
        ("GET", "/v1/health/service/%2E%2E", 400),
        ("GET", "/v1/health/state/sick", 400),
        ("GET", "/v1/kv/a/%2E%2E/b", 400),
        ("GET", "/v1/kv/a%00b", 400),
        ("PUT", "/v1/kv/" + "k" * 3000, 400),
        ("PUT", "/v1/kv/x?flags=nope", 400),
        ("PUT", "/v1/kv/x?cas=-3", 400),
        ("PUT", "/v1/kv/syndic-test-x?acquire=..", 400),
        ("PUT", "/v1/agent/check/pass/unknown", 404),
        ("PUT", "/v1/agent/service/deregister/unknown", 404),
        ("PUT", "/v1/agent/service/maintenance/web-1?enable=maybe", 400),
        ("PUT", "/v1/session/create", 400),
        ("GET", "/v1/catalog/services?dc=elsewhere", 500),
    ],
)
async def test_bad_queries(agent_http: AgentHandle, method: str, path: str, status: int) -> None:
    body = b'{"TTL": "1s"}' if path == "/v1/session/create" else None
    async with aiohttp.ClientSession() as http:
        # Sent as written: a client must not normalise the hostile path away.
        r = await http.request(method, URL(agent_http.url + path, encoded=True), data=body)
        assert r.status == status, (path, await r.text())
        assert r.content_type == "text/plain"
    assert await stored_keys(agent_http.client, agent_http.prefix) == []


async def test_registry_keys_are_not_writable_through_kv(agent_http: AgentHandle) -> None:
    key = agent_http.agent.store.layout.instance("default", "web", "w1").decode()
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{agent_http.url}/v1/kv/{key}", data=b"{}")
        assert r.status == 403
    assert await stored_keys(agent_http.client, agent_http.prefix) == []


async def test_keys_in_any_case_and_snake_case(agent_http: AgentHandle) -> None:
    body = {
        "name": "web",
        "service_id": None,
        "ID": "web-9",
        "enable_tag_override": True,
        "check": {"ttl": "10s", "deregister_critical_service_after": "1m", "Status": "passing"},
    }
    body.pop("service_id")
    async with aiohttp.ClientSession() as http:
        r = await http.put(f"{agent_http.url}/v1/agent/service/register", json=body)
        assert r.status == 200, await r.text()
    inst = agent_http.agent.services["web-9"].instance
    assert inst.enable_tag_override
    assert inst.checks[0].deregister_critical_after_ms == 60_000
