"""Reads and writes of the registry's keys through :mod:`syndic.client` (etcd v3 API).

Each operation is one etcd transaction, so a reader never sees half a
registration: the instance and its initial check states appear together,
and a deregistration removes both at one revision. Check-state writes are
guarded by the instance's existence, so a late check result can never
recreate state for a deregistered instance.

Example::

    async with Client(["127.0.0.1:2379"]) as client:
        store = RegistryStore(client)
        await store.register(Instance("default", "web", "web-1", "10.0.0.1", 8080))
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from syndic.client import Client, Compare, EventType, Op
from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    MAINTENANCE_CHECK_NAME,
    MAINTENANCE_CHECK_PREFIX,
    CheckState,
    HealthStatus,
    Instance,
    ServiceSettings,
    check_name,
    decode_settings,
    encode_check_state,
    encode_instance,
    encode_settings,
)
from syndic.registry.view import Change

#: Longest namespace description, in characters.
DESCRIPTION_LENGTH_MAX = 1024


class RegistryStore:
    """The registry's store operations; stateless beyond the client and the key layout."""

    def __init__(self, client: Client, layout: KeyLayout | None = None) -> None:
        self.client = client
        self.layout = layout or KeyLayout()

    async def register(
        self,
        inst: Instance,
        *,
        lease: int = 0,
        replace_existing_checks: bool = False,
        states: dict[str, CheckState] | None = None,
    ) -> int:
        """Store ``inst`` and the initial state of each new check; returns the revision.

        A check already in the store keeps its state (Consul keeps a
        re-registered check's status); with ``replace_existing_checks`` the
        states of checks no longer defined are removed (maintenance is kept).
        ``states`` overrides the initial state of the named checks.
        """
        lay = self.layout
        ns, svc, iid = inst.namespace, inst.service, inst.instance_id
        ops = [Op.put(lay.instance(ns, svc, iid), encode_instance(inst), lease=lease)]
        for check in inst.checks:
            key = lay.check(ns, svc, iid, check.check_id)
            state = (states or {}).get(check.check_id)
            if state is not None:
                ops.append(Op.put(key, encode_check_state(state), lease=lease))
            else:
                # A nested transaction: the initial state only where none exists,
                # so one round trip registers and keeps existing statuses.
                initial = encode_check_state(CheckState(check.initial_status))
                ops.append(
                    Op.txn(
                        compare=[Compare.create_revision(key) == 0],
                        success=[Op.put(key, initial, lease=lease)],
                    )
                )
        if replace_existing_checks:
            existing = await self.client.get(
                lay.instance_checks(ns, svc, iid), prefix=True, keys_only=True
            )
            wanted = {lay.check(ns, svc, iid, c.check_id) for c in inst.checks}
            wanted.add(lay.check(ns, svc, iid, MAINTENANCE_CHECK_PREFIX + iid))
            ops.extend(Op.delete(kv.key) for kv in existing.kvs if bytes(kv.key) not in wanted)
        result = await self.client.txn(compare=[], success=ops, failure=[])
        return result.revision

    async def deregister(self, ns: str, service: str, instance_id: str) -> bool:
        """Remove an instance and its check states; False if it was not registered."""
        lay = self.layout
        result = await self.client.txn(
            compare=[Compare.create_revision(lay.instance(ns, service, instance_id)) > 0],
            success=[
                Op.delete(lay.instance(ns, service, instance_id)),
                Op.delete(lay.instance_checks(ns, service, instance_id), prefix=True),
            ],
            failure=[],
        )
        return result.succeeded

    async def set_check_state(
        self,
        ns: str,
        service: str,
        instance_id: str,
        check_id: str,
        state: CheckState,
        *,
        lease: int = 0,
    ) -> bool:
        """Write one check's state if the instance is still registered."""
        lay = self.layout
        result = await self.client.txn(
            compare=[Compare.create_revision(lay.instance(ns, service, instance_id)) > 0],
            success=[
                Op.put(
                    lay.check(ns, service, instance_id, check_id),
                    encode_check_state(state),
                    lease=lease,
                )
            ],
            failure=[],
        )
        return result.succeeded

    async def set_maintenance(
        self, ns: str, service: str, instance_id: str, enable: bool, reason: str, *, lease: int = 0
    ) -> bool:
        """Consul's service maintenance: a critical ``_service_maintenance:<id>`` check."""
        check_id = MAINTENANCE_CHECK_PREFIX + instance_id
        if enable:
            note = reason or "Maintenance mode is enabled for this service"
            state = CheckState(HealthStatus.CRITICAL, note, MAINTENANCE_CHECK_NAME)
            return await self.set_check_state(
                ns, service, instance_id, check_id, state, lease=lease
            )
        key = self.layout.check(ns, service, instance_id, check_id)
        await self.client.delete(key)
        return True

    async def get_settings(self, ns: str, service: str) -> ServiceSettings:
        r = await self.client.get(self.layout.settings(ns, service))
        return decode_settings(r.kvs[0].value) if r.kvs else ServiceSettings()

    async def put_settings(self, ns: str, service: str, settings: ServiceSettings) -> int:
        r = await self.client.put(self.layout.settings(ns, service), encode_settings(settings))
        return r.revision

    async def namespaces(self) -> dict[str, dict[str, Any]]:
        r = await self.client.get(self.layout.namespaces(), prefix=True)
        out: dict[str, dict[str, Any]] = {}
        for kv in r.kvs:
            parsed = self.layout.parse(bytes(kv.key))
            if parsed is not None and parsed.kind == "ns":
                out[parsed.name] = json.loads(kv.value)
        return out

    async def put_namespace(self, ns: str, description: str = "") -> int:
        check_name(ns, "Namespace")
        if not isinstance(description, str) or len(description) > DESCRIPTION_LENGTH_MAX:
            raise ValueError(f"Description: at most {DESCRIPTION_LENGTH_MAX} characters")
        doc = json.dumps({"description": description}).encode()
        r = await self.client.put(self.layout.namespace(ns), doc)
        return r.revision

    async def delete_namespace(self, ns: str) -> bool:
        r = await self.client.delete(self.layout.namespace(ns))
        return r.deleted > 0

    async def put_node(self, node: str, address: str, meta: dict[str, str], lease: int = 0) -> int:
        doc = json.dumps({"address": address, "meta": meta}, sort_keys=True).encode()
        r = await self.client.put(self.layout.node(node), doc, lease=lease)
        return r.revision

    async def read_all(self) -> tuple[list[Change], int]:
        """Every service and node key, for a :class:`~syndic.registry.view.RegistryView`."""
        lay = self.layout
        changes: list[Change] = []
        revision = 0
        for prefix in (lay.services(), lay.nodes()):
            r = await self.client.get(prefix, prefix=True, revision=revision)
            revision = revision or r.revision
            changes.extend(
                Change(bytes(kv.key), bytes(kv.value), kv.create_revision, kv.mod_revision)
                for kv in r.kvs
            )
        return changes, revision

    async def watch(self, start_revision: int) -> AsyncIterator[tuple[list[Change], int]]:
        """The changes under the prefix from ``start_revision``, one batch at a time."""
        async for batch in self.client.watch(
            self.layout.all(), prefix=True, start_revision=start_revision, progress_notify=True
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
            yield changes, batch.revision
