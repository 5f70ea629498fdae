"""Where the configuration centre keeps its data in the etcd key space.

Everything lives under one prefix (default ``/syndic/config/``), so syndic
can share an etcd cluster with other users::

    {prefix}head/{ns}/{group}/{data_id}               {"version": N}: the compare-and-set point
    {prefix}data/{ns}/{group}/{data_id}/release       the Entry every client gets by default
    {prefix}data/{ns}/{group}/{data_id}/gray/{name}   a gray Entry with its selector and rank
    {prefix}history/{ns}/{group}/{data_id}/{version:012d}   every Entry, one key per version
    {prefix}settings/{ns}/{group}/{data_id}           Settings: schema, encryption, history bound
    {prefix}keyring/{ns}                              the namespace's wrapped data keys

A client watches the one prefix ``data/{ns}/{group}/{data_id}/`` and sees the
release and every gray change in the same event batch (one transaction, one
revision). The head is kept outside that prefix: it changes on every change,
and a client, which does not need it, would otherwise decode one more event
per publish in each of its watches. History is kept in explicit keys, not in MVCC revisions, so a
store compaction never erases it. Names cannot contain '/' (see
:func:`syndic.config.model.check_name`), so every prefix is unambiguous;
versions are zero-padded so history keys sort by version.
"""

from __future__ import annotations

from dataclasses import dataclass

from syndic.config.model import ConfigId

DEFAULT_PREFIX = "/syndic/config/"
# 12 digits: a trillion versions per config before the sort order breaks.
_VERSION_DIGITS = 12


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            raise ValueError(f"key prefix must end with '/', got {self.prefix!r}")

    def _data(self, cid: ConfigId) -> str:
        return f"{self.prefix}data/{cid.path}/"

    def watch_prefix(self, cid: ConfigId) -> bytes:
        return self._data(cid).encode()

    def head(self, cid: ConfigId) -> bytes:
        return f"{self.prefix}head/{cid.path}".encode()

    def release(self, cid: ConfigId) -> bytes:
        return f"{self._data(cid)}release".encode()

    def gray(self, cid: ConfigId, name: str) -> bytes:
        return f"{self._data(cid)}gray/{name}".encode()

    def gray_prefix(self, cid: ConfigId) -> bytes:
        return f"{self._data(cid)}gray/".encode()

    def history_prefix(self, cid: ConfigId) -> bytes:
        return f"{self.prefix}history/{cid.path}/".encode()

    def history(self, cid: ConfigId, version: int) -> bytes:
        assert version >= 0, version
        return self.history_prefix(cid) + f"{version:0{_VERSION_DIGITS}d}".encode()

    def settings(self, cid: ConfigId) -> bytes:
        return f"{self.prefix}settings/{cid.path}".encode()

    def keyring(self, namespace: str) -> bytes:
        return f"{self.prefix}keyring/{namespace}".encode()

    def namespace_heads(self, namespace: str) -> bytes:
        return f"{self.prefix}head/{namespace}/".encode()

    def config_of_head(self, key: bytes) -> ConfigId | None:
        """The config a head key belongs to (for listing), else None."""
        text = key.decode()
        base = f"{self.prefix}head/"
        if not text.startswith(base):
            return None
        parts = text[len(base) :].split("/")
        return ConfigId(*parts) if len(parts) == 3 else None

    def classify(self, cid: ConfigId, key: bytes) -> tuple[str, str | None]:
        """What a key under :meth:`watch_prefix` is: ("release"|"gray", gray name)."""
        rest = key[len(self.watch_prefix(cid)) :].decode()
        if rest.startswith("gray/"):
            return "gray", rest[len("gray/") :]
        return rest, None
