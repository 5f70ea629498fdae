"""The console's routes: its static assets under ``/ui`` and JSON under ``/ui/api``.

Every read and write goes through the member itself (``node.range``,
``node.write``, its watch hub), checked against the caller's role when auth
is on, so the console shows only what the user may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final

from aiohttp import web

from syndic.client import Client
from syndic.config.http_api import ConfigHttpApi
from syndic.config.store import ConfigStore
from syndic.console.keys import key_revisions, kv_json, list_prefix
from syndic.console.registry import (
    USER_CLIENTS_MAX,
    RegistryAccess,
    instance_from,
    list_services,
)
from syndic.kv.errors import KvError
from syndic.kv.messages import (
    DeleteRangeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    prefix_end,
)
from syndic.kv.watch import WatchCreateRequest
from syndic.observability.admin import OBSERVABILITY_KEY, Handler, obs, read_json
from syndic.registry.model import ModelError
from syndic.server.backend import ServerError

STATIC_FILES: Final = {
    "index.html": "text/html",
    "console.css": "text/css",
    "console.js": "text/javascript",
}
# Console watches open at once on a member; each holds a watcher and a stream.
CONSOLE_WATCHES_MAX: Final = 32
# Watch responses pulled per wake-up and written as one batch of events.
WATCH_PULL_RESPONSES_MAX: Final = 64
# An SSE comment this often keeps proxies from closing an idle watch.
WATCH_KEEPALIVE_S: Final = 15.0
# How often an idle watch checks that its client is still connected.
WATCH_DISCONNECT_CHECK_S: Final = 1.0
# Keys and values typed in the console, as etcd's default request limit allows.
KEY_BYTES_MAX: Final = 1536 * 1024
LEASES_LISTED_MAX: Final = 500

REGISTRY_KEY: Final = web.AppKey("console_registry", RegistryAccess)
WATCHES_KEY: Final = web.AppKey("console_watches", set[object])
_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def _asset(name: str) -> bytes:
    return resources.files("syndic.console").joinpath("static", name).read_bytes()


async def index(_request: web.Request) -> web.Response:
    return _static_response("index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no console asset {name!r:.60}")
    return _static_response(name)


def _static_response(name: str) -> web.Response:
    return web.Response(
        body=_asset(name),
        content_type=STATIC_FILES[name],
        charset="utf-8",
        headers={
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


def _key_param(request: web.Request, name: str = "key", allow_empty: bool = False) -> bytes:
    raw = request.query.get(name, "")
    if not raw and not allow_empty:
        raise web.HTTPBadRequest(text=f"{name} is required")
    data = raw.encode()
    if len(data) > KEY_BYTES_MAX:
        raise web.HTTPBadRequest(text=f"{name} is longer than {KEY_BYTES_MAX} bytes")
    return data


def _prefix_end(prefix: bytes) -> bytes:
    return prefix_end(prefix) if prefix else b"\0"


async def session(request: web.Request) -> web.Response:
    auth = obs(request).auth
    if not auth.enabled:
        return web.json_response({"auth_enabled": False, "user": "", "admin": True})
    try:
        info = auth.info(request)
    except web.HTTPUnauthorized:
        return web.json_response({"auth_enabled": True, "user": "", "admin": False})
    return web.json_response(
        {
            "auth_enabled": True,
            "user": info.user if info else "",
            "admin": auth.is_admin(info),
            "token_ttl_s": auth.token_ttl_s,
        }
    )


async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='body must be {"user": ..., "password": ...}')
    auth = obs(request).auth
    token = await auth.login(body.get("user"), body.get("password"))
    return web.json_response({"token": token, "token_ttl_s": auth.token_ttl_s})


async def renew(request: web.Request) -> web.Response:
    auth = obs(request).auth
    return web.json_response({"token": auth.renew(request), "token_ttl_s": auth.token_ttl_s})


async def cluster(request: web.Request) -> web.Response:
    o = obs(request)
    o.auth.info(request)  # logged in, when auth is on
    node = o.node
    status = node.status()
    debug = node.debug_status()
    quota = int(node.config.quota_bytes)
    history = [
        {"at_unix_s": s.at_unix_s, "term": s.term, "leader_changes": s.leader_changes}
        for s in o.ring.samples()
    ]
    return web.json_response(
        {
            "member_id": f"{node.id:x}",
            "name": node.config.name,
            "leader_id": f"{status.leader_id:x}" if status.leader_id else "",
            "term": status.raft_term,
            "commit_index": status.raft_index,
            "applied_index": status.raft_applied_index,
            "db_size_bytes": status.db_size_bytes,
            "quota_bytes": quota,
            "alarms": list(status.errors),
            "members": debug.get("members", []),
            "peers": debug.get("peers", {}),
            "leader_history": history,
        }
    )


async def keys(request: web.Request) -> web.Response:
    prefix = _key_param(request, "prefix", allow_empty=True)
    obs(request).auth.require(request, prefix or b"\0", _prefix_end(prefix), write=False)
    listing = await list_prefix(obs(request).node, prefix)
    return web.json_response(
        {
            "prefix": listing.prefix,
            "folders": list(listing.folders),
            "keys": list(listing.keys),
            "more": listing.more,
            "revision": listing.revision,
        }
    )


async def key_get(request: web.Request) -> web.Response:
    key = _key_param(request)
    obs(request).auth.require(request, key, b"", write=False)
    return web.json_response({"revisions": await key_revisions(obs(request).node, key)})


async def key_put(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not body["key"]:
        raise web.HTTPBadRequest(text='body must be {"key": non-empty string, "value": string}')
    value = body.get("value", "")
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text="value must be a string")
    key = body["key"].encode()
    obs(request).auth.require(request, key, b"", write=True)
    try:
        resp = await obs(request).node.write(PutRequest(key=key, value=value.encode()))
    except (KvError, ServerError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response({"revision": getattr(resp, "revision", 0)})


async def key_delete(request: web.Request) -> web.Response:
    key = _key_param(request)
    obs(request).auth.require(request, key, b"", write=True)
    resp = await obs(request).node.write(DeleteRangeRequest(key=key))
    return web.json_response({"deleted": getattr(resp, "deleted", 0)})


async def watch(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line of JSON events per batch, its
    ``id:`` the last revision in it. The watch starts at ``from`` (the revision
    after a listing, so nothing between the listing and the watch is missed) or,
    when the browser reconnects, just after its ``Last-Event-ID``: no event is
    lost or repeated across a reconnect. A start already compacted away ends the
    stream with one ``compacted`` event."""
    prefix = _key_param(request, "prefix", allow_empty=True)
    obs(request).auth.require(request, prefix or b"\0", _prefix_end(prefix), write=False)
    start = _watch_start(request)

    async def send(responses: list[Any]) -> bytes | None:
        out = []
        for resp in responses:
            if resp.canceled:
                gone = {"compact_revision": resp.compact_revision, "reason": resp.cancel_reason}
                out.append(f"event: compacted\ndata: {json.dumps(gone)}\n\n")
                continue
            events = [{"type": ev.type.name, **kv_json(ev.kv)} for ev in resp.events]
            if events:
                last = max(ev.kv.mod_revision for ev in resp.events)
                payload = json.dumps({"revision": resp.revision, "events": events})
                out.append(f"id: {last}\ndata: {payload}\n\n")
        return "".join(out).encode() or None

    return await _event_stream(request, prefix, send, first=None, start_revision=start)


