"""The configuration SDK: ``get``, listeners, typed loading, snapshots and failover.

One :class:`ConfigClient` per process and namespace. The first ``get`` of a
config reads its live state (release and grays, one revision) and starts
one watch on its key prefix; later reads are served from memory and kept
current by the watch, so a publish reaches a listener in one watch event.
SDK clients on the same etcd ``Client`` share that watch
(:mod:`syndic.config.feed`; ``share_watches=False`` opts out), so a
publish is received and decoded once per process.
Each client picks its content the same way the store ranks grays
(:func:`syndic.config.gray.choose`), by its ``client_id`` and ``labels``.

Starting without the centre: every config the SDK got is written to the
``snapshot_dir``; when the centre cannot be reached on a first ``get``, the
snapshot is served (logged at WARNING, counted in
``syndic_config_snapshot_starts_total``) and the watch keeps trying; when
the centre is back the SDK catches up and notifies listeners of any change.
A file in the ``failover_dir`` overrides the centre while it exists.

Example::

    async with Client(["127.0.0.1:2379"]) as etcd:
        cfg = ConfigClient(etcd, namespace="prod", client_id="orders-7",
                           labels={"zone": "eu-1"}, snapshot_dir="/var/lib/orders/config")
        value = await cfg.get("orders", "pool.yaml")
        pool = await cfg.load("orders", "pool.yaml", PoolSettings)
        await cfg.add_listener("orders", "pool.yaml", lambda change: print(change.new))
        async for change in cfg.changes("orders", "pool.yaml"):
            print(change.old.version, "->", change.new.version)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from syndic.client import Client, CompactedError, EventType
from syndic.client.errors import ClientError
from syndic.config import crypto
from syndic.config.errors import (
    CentreUnavailableError,
    ConfigNotFoundError,
    CorruptEntryError,
    DecryptionError,
)
from syndic.config.feed import shared_watch
from syndic.config.formats import parse_content
from syndic.config.gray import ClientIdentity, choose
from syndic.config.keys import DEFAULT_PREFIX, KeyLayout
from syndic.config.local_files import Snapshot, read_failover, read_snapshot, write_snapshot
from syndic.config.metrics import ConfigMetrics, default_metrics
from syndic.config.model import ConfigId, Entry, Format, check_name, content_sha256
from syndic.config.typed import load_dataclass
from syndic.config.view import state_of

T = TypeVar("T")
log = logging.getLogger("syndic.config")

CLIENT_ID_ENV = "SYNDIC_CLIENT_ID"
# A first read that cannot reach the centre in this time starts from the snapshot.
FETCH_TIMEOUT_MS = 3_000
# Reconnect backoff: from the first to the cap, doubling.
RETRY_MS_MIN = 100
RETRY_MS_MAX = 5_000
FAILOVER_POLL_MS = 1_000
# An async iterator that is not read keeps only the newest changes: a
# listener wants the current config, not a backlog of superseded ones.
CHANGES_QUEUED_MAX = 64
_FORMAT_BY_SUFFIX = {
    ".yaml": Format.YAML,
    ".yml": Format.YAML,
    ".json": Format.JSON,
    ".toml": Format.TOML,
    ".properties": Format.PROPERTIES,
}


class Source(enum.StrEnum):
    CENTRE = "centre"
    SNAPSHOT = "snapshot"
    FAILOVER = "failover"


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """The content this client gets for a config, and where it came from."""

    config: ConfigId
    content: str
    format: Format
    version: int
    sha256: str
    source: Source
    gray_name: str | None = None

    def value(self) -> Any:
        """The parsed content (a mapping for yaml/json/toml/properties, a string for text)."""
        return parse_content(self.format, self.content)

    def load(self, cls: type[T]) -> T:
        """The content as an instance of the dataclass ``cls``, every field type-checked."""
        return load_dataclass(cls, self.value())


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a listener receives: the content before and after (None: there was none)."""

    config: ConfigId
    old: ConfigValue | None
    new: ConfigValue | None


Listener = Callable[[ConfigChange], Awaitable[None] | None]


class Subscription:
    """Returned by :meth:`ConfigClient.add_listener`; ``cancel()`` stops the calls."""

    __slots__ = ("_listener", "_tracked")

    def __init__(self, tracked: _Tracked, listener: Listener) -> None:
        self._tracked = tracked
        self._listener = listener

    def cancel(self) -> None:
        with contextlib.suppress(ValueError):
            self._tracked.listeners.remove(self._listener)


