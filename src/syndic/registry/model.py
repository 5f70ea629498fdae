"""The registry's values: instances, their checks and check states, service settings.

Every value is a frozen, slotted dataclass validated in ``__post_init__``, so
an invalid instance cannot be built, stored or decoded. ``encode_*`` and
``decode_*`` turn values into the JSON documents stored under the keys that
:mod:`syndic.registry.keys` lays out; decoding re-validates, so a hostile or
corrupt value in the store is refused rather than served.

>>> inst = Instance("default", "web", "web-1", "10.0.0.1", 8080, tags=("v1",))
>>> decode_instance(encode_instance(inst)) == inst
True
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Longest namespace, service, instance, node or check name, in characters.
#: Consul has no hard limit on ids; 255 is a DNS label set's length and keeps
#: keys (which embed names) far below etcd's key size limits.
NAME_LENGTH_MAX = 255
#: Most tags on one instance, and longest tag (Consul does not bound tags; a
#: bound keeps one hostile registration from bloating every catalog answer).
TAGS_MAX = 64
TAG_LENGTH_MAX = 255
#: Consul's limits on service and node meta (agent/structs: metaMaxKeyPairs,
#: metaKeyMaxLength, metaValueMaxLength).
META_PAIRS_MAX = 64
META_KEY_LENGTH_MAX = 128
META_VALUE_LENGTH_MAX = 512
#: Longest address (a DNS name is at most 253 characters).
ADDRESS_LENGTH_MAX = 253
#: Most checks on one instance.
CHECKS_MAX = 32
#: Consul's default check_output_max_size: output beyond it is cut.
CHECK_OUTPUT_BYTES_MAX = 4096
#: Longest check target (URL, host:port) and notes, in characters.
CHECK_TEXT_LENGTH_MAX = 2048
#: Longest interval, timeout, TTL or deregister delay, in ms (one week).
DURATION_MS_MAX = 7 * 24 * 3_600_000.0
#: Shortest interval for an active check: Consul's MinInterval is 1 s.
CHECK_INTERVAL_MS_MIN = 1000.0
#: Consul's default check timeout.
CHECK_TIMEOUT_MS_DEFAULT = 10_000.0
#: Largest success-before-passing / failures-before-critical threshold.
THRESHOLD_MAX = 1000
#: Largest weight (Consul's weights are ints; 1e6 covers any capacity ratio).
WEIGHT_MAX = 1_000_000
#: Most HTTP headers on an HTTP check, and longest header text.
CHECK_HEADERS_MAX = 32

#: The check id Consul uses for a service in maintenance mode.
MAINTENANCE_CHECK_PREFIX = "_service_maintenance:"
MAINTENANCE_CHECK_NAME = "Service Maintenance Mode"

DEFAULT_NAMESPACE = "default"


class ModelError(ValueError):
    """A value the registry refuses; ``field`` names what is wrong."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


