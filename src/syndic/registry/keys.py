"""The registry's key layout in the etcd keyspace. Stable: changing it is a migration.

Every key lives under one prefix (default ``syndic/registry/``, configurable
so several syndic installations, or syndic and other software, can share one
etcd cluster). Names never contain ``/`` (see
:func:`syndic.registry.model.check_name`), so each segment parses back
unambiguously::

    {prefix}ns/{namespace}                                   namespace record (JSON)
    {prefix}svc/{namespace}/{service}/settings               ServiceSettings (JSON)
    {prefix}svc/{namespace}/{service}/inst/{instance}        Instance (JSON; leased if ephemeral)
    {prefix}svc/{namespace}/{service}/check/{instance}/{check}  CheckState (JSON)
    {prefix}node/{node}                                      node record (JSON)
    {prefix}session/{session}                                session (JSON, on the session's lease)
    {prefix}lock/{kv key}                                    holder of a KV lock (session lease)
    {prefix}kvmeta/{kv key}                                  Consul KV flags and lock index (JSON)
    {prefix}sessdel/{session}/{kv key}                       keys to delete when the session ends

Everything about one service is under ``{prefix}svc/{namespace}/{service}/``,
so one prefix watch or range reads it whole, and its newest mod revision is
the service's index.
"""

from __future__ import annotations

from dataclasses import dataclass

from syndic.registry.model import ModelError, check_name

DEFAULT_PREFIX = "syndic/registry/"
#: Longest prefix, in bytes; keys embed it, and etcd's key limit is generous
#: but a prefix this long is a misconfiguration.
PREFIX_LENGTH_MAX = 256


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a registry key names. ``kind`` is one of ``settings``, ``inst``,
    ``check``, ``ns``, ``node``, ``session``, ``lock``, ``kvmeta``, ``sessdel``."""

    kind: str
    namespace: str = ""
    service: str = ""
    instance_id: str = ""
    check_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix.endswith("/"):
            raise ModelError("prefix", "must be a string ending in '/'")
        if len(self.prefix.encode()) > PREFIX_LENGTH_MAX or "\x00" in self.prefix:
            raise ModelError("prefix", f"must be at most {PREFIX_LENGTH_MAX} bytes, without NUL")

    # -- builders ---------------------------------------------------------

    def _b(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    def all(self) -> bytes:
        return self.prefix.encode()

    def namespace(self, ns: str) -> bytes:
        return self._b("ns", check_name(ns, "Namespace"))

    def namespaces(self) -> bytes:
        return self._b("ns", "")

    def services(self) -> bytes:
        return self._b("svc", "")

    def services_in(self, ns: str) -> bytes:
        return self._b("svc", check_name(ns, "Namespace"), "")

    def service(self, ns: str, service: str) -> bytes:
        return self._b("svc", check_name(ns, "Namespace"), check_name(service, "Name"), "")

    def settings(self, ns: str, service: str) -> bytes:
        return self.service(ns, service) + b"settings"

    def instance(self, ns: str, service: str, instance_id: str) -> bytes:
        return self.service(ns, service) + b"inst/" + check_name(instance_id, "ID").encode()

    def instance_checks(self, ns: str, service: str, instance_id: str) -> bytes:
        return self.service(ns, service) + f"check/{check_name(instance_id, 'ID')}/".encode()

    def check(self, ns: str, service: str, instance_id: str, check_id: str) -> bytes:
        return (
            self.instance_checks(ns, service, instance_id)
            + check_name(check_id, "CheckID").encode()
        )

    def node(self, node: str) -> bytes:
        return self._b("node", check_name(node, "Node"))

    def nodes(self) -> bytes:
        return self._b("node", "")

    def session(self, session_id: str) -> bytes:
        return self._b("session", check_name(session_id, "Session"))

    def sessions(self) -> bytes:
        return self._b("session", "")

    def lock(self, kv_key: bytes) -> bytes:
        return self._b("lock", "") + kv_key

    def kvmeta(self, kv_key: bytes) -> bytes:
        return self._b("kvmeta", "") + kv_key

    def session_deletes(self, session_id: str) -> bytes:
        return self._b("sessdel", check_name(session_id, "Session"), "")

    def session_delete(self, session_id: str, kv_key: bytes) -> bytes:
        return self.session_deletes(session_id) + kv_key

    # -- parser -----------------------------------------------------------

    def parse(self, key: bytes) -> ParsedKey | None:
        """Name what a key under the prefix is; None for a key that is not the registry's."""
        try:
            text = key.decode()
        except UnicodeDecodeError:
            return None
        if not text.startswith(self.prefix):
            return None
        rest = text[len(self.prefix) :]
        head, _, tail = rest.partition("/")
        if head == "svc":
            parts = tail.split("/")
            if len(parts) == 3 and parts[2] == "settings":
                return ParsedKey("settings", parts[0], parts[1])
            if len(parts) == 4 and parts[2] == "inst":
                return ParsedKey("inst", parts[0], parts[1], parts[3])
            if len(parts) == 5 and parts[2] == "check":
                return ParsedKey("check", parts[0], parts[1], parts[3], parts[4])
            return None
        if head in ("ns", "node", "session") and tail and "/" not in tail:
            return ParsedKey(head, name=tail)
        if head in ("lock", "kvmeta") and tail:
            return ParsedKey(head, name=tail)
        if head == "sessdel":
            sid, _, kv_key = tail.partition("/")
            return ParsedKey(head, name=kv_key, instance_id=sid)
        return None