def _watch_start(request: web.Request) -> int:
    """The first revision to watch: after the browser's Last-Event-ID when it
    resumes, else ``from``, else 0 (only what happens from now on)."""
    last_seen = request.headers.get("Last-Event-ID", "")
    if last_seen:
        return _revision(last_seen, "Last-Event-ID") + 1
    return _revision(request.query.get("from", "0"), "from")


def _revision(raw: str, name: str) -> int:
    # str.isdigit accepts "²" (int() refuses it) and other scripts' digits: ASCII only.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) >= 2**63 - 1:
        raise web.HTTPBadRequest(
            text=f"{name} must be a revision (a whole number), not {raw[:40]!r}"
        )
    return int(raw)


async def _event_stream(
    request: web.Request,
    prefix: bytes,
    on_changes: Callable[[list[Any]], Awaitable[bytes | None]],
    first: Callable[[], Awaitable[bytes]] | None,
    start_revision: int = 0,
) -> web.StreamResponse:
    """Server-sent events while the client stays: a watch on ``prefix`` whose
    responses ``on_changes`` turns into the bytes to send (None: nothing),
    after ``first``'s bytes (a live view's initial state). A canceled watch
    (its start compacted away) ends the stream once its bytes are sent."""
    active = request.app[WATCHES_KEY]
    if len(active) >= CONSOLE_WATCHES_MAX:
        raise web.HTTPTooManyRequests(text=f"{CONSOLE_WATCHES_MAX} console watches are open")
    node = obs(request).node
    stream = node.open_watch_stream()
    stream.create(
        WatchCreateRequest(
            key=prefix or b"\0", range_end=_prefix_end(prefix), start_revision=start_revision
        )
    )
    wake = asyncio.Event()
    unlisten = node.watch_listen(wake.set)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    active.add(response)
    try:
        await response.prepare(request)
        await response.write(b": watching\n\n" if first is None else await first())
        idle_s = 0.0
        while True:
            responses = stream.pull(WATCH_PULL_RESPONSES_MAX)
            if responses:
                data = await on_changes(responses)
                if data is not None:
                    await response.write(data)
                if any(resp.canceled for resp in responses):
                    break
            wake.clear()
            # asyncio.timeout, not wait_for, which on Python 3.11 can lose a cancel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_DISCONNECT_CHECK_S):
                    await wake.wait()
                continue
            # aiohttp does not cancel a handler whose client went away: look.
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            idle_s += WATCH_DISCONNECT_CHECK_S
            if idle_s >= WATCH_KEEPALIVE_S:
                idle_s = 0.0
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unlisten()
        stream.close()
        active.discard(response)
    return response