class HealthStatus(enum.Enum):
    """Consul's check statuses, ordered from best to worst by ``rank``."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {HealthStatus.PASSING: 0, HealthStatus.WARNING: 1, HealthStatus.CRITICAL: 2}


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    """The aggregate of several checks, as Consul computes it (any critical wins)."""
    return max(statuses, key=lambda s: s.rank, default=HealthStatus.PASSING)


class CheckKind(enum.Enum):
    TTL = "ttl"
    HTTP = "http"
    TCP = "tcp"
    GRPC = "grpc"
    SCRIPT = "script"
    MAINTENANCE = "maintenance"


def check_name(value: object, field_name: str) -> str:
    """A name that is safe as one key segment: no ``/``, no control
    characters, not ``.`` or ``..``, not empty, at most NAME_LENGTH_MAX."""
    if not isinstance(value, str):
        raise ModelError(field_name, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ModelError(field_name, "must not be empty")
    if len(value) > NAME_LENGTH_MAX:
        raise ModelError(field_name, f"is {len(value)} characters, more than {NAME_LENGTH_MAX}")
    if value in (".", ".."):
        raise ModelError(field_name, f"must not be {value!r}")
    for ch in value:
        if ch in "/\\" or ch.isspace() or not ch.isprintable():
            raise ModelError(field_name, f"must not contain {ch!r}")
    return value


def _check_text(value: object, field_name: str, length_max: int) -> str:
    if not isinstance(value, str):
        raise ModelError(field_name, f"must be a string, got {type(value).__name__}")
    if len(value) > length_max:
        raise ModelError(field_name, f"is {len(value)} characters, more than {length_max}")
    if "\x00" in value:
        raise ModelError(field_name, "must not contain NUL")
    return value


def _check_int(value: object, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(field_name, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ModelError(field_name, f"must be in [{low}, {high}], got {value}")
    return value


def _check_ms(value: object, field_name: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(field_name, f"must be a number, got {type(value).__name__}")
    ms = float(value)
    if math.isnan(ms) or not low <= ms <= DURATION_MS_MAX:
        raise ModelError(field_name, f"must be in [{low:g}, {DURATION_MS_MAX:g}] ms, got {value}")
    return ms


def _check_tags(tags: object, field_name: str) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise ModelError(field_name, "must be a list of strings")
    if len(tags) > TAGS_MAX:
        raise ModelError(field_name, f"has {len(tags)} tags, more than {TAGS_MAX}")
    return tuple(_check_text(t, f"{field_name}[{i}]", TAG_LENGTH_MAX) for i, t in enumerate(tags))


def _check_meta(meta: object, field_name: str) -> Mapping[str, str]:
    if not isinstance(meta, Mapping):
        raise ModelError(field_name, "must be an object of string values")
    if len(meta) > META_PAIRS_MAX:
        raise ModelError(field_name, f"has {len(meta)} pairs, more than {META_PAIRS_MAX}")
    for k, v in meta.items():
        key = _check_text(k, f"{field_name} key", META_KEY_LENGTH_MAX)
        # Consul: "Key contains invalid characters" beyond [A-Za-z0-9_-].
        if not key or not all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
            raise ModelError(f"{field_name} key {key[:32]!r}", "may hold only A-Z a-z 0-9 _ -")
        _check_text(v, f"{field_name}[{key}]", META_VALUE_LENGTH_MAX)
    return MappingProxyType(dict(meta))


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """One health check of an instance (Consul's CheckType).

    ``target`` is the URL (HTTP), ``host:port`` (TCP), ``host:port[/service]``
    (gRPC) or empty (TTL, script). A check starts in ``initial_status``
    (Consul: critical unless the registration says otherwise); it turns
    passing after ``success_before_passing`` consecutive successes and
    critical after ``failures_before_critical`` consecutive failures. If it
    stays critical for ``deregister_critical_after_ms`` (0: never), the agent
    deregisters the instance.
    """

    check_id: str
    kind: CheckKind
    name: str = ""
    target: str = ""
    interval_ms: float = 0.0
    timeout_ms: float = CHECK_TIMEOUT_MS_DEFAULT
    ttl_ms: float = 0.0
    deregister_critical_after_ms: float = 0.0
    success_before_passing: int = 0
    failures_before_critical: int = 0
    initial_status: HealthStatus = HealthStatus.CRITICAL
    method: str = "GET"
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body: str = ""
    tls_skip_verify: bool = False
    grpc_use_tls: bool = False
    args: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        check_name(self.check_id, "CheckID")
        if not isinstance(self.kind, CheckKind):
            raise ModelError("Type", f"must be a CheckKind, got {self.kind!r}")
        if not isinstance(self.initial_status, HealthStatus):
            raise ModelError("Status", f"must be a HealthStatus, got {self.initial_status!r}")
        _check_text(self.name, "Name", NAME_LENGTH_MAX)
        _check_text(self.target, "target", CHECK_TEXT_LENGTH_MAX)
        _check_text(self.notes, "Notes", CHECK_TEXT_LENGTH_MAX)
        _check_text(self.body, "Body", CHECK_TEXT_LENGTH_MAX)
        _check_ms(self.timeout_ms, "Timeout", 1.0)
        _check_ms(self.ttl_ms, "TTL")
        _check_ms(self.deregister_critical_after_ms, "DeregisterCriticalServiceAfter")
        _check_int(self.success_before_passing, "SuccessBeforePassing", 0, THRESHOLD_MAX)
        _check_int(self.failures_before_critical, "FailuresBeforeCritical", 0, THRESHOLD_MAX)
        if self.method not in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            raise ModelError("Method", f"unsupported HTTP method {self.method[:16]!r}")
        if len(self.headers) > CHECK_HEADERS_MAX:
            raise ModelError("Header", f"more than {CHECK_HEADERS_MAX} headers")
        for name, values in self.headers:
            _check_text(name, "Header", CHECK_TEXT_LENGTH_MAX)
            for v in values:
                _check_text(v, f"Header[{name}]", CHECK_TEXT_LENGTH_MAX)
        if len(self.args) > CHECK_HEADERS_MAX:
            raise ModelError("Args", f"more than {CHECK_HEADERS_MAX} arguments")
        for a in self.args:
            _check_text(a, "Args", CHECK_TEXT_LENGTH_MAX)
        active = self.kind in (CheckKind.HTTP, CheckKind.TCP, CheckKind.GRPC, CheckKind.SCRIPT)
        if active:
            _check_ms(self.interval_ms, "Interval", CHECK_INTERVAL_MS_MIN)
        if self.kind in (CheckKind.HTTP, CheckKind.TCP, CheckKind.GRPC) and not self.target:
            raise ModelError("target", f"a {self.kind.value} check needs a target")
        if self.kind is CheckKind.HTTP and not self.target.startswith(("http://", "https://")):
            raise ModelError("HTTP", "must be an http:// or https:// URL")
        if self.kind is CheckKind.TTL and self.ttl_ms <= 0:
            raise ModelError("TTL", "a TTL check needs a TTL above 0")
        if self.kind is CheckKind.SCRIPT and not self.args:
            raise ModelError("Args", "a script check needs Args")


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service (Consul's NodeService plus syndic's fields).

    An ``ephemeral`` instance is bound to a lease the registrant keeps alive
    (a heartbeat) and vanishes when it stops; a persistent instance stays
    registered while unhealthy until it is deregistered, or reaped after a
    check's ``deregister_critical_after_ms``.
    """

    namespace: str
    service: str
    instance_id: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)
    weight_passing: int = 1
    weight_warning: int = 1
    zone: str = ""
    version: str = ""
    ephemeral: bool = False
    node: str = "syndic"
    enable_tag_override: bool = False
    checks: tuple[CheckDefinition, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.namespace, "Namespace")
        check_name(self.service, "Name")
        check_name(self.instance_id, "ID")
        check_name(self.node, "Node")
        _check_text(self.address, "Address", ADDRESS_LENGTH_MAX)
        _check_int(self.port, "Port", 0, 65535)
        object.__setattr__(self, "tags", _check_tags(self.tags, "Tags"))
        object.__setattr__(self, "meta", _check_meta(self.meta, "Meta"))
        _check_int(self.weight_passing, "Weights.Passing", 1, WEIGHT_MAX)
        _check_int(self.weight_warning, "Weights.Warning", 0, WEIGHT_MAX)
        _check_text(self.zone, "Zone", NAME_LENGTH_MAX)
        _check_text(self.version, "Version", NAME_LENGTH_MAX)
        if not isinstance(self.ephemeral, bool) or not isinstance(self.enable_tag_override, bool):
            raise ModelError("Ephemeral", "must be a boolean")
        if len(self.checks) > CHECKS_MAX:
            raise ModelError("Checks", f"has {len(self.checks)} checks, more than {CHECKS_MAX}")
        seen: set[str] = set()
        for c in self.checks:
            if not isinstance(c, CheckDefinition):
                raise ModelError("Checks", f"must hold CheckDefinition, got {type(c).__name__}")
            if c.check_id in seen:
                raise ModelError("Checks", f"duplicate CheckID {c.check_id!r}")
            seen.add(c.check_id)

    def check(self, check_id: str) -> CheckDefinition | None:
        return next((c for c in self.checks if c.check_id == check_id), None)


