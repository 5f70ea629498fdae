"""Consul's ``/v1/kv`` and ``/v1/session`` endpoints (see :mod:`syndic.agent.consul_kv`)."""

from __future__ import annotations

import random

from aiohttp import web

from syndic.agent.config import AgentConfig
from syndic.agent.consul_kv import ConsulKv, KvEntry, session_ttl_s
from syndic.agent.decode import BodyError, duration_ms, fields, parse_json
from syndic.agent.http_common import (
    HttpError,
    blocking_params,
    consul_headers,
    flag,
    json_response,
    read_body,
    text_param,
    uint_param,
    valid_name,
)
from syndic.client import Client
from syndic.registry.model import NAME_LENGTH_MAX

#: Where the token middleware leaves the client of the request's user (auth on).
REQUEST_CLIENT_KEY = web.RequestKey("syndic_request_client", Client)

#: Longest KV key, in bytes (etcd's own limit is the request size; Consul
#: keeps keys short too, and over-long keys are refused before any I/O).
KV_KEY_BYTES_MAX = 2048


def kv_key(request: web.Request) -> bytes:
    """The key of a /v1/kv request; hostile keys are refused."""
    text = request.match_info.get("key", "")
    if "\x00" in text:
        raise HttpError(400, "Invalid key: contains NUL")
    if any(part in ("..", ".") for part in text.split("/")):
        raise HttpError(400, f"Invalid key: path segment '..' or '.' in {text[:64]!r}")
    key = text.encode("utf-8", "surrogatepass")
    if len(key) > KV_KEY_BYTES_MAX:
        raise HttpError(400, f"Invalid key: longer than {KV_KEY_BYTES_MAX} bytes")
    return key


