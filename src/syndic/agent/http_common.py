"""What every handler of the agent's HTTP API shares: query parsing, Consul's
headers, plain-text errors and blocking-query parameters."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from syndic.agent.config import AgentConfig
from syndic.registry.durations import DurationError, parse_duration_ms
from syndic.registry.model import ModelError, check_name

#: Longest query-string value read, in characters: indexes, waits and names
#: are short; a bound keeps hostile input cheap to refuse.
QUERY_VALUE_LENGTH_MAX = 1024


class HttpError(Exception):
    """An answer with Consul's status and a plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def valid_name(value: str, what: str) -> str:
    """A name from a path or query, checked as the model checks names; 400 otherwise."""
    try:
        return check_name(value, what)
    except ModelError as exc:
        raise HttpError(400, f"Invalid {what}: {exc.problem}") from exc


def flag(request: web.Request, name: str) -> bool:
    """Consul's boolean query flags are true when present (``?recurse``, ``?stale=``)."""
    value = request.query.get(name)
    return value is not None and value.lower() not in ("false", "0")


def text_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and len(value) > QUERY_VALUE_LENGTH_MAX:
        raise HttpError(400, f"Invalid {name}: longer than {QUERY_VALUE_LENGTH_MAX} characters")
    return value


def uint_param(request: web.Request, name: str, message: str) -> int | None:
    value = text_param(request, name)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or int(value) >= 1 << 64:
        raise HttpError(400, message)
    return int(value)


@dataclass(frozen=True, slots=True)
class Blocking:
    index: int  # 0: answer at once
    wait_s: float
    stale: bool
    consistent: bool


def blocking_params(request: web.Request, config: AgentConfig, rng: random.Random) -> Blocking:
    """``index``, ``wait`` (Go duration, at most the agent's max, plus jitter of at most
    wait/16 as Consul adds) and the consistency mode."""
    index = uint_param(request, "index", "Invalid index") or 0
    wait_text = text_param(request, "wait")
    wait_ms = config.blocking_wait_ms_default
    if wait_text:
        try:
            wait_ms = parse_duration_ms(wait_text)
        except DurationError as exc:
            raise HttpError(400, f"Invalid wait time: {exc}") from exc
    wait_ms = min(wait_ms, config.blocking_wait_ms_max)
    wait_ms += rng.uniform(0.0, wait_ms / 16.0)
    stale = flag(request, "stale")
    consistent = flag(request, "consistent")
    if stale and consistent:
        raise HttpError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    return Blocking(index, wait_ms / 1000.0, stale, consistent)


#: Header every answer carries, as Consul's gzip handler adds it: caches must key
#: on Accept-Encoding, since the body is gzipped when the request accepts it.
VARY = ("Vary", "Accept-Encoding")

#: Compression level of gzipped answers: Go's default, which Consul uses.
GZIP_LEVEL = 6


def accepts_gzip(request: web.BaseRequest) -> bool:
    """Whether the request's Accept-Encoding admits gzip (``gzip;q=0`` refuses it),
    read as Consul's gzip handler reads it."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() != "gzip":
            continue
        q = params.strip().lower()
        if not q.startswith("q="):
            return True
        try:
            return float(q[2:]) > 0.0
        except ValueError:
            return False
    return False


def consul_headers(index: int, consistency: str = "leader") -> dict[str, str]:
    return {
        "X-Consul-Index": str(max(1, index)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
        "X-Consul-Effective-Consistency": consistency,
    }


def json_response(
    doc: Any, *, index: int | None = None, status: int = 200, consistency: str = "leader"
) -> web.Response:
    headers = consul_headers(index, consistency) if index is not None else {}
    return web.Response(
        body=json.dumps(doc).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def body_response(body: bytes, *, index: int, consistency: str = "leader") -> web.Response:
    """A JSON answer already rendered (shared by the watchers one change wakes)."""
    return web.Response(
        body=body,
        content_type="application/json",
        headers=consul_headers(index, consistency),
    )


def text_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain")


async def read_body(request: web.Request) -> bytes:
    # aiohttp enforces client_max_size (the agent's http_body_bytes_max) here.
    return await request.read()