@dataclass(eq=False)
class _Tracked:
    """One watched config: the raw values of its prefix and what this client gets."""

    cid: ConfigId
    values: dict[bytes, bytes] = field(default_factory=dict)
    revision: int = 0  # 0: not read from the centre yet (serving a snapshot, or nothing)
    entry: Entry | None = None
    server_value: ConfigValue | None = None
    current: ConfigValue | None = None
    listeners: list[Listener] = field(default_factory=list)
    queues: list[asyncio.Queue[ConfigChange]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def default_client_id() -> str:
    """``SYNDIC_CLIENT_ID``, else the host name (a pod's name in Kubernetes)."""
    return os.environ.get(CLIENT_ID_ENV) or socket.gethostname()


class ConfigClient:
    """Configs of one namespace as this client (``client_id``, ``labels``) should see them."""

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = "public",
        client_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        prefix: str = DEFAULT_PREFIX,
        masters: crypto.MasterKeys | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        failover_dir: str | os.PathLike[str] | None = None,
        fetch_timeout_ms: int = FETCH_TIMEOUT_MS,
        retry_ms_max: int = RETRY_MS_MAX,
        failover_poll_ms: int = FAILOVER_POLL_MS,
        changes_queued_max: int = CHANGES_QUEUED_MAX,
        metrics: ConfigMetrics | None = None,
        share_watches: bool = True,
    ) -> None:
        self._client = client
        # Share one watch per config with the other ConfigClients of the same
        # Client in this process (syndic.config.feed), so a publish is decoded
        # once per process, not once per SDK client.
        self._share_watches = share_watches
        self.namespace = check_name("namespace", namespace)
        self.identity = ClientIdentity(client_id or default_client_id(), dict(labels or {}))
        self._layout = KeyLayout(prefix)
        self._masters = masters if masters is not None else crypto.masters_from()
        self._snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self._failover_dir = Path(failover_dir) if failover_dir is not None else None
        self._fetch_timeout_s = fetch_timeout_ms / 1000
        self._retry_s_max = retry_ms_max / 1000
        self._failover_poll_s = failover_poll_ms / 1000
        self._changes_queued_max = changes_queued_max
        self._metrics = metrics or default_metrics()
        self._tracked: dict[ConfigId, _Tracked] = {}
        self._starting: dict[ConfigId, asyncio.Task[_Tracked]] = {}
        self._keyrings: dict[str, crypto.Keyring] = {}
        self._failover_task: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> ConfigClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        tasks = [t.task for t in self._tracked.values() if t.task is not None]
        tasks += [t for t in (self._failover_task,) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in self._tracked.values():
            if t.current is not None and t.current.source is Source.SNAPSHOT:
                self._metrics.from_snapshot.labels(self.namespace).dec()
            if t.current is not None and t.current.source is Source.FAILOVER:
                self._metrics.failover_active.labels(self.namespace).dec()
        self._tracked.clear()

    # -- public reads ------------------------------------------------------------

    async def get(self, group: str, data_id: str) -> ConfigValue:
        """This client's content of ``group/data_id``; ConfigNotFoundError if there is none."""
        tracked = await self._track(ConfigId(self.namespace, group, data_id))
        if tracked.current is None:
            raise ConfigNotFoundError(f"{tracked.cid.path}: no such config")
        return tracked.current

    async def load(self, group: str, data_id: str, cls: type[T]) -> T:
        """The content as an instance of the dataclass ``cls``."""
        return (await self.get(group, data_id)).load(cls)

    async def add_listener(self, group: str, data_id: str, listener: Listener) -> Subscription:
        """Call ``listener(change)`` (sync or async) after every change of this client's content."""
        tracked = await self._track(ConfigId(self.namespace, group, data_id))
        tracked.listeners.append(listener)
        return Subscription(tracked, listener)

    async def changes(self, group: str, data_id: str) -> AsyncIterator[ConfigChange]:
        """Every later change, as an async iterator (the newest kept if not read in time)."""
        tracked = await self._track(ConfigId(self.namespace, group, data_id))
        queue: asyncio.Queue[ConfigChange] = asyncio.Queue(self._changes_queued_max)
        tracked.queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            with contextlib.suppress(ValueError):
                tracked.queues.remove(queue)

    # -- tracking ----------------------------------------------------------------

    async def _track(self, cid: ConfigId) -> _Tracked:
        if self._closed:
            raise RuntimeError("ConfigClient is closed")
        tracked = self._tracked.get(cid)
        if tracked is not None:
            return tracked
        starting = self._starting.get(cid)
        if starting is None:
            starting = asyncio.ensure_future(self._start(cid))
            self._starting[cid] = starting
            starting.add_done_callback(lambda _: self._starting.pop(cid, None))
        return await asyncio.shield(starting)

    async def _start(self, cid: ConfigId) -> _Tracked:
        tracked = _Tracked(cid)
        try:
            async with asyncio.timeout(self._fetch_timeout_s):
                await self._read_state(tracked)
        except (ClientError, TimeoutError, OSError, CorruptEntryError) as exc:
            self._start_from_snapshot(tracked, exc)
        tracked.current = self._effective(tracked)
        self._count_source(None, tracked.current)
        self._tracked[cid] = tracked
        tracked.task = asyncio.create_task(self._watch(tracked), name=f"config-watch {cid.path}")
        if self._failover_dir is not None and self._failover_task is None:
            self._failover_task = asyncio.create_task(self._poll_failover(), name="config-failover")
        return tracked

    def _start_from_snapshot(self, tracked: _Tracked, exc: BaseException) -> None:
        cid = tracked.cid
        snap = read_snapshot(self._snapshot_dir, cid) if self._snapshot_dir is not None else None
        failover = self._failover(cid)
        if snap is None and failover is None:
            raise CentreUnavailableError(
                f"{cid.path}: the centre is unreachable ({exc!r}) and there is no local snapshot"
            ) from exc
        if snap is not None:
            if snap.keyring is not None:
                self._keyrings.setdefault(cid.namespace, snap.keyring)
            tracked.entry = snap.entry
            tracked.server_value = self._value(cid, snap.entry, Source.SNAPSHOT, snap.keyring)
            log.warning(
                "config %s: centre unreachable (%r); starting from the snapshot of version %d",
                cid.path,
                exc,
                snap.entry.version,
            )
            self._metrics.snapshot_starts.labels(cid.namespace).inc()

    async def _read_state(self, tracked: _Tracked) -> None:
        """Read the whole prefix at one revision and take what it says."""
        r = await self._client.get(self._layout.watch_prefix(tracked.cid), prefix=True)
        tracked.values = {kv.key: kv.value for kv in r.kvs}
        tracked.revision = r.revision
        await self._take_state(tracked)

    async def _take_state(self, tracked: _Tracked) -> None:
        cid = tracked.cid
        state = state_of(self._layout, cid, tracked.values, tracked.revision)
        entry = choose(state.release, state.grays, cid.path, self.identity)
        same = tracked.entry is not None and entry is not None and _same_entry(tracked.entry, entry)
        if (
            same
            and tracked.server_value is not None
            and tracked.server_value.source is Source.CENTRE
        ):
            return
        tracked.entry = entry
        if entry is None:
            tracked.server_value = None
            return
        keyring = await self._keyring_for(cid, entry)
        try:
            tracked.server_value = self._value(cid, entry, Source.CENTRE, keyring)
        except DecryptionError:
            if keyring is None:
                raise
            # Re-wrapped under a new master key since we cached it: read it again, once.
            self._keyrings.pop(cid.namespace, None)
            keyring = await self._keyring_for(cid, entry)
            tracked.server_value = self._value(cid, entry, Source.CENTRE, keyring)
        if self._snapshot_dir is not None:
            snap = Snapshot(entry, keyring, tracked.revision)
            await asyncio.to_thread(write_snapshot, self._snapshot_dir, cid, snap)

    async def _keyring_for(self, cid: ConfigId, entry: Entry) -> crypto.Keyring | None:
        if entry.sealed is None:
            return None
        ring = self._keyrings.get(cid.namespace)
        if ring is None or all(k.key_id != entry.sealed.key_id for k in ring.keys):
            # A key id we have not seen: the keyring was rotated since we read it.
            r = await self._client.get(self._layout.keyring(cid.namespace))
            if not r.kvs:
                raise DecryptionError(f"{cid.path}: sealed, but namespace has no keyring")
            ring = crypto.Keyring.decode(r.kvs[0].value)
            self._keyrings[cid.namespace] = ring
        return ring

    def _value(
        self, cid: ConfigId, entry: Entry, source: Source, keyring: crypto.Keyring | None
    ) -> ConfigValue:
        if entry.sealed is not None:
            if self._masters is None or keyring is None:
                raise DecryptionError(f"{cid.path}: encrypted, and this client has no master key")
            content = crypto.open_sealed(keyring, self._masters, cid.path, entry.sealed)
        else:
            assert entry.content is not None
            content = entry.content
        return ConfigValue(
            cid, content, entry.format, entry.version, entry.sha256, source, entry.gray_name
        )

    # -- failover ----------------------------------------------------------------

    def _failover(self, cid: ConfigId) -> str | None:
        if self._failover_dir is None:
            return None
        try:
            return read_failover(self._failover_dir, cid)
        except (OSError, ValueError) as exc:
            log.error("config %s: unreadable failover file ignored: %s", cid.path, exc)
            return None

    def _effective(self, tracked: _Tracked) -> ConfigValue | None:
        text = self._failover(tracked.cid)
        if text is None:
            return tracked.server_value
        base = tracked.server_value
        fmt = base.format if base is not None else _format_of(tracked.cid.data_id)
        return ConfigValue(tracked.cid, text, fmt, 0, content_sha256(text), Source.FAILOVER)

    async def _poll_failover(self) -> None:
        while True:
            await asyncio.sleep(self._failover_poll_s)
            for tracked in list(self._tracked.values()):
                await self._publish_effective(tracked)

    # -- watching ----------------------------------------------------------------

    async def _watch(self, tracked: _Tracked) -> None:
        retry_s = RETRY_MS_MIN / 1000
        while True:
            try:
                if tracked.revision == 0:
                    await self._read_state(tracked)
                    await self._publish_effective(tracked)
                await self._follow(tracked)
                retry_s = RETRY_MS_MIN / 1000
            except CompactedError:
                # Events we missed are gone: read the whole state again.
                tracked.revision = 0
            except (ClientError, OSError, DecryptionError) as exc:
                log.warning("config %s: watch interrupted (%r); retrying", tracked.cid.path, exc)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, self._retry_s_max)
            except Exception:
                # A value this client cannot read (written by hand under the
                # prefix, say): keep serving the last good config, say so, retry.
                log.exception(
                    "config %s: unreadable state; keeping the last good", tracked.cid.path
                )
                tracked.revision = 0
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, self._retry_s_max)

    async def _follow(self, tracked: _Tracked) -> None:
        prefix = self._layout.watch_prefix(tracked.cid)
        start = tracked.revision + 1
        async with shared_watch(self._client, prefix, start, share=self._share_watches) as watch:
            async for batch in watch:
                for event in batch.events:
                    if event.type is EventType.PUT:
                        tracked.values[event.kv.key] = event.kv.value
                    else:
                        tracked.values.pop(event.kv.key, None)
                tracked.revision = max(tracked.revision, batch.revision)
                if batch.events:
                    await self._take_state(tracked)
                    await self._publish_effective(tracked)

    async def _publish_effective(self, tracked: _Tracked) -> None:
        old, new = tracked.current, self._effective(tracked)
        if _same_value(old, new):
            return
        tracked.current = new
        self._count_source(old, new)
        change = ConfigChange(tracked.cid, old, new)
        self._metrics.changes.labels(self.namespace).inc()
        for queue in list(tracked.queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(change)
        for listener in list(tracked.listeners):
            try:
                result = listener(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # One listener's bug must not stop the others or the watch.
                log.exception("config %s: listener %r failed", tracked.cid.path, listener)

    def _count_source(self, old: ConfigValue | None, new: ConfigValue | None) -> None:
        gauges = {
            Source.SNAPSHOT: self._metrics.from_snapshot,
            Source.FAILOVER: self._metrics.failover_active,
        }
        if old is not None and old.source in gauges:
            gauges[old.source].labels(self.namespace).dec()
        if new is not None and new.source in gauges:
            gauges[new.source].labels(self.namespace).inc()


def _same_entry(a: Entry, b: Entry) -> bool:
    return (a.version, a.sha256, a.gray_name) == (b.version, b.sha256, b.gray_name)


def _same_value(a: ConfigValue | None, b: ConfigValue | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.sha256, a.version, a.source, a.gray_name) == (
        b.sha256,
        b.version,
        b.source,
        b.gray_name,
    )


def _format_of(data_id: str) -> Format:
    return _FORMAT_BY_SUFFIX.get(Path(data_id).suffix.lower(), Format.TEXT)