class KvApi:
    def __init__(self, kv: ConsulKv, config: AgentConfig, rng: random.Random | None = None):
        self.kv = kv
        self.config = config
        self.rng = rng or random.Random()

    def _for(self, request: web.Request) -> ConsulKv:
        """The KV operations as the request's user when auth is on, else as the agent."""
        client = request.get(REQUEST_CLIENT_KEY)
        return self.kv if client is None else self.kv.as_user(client)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/kv/{key:.*}", self.get)
        r.add_put("/v1/kv/{key:.*}", self.put)
        r.add_delete("/v1/kv/{key:.*}", self.delete)
        r.add_put("/v1/session/create", self.session_create)
        r.add_put("/v1/session/destroy/{id}", self.session_destroy)
        r.add_put("/v1/session/renew/{id}", self.session_renew)
        r.add_get("/v1/session/info/{id}", self.session_info)
        r.add_get("/v1/session/list", self.session_list)
        r.add_get("/v1/session/node/{node}", self.session_node)

    # -- kv ---------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.StreamResponse:
        key = kv_key(request)
        b = blocking_params(request, self.config, self.rng)
        recurse = flag(request, "recurse")
        keys_only = "keys" in request.query
        separator = text_param(request, "separator")
        prefix = recurse or keys_only
        limit = self.config.kv_keys_max
        entries, revision = await self._for(request).read(key, recurse=prefix, limit=limit)
        index = self._index(entries, revision)
        if b.index and index <= b.index:
            woke = await self._for(request).wait_change(
                key, recurse=prefix, index=b.index, timeout_s=b.wait_s
            )
            entries, revision = await self._for(request).read(key, recurse=prefix, limit=limit)
            index = max(self._index(entries, revision), woke)
        if b.index:
            index = max(index, min(b.index, revision))  # never backwards for this client
        if not entries:
            return web.Response(status=404, headers=consul_headers(index))
        if keys_only:
            return json_response(self._keys(key, entries, separator), index=index)
        if flag(request, "raw") and not recurse:
            return web.Response(
                body=entries[0].value,
                headers=consul_headers(index),
                content_type="application/octet-stream",
            )
        if not recurse:
            entries = [e for e in entries if e.key == key]
            if not entries:
                return web.Response(status=404, headers=consul_headers(index))
        return json_response([e.to_consul() for e in entries], index=index)

    @staticmethod
    def _index(entries: list[KvEntry], revision: int) -> int:
        if entries:
            return max(e.mod_revision for e in entries)
        return max(1, revision)

    @staticmethod
    def _keys(prefix: bytes, entries: list[KvEntry], separator: str | None) -> list[str]:
        out: list[str] = []
        for e in entries:
            text = e.key.decode("utf-8", "replace")
            if separator:
                rest = text[len(prefix.decode("utf-8", "replace")) :]
                cut = rest.find(separator)
                if cut >= 0:
                    text = text[: len(text) - len(rest) + cut + len(separator)]
            if not out or out[-1] != text:
                out.append(text)
        return out

    async def put(self, request: web.Request) -> web.Response:
        key = kv_key(request)
        if not key:
            raise HttpError(400, "Missing key name")
        flags = uint_param(request, "flags", "Invalid flags")
        cas = uint_param(request, "cas", "Invalid cas")
        acquire = self._session_param(request, "acquire")
        release = self._session_param(request, "release")
        if acquire and release:
            raise HttpError(400, "Conflicting flags: acquire=&release=")
        value = await read_body(request)
        if len(value) > self.config.kv_value_bytes_max:
            raise HttpError(
                413,
                f"Request body(value) too large, max size: {self.config.kv_value_bytes_max} bytes.",
            )
        ok = await self._for(request).put(
            key, value, flags=flags, cas=cas, acquire=acquire, release=release
        )
        return json_response(ok)

    async def delete(self, request: web.Request) -> web.Response:
        key = kv_key(request)
        recurse = flag(request, "recurse")
        if not key and not recurse:
            raise HttpError(400, "Missing key name")
        cas = uint_param(request, "cas", "Invalid cas")
        return json_response(await self._for(request).delete(key, recurse=recurse, cas=cas))

    @staticmethod
    def _session_param(request: web.Request, name: str) -> str | None:
        value = text_param(request, name)
        if not value:
            return None
        return valid_name(value, name)

    # -- sessions ---------------------------------------------------------------

    async def session_create(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        doc = parse_json(body) if body.strip() else {}
        f = fields(
            doc,
            {
                "name",
                "node",
                "lockdelay",
                "behavior",
                "ttl",
                "checks",
                "nodechecks",
                "servicechecks",
                "namespace",
            },
            "session",
        )
        name = f.get("name") or ""
        if not isinstance(name, str) or len(name) > NAME_LENGTH_MAX or "\x00" in name:
            raise BodyError(
                f"Request decode failed: Name must be a string of at most "
                f"{NAME_LENGTH_MAX} characters"
            )
        behavior = f.get("behavior") or "release"
        if behavior not in ("release", "delete"):
            raise HttpError(400, f"Invalid Behavior setting '{str(behavior)[:32]}'")
        ttl_ms = duration_ms(f.get("ttl"), "TTL")
        c = self.config
        if ttl_ms and not c.session_ttl_ms_min <= ttl_ms <= c.session_ttl_ms_max:
            raise HttpError(
                400,
                f"Invalid Session TTL '{ttl_ms:g}ms', must be between "
                f"[{c.session_ttl_ms_min / 1000:g}s={c.session_ttl_ms_max / 1000:g}s]",
            )
        lock_delay = f.get("lockdelay")
        lock_delay_ms = duration_ms(lock_delay, "LockDelay", 15_000.0)
        node = f.get("node") or c.node_name
        if not isinstance(node, str):
            raise BodyError("Request decode failed: Node must be a string")
        session = await self._for(request).create_session(
            name=name,
            behavior=behavior,
            ttl_s=session_ttl_s(ttl_ms),
            lock_delay_ms=lock_delay_ms,
            node=valid_name(node, "Node"),
        )
        return json_response({"ID": session.session_id}, index=session.create_revision)

    def _sid(self, request: web.Request) -> str:
        return valid_name(request.match_info["id"], "session")

    async def session_destroy(self, request: web.Request) -> web.Response:
        return json_response(await self._for(request).destroy_session(self._sid(request)))

    async def session_renew(self, request: web.Request) -> web.Response:
        sid = self._sid(request)
        session = await self._for(request).renew_session(sid)
        if session is None:
            raise HttpError(404, f"Session id '{sid}' not found")
        return json_response([session.to_consul()], index=session.mod_revision)

    async def session_info(self, request: web.Request) -> web.Response:
        session = await self._for(request).session(self._sid(request))
        _all, revision = await self._for(request).sessions()
        doc = [session.to_consul()] if session else []
        return json_response(doc, index=revision)

    async def session_list(self, request: web.Request) -> web.Response:
        sessions, revision = await self._for(request).sessions()
        return json_response([s.to_consul() for s in sessions], index=revision)

    async def session_node(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        sessions, revision = await self._for(request).sessions()
        return json_response([s.to_consul() for s in sessions if s.node == node], index=revision)
