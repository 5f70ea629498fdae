"""The configuration centre's HTTP/JSON API, mounted in the agent's application.

:class:`ConfigHttpApi` satisfies :class:`syndic.agent.http_api_protocol.HttpApi`,
so its routes live next to the Consul-compatible ones and appear in the same
OpenAPI document (``/v1/openapi.json``)::

    app = build_http_app(agent, extra_apis=[ConfigHttpApi(ConfigStore(client))])

Under ``/v1/config/{namespace}/{group}/{data_id}`` (``BASE``):

==============================  =======  ============================================
``/v1/config/{namespace}``      GET      config ids of a namespace
``BASE``                        GET      content (``?client_id``, ``?label=k=v``, ``?version``)
``BASE``                        PUT      publish (compare-and-set)
``BASE/history``                GET      kept versions, newest first
``BASE/rollback``               POST     publish an old version again
``BASE/gray/{name}``            PUT      start or change a gray release
``BASE/gray/{name}/promote``    POST     the gray becomes the release
``BASE/gray/{name}/abort``      POST     the gray ends
``BASE/settings``               GET/PUT  schema, encryption, traffic rules, history bound
==============================  =======  ============================================

Errors are JSON ``{"error": ..., ...}``: 400 for bad input (with ``field``,
and ``path`` for a schema violation), 404, 409 for a lost compare-and-set
(with ``current_version``), 503 when the store cannot be reached. The raw
keys are readable through the Consul-compatible ``/v1/kv``.

Encrypted contents are opened only for requests ``may_reveal`` accepts
(without it, never): otherwise the entry is returned with ``encrypted``
true and no ``content``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from syndic.client.errors import ClientError
from syndic.config.errors import (
    ConfigNotFoundError,
    ConflictError,
    DecryptionError,
    InvalidInputError,
    SchemaViolationError,
)
from syndic.config.gray import ClientIdentity, choose
from syndic.config.model import ConfigId, Entry, Settings
from syndic.config.store import ConfigStore

RevealCheck = Callable[[web.Request], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BASE = "/v1/config/{namespace}/{group}/{data_id}"
# History pages: a config keeps at most HISTORY_VERSIONS_LIMIT entries anyway.
HISTORY_PAGE_MAX = 1000


def _json(status: int, doc: Any) -> web.Response:
    return web.json_response(doc, status=status)


def _errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SchemaViolationError as exc:
            return _json(400, {"error": str(exc), "field": exc.field, "path": exc.path})
        except InvalidInputError as exc:
            return _json(400, {"error": str(exc), "field": exc.field})
        except ConflictError as exc:
            return _json(409, {"error": str(exc), "current_version": exc.current_version})
        except ConfigNotFoundError as exc:
            return _json(404, {"error": str(exc)})
        except DecryptionError as exc:
            return _json(500, {"error": str(exc)})
        except ClientError as exc:
            return _json(503, {"error": f"store unavailable: {exc.message}"})

    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError("body", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError("body", f"must be a JSON object, got {type(doc).__name__}")
    return doc


def _int(doc: dict[str, Any], name: str, default: int | None = None) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(name, f"must be an integer, got {value!r}")
    return value


def _str(doc: dict[str, Any], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str):
        raise InvalidInputError(name, f"must be a string, got {value!r}")
    return value


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise InvalidInputError(name, f"must be a non-negative integer, got {raw!r}")
    return int(raw)


class ConfigHttpApi:
    """The routes above over one :class:`ConfigStore`."""

    def __init__(self, store: ConfigStore, *, may_reveal: RevealCheck | None = None) -> None:
        self._store = store
        self._may_reveal = may_reveal

    # -- HttpApi -------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/config/{namespace}", _errors(self._list))
        r.add_get(BASE, _errors(self._get))
        r.add_put(BASE, _errors(self._publish))
        r.add_get(f"{BASE}/history", _errors(self._history))
        r.add_post(f"{BASE}/rollback", _errors(self._rollback))
        r.add_put(f"{BASE}/gray/{{name}}", _errors(self._gray))
        r.add_post(f"{BASE}/gray/{{name}}/promote", _errors(self._promote))
        r.add_post(f"{BASE}/gray/{{name}}/abort", _errors(self._abort))
        r.add_get(f"{BASE}/settings", _errors(self._get_settings))
        r.add_put(f"{BASE}/settings", _errors(self._put_settings))

    def openapi_paths(self) -> dict[str, Any]:
        return openapi_paths()

    # -- handlers ------------------------------------------------------------

    async def _entry_doc(self, request: web.Request, cid: ConfigId, entry: Entry) -> dict[str, Any]:
        doc = entry.to_json()
        doc.pop("sealed", None)
        doc["encrypted"] = entry.encrypted
        if entry.encrypted and self._may_reveal is not None and await self._may_reveal(request):
            doc["content"] = await self._store.reveal(cid, entry)
        return doc

    async def _list(self, request: web.Request) -> web.Response:
        ids = await self._store.list_configs(request.match_info["namespace"])
        return _json(200, [{"group": c.group, "data_id": c.data_id} for c in ids])

    async def _get(self, request: web.Request) -> web.Response:
        cid = _cid(request)
        version = _query_int(request, "version")
        if version is not None:
            return _json(
                200, await self._entry_doc(request, cid, await self._store.entry(cid, version))
            )
        state = await self._store.state(cid)
        client_id = request.query.get("client_id")
        labels: dict[str, str] = {}
        for item in request.query.getall("label", []):
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidInputError("label", f"{item!r} is not key=value")
            labels[key] = value
        who = ClientIdentity(client_id, labels) if client_id is not None else None
        entry = choose(state.release, state.grays, cid.path, who)
        if entry is None:
            raise ConfigNotFoundError(f"{cid.path}: no such config")
        doc = await self._entry_doc(request, cid, entry)
        doc["head_version"] = state.version
        return _json(200, doc)

    async def _publish(self, request: web.Request) -> web.Response:
        cid, body = _cid(request), await _body(request)
        entry = await self._store.publish(
            cid,
            _str(body, "content"),
            format=_str(body, "format"),
            expected_version=_int(body, "expected_version"),
            author=_str(body, "author"),
            comment=_str(body, "comment", ""),
        )
        return _json(200, await self._entry_doc(request, cid, entry))

    async def _history(self, request: web.Request) -> web.Response:
        cid = _cid(request)
        limit = _query_int(request, "limit") or 0
        if limit > HISTORY_PAGE_MAX:
            raise InvalidInputError("limit", f"at most {HISTORY_PAGE_MAX}, got {limit}")
        entries = await self._store.history(cid, limit=limit)
        return _json(200, [await self._entry_doc(request, cid, e) for e in entries])

    async def _rollback(self, request: web.Request) -> web.Response:
        cid, body = _cid(request), await _body(request)
        entry = await self._store.rollback(
            cid,
            _int(body, "version"),
            expected_version=_int(body, "expected_version"),
            author=_str(body, "author"),
            comment=_str(body, "comment", ""),
        )
        return _json(200, await self._entry_doc(request, cid, entry))

    async def _gray(self, request: web.Request) -> web.Response:
        cid, body = _cid(request), await _body(request)
        entry = await self._store.gray(
            cid,
            request.match_info["name"],
            _str(body, "content"),
            format=_str(body, "format"),
            selector=body.get("selector"),  # type: ignore[arg-type]  # parse_selector checks it
            rank=_int(body, "rank", 0),
            expected_version=_int(body, "expected_version"),
            author=_str(body, "author"),
            comment=_str(body, "comment", ""),
        )
        return _json(200, await self._entry_doc(request, cid, entry))

    async def _end_gray(self, request: web.Request, promote: bool) -> web.Response:
        cid, body = _cid(request), await _body(request)
        end = self._store.promote if promote else self._store.abort
        entry = await end(
            cid,
            request.match_info["name"],
            expected_version=_int(body, "expected_version"),
            author=_str(body, "author"),
            comment=_str(body, "comment", ""),
        )
        return _json(200, await self._entry_doc(request, cid, entry))

    async def _promote(self, request: web.Request) -> web.Response:
        return await self._end_gray(request, promote=True)

    async def _abort(self, request: web.Request) -> web.Response:
        return await self._end_gray(request, promote=False)

    async def _get_settings(self, request: web.Request) -> web.Response:
        settings = await self._store.settings(_cid(request))
        return _json(200, json.loads(settings.encode()))

    async def _put_settings(self, request: web.Request) -> web.Response:
        cid, body = _cid(request), await _body(request)
        unknown = set(body) - {"encrypted", "schema", "traffic_rules", "history_versions_max"}
        if unknown:
            raise InvalidInputError("body", f"unknown fields {sorted(unknown)}")
        for flag in ("encrypted", "traffic_rules"):
            if not isinstance(body.get(flag, False), bool):
                raise InvalidInputError(flag, "must be a boolean")
        bound = body.get("history_versions_max")
        settings = Settings(
            encrypted=body.get("encrypted", False),
            schema=body.get("schema"),
            traffic_rules=body.get("traffic_rules", False),
            history_versions_max=None if bound is None else _int(body, "history_versions_max"),
        )
        await self._store.set_settings(cid, settings)
        return _json(200, json.loads(settings.encode()))


def _cid(request: web.Request) -> ConfigId:
    m = request.match_info
    return ConfigId(m["namespace"], m["group"], m["data_id"])


def token_reveal(tokens: frozenset[str]) -> RevealCheck:
    """A ``may_reveal`` that accepts ``Authorization: Bearer <token>`` for one of ``tokens``."""

    async def check(request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer ") :] in tokens

    return check


# -- OpenAPI -------------------------------------------------------------------

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"}
_ENTRY = {
    "type": "object",
    "required": [
        "version",
        "kind",
        "format",
        "sha256",
        "author",
        "comment",
        "time_ms",
        "encrypted",
    ],
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "kind": {"type": "string", "enum": ["publish", "rollback", "promote", "gray", "abort"]},
        "format": {"type": "string", "enum": ["yaml", "json", "toml", "properties", "text"]},
        "sha256": {"type": "string"},
        "author": {"type": "string"},
        "comment": {"type": "string"},
        "time_ms": {"type": "integer"},
        "content": {"type": "string"},
        "encrypted": {"type": "boolean"},
        "gray_name": {"type": "string"},
        "rank": {"type": "integer"},
        "selector": {"type": "object"},
        "source_version": {"type": "integer"},
        "head_version": {"type": "integer"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string"},
        "path": {"type": "string"},
        "current_version": {"type": "integer"},
    },
}
_CHANGE_FIELDS = {
    "expected_version": {"type": "integer", "minimum": 0},
    "author": {"type": "string", "maxLength": 128},
    "comment": {"type": "string", "maxLength": 1024},
}
_SETTINGS = {
    "type": "object",
    "properties": {
        "encrypted": {"type": "boolean"},
        "schema": {"type": "object", "nullable": True},
        "traffic_rules": {"type": "boolean"},
        "history_versions_max": {"type": "integer", "minimum": 1, "nullable": True},
    },
    "additionalProperties": False,
}


def _param(name: str, schema: dict[str, Any] = _NAME) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    ok: dict[str, Any],
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["config"],
        "responses": {
            "200": {"description": "OK", "content": _json_content(ok)},
            "400": {"description": "Bad input", "content": _json_content(_ERROR)},
            "404": {
                "description": "No such config, version or gray",
                "content": _json_content(_ERROR),
            },
            "409": {"description": "Compare-and-set lost", "content": _json_content(_ERROR)},
            "503": {"description": "Store unavailable", "content": _json_content(_ERROR)},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json_content(body)}
    if params:
        op["parameters"] = params
    return op


def _body_schema(required: list[str], fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": fields}


def openapi_paths() -> dict[str, Any]:
    ids = [_param("namespace"), _param("group"), _param("data_id")]
    gray = [*ids, _param("name")]
    content_fields = {
        "content": {"type": "string"},
        "format": {"type": "string", "enum": ["yaml", "json", "toml", "properties", "text"]},
        **_CHANGE_FIELDS,
    }
    change = ["expected_version", "author"]
    base = "/v1/config/{namespace}/{group}/{data_id}"
    return {
        "/v1/config/{namespace}": {
            "get": _op(
                "config ids of a namespace",
                {"type": "array", "items": {"type": "object"}},
                params=[_param("namespace")],
            ),
        },
        base: {
            "parameters": ids,
            "get": _op(
                "the content a client gets (gray releases applied), or a kept version",
                _ENTRY,
                params=[
                    _query("client_id", {"type": "string", "maxLength": 256}),
                    _query("label", {"type": "string"}),
                    _query("version", {"type": "integer", "minimum": 1}),
                ],
            ),
            "put": _op(
                "publish the next version (compare-and-set on expected_version)",
                _ENTRY,
                _body_schema(["content", "format", *change], content_fields),
            ),
        },
        f"{base}/history": {
            "parameters": ids,
            "get": _op(
                "kept versions, newest first",
                {"type": "array", "items": _ENTRY},
                params=[
                    _query("limit", {"type": "integer", "minimum": 0, "maximum": HISTORY_PAGE_MAX})
                ],
            ),
        },
        f"{base}/rollback": {
            "parameters": ids,
            "post": _op(
                "publish an old version's content as a new version",
                _ENTRY,
                _body_schema(
                    ["version", *change],
                    {"version": {"type": "integer", "minimum": 1}, **_CHANGE_FIELDS},
                ),
            ),
        },
        f"{base}/gray/{{name}}": {
            "parameters": gray,
            "put": _op(
                "serve a candidate to clients matching labels and/or a percentage",
                _ENTRY,
                _body_schema(
                    ["content", "format", "selector", *change],
                    {
                        **content_fields,
                        "rank": {"type": "integer", "minimum": 0},
                        "selector": {
                            "type": "object",
                            "properties": {
                                "labels": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "percentage": {
                                    "type": "number",
                                    "minimum": 0,
                                    "exclusiveMinimum": True,
                                    "maximum": 100,
                                },
                            },
                        },
                    },
                ),
            ),
        },
        f"{base}/gray/{{name}}/promote": {
            "parameters": gray,
            "post": _op(
                "the gray becomes the release", _ENTRY, _body_schema(change, _CHANGE_FIELDS)
            ),
        },
        f"{base}/gray/{{name}}/abort": {
            "parameters": gray,
            "post": _op(
                "end the gray; recorded in history", _ENTRY, _body_schema(change, _CHANGE_FIELDS)
            ),
        },
        f"{base}/settings": {
            "parameters": ids,
            "get": _op("the data id's settings", _SETTINGS),
            "put": _op("replace the data id's settings", _SETTINGS, _SETTINGS),
        },
    }
