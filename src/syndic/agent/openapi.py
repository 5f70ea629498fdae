"""The OpenAPI 3.0 document of the agent's whole HTTP API, served at ``/v1/openapi.json``.

Consul's endpoints, syndic's native registry API, and the paths of every
extra API mounted in the app (see :mod:`syndic.agent.http_api_protocol`).
The schemas say what each answer holds, so schemathesis can check the live
API against this document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syndic import __version__
from syndic.agent.http_api_protocol import HttpApi

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[A-Za-z0-9_.:@-]+$"}
# Free text as documented: printable ASCII. The API accepts more (any text
# without NUL), but the document only promises what every path accepts.
_TEXT_MAX = 64


def _text(length_max: int = _TEXT_MAX) -> dict[str, Any]:
    return {"type": "string", "maxLength": length_max, "pattern": "^[A-Za-z0-9 ._:/-]*$"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_INDEX_HEADERS = {
    "X-Consul-Index": {"schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}},
    "X-Consul-KnownLeader": {"schema": {"type": "string"}},
    "X-Consul-LastContact": {"schema": {"type": "string"}},
}


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _p(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _NAME}


_BLOCKING = [
    _q(
        "index",
        {"type": "integer", "minimum": 0, "maximum": 2**53},
        "blocking query: answer once the index passes this",
    ),
    _q(
        "wait",
        {"type": "string", "enum": ["1ms", "10ms", "50ms"]},
        "blocking query: longest wait (a Go duration, at most 10m)",
    ),
    _q("stale", {"type": "string", "enum": [""]}, "answer from the agent's catalog"),
    _q("dc", {"type": "string", "enum": ["dc1"]}),
]
#: ``?filter=``: Consul's expression language (syndic.agent.filter); a malformed one is 400.
_FILTER = _q(
    "filter",
    {"type": "string", "enum": ["Node is not empty", 'Node == "nobody"']},
    "Consul filter expression over the answer's documents",
)
_ERR = {"description": "bad request", "content": _TEXT}
_NOT_FOUND = {"description": "unknown id", "content": _TEXT}


def _read(
    summary: str,
    schema: dict[str, Any],
    params: Sequence[dict[str, Any]] = (),
    blocking: bool = True,
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [*params, *(_BLOCKING if blocking else [])],
            "responses": {
                "200": {
                    "description": "OK",
                    "headers": _INDEX_HEADERS if blocking else {},
                    "content": _json(schema),
                },
                "400": _ERR,
            },
        }
    }


def _write(
    summary: str,
    params: Sequence[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    ok: dict[str, Any] | None = None,
    not_found: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {"200": {"description": "OK", "content": ok or _TEXT}, "400": _ERR},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if not_found:
        op["responses"]["404"] = _NOT_FOUND
    # A check kind that has no TTL is refused with Consul's 500.
    return {"put": op}


def arr(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _components() -> dict[str, Any]:
    check = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "CheckID": _NAME,
            "Name": _text(64),
            "TTL": {"type": "string", "enum": ["10s", "30s", "1m"]},
            "Status": {"type": "string", "enum": ["passing", "warning", "critical"]},
            "Notes": _text(64),
            "DeregisterCriticalServiceAfter": {"type": "string", "enum": ["1m", "90s"]},
        },
        "required": ["TTL"],
    }
    registration = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ID": _NAME,
            "Name": _NAME,
            "Tags": {"type": "array", "maxItems": 8, "items": _text(32)},
            "Address": _text(64),
            "Port": {"type": "integer", "minimum": 0, "maximum": 65535},
            # OpenAPI 3.0 has no propertyNames: the document names a few keys.
            "Meta": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"team": _text(), "version": _text(), "env": _text()},
            },
            "Weights": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "Passing": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "Warning": {"type": "integer", "minimum": 0, "maximum": 1000},
                },
            },
            "EnableTagOverride": {"type": "boolean"},
            "Zone": _text(32),
            "Version": _text(32),
            "Check": _ref("Check"),
        },
        "required": ["Name"],
    }
    obj = {"type": "object"}
    return {
        "schemas": {
            "Check": check,
            "Registration": registration,
            "Node": {"type": "object", "required": ["Node", "Address", "Datacenter"]},
            "ServiceEntry": {
                "type": "object",
                "required": ["Node", "Service", "Checks"],
                "properties": {
                    "Node": obj,
                    "Service": obj,
                    "Checks": {"type": "array", "items": obj},
                },
            },
            "HealthCheck": {"type": "object", "required": ["CheckID", "Status", "ServiceID"]},
            "CatalogService": {
                "type": "object",
                "required": ["Node", "ServiceID", "ServiceName", "ServicePort"],
            },
            "KvEntry": {
                "type": "object",
                "required": ["Key", "Flags", "LockIndex", "CreateIndex", "ModifyIndex"],
            },
            "Session": {"type": "object", "required": ["ID", "Behavior", "TTL"]},
            "TargetGroup": {
                "type": "object",
                "required": ["targets", "labels"],
                "properties": {
                    "targets": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        }
    }


def _paths() -> dict[str, Any]:
    ttl_check_ops = {
        f"/v1/agent/check/{verb}/{{id}}": _write(
            f"mark a TTL check {verb}",
            [_p("id"), _q("note", _text(64))],
            not_found=True,
        )
        for verb in ("pass", "warn", "fail")
    }
    for op in ttl_check_ops.values():
        op["put"]["responses"]["500"] = {"description": "not a TTL check", "content": _TEXT}
    update = _write(
        "set a TTL check's status and output",
        [_p("id")],
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["Status"],
            "properties": {
                "Status": {"type": "string", "enum": ["passing", "warning", "critical"]},
                "Output": _text(64),
            },
        },
        not_found=True,
    )
    update["put"]["responses"]["500"] = {"description": "not a TTL check", "content": _TEXT}
    kv_key = _p(
        "key", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}(/[A-Za-z0-9_-]{1,32})?$"}
    )
    kv_get = _read(
        "read a key, or keys under a prefix",
        arr(_ref("KvEntry")),
        [
            kv_key,
            _q("recurse", {"type": "string", "enum": [""]}),
            _q("raw", {"type": "string", "enum": [""]}),
        ],
    )["get"]
    kv_get["responses"]["404"] = {"description": "no such key", "headers": _INDEX_HEADERS}
    kv_get["responses"]["200"]["content"]["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary"}
    }
    kv_put = _write(
        "write a key",
        [
            kv_key,
            _q("flags", {"type": "integer", "minimum": 0, "maximum": 2**32}),
            _q("cas", {"type": "integer", "minimum": 0, "maximum": 2**32}),
        ],
        ok=_json({"type": "boolean"}),
    )["put"]
    kv_put["requestBody"] = {
        "required": False,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "maxLength": 1024}
            }
        },
    }
    kv_delete = {
        "summary": "delete a key (or a prefix with ?recurse)",
        "parameters": [kv_key, _q("cas", {"type": "integer", "minimum": 0, "maximum": 2**32})],
        "responses": {
            "200": {"description": "OK", "content": _json({"type": "boolean"})},
            "400": _ERR,
        },
    }
    session_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "Name": _text(32),
            "Behavior": {"type": "string", "enum": ["release", "delete"]},
            "TTL": {"type": "string", "enum": ["10s", "30s", "1m"]},
        },
    }
    settings = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"ProtectThreshold": {"type": "number", "minimum": 0, "maximum": 1}},
    }
    return {
        "/v1/agent/self": _read(
            "the agent's configuration",
            {"type": "object", "required": ["Config", "Member"]},
            blocking=False,
        ),
        "/v1/agent/services": _read(
            "services registered through this agent",
            {"type": "object"},
            [_q("filter", {"type": "string", "enum": ["Service is not empty"]})],
            blocking=False,
        ),
        "/v1/agent/checks": _read(
            "checks of this agent's services", {"type": "object"}, [_FILTER], blocking=False
        ),
        "/v1/agent/service/register": _write(
            "register a service with its checks",
            [_q("replace-existing-checks", {"type": "string", "enum": ["true"]})],
            body=_ref("Registration"),
        ),
        "/v1/agent/service/deregister/{id}": _write(
            "deregister a service", [_p("id")], not_found=True
        ),
        "/v1/agent/service/maintenance/{id}": _write(
            "enter or leave maintenance mode",
            [
                _p("id"),
                {
                    "name": "enable",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "enum": ["true", "false"]},
                },
                _q("reason", _text(64)),
            ],
            not_found=True,
        ),
        **ttl_check_ops,
        "/v1/agent/check/update/{id}": update,
        "/v1/catalog/services": _read(
            "service names and their tags",
            {"type": "object", "additionalProperties": arr({"type": "string"})},
            [_FILTER],
        ),
        "/v1/catalog/service/{name}": _read(
            "a service's instances",
            arr(_ref("CatalogService")),
            [_p("name"), _q("tag", _text(32)), _FILTER],
        ),
        "/v1/catalog/nodes": _read("nodes", arr(_ref("Node")), [_FILTER]),
        "/v1/catalog/datacenters": _read("datacenters", arr({"type": "string"}), blocking=False),
        "/v1/health/service/{name}": _read(
            "a service's instances with their checks",
            arr(_ref("ServiceEntry")),
            [
                _p("name"),
                _q("tag", _text(32)),
                _q("passing", {"type": "string", "enum": [""]}),
                _FILTER,
            ],
        ),
        "/v1/health/checks/{name}": _read(
            "a service's checks", arr(_ref("HealthCheck")), [_p("name"), _FILTER]
        ),
        "/v1/health/state/{state}": _read(
            "checks in a state",
            arr(_ref("HealthCheck")),
            [
                _p("state", {"type": "string", "enum": ["any", "passing", "warning", "critical"]}),
                _FILTER,
            ],
        ),
        "/v1/status/leader": _read("the Raft leader's address", {"type": "string"}, blocking=False),
        "/v1/status/peers": _read(
            "the Raft voters' addresses", arr({"type": "string"}), blocking=False
        ),
        "/v1/kv/{key}": {"get": kv_get, "put": kv_put, "delete": kv_delete},
        "/v1/session/create": _write(
            "create a session", body=session_body, ok=_json({"type": "object", "required": ["ID"]})
        ),
        "/v1/session/destroy/{id}": _write(
            "destroy a session", [_p("id")], ok=_json({"type": "boolean"})
        ),
        "/v1/session/renew/{id}": _write(
            "renew a TTL session", [_p("id")], ok=_json(arr(_ref("Session"))), not_found=True
        ),
        "/v1/session/info/{id}": _read(
            "one session", arr(_ref("Session")), [_p("id")], blocking=False
        ),
        "/v1/session/node/{node}": _read(
            "a node's sessions", arr(_ref("Session")), [_p("node")], blocking=False
        ),
        "/v1/session/list": _read("all sessions", arr(_ref("Session")), blocking=False),
        "/v1/sd/prometheus": _read(
            "passing instances in Prometheus's HTTP SD format",
            arr(_ref("TargetGroup")),
            [_q("service", _NAME)],
            blocking=False,
        ),
        "/v1/registry/namespaces": _read("namespaces", arr({"type": "object"}), blocking=False),
        "/v1/registry/namespaces/{ns}": _write(
            "declare a namespace",
            [_p("ns")],
            body={
                "type": "object",
                "additionalProperties": False,
                "properties": {"Description": _text(64)},
            },
            ok=_json({"type": "boolean"}),
        ),
        "/v1/registry/services/{ns}/{name}/settings": {
            **_read("a service's settings", settings, [_p("ns"), _p("name")], blocking=False),
            **_write(
                "set a service's protect threshold",
                [_p("ns"), _p("name")],
                body=settings,
                ok=_json({"type": "boolean"}),
            ),
        },
        "/v1/registry/instances/{ns}/{name}": _read(
            "discovery with zone, tags and the protect threshold",
            {"type": "object", "required": ["Instances", "Protected"]},
            [_p("ns"), _p("name"), _q("zone", _text(32))],
            blocking=False,
        ),
    }


def build_openapi(extra_apis: Sequence[HttpApi] = ()) -> dict[str, Any]:
    """The whole document; raises ValueError if an extra API repeats a path."""
    paths = _paths()
    components = _components()
    for api in extra_apis:
        for path, item in api.openapi_paths().items():
            if path in paths:
                raise ValueError(f"OpenAPI path {path!r} is defined twice")
            paths[path] = item
        extra_components = getattr(api, "openapi_components", None)
        if callable(extra_components):
            for section, entries in extra_components().items():
                target = components.setdefault(section, {})
                for name, value in entries.items():
                    if name in target:
                        raise ValueError(f"OpenAPI component {section}/{name} is defined twice")
                    target[name] = value
    paths["/v1/openapi.json"] = _read("this document", {"type": "object"}, blocking=False)
    return {
        "openapi": "3.0.3",
        "info": {"title": "syndic HTTP API (Consul-compatible)", "version": __version__},
        "paths": paths,
        "components": components,
    }
