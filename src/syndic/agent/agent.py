"""The agent: services registered through it, their checks, reaping and anti-entropy.

Consul's agent model on the etcd API: the agent runs the checks of the
services registered through it and writes a check's state only when its
status changes (Consul's StatusHandler rules, :mod:`syndic.agent.status`).
A check critical for longer than its ``deregister_critical_after_ms`` has
its instance reaped. Anti-entropy compares what the agent holds with the
live catalog every ``anti_entropy_interval_ms`` (every ``anti_entropy_retry_ms``
while a write is pending) and rewrites whatever the store lost, so the
agent's services come back after the store does.

Example::

    async with Client(["127.0.0.1:2379"]) as client:
        agent = Agent(client, AgentConfig(node_name="node-1"))
        await agent.start()
        await agent.register(Instance("default", "web", "web-1", "10.0.0.1", 8080, checks=(...)))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from syndic.agent.catalog import LiveCatalog
from syndic.agent.config import AgentConfig
from syndic.agent.probes import run_probe
from syndic.agent.status import CheckTracker
from syndic.client import Client, ClientError
from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    MAINTENANCE_CHECK_NAME,
    MAINTENANCE_CHECK_PREFIX,
    CheckDefinition,
    CheckKind,
    CheckState,
    HealthStatus,
    Instance,
)
from syndic.registry.store import RegistryStore
from syndic.registry.view import RegistryView

log = logging.getLogger(__name__)

#: Longest wait for the live catalog to show the agent's own write, in ms;
#: past it the write is answered anyway (the watch is behind, not the write).
READ_YOUR_WRITES_WAIT_MS = 5_000.0


class AgentError(Exception):
    """A request the agent refuses; ``status`` is the HTTP status Consul would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class LocalCheck:
    definition: CheckDefinition
    tracker: CheckTracker
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class LocalService:
    instance: Instance
    checks: dict[str, LocalCheck] = field(default_factory=dict)
    maintenance: str | None = None  # the reason, while in maintenance


