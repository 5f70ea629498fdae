"""Reads answered by a direct write to the connection (syndic.agent.direct): the bytes
are those of aiohttp's answer, the connection stays usable, pipelined requests keep
their order, and requests the direct path cannot serve exactly go through aiohttp."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from syndic.agent.http import build_http_app, start_http
from syndic.agent.http_common import accepts_gzip
from syndic.registry.model import CheckDefinition, CheckKind, HealthStatus, Instance
from tests.agent.conftest import AgentHandle
from tests.agent.test_blocking_fanout import index_of, until
from tests.server.cluster_util import free_port

#: Headers aiohttp adds that the direct path leaves out or computes per second.
VOLATILE = {"date", "server", "connection"}


def instance(name: str) -> Instance:
    ttl = CheckDefinition(
        f"ttl-{name}", CheckKind.TTL, ttl_ms=600_000, initial_status=HealthStatus.PASSING
    )
    return Instance("default", name, f"{name}-1", "10.0.0.1", 80, checks=(ttl,))


class Answer:
    def __init__(self, status_line: str, headers: dict[str, str], body: bytes) -> None:
        self.status_line = status_line
        self.headers = headers
        self.body = body

    def stable_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k not in VOLATILE}


async def read_answer(reader: asyncio.StreamReader, head_only: bool = False) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"header {name} sent twice"
        headers[name.lower()] = value.strip()
    length = 0 if head_only else int(headers["content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), 30)
    return Answer(status_line, headers, body)


def request(path: str, *, version: str = "1.1", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


@asynccontextmanager
async def connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def change(handle: AgentHandle, name: str, note: str = "changed") -> None:
    await handle.agent.update_ttl(f"ttl-{name}", HealthStatus.WARNING, note)


async def registered(handle: AgentHandle, name: str) -> tuple[str, str]:
    """The service registered; its health path and current index."""
    await handle.agent.register(instance(name))
    path = f"/v1/health/service/{name}"
    async with aiohttp.ClientSession() as http:
        return path, await index_of(http, handle.url + path)


async def test_woken_answer_is_aiohttps_answer_and_keeps_the_connection(
    agent_http: AgentHandle,
) -> None:
    path, index = await registered(agent_http, "web")
    waiting = agent_http.agent.catalog.waiting
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}&wait=60s"))
        await until(lambda: waiting(("default", "web")) == 1)
        await change(agent_http, "web")
        woken = await read_answer(reader)
        assert woken.status_line == "HTTP/1.1 200 OK"
        assert "server" not in woken.headers  # written directly, as Consul: no Server header
        assert int(woken.headers["x-consul-index"]) > int(index)
        doc = json.loads(woken.body)
        assert [c["Status"] for c in doc[0]["Checks"]] == ["warning"]
        assert doc[0]["Checks"][0]["Output"] == "changed"
        # The connection is still aiohttp's: the next request on it is answered.
        writer.write(request("/v1/catalog/datacenters"))
        following = await read_answer(reader)
        assert following.status_line == "HTTP/1.1 200 OK"
        assert json.loads(following.body) == ["dc1"]
    # The same read through aiohttp's own path (HTTP/1.0 closes, so it cannot be direct).
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}&wait=60s", version="1.0"))
        plain = await read_answer(reader)
        assert await reader.read() == b""  # closed after the answer, as HTTP/1.0 asks
    assert plain.status_line == "HTTP/1.0 200 OK"
    assert woken.stable_headers() == plain.stable_headers()
    assert woken.body == plain.body
    assert set(woken.headers) >= {"date", "content-type", "x-consul-knownleader"}
    assert woken.headers["x-consul-lastcontact"] == "0"
    assert woken.headers["x-consul-effective-consistency"] == "leader"


async def test_consistency_mode_and_catalog_services_answer_directly(
    agent_http: AgentHandle,
) -> None:
    path, index = await registered(agent_http, "api")
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{agent_http.url}/v1/catalog/services")
        catalog_index = r.headers["X-Consul-Index"]
    async with (
        connection(agent_http.port) as (stale_r, stale_w),
        connection(agent_http.port) as (cat_r, cat_w),
    ):
        stale_w.write(request(f"{path}?index={index}&wait=60s&stale"))
        cat_w.write(request(f"/v1/catalog/services?index={catalog_index}&wait=60s"))
        catalog = agent_http.agent.catalog
        await until(lambda: catalog.waiting(("default", "api")) == 1)
        await change(agent_http, "api")
        stale = await read_answer(stale_r)
        assert stale.headers["x-consul-effective-consistency"] == "stale"
        assert int(stale.headers["x-consul-index"]) > int(index)
        # A new service is a catalog change: the catalog query wakes with it in the list.
        await agent_http.agent.register(instance("late"))
        services = await read_answer(cat_r)
        assert int(services.headers["x-consul-index"]) > int(catalog_index)
        assert set(json.loads(services.body)) >= {"api", "late"}


async def test_connection_close_and_head_go_through_aiohttp(agent_http: AgentHandle) -> None:
    path, index = await registered(agent_http, "db")
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}&wait=60s", extra="Connection: close\r\n"))
        await until(lambda: agent_http.agent.catalog.waiting(("default", "db")) == 1)
        await change(agent_http, "db")
        closing = await read_answer(reader)
        assert closing.headers["connection"] == "close"
        assert int(closing.headers["x-consul-index"]) > int(index)
        assert await asyncio.wait_for(reader.read(), 30) == b""
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(path, method="HEAD"))
        head = await read_answer(reader, head_only=True)
        assert head.status_line == "HTTP/1.1 200 OK"
        assert "x-consul-index" in head.headers
        writer.write(request("/v1/catalog/datacenters"))
        # No body followed the HEAD answer: the next bytes are the next answer.
        assert json.loads((await read_answer(reader)).body) == ["dc1"]


async def test_pipelined_requests_keep_their_order(agent_http: AgentHandle) -> None:
    path, index = await registered(agent_http, "queue")
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}&wait=60s") + request("/v1/catalog/datacenters"))
        await until(lambda: agent_http.agent.catalog.waiting(("default", "queue")) == 1)
        with pytest.raises(TimeoutError):  # the second answer waits behind the first
            await asyncio.wait_for(reader.read(1), 0.3)
        await change(agent_http, "queue")
        first = await read_answer(reader)
        assert json.loads(first.body)[0]["Service"]["Service"] == "queue"
        second = await read_answer(reader)
        assert json.loads(second.body) == ["dc1"]


async def test_a_response_prepare_handler_still_sees_every_answer(
    agent_http: AgentHandle,
) -> None:
    path, index = await registered(agent_http, "traced")
    app = build_http_app(agent_http.agent)

    async def mark(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Traced"] = "yes"

    app.on_response_prepare.append(mark)
    port = free_port()
    runner = await start_http(app, "127.0.0.1", port)
    try:
        async with connection(port) as (reader, writer):
            writer.write(request(f"{path}?index={index}&wait=60s"))
            await until(lambda: agent_http.agent.catalog.waiting(("default", "traced")) == 1)
            await change(agent_http, "traced")
            answer = await read_answer(reader)
        assert answer.headers["x-traced"] == "yes"
        assert int(answer.headers["x-consul-index"]) > int(index)
    finally:
        await runner.cleanup()


async def test_a_client_gone_before_the_change_costs_the_others_nothing(
    agent_http: AgentHandle, caplog: pytest.LogCaptureFixture
) -> None:
    path, index = await registered(agent_http, "flaky")
    waiting = agent_http.agent.catalog.waiting
    async with connection(agent_http.port) as (reader, writer):
        async with connection(agent_http.port) as (_gone_r, gone_w):
            gone_w.write(request(f"{path}?index={index}&wait=60s"))
            writer.write(request(f"{path}?index={index}&wait=60s"))
            await until(lambda: waiting(("default", "flaky")) == 2)
        await asyncio.sleep(0.1)  # the agent sees the first connection close
        with caplog.at_level(logging.WARNING):
            await change(agent_http, "flaky")
            answer = await read_answer(reader)
    assert int(answer.headers["x-consul-index"]) > int(index)
    await until(lambda: waiting(("default", "flaky")) == 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_ready_callbacks_all_run_before_any_woken_query_resumes(
    agent_http: AgentHandle, caplog: pytest.LogCaptureFixture
) -> None:
    agent = agent_http.agent
    await agent.register(instance("hot"))
    catalog = agent.catalog
    await until(lambda: catalog.view.service_index("default", "hot") > 0)
    index = catalog.view.service_index("default", "hot")
    resumed: list[int] = []
    seen_resumed: list[int] = []

    def ready() -> None:
        seen_resumed.append(len(resumed))

    def broken() -> None:
        raise RuntimeError("a broken answer")

    async def wait(callback: object) -> None:
        assert callable(callback)
        await catalog.wait_service("default", "hot", index, 30.0, callback)
        resumed.append(1)

    waiters = [asyncio.ensure_future(wait(broken if k == 3 else ready)) for k in range(10)]
    # A query already ahead of the change: the wake leaves its condition unmet.
    ahead: list[int] = []
    future_query = asyncio.ensure_future(
        catalog.wait_service("default", "hot", index + 10**6, 60.0, lambda: ahead.append(1))
    )
    await until(lambda: catalog.waiting(("default", "hot")) == 11)
    with caplog.at_level(logging.ERROR, logger="syndic.agent.catalog"):
        await change(agent_http, "hot")
        await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert seen_resumed == [0] * 9  # every callback ran before any waiter resumed
    assert len(resumed) == 10  # the broken callback kept nobody waiting
    assert any("ready callback failed" in r.getMessage() for r in caplog.records)
    # The query ahead was woken with the others, found its index not passed, and
    # waits again without having answered.
    await until(lambda: catalog.waiting(("default", "hot")) == 1)
    assert not future_query.done() and ahead == []
    future_query.cancel()
    await asyncio.gather(future_query, return_exceptions=True)
    assert catalog.waiting(("default", "hot")) == 0


#: Connections made while the agent's loop accepts none: more than aiohttp's
#: default listen backlog of 128, as when a thousand queries reconnect at once.
BURST_CONNECTIONS = 600


async def test_a_burst_of_connections_is_queued_not_dropped(agent_http: AgentHandle) -> None:
    """The loop is held (nothing is accepted) while the kernel completes the handshakes:
    with a short backlog, connects past it would stall for the SYN retry (1 s, 3 s)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(BURST_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", agent_http.port), timeout=0.5)
            socks.append(s)
        for s in socks:
            s.sendall(request("/v1/catalog/datacenters", extra="Connection: close\r\n"))
        answers = await asyncio.to_thread(lambda: [read_to_eof(s) for s in socks])
        assert all(b'["dc1"]' in a for a in answers)
    finally:
        for s in socks:
            s.close()


def read_to_eof(s: socket.socket) -> bytes:
    s.settimeout(60)
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_gzip_when_accepted_on_both_paths(agent_http: AgentHandle) -> None:
    path, index = await registered(agent_http, "zipped")
    accept = "Accept-Encoding: deflate, gzip;q=0.5\r\n"
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}&wait=60s", extra=accept))
        await until(lambda: agent_http.agent.catalog.waiting(("default", "zipped")) == 1)
        await change(agent_http, "zipped")
        woken = await read_answer(reader)
        # Refused with q=0: the same read comes back plain, on the same connection.
        writer.write(request(f"{path}?index={index}", extra="Accept-Encoding: gzip;q=0\r\n"))
        refused = await read_answer(reader)
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request(f"{path}?index={index}", version="1.0", extra=accept))
        plain_path = await read_answer(reader)
    assert "server" not in woken.headers and "server" in plain_path.headers
    for answer in (woken, plain_path):
        assert answer.headers["content-encoding"] == "gzip"
        assert answer.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(woken.body) == gzip.decompress(plain_path.body) == refused.body
    assert "content-encoding" not in refused.headers
    assert json.loads(refused.body)[0]["Checks"][0]["Status"] == "warning"
    unzipped = {k for k in woken.stable_headers() if k not in ("content-length",)}
    assert unzipped == {k for k in plain_path.stable_headers() if k not in ("content-length",)}