async def leases(request: web.Request) -> web.Response:
    o = obs(request)
    info = o.auth.info(request)
    out: list[dict[str, Any]] = []
    for status in o.node.lease_leases().leases[:LEASES_LISTED_MAX]:
        ttl = o.node.lease_time_to_live(LeaseTimeToLiveRequest(status.id, keys=True))
        shown = [k for k in ttl.keys if o.auth.allowed(info, k, b"", write=False)]
        out.append(
            {
                "id": f"{status.id:x}",
                "ttl_s": ttl.ttl_s,
                "granted_ttl_s": ttl.granted_ttl_s,
                "keys": [k.decode("utf-8", errors="replace") for k in shown],
                "keys_hidden": len(ttl.keys) - len(shown),
            }
        )
    return web.json_response({"leases": out})


async def metrics(request: web.Request) -> web.Response:
    obs(request).auth.info(request)
    return web.json_response(obs(request).ring.as_json())


def _registry(request: web.Request) -> RegistryAccess:
    return request.app[REGISTRY_KEY]


def _require_registry(request: web.Request, write: bool) -> str | None:
    """Check the caller may read (or write) the registry; the token to act as."""
    prefix = _registry(request).layout.all()
    auth = obs(request).auth
    auth.require(request, prefix, prefix_end(prefix), write=write, what="the service registry")
    return auth.token(request)


async def services(request: web.Request) -> web.Response:
    _require_registry(request, write=False)
    reg = _registry(request)
    return web.json_response({"services": await list_services(obs(request).node, reg.layout)})


