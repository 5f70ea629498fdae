"""Request bodies as Consul reads them: JSON keys in any case and in snake_case.

py-consul sends ``{"name": ..., "enabletagoverride": ...}``, Go clients send
``{"Name": ..., "EnableTagOverride": ...}``, hand-written requests send
``service_id``: all are the same field here. A key is matched after dropping
case, ``_`` and ``-``. Unknown fields, wrong types, bad durations and hostile
names raise :class:`BodyError` (a 400 with Consul's ``Request decode failed``
text) before anything is stored. ``Meta`` keys are user data and keep their case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syndic.registry.durations import DurationError, parse_duration_ms
from syndic.registry.model import (
    CHECK_INTERVAL_MS_MIN,
    CHECK_TIMEOUT_MS_DEFAULT,
    CHECKS_MAX,
    CheckDefinition,
    CheckKind,
    HealthStatus,
    Instance,
    ModelError,
)

#: How deep a request body's JSON may nest; a registration needs 4 levels.
JSON_DEPTH_MAX = 16


class BodyError(ValueError):
    """A request body Consul would refuse with 400; the message is the body of the answer."""


def norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def parse_json(body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(f"Request decode failed: {exc}") from exc
    if _depth(doc) > JSON_DEPTH_MAX:
        raise BodyError(f"Request decode failed: nested deeper than {JSON_DEPTH_MAX} levels")
    return doc


def _depth(doc: Any) -> int:
    stack = [(doc, 1)]
    deepest = 0
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > JSON_DEPTH_MAX:
            return depth
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def fields(doc: Any, allowed: set[str], what: str) -> dict[str, Any]:
    """The object's fields by normalized name; unknown or repeated fields are refused."""
    if not isinstance(doc, Mapping):
        raise BodyError(f"Request decode failed: {what} must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        k = norm(str(key))
        if k not in allowed:
            raise BodyError(f'Request decode failed: json: unknown field "{key}" in {what}')
        if k in out:
            raise BodyError(f'Request decode failed: field "{key}" given twice in {what}')
        out[k] = value
    return out


def _str(v: Any, name: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BodyError(f"Request decode failed: {name} must be a string")
    return v


def _int(v: Any, name: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise BodyError(f"Request decode failed: {name} must be an integer")
    return v


def _bool(v: Any, name: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BodyError(f"Request decode failed: {name} must be a boolean")
    return v


def duration_ms(v: Any, name: str, default: float = 0.0) -> float:
    """A Go duration string, or (as Consul also accepts) a number of nanoseconds."""
    if v is None or v == "":
        return default
    if isinstance(v, bool):
        raise BodyError(f"Request decode failed: {name}: bad duration {v!r}")
    if isinstance(v, int | float):
        if v < 0:
            raise BodyError(f"Request decode failed: {name}: negative duration")
        return float(v) / 1e6
    try:
        return parse_duration_ms(v)
    except DurationError as exc:
        raise BodyError(f"Request decode failed: {name}: {exc}") from exc


CHECK_FIELDS = {
    "checkid", "id", "name", "notes", "serviceid", "status", "ttl", "http", "method",
    "header", "body", "tcp", "grpc", "grpcusetls", "interval", "timeout",
    "deregistercriticalserviceafter", "tlsskipverify", "tlsservername",
    "successbeforepassing", "failuresbeforecritical", "failuresbeforewarning", "args",
    "scriptargs", "shell", "dockercontainerid", "outputmaxsize", "type", "namespace",
}  # fmt: skip

SERVICE_FIELDS = {
    "id", "name", "tags", "address", "port", "meta", "weights", "enabletagoverride",
    "check", "checks", "kind", "taggedaddresses", "namespace", "zone", "version",
    "connect", "proxy", "socketpath", "partition", "locality",
}  # fmt: skip


def decode_check(doc: Any, default_id: str, default_name: str) -> CheckDefinition:
    f = fields(doc, CHECK_FIELDS, "Check")
    if f.get("dockercontainerid"):
        raise BodyError("Request decode failed: Docker checks are not supported")
    args = f.get("args") or f.get("scriptargs") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise BodyError("Request decode failed: Args must be a list of strings")
    kind = _kind(f, args)
    header = f.get("header") or {}
    if not isinstance(header, Mapping) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in header.values()
    ):
        raise BodyError("Request decode failed: Header must map names to lists of strings")
    status_text = _str(f.get("status"), "Status") or "critical"
    try:
        status = HealthStatus(status_text)
    except ValueError as exc:
        raise BodyError(f'Request decode failed: Status "{status_text[:32]}" is invalid') from exc
    interval_ms = duration_ms(f.get("interval"), "Interval")
    if kind not in (CheckKind.TTL,) and 0 < interval_ms < CHECK_INTERVAL_MS_MIN:
        interval_ms = CHECK_INTERVAL_MS_MIN  # Consul raises short intervals to its minimum
    target = {
        CheckKind.HTTP: f.get("http"),
        CheckKind.TCP: f.get("tcp"),
        CheckKind.GRPC: f.get("grpc"),
    }.get(kind)
    return CheckDefinition(
        check_id=_str(f.get("checkid") or f.get("id"), "CheckID") or default_id,
        kind=kind,
        name=_str(f.get("name"), "Name") or default_name,
        target=_str(target, kind.value.upper()),
        interval_ms=interval_ms,
        timeout_ms=duration_ms(f.get("timeout"), "Timeout", CHECK_TIMEOUT_MS_DEFAULT),
        ttl_ms=duration_ms(f.get("ttl"), "TTL"),
        deregister_critical_after_ms=duration_ms(
            f.get("deregistercriticalserviceafter"), "DeregisterCriticalServiceAfter"
        ),
        success_before_passing=_int(f.get("successbeforepassing"), "SuccessBeforePassing"),
        failures_before_critical=_int(f.get("failuresbeforecritical"), "FailuresBeforeCritical"),
        initial_status=status,
        method=_str(f.get("method"), "Method") or "GET",
        headers=tuple((str(k), tuple(v)) for k, v in header.items()),
        body=_str(f.get("body"), "Body"),
        tls_skip_verify=_bool(f.get("tlsskipverify"), "TLSSkipVerify"),
        grpc_use_tls=_bool(f.get("grpcusetls"), "GRPCUseTLS"),
        args=tuple(args),
        notes=_str(f.get("notes"), "Notes"),
    )


def _kind(f: dict[str, Any], args: list[str]) -> CheckKind:
    present = [
        k
        for k, flag in (
            (CheckKind.TTL, f.get("ttl")),
            (CheckKind.HTTP, f.get("http")),
            (CheckKind.TCP, f.get("tcp")),
            (CheckKind.GRPC, f.get("grpc")),
            (CheckKind.SCRIPT, args),
        )
        if flag
    ]
    if len(present) != 1:
        raise BodyError(
            "Request decode failed: a check needs exactly one of TTL, HTTP, TCP, GRPC or Args"
        )
    return present[0]


def decode_registration(doc: Any, *, namespace: str, node: str) -> Instance:
    """A ``/v1/agent/service/register`` body as an :class:`Instance`."""
    f = fields(doc, SERVICE_FIELDS, "service")
    for unsupported in ("connect", "proxy", "socketpath"):
        if f.get(unsupported):
            raise BodyError(f"Request decode failed: {unsupported} is not supported by syndic")
    if _str(f.get("kind"), "Kind"):
        raise BodyError("Request decode failed: only typical services (empty Kind) are supported")
    name = _str(f.get("name"), "Name")
    if not name:
        raise BodyError("Missing service name")
    sid = _str(f.get("id"), "ID") or name
    checks_doc: list[Any] = []
    if f.get("check") is not None:
        checks_doc.append(f["check"])
    extra = f.get("checks") or []
    if not isinstance(extra, list):
        raise BodyError("Request decode failed: Checks must be a list")
    checks_doc.extend(extra)
    if len(checks_doc) > CHECKS_MAX:
        raise BodyError(f"Request decode failed: more than {CHECKS_MAX} checks")
    checks = []
    for i, c in enumerate(checks_doc):
        default_id = f"service:{sid}" if len(checks_doc) == 1 else f"service:{sid}:{i + 1}"
        checks.append(decode_check(c, default_id, f"Service '{name}' check"))
    weights = fields(f.get("weights") or {}, {"passing", "warning"}, "Weights")
    tags = f.get("tags") or []
    meta = f.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise BodyError("Request decode failed: Meta must be an object")
    ns = _str(f.get("namespace"), "Namespace") or namespace
    try:
        return Instance(
            namespace=ns,
            service=name,
            instance_id=sid,
            address=_str(f.get("address"), "Address"),
            port=_int(f.get("port"), "Port"),
            tags=tuple(tags) if isinstance(tags, list) else tags,
            meta=dict(meta),
            weight_passing=_int(weights.get("passing"), "Weights.Passing") or 1,
            weight_warning=_int(weights.get("warning"), "Weights.Warning")
            if "warning" in weights
            else 1,
            zone=_str(f.get("zone"), "Zone"),
            version=_str(f.get("version"), "Version"),
            node=node,
            enable_tag_override=_bool(f.get("enabletagoverride"), "EnableTagOverride"),
            checks=tuple(checks),
        )
    except ModelError as exc:
        raise BodyError(f"Invalid service: {exc}") from exc