async def test_gzip_covers_other_answers_and_errors(agent_http: AgentHandle) -> None:
    async with connection(agent_http.port) as (reader, writer):
        writer.write(request("/v1/agent/self", extra="Accept-Encoding: gzip\r\n"))
        answer = await read_answer(reader)
        assert answer.headers["content-encoding"] == "gzip"
        assert json.loads(gzip.decompress(answer.body))["Config"]["Datacenter"] == "dc1"
        writer.write(request("/v1/health/service/bad%00name", extra="Accept-Encoding: gzip\r\n"))
        error = await read_answer(reader)
        assert error.status_line.startswith("HTTP/1.1 400")
        assert error.headers["content-encoding"] == "gzip"
        assert gzip.decompress(error.body).startswith(b"Invalid service name")
        writer.write(request("/v1/catalog/datacenters"))
        plain = await read_answer(reader)
        assert "content-encoding" not in plain.headers
        assert plain.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip; q=1.0, br", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("gzip;q=nope", False),
        ("br, deflate", False),
        ("", False),
        ("x-gzip", False),
    ],
)
def test_accept_encoding_is_read_as_consul_reads_it(header: str, accepted: bool) -> None:
    headers = {"Accept-Encoding": header} if header else {}
    assert accepts_gzip(make_mocked_request("GET", "/", headers=headers)) is accepted