async def services_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole listing, again after every registry change.

    One listing per batch of changes, not per event: a burst of
    registrations costs one range read."""
    _require_registry(request, write=False)
    reg = _registry(request)
    node = obs(request).node

    async def listing() -> bytes:
        doc = {"services": await list_services(node, reg.layout)}
        return f"data: {json.dumps(doc)}\n\n".encode()

    async def on_changes(responses: list[Any]) -> bytes | None:
        changed = any(resp.events for resp in responses)
        return await listing() if changed else None

    return await _event_stream(request, reg.layout.services(), on_changes, first=listing)


async def service_register(request: web.Request) -> web.Response:
    token = _require_registry(request, write=True)
    inst = instance_from(await read_json(request))
    revision = await _registry(request).store(token).register(inst)
    return web.json_response({"revision": revision})


async def service_deregister(request: web.Request) -> web.Response:
    token = _require_registry(request, write=True)
    q = request.query
    try:
        found = (
            await _registry(request)
            .store(token)
            .deregister(
                q.get("namespace", "default"), q.get("service", ""), q.get("instance_id", "")
            )
        )
    except ModelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if not found:
        raise web.HTTPNotFound(text="no such instance")
    return web.json_response({"deregistered": True})


class ConfigAsUser:
    """``/v1/config`` with auth on, run over the caller's own client.

    The routes are registered once, over the member's credential-less client
    (all a request needs with auth off); with auth on, this middleware checks
    the caller's role on the configuration centre's keys, for a clear refusal,
    then runs the same route of a :class:`ConfigHttpApi` over the caller's
    client, so the member checks every key the store touches as well."""

    def __init__(self, registry: RegistryAccess) -> None:
        self.registry = registry
        self.prefix = ConfigStore(registry.client()).layout.prefix.encode()
        # token -> (its client, its handlers by (method, route)); bounded as the clients are.
        self._apis: dict[str, tuple[Client, dict[tuple[str, str], Handler]]] = {}

    def _handlers(self, token: str) -> dict[tuple[str, str], Handler]:
        client = self.registry.client_for(token)
        cached = self._apis.get(token)
        if cached is not None and cached[0] is client:
            return cached[1]
        scratch = web.Application()
        ConfigHttpApi(ConfigStore(client)).add_routes(scratch)
        handlers = {
            (route.method, route.resource.canonical): route.handler
            for route in scratch.router.routes()
            if route.resource is not None
        }
        self._apis[token] = (client, handlers)
        while len(self._apis) > USER_CLIENTS_MAX:
            del self._apis[next(iter(self._apis))]
        return handlers

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = obs(request).auth
        if not request.path.startswith("/v1/config/") or not auth.enabled:
            return await handler(request)
        write = request.method not in ("GET", "HEAD")
        what = "the configuration centre"
        auth.require(request, self.prefix, prefix_end(self.prefix), write=write, what=what)
        token = auth.token(request)
        assert token is not None  # auth is on and require() passed
        route = request.match_info.route
        if route.resource is None:
            return await handler(request)  # not found / method not allowed
        as_user = self._handlers(token).get((route.method, route.resource.canonical))
        if as_user is None:
            return await handler(request)
        return await as_user(request)


def add_console_routes(app: web.Application) -> None:
    """Mount the console on an admin app that already has observability routes."""
    app[WATCHES_KEY] = set()
    registry = app[REGISTRY_KEY] = RegistryAccess(app[OBSERVABILITY_KEY].node)

    async def close_registry(_app: web.Application) -> None:
        await registry.close()

    app.on_cleanup.append(close_registry)
    # The configuration centre's own HTTP API, over a client of this member,
    # so the console's config page calls the same routes as `syndic config`.
    ConfigHttpApi(ConfigStore(registry.client())).add_routes(app)
    app.middlewares.append(ConfigAsUser(registry).middleware)
    r = app.router
    r.add_get("/ui/api/services", services)
    r.add_get("/ui/api/services/live", services_live)
    r.add_post("/ui/api/services", service_register)
    r.add_delete("/ui/api/services", service_deregister)
    r.add_get("/ui", index)
    r.add_get("/ui/", index)
    r.add_get("/ui/static/{name}", static)
    r.add_get("/ui/api/session", session)
    r.add_post("/ui/api/login", login)
    r.add_post("/ui/api/session/renew", renew)
    r.add_get("/ui/api/cluster", cluster)
    r.add_get("/ui/api/keys", keys)
    r.add_get("/ui/api/key", key_get)
    r.add_put("/ui/api/key", key_put)
    r.add_delete("/ui/api/key", key_delete)
    r.add_get("/ui/api/watch", watch)
    r.add_get("/ui/api/leases", leases)
    r.add_get("/ui/api/metrics", metrics)
