"""The configuration centre's write side, on the etcd v3 API (``syndic.client``).

Every change is one etcd transaction that compares the config's head
version with the version the editor saw and, if equal, writes the new
head, the new history entry and the release or gray it changes, and trims
history beyond the config's bound. The loser of a race gets
:class:`~syndic.config.errors.ConflictError` naming the current version;
nothing it sent is stored. Validation (size, format, schema, traffic
rules) and sealing happen before the transaction, and the transaction
also compares the revisions of the settings and keyring it validated and
sealed against, so a schema changed in between cannot be bypassed.

>>> async def demo(client):                                   # doctest: +SKIP
...     store = ConfigStore(client)
...     cid = ConfigId("prod", "orders", "breaker.yaml")
...     e1 = await store.publish(cid, "breaker: {failure_ratio: 0.5}\\n",
...                              format=Format.YAML, expected_version=0, author="ana")
...     e2 = await store.rollback(cid, 1, expected_version=e1.version, author="ana")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syndic.client import Client, Compare, Op
from syndic.client.errors import OutcomeUnknownError
from syndic.client.types import GetResult
from syndic.config import crypto
from syndic.config.errors import (
    ConfigNotFoundError,
    ConflictError,
    DecryptionError,
    InvalidInputError,
)
from syndic.config.gray import parse_selector
from syndic.config.keys import DEFAULT_PREFIX, KeyLayout
from syndic.config.model import (
    ConfigId,
    Entry,
    EntryKind,
    Format,
    Selector,
    Settings,
    check_name,
    content_sha256,
)
from syndic.config.validation import (
    CONTENT_BYTES_MAX,
    SCHEMA_BYTES_MAX,
    check_schema,
    validate_content,
)
from syndic.config.view import ConfigState, head_version, state_of

# Nacos keeps 30 days; a count is easier to reason about and to bound in bytes.
HISTORY_VERSIONS_MAX = 100
HISTORY_VERSIONS_LIMIT = 10_000
# Each live gray is read by every client on every change.
GRAYS_MAX = 8
RANK_MAX = 1_000_000
# A transaction that loses only because settings or the keyring moved is
# re-validated and retried; a few rounds are enough for any human pace.
SETTINGS_RACE_RETRIES_MAX = 3


@dataclass(frozen=True, slots=True)
class StoreLimits:
    content_bytes_max: int = CONTENT_BYTES_MAX
    history_versions_max: int = HISTORY_VERSIONS_MAX
    grays_max: int = GRAYS_MAX

    def __post_init__(self) -> None:
        assert self.content_bytes_max > 0
        assert 1 <= self.history_versions_max <= HISTORY_VERSIONS_LIMIT
        assert self.grays_max >= 0


def _wall_ms() -> int:
    # An audit time shown to people, so the wall clock, not the monotonic one.
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Read:
    """What a change was decided on: the state, the settings and the keyring, with revisions."""

    state: ConfigState
    settings: Settings
    settings_mod_revision: int
    keyring: crypto.Keyring | None
    keyring_mod_revision: int
    oldest_kept_version: int = 0  # 0: no history yet


class ConfigStore:
    """Publish, roll back, gray-release and read configs; decrypts with ``masters``."""

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        masters: crypto.MasterKeys | None = None,
        limits: StoreLimits | None = None,
        now_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._client = client
        self.layout = KeyLayout(prefix)
        self._masters = masters
        self.limits = limits or StoreLimits()
        self._now_ms = now_ms

    # -- reads -------------------------------------------------------------------

    async def state(self, cid: ConfigId) -> ConfigState:
        return (await self._read(cid, settings=False)).state

    async def settings(self, cid: ConfigId) -> Settings:
        return (await self._settings(cid))[0]

    async def _settings(self, cid: ConfigId) -> tuple[Settings, int]:
        return _settings_of(await self._client.get(self.layout.settings(cid)))

    async def keyring(self, namespace: str) -> tuple[crypto.Keyring | None, int]:
        return _keyring_of(await self._client.get(self.layout.keyring(namespace)))

    async def history(self, cid: ConfigId, *, limit: int = 0) -> list[Entry]:
        """Entries newest first (``limit`` 0: all that are kept)."""
        r = await self._client.get(
            self.layout.history_prefix(cid), prefix=True, sort_order="descend", limit=limit
        )
        return [Entry.decode(kv.value) for kv in r.kvs]

    async def entry(self, cid: ConfigId, version: int) -> Entry:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInputError("version", f"must be a positive integer, got {version!r}")
        r = await self._client.get(self.layout.history(cid, version))
        if not r.kvs:
            raise ConfigNotFoundError(f"{cid.path}: no version {version} in the kept history")
        return Entry.decode(r.kvs[0].value)

    async def list_configs(self, namespace: str) -> list[ConfigId]:
        check_name("namespace", namespace)
        r = await self._client.get(
            self.layout.namespace_heads(namespace), prefix=True, keys_only=True
        )
        found = (self.layout.config_of_head(kv.key) for kv in r.kvs)
        return [cid for cid in found if cid is not None]

    async def reveal(self, cid: ConfigId, entry: Entry) -> str:
        """The plaintext of ``entry`` (decrypting needs this store's master keys)."""
        if entry.content is not None:
            return entry.content
        assert entry.sealed is not None
        ring, _ = await self.keyring(cid.namespace)
        if ring is None or self._masters is None:
            raise DecryptionError(f"{cid.path}: encrypted, and no key here opens it")
        return crypto.open_sealed(ring, self._masters, cid.path, entry.sealed)

    # -- settings and keys -----------------------------------------------------

    async def set_settings(self, cid: ConfigId, settings: Settings) -> None:
        if settings.schema is not None:
            check_schema(settings.schema)
            size = len(json.dumps(settings.schema))
            if size > SCHEMA_BYTES_MAX:
                raise InvalidInputError("schema", f"is {size} bytes, limit {SCHEMA_BYTES_MAX}")
        bound = settings.history_versions_max
        if bound is not None and not 1 <= bound <= HISTORY_VERSIONS_LIMIT:
            raise InvalidInputError(
                "history_versions_max", f"must be in [1, {HISTORY_VERSIONS_LIMIT}], got {bound}"
            )
        if settings.encrypted and self._masters is None:
            raise InvalidInputError("encrypted", "this process has no master key to seal with")
        await self._client.put(self.layout.settings(cid), settings.encode())

    async def rotate_data_key(self, namespace: str) -> crypto.Keyring:
        """A fresh active data key for ``namespace``; older keys keep opening old versions."""
        masters = self._need_masters()
        ring, mod = await self.keyring(namespace)
        now = self._now_ms()
        new = (
            crypto.new_keyring(namespace, masters, now_ms=now)
            if ring is None
            else crypto.rotate_data_key(ring, masters, now_ms=now)
        )
        await self._swap_keyring(namespace, new, mod)
        return new

    async def rewrap_keyring(self, namespace: str) -> crypto.Keyring:
        """Re-wrap the namespace's data keys under the primary master key."""
        masters = self._need_masters()
        ring, mod = await self.keyring(namespace)
        if ring is None:
            raise ConfigNotFoundError(f"namespace {namespace} has no keyring")
        new = crypto.rewrap(ring, masters)
        await self._swap_keyring(namespace, new, mod)
        return new

    async def _swap_keyring(self, namespace: str, ring: crypto.Keyring, mod: int) -> None:
        key = self.layout.keyring(namespace)
        t = await self._client.txn(
            compare=[Compare.mod_revision(key) == mod], success=[Op.put(key, ring.encode())]
        )
        if not t.succeeded:
            raise ConflictError(f"keyring {namespace}", mod, -1)

    def _need_masters(self) -> crypto.MasterKeys:
        if self._masters is None:
            raise InvalidInputError("master_key", "this process has no master key")
        return self._masters

    # -- changes ---------------------------------------------------------------

    async def publish(
        self,
        cid: ConfigId,
        content: str,
        *,
        format: Format | str,
        expected_version: int,
        author: str,
        comment: str = "",
    ) -> Entry:
        """Publish ``content`` as the next version, if the head is still ``expected_version``."""
        fmt = Format.parse(format)

        def build(read: _Read, version: int) -> tuple[Entry, list[Op]]:
            entry = self._entry(
                read, cid, version, EntryKind.PUBLISH, fmt, content, author, comment
            )
            return entry, [Op.put(self.layout.release(cid), entry.encode())]

        return await self._change(cid, expected_version, build)

    async def rollback(
        self,
        cid: ConfigId,
        to_version: int,
        *,
        expected_version: int,
        author: str,
        comment: str = "",
    ) -> Entry:
        """Publish version ``to_version``'s content again, as a new version; nothing is deleted."""
        old = await self.entry(cid, to_version)
        text = await self.reveal(cid, old)
        note = comment or f"rollback to version {to_version}"

        def build(read: _Read, version: int) -> tuple[Entry, list[Op]]:
            entry = self._entry(
                read,
                cid,
                version,
                EntryKind.ROLLBACK,
                old.format,
                text,
                author,
                note,
                source_version=to_version,
            )
            return entry, [Op.put(self.layout.release(cid), entry.encode())]

        return await self._change(cid, expected_version, build)

    async def gray(
        self,
        cid: ConfigId,
        name: str,
        content: str,
        *,
        format: Format | str,
        selector: Selector | dict[str, Any],
        expected_version: int,
        author: str,
        rank: int = 0,
        comment: str = "",
    ) -> Entry:
        """Serve ``content`` to the clients ``selector`` picks; rank orders overlapping grays."""
        check_name("gray_name", name)
        fmt = Format.parse(format)
        sel = selector if isinstance(selector, Selector) else parse_selector(selector)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= RANK_MAX:
            raise InvalidInputError("rank", f"must be an integer in [0, {RANK_MAX}], got {rank!r}")

        def build(read: _Read, version: int) -> tuple[Entry, list[Op]]:
            if read.state.release is None:
                raise ConfigNotFoundError(f"{cid.path}: publish a release before a gray")
            names = {g.gray_name for g in read.state.grays}
            if name not in names and len(names) >= self.limits.grays_max:
                raise InvalidInputError(
                    "gray_name", f"{len(names)} grays live, limit {self.limits.grays_max}"
                )
            entry = self._entry(
                read,
                cid,
                version,
                EntryKind.GRAY,
                fmt,
                content,
                author,
                comment,
                gray_name=name,
                selector=sel,
                rank=rank,
            )
            return entry, [Op.put(self.layout.gray(cid, name), entry.encode())]

        return await self._change(cid, expected_version, build)

    async def promote(
        self, cid: ConfigId, name: str, *, expected_version: int, author: str, comment: str = ""
    ) -> Entry:
        """The gray's content becomes the release for everyone; the gray ends."""
        return await self._end_gray(cid, name, EntryKind.PROMOTE, expected_version, author, comment)

    async def abort(
        self, cid: ConfigId, name: str, *, expected_version: int, author: str, comment: str = ""
    ) -> Entry:
        """The gray ends; its clients go back to the release. Recorded in history."""
        return await self._end_gray(cid, name, EntryKind.ABORT, expected_version, author, comment)

    async def _end_gray(
        self, cid: ConfigId, name: str, kind: EntryKind, expected: int, author: str, comment: str
    ) -> Entry:
        check_name("gray_name", name)

        def build(read: _Read, version: int) -> tuple[Entry, list[Op]]:
            gray = next((g for g in read.state.grays if g.gray_name == name), None)
            if gray is None:
                raise ConfigNotFoundError(f"{cid.path}: no live gray named {name!r}")
            # The content is carried over sealed as it was: same data id, same associated data.
            entry = Entry(
                version=version,
                kind=kind,
                format=gray.format,
                sha256=gray.sha256,
                author=author,
                comment=comment or f"{kind.value} gray {name} (version {gray.version})",
                time_ms=self._now_ms(),
                content=gray.content,
                sealed=gray.sealed,
                gray_name=name,
                selector=gray.selector,
                rank=gray.rank,
                source_version=gray.version,
            )
            ops = [Op.delete(self.layout.gray(cid, name))]
            if kind is EntryKind.PROMOTE:
                release = Entry(
                    version=version,
                    kind=kind,
                    format=gray.format,
                    sha256=gray.sha256,
                    author=author,
                    comment=entry.comment,
                    time_ms=entry.time_ms,
                    content=gray.content,
                    sealed=gray.sealed,
                    source_version=gray.version,
                )
                ops.append(Op.put(self.layout.release(cid), release.encode()))
            return entry, ops

        return await self._change(cid, expected, build)

    def _entry(
        self,
        read: _Read,
        cid: ConfigId,
        version: int,
        kind: EntryKind,
        fmt: Format,
        content: str,
        author: str,
        comment: str,
        **extra: Any,
    ) -> Entry:
        if not isinstance(content, str):
            raise InvalidInputError("content", f"must be text, got {type(content).__name__}")
        validate_content(
            read.settings, fmt, content, content_bytes_max=self.limits.content_bytes_max
        )
        sealed = None
        if read.settings.encrypted:
            assert read.keyring is not None
            sealed = crypto.seal(read.keyring, self._need_masters(), cid.path, content)
        return Entry(
            version=version,
            kind=kind,
            format=fmt,
            sha256=content_sha256(content),
            author=author,
            comment=comment,
            time_ms=self._now_ms(),
            content=None if sealed is not None else content,
            sealed=sealed,
            **extra,
        )

    async def _read(self, cid: ConfigId, *, settings: bool = True) -> _Read:
        # One read-only transaction: one round trip, and one revision for everything.
        layout = self.layout
        reads = [Op.get(layout.head(cid)), Op.get(layout.watch_prefix(cid), prefix=True)]
        if settings:
            # The oldest kept history key, so trimming deletes exactly what it must.
            oldest = Op.get(
                layout.history_prefix(cid),
                prefix=True,
                limit=1,
                keys_only=True,
                sort_order="ascend",
                sort_target="key",
            )
            reads += [Op.get(layout.settings(cid)), Op.get(layout.keyring(cid.namespace)), oldest]
        t = await self._client.txn(compare=[], success=reads)
        results = [r for r in t.responses if isinstance(r, GetResult)]
        assert len(results) == len(reads), t.responses
        head, data = results[0], results[1]
        version = head_version(head.kvs[0].value if head.kvs else None)
        values = {kv.key: kv.value for kv in data.kvs}
        state = state_of(layout, cid, values, t.revision, version)
        if not settings:
            return _Read(state, Settings(), 0, None, 0)
        settings_r, ring_r, oldest_r = results[2], results[3], results[4]
        prefix_len = len(layout.history_prefix(cid))
        oldest_kept = int(oldest_r.kvs[0].key[prefix_len:]) if oldest_r.kvs else 0
        settings_now, settings_mod = _settings_of(settings_r)
        ring, ring_mod = (None, 0)
        if settings_now.encrypted:
            ring, ring_mod = _keyring_of(ring_r)
            if ring is None:
                # Not stored yet: the change's transaction creates it (mod revision 0).
                masters = self._need_masters()
                ring = crypto.new_keyring(cid.namespace, masters, now_ms=self._now_ms())
        return _Read(state, settings_now, settings_mod, ring, ring_mod, oldest_kept)

    async def _change(
        self,
        cid: ConfigId,
        expected_version: int,
        build: Callable[[_Read, int], tuple[Entry, list[Op]]],
    ) -> Entry:
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise InvalidInputError(
                "expected_version", f"must be an integer, got {expected_version!r}"
            )
        if expected_version < 0:
            raise InvalidInputError("expected_version", f"must be >= 0, got {expected_version}")
        version = expected_version + 1
        for _ in range(SETTINGS_RACE_RETRIES_MAX):
            read = await self._read(cid)
            if read.state.version != expected_version:
                raise ConflictError(cid.path, expected_version, read.state.version)
            entry, ops = build(read, version)
            done = await self._commit(cid, read, entry, ops)
            if done is not None:
                return done
        raise ConflictError(cid.path, expected_version, (await self.state(cid)).version)

    async def _commit(
        self, cid: ConfigId, read: _Read, entry: Entry, ops: list[Op]
    ) -> Entry | None:
        """Run the transaction; the entry when it applied, None when only settings moved."""
        layout = self.layout
        head, hist = layout.head(cid), layout.history(cid, entry.version)
        # The head is put exactly once per change, so its etcd key version is the
        # config version; comparing it is the compare-and-set on what the editor saw.
        compare = [
            Compare.version(head) == entry.version - 1,
            Compare.version(hist) == 0,
            Compare.mod_revision(layout.settings(cid)) == read.settings_mod_revision,
        ]
        success = [
            Op.put(head, json.dumps({"version": entry.version, "kind": entry.kind.value}).encode()),
            Op.put(hist, entry.encode()),
            *ops,
        ]
        if read.settings.encrypted:
            ring_key = layout.keyring(cid.namespace)
            compare.append(Compare.mod_revision(ring_key) == read.keyring_mod_revision)
            if read.keyring_mod_revision == 0:
                # First sealed content of the namespace: its keyring is created with it.
                assert read.keyring is not None
                success.append(Op.put(ring_key, read.keyring.encode()))
        bound = read.settings.history_versions_max or self.limits.history_versions_max
        keep_from = entry.version - bound + 1
        if 0 < read.oldest_kept_version < keep_from:
            # Usually one key; a lowered bound trims many at once.
            success.append(
                Op.delete(
                    layout.history(cid, read.oldest_kept_version),
                    range_end=layout.history(cid, keep_from),
                )
            )
        try:
            t = await self._client.txn(compare=compare, success=success, failure=[Op.get(head)])
        except OutcomeUnknownError:
            return await self._resolve_unknown(cid, entry)
        if t.succeeded:
            return entry
        head_now = t.responses[0]
        assert isinstance(head_now, GetResult)
        current = head_version(head_now.kvs[0].value if head_now.kvs else None)
        if current != entry.version - 1:
            raise ConflictError(cid.path, entry.version - 1, current)
        return None

    async def _resolve_unknown(self, cid: ConfigId, entry: Entry) -> Entry | None:
        """The member failed mid-call: read back whether our entry is the one stored."""
        r = await self._client.get(self.layout.history(cid, entry.version))
        if r.kvs and r.kvs[0].value == entry.encode():
            return entry
        if r.kvs:
            raise ConflictError(cid.path, entry.version - 1, entry.version)
        return None


def _settings_of(r: GetResult) -> tuple[Settings, int]:
    if not r.kvs:
        return Settings(), 0
    return Settings.decode(r.kvs[0].value), r.kvs[0].mod_revision


def _keyring_of(r: GetResult) -> tuple[crypto.Keyring | None, int]:
    if not r.kvs:
        return None, 0
    return crypto.Keyring.decode(r.kvs[0].value), r.kvs[0].mod_revision