@dataclass(frozen=True, slots=True)
class CheckState:
    """The last written status of one check, and its (bounded) output."""

    status: HealthStatus
    output: str = ""
    name: str = ""  # set for checks with no definition (maintenance)

    def __post_init__(self) -> None:
        if not isinstance(self.status, HealthStatus):
            raise ModelError("Status", f"must be a HealthStatus, got {self.status!r}")
        object.__setattr__(self, "output", bound_output(self.output))
        _check_text(self.name, "Name", NAME_LENGTH_MAX)


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Per-service settings Consul lacks.

    ``protect_threshold`` (0..1): when fewer than this fraction of instances
    are healthy, discovery returns all instances, healthy or not (Nacos's
    protect threshold, Envoy's panic threshold), so a bad health signal
    cannot make the last healthy instances take all the load.
    """

    protect_threshold: float = 0.0

    def __post_init__(self) -> None:
        value = self.protect_threshold
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ModelError("ProtectThreshold", "must be a number")
        if not 0.0 <= value <= 1.0:
            raise ModelError("ProtectThreshold", f"must be in [0, 1], got {value}")
        object.__setattr__(self, "protect_threshold", float(value))


def bound_output(output: str) -> str:
    """Cut check output to CHECK_OUTPUT_BYTES_MAX bytes, as Consul does."""
    data = output.encode("utf-8", "replace")
    if len(data) <= CHECK_OUTPUT_BYTES_MAX:
        return output
    marker = " ... (captured check output exceeded limit)"
    keep = CHECK_OUTPUT_BYTES_MAX - len(marker)
    return data[:keep].decode("utf-8", "ignore") + marker


def protect(
    healthy: list[Instance], all_instances: list[Instance], threshold: float
) -> list[Instance]:
    """Apply the protect threshold: the healthy instances, or all when too few are healthy."""
    if all_instances and len(healthy) < threshold * len(all_instances):
        return list(all_instances)
    return healthy


# ---- encoding -------------------------------------------------------------


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(what, f"stored value is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelError(what, "stored value is not a JSON object")
    return doc


def check_to_doc(c: CheckDefinition) -> dict[str, Any]:
    return {
        "id": c.check_id,
        "kind": c.kind.value,
        "name": c.name,
        "target": c.target,
        "interval_ms": c.interval_ms,
        "timeout_ms": c.timeout_ms,
        "ttl_ms": c.ttl_ms,
        "deregister_critical_after_ms": c.deregister_critical_after_ms,
        "success_before_passing": c.success_before_passing,
        "failures_before_critical": c.failures_before_critical,
        "initial_status": c.initial_status.value,
        "method": c.method,
        "headers": [[k, list(v)] for k, v in c.headers],
        "body": c.body,
        "tls_skip_verify": c.tls_skip_verify,
        "grpc_use_tls": c.grpc_use_tls,
        "args": list(c.args),
        "notes": c.notes,
    }


def check_from_doc(doc: dict[str, Any]) -> CheckDefinition:
    try:
        return CheckDefinition(
            check_id=doc["id"],
            kind=CheckKind(doc["kind"]),
            name=doc["name"],
            target=doc["target"],
            interval_ms=doc["interval_ms"],
            timeout_ms=doc["timeout_ms"],
            ttl_ms=doc["ttl_ms"],
            deregister_critical_after_ms=doc["deregister_critical_after_ms"],
            success_before_passing=doc["success_before_passing"],
            failures_before_critical=doc["failures_before_critical"],
            initial_status=HealthStatus(doc["initial_status"]),
            method=doc["method"],
            headers=tuple((k, tuple(v)) for k, v in doc["headers"]),
            body=doc["body"],
            tls_skip_verify=doc["tls_skip_verify"],
            grpc_use_tls=doc["grpc_use_tls"],
            args=tuple(doc["args"]),
            notes=doc["notes"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError("check", f"stored check is malformed: {exc!r}") from exc


def encode_instance(inst: Instance) -> bytes:
    return _dump(
        {
            "namespace": inst.namespace,
            "service": inst.service,
            "id": inst.instance_id,
            "address": inst.address,
            "port": inst.port,
            "tags": list(inst.tags),
            "meta": dict(inst.meta),
            "weights": {"passing": inst.weight_passing, "warning": inst.weight_warning},
            "zone": inst.zone,
            "version": inst.version,
            "ephemeral": inst.ephemeral,
            "node": inst.node,
            "enable_tag_override": inst.enable_tag_override,
            "checks": [check_to_doc(c) for c in inst.checks],
        }
    )


def decode_instance(data: bytes) -> Instance:
    doc = _load(data, "instance")
    try:
        return Instance(
            namespace=doc["namespace"],
            service=doc["service"],
            instance_id=doc["id"],
            address=doc["address"],
            port=doc["port"],
            tags=tuple(doc["tags"]),
            meta=doc["meta"],
            weight_passing=doc["weights"]["passing"],
            weight_warning=doc["weights"]["warning"],
            zone=doc["zone"],
            version=doc["version"],
            ephemeral=doc["ephemeral"],
            node=doc["node"],
            enable_tag_override=doc["enable_tag_override"],
            checks=tuple(check_from_doc(c) for c in doc["checks"]),
        )
    except (KeyError, TypeError) as exc:
        raise ModelError("instance", f"stored instance is malformed: {exc!r}") from exc


def encode_check_state(state: CheckState) -> bytes:
    return _dump({"status": state.status.value, "output": state.output, "name": state.name})


def decode_check_state(data: bytes) -> CheckState:
    doc = _load(data, "check state")
    try:
        return CheckState(HealthStatus(doc["status"]), doc["output"], doc.get("name", ""))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError("check state", f"stored check state is malformed: {exc!r}") from exc


def encode_settings(settings: ServiceSettings) -> bytes:
    return _dump({"protect_threshold": settings.protect_threshold})


def decode_settings(data: bytes) -> ServiceSettings:
    doc = _load(data, "settings")
    return ServiceSettings(doc.get("protect_threshold", 0.0))
