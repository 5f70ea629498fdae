"""The registry SDK: register an instance, discover a service as a live endpoint set.

Registering::

    async with Client(["127.0.0.1:2379"]) as client:
        registry = Registry(client)
        async with await registry.register(
            Instance("default", "orders", "orders-1", "10.0.0.7", 8080, zone="a"),
            heartbeat_ttl_s=10,
        ):
            ...   # registered while this block runs; deregistered on exit

An ephemeral instance (the default) lives on a lease the SDK keeps alive:
if the process dies, the instance vanishes within ``heartbeat_ttl_s``. If the
lease is lost while the process lives (the store was unreachable for longer
than the TTL), the SDK registers again on a new lease. ``ephemeral=False``
instances stay registered until deregistered.

Discovering::

    balancer = SmoothWeightedRoundRobin()
    async with await registry.discover("orders", zone="a", balancers=[balancer]) as live:
        endpoint = balancer.pick()

The endpoint set follows the service through one watch: an instance that
turns critical leaves the set, and every attached balancer and outlier
detector is updated in place, within one watch round trip. When fewer than
the service's protect threshold of instances are healthy, all instances are
returned (Nacos's protect threshold).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from types import TracebackType

from syndic.client import Client, ClientError, CompactedError, EventType, Lease
from syndic.registry.keys import KeyLayout
from syndic.registry.model import DEFAULT_NAMESPACE, HealthStatus, Instance, check_name, protect
from syndic.registry.store import RegistryStore
from syndic.registry.view import Change, RegistryView, ServiceEntry
from syndic.traffic.balancer import Balancer
from syndic.traffic.endpoints import Endpoint, EndpointSet
from syndic.traffic.outlier import OutlierDetector

log = logging.getLogger(__name__)

#: Default heartbeat: the instance disappears this long after its process dies.
HEARTBEAT_TTL_S_DEFAULT = 10
#: Pause before re-registering or re-reading after a store error, in seconds.
RETRY_DELAY_S = 0.5
#: How often a live endpoint set checks that the store's revision has not gone
#: back (a restored or replaced store), in seconds; a watch would wait for the
#: old revision and see nothing until then.
RESYNC_INTERVAL_S = 30.0


class Registration:
    """One registered instance; ``close()`` (or leaving ``async with``) deregisters it."""

    def __init__(self, store: RegistryStore, instance: Instance, heartbeat_ttl_s: int) -> None:
        self.store = store
        self.instance = instance
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.lease: Lease | None = None
        self.registrations_total = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def _register_once(self) -> None:
        lease_id = 0
        if self.instance.ephemeral:
            self.lease = await self.store.client.keep_alive(
                (await self.store.client.grant(self.heartbeat_ttl_s)).id, self.heartbeat_ttl_s
            )
            lease_id = self.lease.id
        await self.store.register(self.instance, lease=lease_id)
        self.registrations_total += 1

    async def start(self) -> None:
        await self._register_once()
        if self.instance.ephemeral:
            self._task = asyncio.create_task(self._keep_registered())

    async def _keep_registered(self) -> None:
        while not self._closed:
            assert self.lease is not None, "an ephemeral registration holds a lease"
            reason = await self.lease.wait_lost()
            log.warning(
                "registry: lease of %s lost (%s); registering again",
                self.instance.instance_id,
                reason,
            )
            while not self._closed:
                try:
                    await self._register_once()
                    break
                except ClientError as exc:
                    log.warning("registry: re-registration failed: %s", exc)
                    await asyncio.sleep(RETRY_DELAY_S)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        inst = self.instance
        with contextlib.suppress(ClientError):
            await self.store.deregister(inst.namespace, inst.service, inst.instance_id)
        if self.lease is not None:
            with contextlib.suppress(ClientError):
                await self.lease.release()

    async def __aenter__(self) -> Registration:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()


def endpoints_of(
    entry: ServiceEntry | None,
    *,
    tags: Sequence[str] = (),
    zone: str | None = None,
    protect_threshold: float | None = None,
) -> list[Endpoint]:
    """The endpoints discovery returns for one service: pure, so tests call it directly.

    Passing instances weigh ``weight_passing``, warning ones ``weight_warning``
    (0 leaves them out), critical ones are left out unless the protect
    threshold puts every instance back.
    """
    if entry is None:
        return []
    candidates = [
        s.instance
        for s in entry.sorted_instances()
        if all(t in s.instance.tags for t in tags) and (zone is None or s.instance.zone == zone)
    ]
    status = {i.instance_id: entry.status_of(i.instance_id) for i in candidates}

    def weight(inst: Instance) -> int:
        if status[inst.instance_id] is HealthStatus.WARNING:
            return inst.weight_warning
        return inst.weight_passing

    healthy = [
        i for i in candidates if status[i.instance_id] is not HealthStatus.CRITICAL and weight(i)
    ]
    threshold = entry.settings.protect_threshold if protect_threshold is None else protect_threshold
    chosen = protect(healthy, candidates, threshold)
    return [
        Endpoint(
            f"{i.address or '127.0.0.1'}:{i.port}",
            weight=float(max(1, weight(i))),
            zone=i.zone,
            metadata={**i.meta, "instance_id": i.instance_id, "version": i.version},
        )
        for i in chosen
    ]


class LiveEndpoints:
    """A service's endpoint set, kept current by a watch, pushed into balancers in place."""

    def __init__(
        self,
        store: RegistryStore,
        namespace: str,
        service: str,
        *,
        tags: Sequence[str] = (),
        zone: str | None = None,
        balancers: Sequence[Balancer] = (),
        outlier: OutlierDetector | None = None,
        resync_interval_s: float = RESYNC_INTERVAL_S,
    ) -> None:
        self.store = store
        self.resync_interval_s = resync_interval_s
        self.namespace = check_name(namespace, "namespace")
        self.service = check_name(service, "service")
        self.tags = tuple(tags)
        self.zone = zone
        self.balancers = list(balancers)
        self.outlier = outlier
        self.endpoints = EndpointSet()
        self.changed = asyncio.Event()
        self.listeners: list[Callable[[EndpointSet], object]] = []
        self._view = RegistryView(store.layout)
        self._task: asyncio.Task[None] | None = None
        self._guard_task: asyncio.Task[None] | None = None
        self.resyncs_total = 0

    async def start(self) -> None:
        revision = await self._load()
        self._task = asyncio.create_task(self._follow(revision))
        self._guard_task = asyncio.create_task(self._guard())

    async def _guard(self) -> None:
        prefix = self.store.layout.service(self.namespace, self.service)
        seen = self._view.revision  # the highest store revision any read returned
        while True:
            await asyncio.sleep(self.resync_interval_s)
            try:
                r = await self.store.client.get(prefix, prefix=True, count_only=True)
            except ClientError:
                continue
            if r.revision >= seen:
                seen = r.revision
                continue
            seen = r.revision
            self.resyncs_total += 1
            log.warning("registry: the store's revision went back; reading %s again", self.service)
            await self._stop_follow()
            with contextlib.suppress(ClientError):
                self._task = asyncio.create_task(self._follow(await self._load()))

    async def _stop_follow(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _load(self) -> int:
        prefix = self.store.layout.service(self.namespace, self.service)
        r = await self.store.client.get(prefix, prefix=True)
        changes = [
            Change(bytes(kv.key), bytes(kv.value), kv.create_revision, kv.mod_revision)
            for kv in r.kvs
        ]
        self._view.load(changes, r.revision)
        self._publish()
        return r.revision

    async def _follow(self, revision: int) -> None:
        prefix = self.store.layout.service(self.namespace, self.service)
        while True:
            try:
                async for batch in self.store.client.watch(
                    prefix, prefix=True, start_revision=revision + 1
                ):
                    changes = [
                        Change(
                            bytes(ev.kv.key),
                            None if ev.type is EventType.DELETE else bytes(ev.kv.value),
                            ev.kv.create_revision,
                            ev.kv.mod_revision,
                        )
                        for ev in batch.events
                    ]
                    revision = batch.revision
                    if self._view.apply(changes, revision):
                        self._publish()
            except (CompactedError, ClientError) as exc:
                log.warning("registry: watch of %s failed (%s); reloading", self.service, exc)
                await asyncio.sleep(RETRY_DELAY_S)
                with contextlib.suppress(ClientError):
                    revision = await self._load()

    def _publish(self) -> None:
        entry = self._view.service(self.namespace, self.service)
        endpoints = endpoints_of(entry, tags=self.tags, zone=self.zone)
        diff = self.endpoints.update(endpoints)
        if diff.empty:
            return
        for balancer in self.balancers:
            balancer.update(self.endpoints.endpoints)
        if self.outlier is not None:
            self.outlier.update(self.endpoints.endpoints)
        for listener in self.listeners:
            listener(self.endpoints)
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[EndpointSet], bool], timeout_s: float) -> None:
        """Wait until ``predicate(endpoints)`` holds (TimeoutError after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self.endpoints):
                await self.changed.wait()

    async def close(self) -> None:
        if self._guard_task is not None:
            self._guard_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._guard_task
            self._guard_task = None
        await self._stop_follow()

    async def __aenter__(self) -> LiveEndpoints:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()


class Registry:
    """Entry point of the SDK over one ``syndic.client.Client``."""

    def __init__(
        self,
        client: Client,
        *,
        layout: KeyLayout | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.store = RegistryStore(client, layout)
        self.namespace = check_name(namespace, "namespace")

    async def register(
        self,
        instance: Instance,
        *,
        heartbeat_ttl_s: int = HEARTBEAT_TTL_S_DEFAULT,
        ephemeral: bool | None = None,
    ) -> Registration:
        """Register ``instance`` (ephemeral unless ``ephemeral=False``); returns a handle."""
        if ephemeral is None:
            ephemeral = True
        instance = dataclasses.replace(instance, ephemeral=ephemeral)
        registration = Registration(self.store, instance, heartbeat_ttl_s)
        await registration.start()
        return registration

    async def deregister(self, service: str, instance_id: str) -> bool:
        return await self.store.deregister(self.namespace, service, instance_id)

    async def discover(
        self,
        service: str,
        *,
        tags: Sequence[str] = (),
        zone: str | None = None,
        balancers: Sequence[Balancer] = (),
        outlier: OutlierDetector | None = None,
        resync_interval_s: float = RESYNC_INTERVAL_S,
    ) -> LiveEndpoints:
        live = LiveEndpoints(
            self.store,
            self.namespace,
            service,
            tags=tags,
            zone=zone,
            balancers=balancers,
            outlier=outlier,
            resync_interval_s=resync_interval_s,
        )
        await live.start()
        return live
