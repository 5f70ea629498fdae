"""The configuration model: namespace → group → data id, and the stored entries.

A config is addressed by a :class:`ConfigId`. Each change to it (a publish,
a rollback, a gray release, its promotion or abort) is an :class:`Entry`
with the next version number; entries are stored as JSON documents whose
field names are the dataclass fields, so any etcd client can read them.

>>> cid = ConfigId("prod", "orders", "breaker.yaml")
>>> cid.path
'prod/orders/breaker.yaml'
>>> ConfigId("prod", "orders", "a/b")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
syndic.config.errors.InvalidInputError: data_id: must match ..., got 'a/b'
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from syndic.config.errors import InvalidInputError

# Names become key segments; '/' separates them, so it may not appear inside
# one. 128 characters is Nacos's data id limit and plenty for a file name.
NAME_LENGTH_MAX = 128
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
AUTHOR_LENGTH_MAX = 128
COMMENT_LENGTH_MAX = 1024


def check_name(field_name: str, value: object) -> str:
    """A namespace, group, data id or gray name: a safe single key segment."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError(field_name, f"must match {_NAME.pattern}, got {value!r}")
    return value


def _check_text(field_name: str, value: object, length_max: int) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(field_name, f"must be a string, got {type(value).__name__}")
    if len(value) > length_max:
        raise InvalidInputError(field_name, f"is {len(value)} characters, limit {length_max}")
    if any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise InvalidInputError(field_name, "must not hold control characters")
    return value


@dataclass(frozen=True, slots=True)
class ConfigId:
    """namespace → group → data id, each a key-safe name."""

    namespace: str
    group: str
    data_id: str

    def __post_init__(self) -> None:
        check_name("namespace", self.namespace)
        check_name("group", self.group)
        check_name("data_id", self.data_id)

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.group}/{self.data_id}"

    @classmethod
    def parse(cls, path: str) -> ConfigId:
        """``namespace/group/data_id`` → ConfigId."""
        parts = path.split("/")
        if len(parts) != 3:
            raise InvalidInputError("config", f"expected namespace/group/data_id, got {path!r}")
        return cls(*parts)


class Format(enum.StrEnum):
    YAML = "yaml"
    JSON = "json"
    TOML = "toml"
    PROPERTIES = "properties"
    TEXT = "text"

    @classmethod
    def parse(cls, value: object) -> Format:
        try:
            return cls(value if isinstance(value, str) else "")
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise InvalidInputError(
                "format", f"unknown format {value!r} (known: {known})"
            ) from None


class EntryKind(enum.StrEnum):
    """What a history entry records; the first three change what every client gets."""

    PUBLISH = "publish"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    GRAY = "gray"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class Sealed:
    """AES-GCM ciphertext of a content, under data key ``key_id`` of its namespace."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "nonce": base64.b64encode(self.nonce).decode(),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Sealed:
        return cls(
            str(doc["key_id"]),
            base64.b64decode(doc["nonce"], validate=True),
            base64.b64decode(doc["ciphertext"], validate=True),
        )


@dataclass(frozen=True, slots=True)
class Selector:
    """Which clients a gray release reaches: all ``labels`` must match, and the
    client id must fall in the first ``percentage`` of buckets. Never the IP:
    behind proxies and in containers it names the wrong client."""

    labels: tuple[tuple[str, str], ...] = ()
    percentage: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "percentage": self.percentage}

    @classmethod
    def from_json(cls, doc: Any) -> Selector:
        labels = doc.get("labels") or {}
        return cls(tuple(sorted(labels.items())), doc.get("percentage"))


def content_sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of a config as stored: in history, as the release, or as a gray.

    ``content`` is the plaintext, or None when ``sealed`` holds it encrypted.
    ``sha256`` is always the plaintext's digest, computed before sealing, so a
    client detects a change without decrypting. ``source_version`` names the
    version a rollback restored or a promote/abort concerned.
    """

    version: int
    kind: EntryKind
    format: Format
    sha256: str
    author: str
    comment: str
    time_ms: int
    content: str | None = None
    sealed: Sealed | None = None
    gray_name: str | None = None
    selector: Selector | None = None
    rank: int = 0
    source_version: int | None = None

    def __post_init__(self) -> None:
        assert self.version >= 1, self.version
        assert (self.content is None) != (self.sealed is None), "content xor sealed"
        _check_text("author", self.author, AUTHOR_LENGTH_MAX)
        _check_text("comment", self.comment, COMMENT_LENGTH_MAX)

    @property
    def encrypted(self) -> bool:
        return self.sealed is not None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": self.version,
            "kind": self.kind.value,
            "format": self.format.value,
            "sha256": self.sha256,
            "author": self.author,
            "comment": self.comment,
            "time_ms": self.time_ms,
        }
        if self.content is not None:
            doc["content"] = self.content
        if self.sealed is not None:
            doc["sealed"] = self.sealed.to_json()
        if self.gray_name is not None:
            doc["gray_name"] = self.gray_name
            doc["rank"] = self.rank
        if self.selector is not None:
            doc["selector"] = self.selector.to_json()
        if self.source_version is not None:
            doc["source_version"] = self.source_version
        return doc

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        doc = json.loads(raw)
        return cls(
            version=int(doc["version"]),
            kind=EntryKind(doc["kind"]),
            format=Format(doc["format"]),
            sha256=str(doc["sha256"]),
            author=str(doc["author"]),
            comment=str(doc["comment"]),
            time_ms=int(doc["time_ms"]),
            content=doc.get("content"),
            sealed=Sealed.from_json(doc["sealed"]) if "sealed" in doc else None,
            gray_name=doc.get("gray_name"),
            selector=Selector.from_json(doc["selector"]) if "selector" in doc else None,
            rank=int(doc.get("rank", 0)),
            source_version=doc.get("source_version"),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Per data id settings: encryption, schema, what the content is, how much history."""

    encrypted: bool = False
    schema: dict[str, Any] | None = None
    traffic_rules: bool = False
    history_versions_max: int | None = None

    def encode(self) -> bytes:
        doc = {
            "encrypted": self.encrypted,
            "schema": self.schema,
            "traffic_rules": self.traffic_rules,
            "history_versions_max": self.history_versions_max,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Settings:
        doc = json.loads(raw)
        return cls(
            encrypted=bool(doc.get("encrypted", False)),
            schema=doc.get("schema"),
            traffic_rules=bool(doc.get("traffic_rules", False)),
            history_versions_max=doc.get("history_versions_max"),
        )
