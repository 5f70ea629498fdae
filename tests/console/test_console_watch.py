"""The console's watch stream (server-sent events) as a browser's EventSource
uses it: it starts after the listing a page shows, resumes after the last event
id without losing or repeating an event, refuses a bad start and says when the
start was compacted away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from tests.console.member import Member, put, running_member


async def next_event(stream: aiohttp.StreamReader) -> dict[str, str]:
    """The next SSE event's fields (comments skipped), read up to its blank line."""
    fields: dict[str, str] = {}
    while True:
        line = (await stream.readline()).decode().rstrip("\n")
        if not line:
            if fields:
                return fields
            if stream.at_eof():
                raise EOFError("the stream ended")
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def revision(member: Member) -> int:
    async with member.channel() as ch:
        resp = await make_stub(ch, KV_SERVICE).Range(rpc_pb2.RangeRequest(key=b"-"), timeout=10)
    return int(resp.header.revision)


def keys_of(event: dict[str, str]) -> list[Any]:
    return [(e["type"], e["key"], e["value"]) for e in json.loads(event["data"])["events"]]


async def test_watch_starts_from_a_revision_and_resumes_after_the_last_event_id(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        await put(member, "w/a", "1")
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.get("/ui/api/keys", params={"prefix": "w/"}) as r:
                listed = (await r.json())["revision"]
            await put(member, "w/b", "2")  # after the listing, before the watch
            await put(member, "other", "x")
            timeout = aiohttp.ClientTimeout(sock_read=10)
            params = {"prefix": "w/", "from": str(listed + 1)}
            async with http.get("/ui/api/watch", params=params, timeout=timeout) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                first = await next_event(r.content)
            assert keys_of(first) == [("PUT", "w/b", "2")]
            assert int(first["id"]) == listed + 1
            # Changes while the browser was away come once, after its last id.
            await put(member, "w/c", "3")
            await put(member, "w/d", "4")
            headers = {"Last-Event-ID": first["id"]}
            async with http.get(
                "/ui/api/watch", params=params, headers=headers, timeout=timeout
            ) as r:
                seen = keys_of(await next_event(r.content))
                if len(seen) < 2:
                    seen += keys_of(await next_event(r.content))
            assert seen == [("PUT", "w/c", "3"), ("PUT", "w/d", "4")]


async def test_a_compacted_start_ends_the_stream_with_a_compacted_event(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member:
        for i in range(3):
            await put(member, "w/k", str(i))
        compacted = await revision(member)
        async with member.channel() as ch:
            await make_stub(ch, KV_SERVICE).Compact(
                rpc_pb2.CompactionRequest(revision=compacted, physical=True), timeout=10
            )
        async with aiohttp.ClientSession(member.admin_url) as http:
            timeout = aiohttp.ClientTimeout(sock_read=10)
            params = {"prefix": "w/", "from": "1"}
            async with http.get("/ui/api/watch", params=params, timeout=timeout) as r:
                event = await next_event(r.content)
                assert event["event"] == "compacted"
                assert json.loads(event["data"])["compact_revision"] == compacted
                assert await r.content.read() == b""  # the server ended the stream


async def test_a_bad_start_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    async with (
        running_member(tmp_path) as member,
        aiohttp.ClientSession(member.admin_url) as http,
    ):
        for params, headers in (
            ({"from": "abc"}, {}),
            ({"from": "-1"}, {}),
            ({"from": "1e3"}, {}),
            ({"from": "\u00b2"}, {}),  # a digit to str.isdigit, not to int()
            ({"from": "\u0661"}, {}),  # an Arabic-Indic one, which int() reads
            ({"from": "9" * 30}, {}),
            ({}, {"Last-Event-ID": "nope"}),
            ({}, {"Last-Event-ID": str(2**63 - 1)}),
        ):
            async with http.get("/ui/api/watch", params=params, headers=headers) as r:
                assert r.status == 400, (params, headers)
                assert "must be a revision" in await r.text()