class Agent:
    """Runs the checks of locally registered services and keeps them in the store."""

    def __init__(
        self,
        client: Client,
        config: AgentConfig | None = None,
        *,
        now_ms: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or AgentConfig()
        self.client = client
        self.store = RegistryStore(client, KeyLayout(self.config.key_prefix))
        self.catalog = LiveCatalog(self.store)
        self.services: dict[str, LocalService] = {}
        self._check_owner: dict[str, str] = {}  # check id -> service id
        self._now_ms = now_ms or (lambda: time.monotonic() * 1000.0)
        self._rng = rng or random.Random()
        self._dirty = False
        self._tasks: list[asyncio.Task[None]] = []
        self._probe_slots = asyncio.Semaphore(self.config.probes_in_flight_max)
        self._http: aiohttp.ClientSession | None = None
        self.status_writes_total = 0
        self.probes_total = 0
        self.reaped_total = 0
        self.started_at_s = time.time()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(limit=self.config.probes_in_flight_max),
        )
        await self.catalog.start()
        self._adopt_from_store()
        try:
            await self.store.put_node(self.config.node_name, self.config.advertise_address, {})
        except ClientError as exc:
            self._dirty = True
            log.warning("agent: could not write the node record (%s); will retry", exc)
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="syndic-agent-ttl"))
        self._tasks.append(
            asyncio.create_task(self._anti_entropy_loop(), name="syndic-agent-anti-entropy")
        )

    async def stop(self) -> None:
        checks = [lc.task for local in self.services.values() for lc in local.checks.values()]
        for local in self.services.values():
            self._stop_checks(local)
        for check_task in checks:
            if check_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await check_task
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.catalog.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def _adopt_from_store(self) -> None:
        """After a restart, take back the persistent instances this node registered."""
        now = self._now_ms()
        for entry in self.catalog.view.live_services(self.config.namespace):
            for stored in entry.instances.values():
                inst = stored.instance
                if inst.node != self.config.node_name or inst.ephemeral:
                    continue
                local = LocalService(inst)
                for check in inst.checks:
                    current = entry.checks.get((inst.instance_id, check.check_id))
                    status = current.state.status if current else None
                    local.checks[check.check_id] = LocalCheck(
                        check, CheckTracker.for_check(check, now, status)
                    )
                maint = entry.checks.get(
                    (inst.instance_id, MAINTENANCE_CHECK_PREFIX + inst.instance_id)
                )
                if maint is not None:
                    local.maintenance = maint.state.output
                self._add_local(local)

    # -- registration ------------------------------------------------------------

    async def register(self, inst: Instance, *, replace_existing_checks: bool = False) -> None:
        if inst.instance_id not in self.services and len(self.services) >= (
            self.config.local_services_max
        ):
            raise AgentError(400, f"at most {self.config.local_services_max} services per agent")
        for check in inst.checks:
            owner = self._check_owner.get(check.check_id)
            if owner is not None and owner != inst.instance_id:
                raise AgentError(400, f"CheckID {check.check_id!r} belongs to service {owner!r}")
        if any(c.kind is CheckKind.SCRIPT for c in inst.checks) and not (
            self.config.enable_script_checks
        ):
            raise AgentError(
                400,
                "Scripts are disabled on this agent; to enable, configure "
                "'enable_script_checks' to true",
            )
        old = self.services.get(inst.instance_id)
        now = self._now_ms()
        local = LocalService(inst, maintenance=old.maintenance if old else None)
        for check in inst.checks:
            previous = old.checks.get(check.check_id) if old else None
            tracker = (
                previous.tracker
                if previous is not None and previous.definition == check
                else CheckTracker.for_check(check, now)
            )
            local.checks[check.check_id] = LocalCheck(check, tracker)
        try:
            revision = await self.store.register(
                inst, replace_existing_checks=replace_existing_checks
            )
        except ClientError as exc:
            raise AgentError(500, f"store unavailable: {exc}") from exc
        if old is not None:
            self._remove_local(old)
        self._add_local(local)
        await self._read_your_write(revision)

    async def deregister(self, instance_id: str) -> None:
        local = self.services.get(instance_id)
        if local is None:
            raise AgentError(
                404,
                f'Unknown service ID "{instance_id}". Ensure that the service '
                "ID is passed, not the service name.",
            )
        self._remove_local(local)
        inst = local.instance
        try:
            await self.store.deregister(inst.namespace, inst.service, inst.instance_id)
            revision = (await self.client.get(self.store.layout.all(), count_only=True)).revision
        except ClientError as exc:
            raise AgentError(500, f"store unavailable: {exc}") from exc
        await self._read_your_write(revision)

    async def _read_your_write(self, revision: int) -> None:
        # A client that registers and then reads the catalog through this agent
        # sees its own change (the catalog follows the store by a watch).
        await self.catalog.wait_revision(revision, READ_YOUR_WRITES_WAIT_MS / 1000.0)

    def _add_local(self, local: LocalService) -> None:
        self.services[local.instance.instance_id] = local
        for check_id, lc in local.checks.items():
            self._check_owner[check_id] = local.instance.instance_id
            if self._http is not None and lc.definition.kind not in (
                CheckKind.TTL,
                CheckKind.MAINTENANCE,
            ):
                lc.task = asyncio.create_task(
                    self._run_check(local, lc, self._http), name=f"syndic-check-{check_id}"
                )

    def _remove_local(self, local: LocalService) -> None:
        self._stop_checks(local)
        self.services.pop(local.instance.instance_id, None)
        for check_id in local.checks:
            if self._check_owner.get(check_id) == local.instance.instance_id:
                del self._check_owner[check_id]

    @staticmethod
    def _stop_checks(local: LocalService) -> None:
        for lc in local.checks.values():
            if lc.task is not None:
                lc.task.cancel()
                lc.task = None

    # -- checks -----------------------------------------------------------------

    def find_check(self, check_id: str) -> tuple[LocalService, LocalCheck]:
        owner = self._check_owner.get(check_id)
        local = self.services.get(owner) if owner is not None else None
        if local is None or check_id not in local.checks:
            raise AgentError(
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is '
                "passed, not the check name.",
            )
        return local, local.checks[check_id]

    async def update_ttl(self, check_id: str, status: HealthStatus, output: str) -> None:
        """Consul's /v1/agent/check/pass|warn|fail|update for a TTL check."""
        local, lc = self.find_check(check_id)
        if lc.definition.kind is not CheckKind.TTL:
            raise AgentError(500, f'CheckID "{check_id}" does not have associated TTL')
        state = lc.tracker.update_ttl(status, output, self._now_ms())
        if state is not None:
            await self._write_state(local, check_id, state)

    async def set_maintenance(self, instance_id: str, enable: bool, reason: str) -> None:
        local = self.services.get(instance_id)
        if local is None:
            raise AgentError(404, f'Unknown service ID "{instance_id}"')
        local.maintenance = (
            (reason or "Maintenance mode is enabled for this service") if (enable) else None
        )
        inst = local.instance
        try:
            await self.store.set_maintenance(
                inst.namespace, inst.service, inst.instance_id, enable, reason
            )
        except ClientError as exc:
            self._dirty = True
            raise AgentError(500, f"store unavailable: {exc}") from exc

    async def _run_check(
        self, local: LocalService, lc: LocalCheck, http: aiohttp.ClientSession
    ) -> None:
        interval_s = lc.definition.interval_ms / 1000.0
        # Consul staggers the first run over the interval so checks spread out.
        await asyncio.sleep(self._rng.uniform(0.0, min(interval_s, 1.0)))
        while True:
            async with self._probe_slots:
                status, output = await run_probe(
                    lc.definition, http, scripts_enabled=self.config.enable_script_checks
                )
            self.probes_total += 1
            state = lc.tracker.observe(status, output, self._now_ms())
            if state is not None:
                await self._write_state(local, lc.definition.check_id, state)
            await asyncio.sleep(interval_s)

    async def _write_state(self, local: LocalService, check_id: str, state: CheckState) -> None:
        inst = local.instance
        try:
            await self.store.set_check_state(
                inst.namespace, inst.service, inst.instance_id, check_id, state
            )
            self.status_writes_total += 1
        except ClientError as exc:
            # Anti-entropy writes the tracker's status once the store is back.
            self._dirty = True
            log.warning("agent: check %s: status write failed (%s)", check_id, exc)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.ttl_tick_ms / 1000.0)
            await self.tick()

    async def tick(self) -> None:
        """Expire TTL checks and reap instances critical past their deregister delay."""
        now = self._now_ms()
        for local in list(self.services.values()):
            for check_id, lc in local.checks.items():
                state = lc.tracker.expire(now)
                if state is not None:
                    await self._write_state(local, check_id, state)
            if any(lc.tracker.should_reap(now) for lc in local.checks.values()):
                log.info(
                    "agent: reaping %s: critical past its deregister delay",
                    local.instance.instance_id,
                )
                self.reaped_total += 1
                with contextlib.suppress(AgentError):
                    await self.deregister(local.instance.instance_id)

    # -- anti-entropy ------------------------------------------------------------

    async def _anti_entropy_loop(self) -> None:
        while True:
            delay_ms = (
                self.config.anti_entropy_retry_ms
                if self._dirty
                else self.config.anti_entropy_interval_ms
            )
            await asyncio.sleep(delay_ms / 1000.0)
            await self.sync()

    def out_of_sync(self, view: RegistryView | None = None) -> list[LocalService]:
        """Local services whose instance or check statuses differ from ``view``
        (by default the live catalog)."""
        view = view or self.catalog.view
        stale: list[LocalService] = []
        for local in self.services.values():
            inst = local.instance
            entry = view.services.get((inst.namespace, inst.service))
            stored = entry.instances.get(inst.instance_id) if entry is not None else None
            if entry is None or stored is None or stored.instance != inst:
                stale.append(local)
                continue
            for check_id, lc in local.checks.items():
                current = entry.checks.get((inst.instance_id, check_id))
                if current is None or current.state.status is not lc.tracker.status:
                    stale.append(local)
                    break
            else:
                maint = entry.checks.get(
                    (inst.instance_id, MAINTENANCE_CHECK_PREFIX + inst.instance_id)
                )
                if (maint is None) != (local.maintenance is None):
                    stale.append(local)
        return stale

    async def sync(self) -> int:
        """One anti-entropy round; returns how many services were rewritten."""
        rewritten = 0
        try:
            # Compared with a fresh read, not the live catalog: a store that was
            # restored or replaced may be behind the revision the watch follows.
            # The bar is the catalog's revision before the read: the watch may
            # apply newer changes while the read is in flight, and a read that
            # is merely overtaken is no store going back (resyncing for it woke
            # every blocking query).
            applied = self.catalog.view.revision
            changes, revision = await self.store.read_all()
            if revision < applied:
                log.warning(
                    "agent: the store's revision went back (%d < %d); resyncing",
                    revision,
                    applied,
                )
                await self.catalog.resync()
            fresh = RegistryView(self.store.layout)
            fresh.load(changes, revision)
            if self.config.node_name not in fresh.nodes:
                await self.store.put_node(self.config.node_name, self.config.advertise_address, {})
            for local in self.out_of_sync(fresh):
                inst = local.instance
                states = {
                    cid: CheckState(lc.tracker.status, lc.tracker.output)
                    for cid, lc in local.checks.items()
                }
                await self.store.register(inst, states=states)
                if local.maintenance is not None:
                    await self.store.set_maintenance(
                        inst.namespace, inst.service, inst.instance_id, True, local.maintenance
                    )
                rewritten += 1
            self._dirty = False
        except ClientError as exc:
            self._dirty = True
            log.warning("agent: anti-entropy failed (%s); retrying", exc)
        if rewritten:
            log.info("agent: anti-entropy rewrote %d services", rewritten)
        return rewritten

    def maintenance_state(self, local: LocalService) -> CheckState | None:
        if local.maintenance is None:
            return None
        return CheckState(HealthStatus.CRITICAL, local.maintenance, MAINTENANCE_CHECK_NAME)
