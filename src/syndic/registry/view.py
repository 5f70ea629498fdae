"""An in-memory picture of the registry, built from a range read and kept current by watch events.

Pure: :meth:`RegistryView.load` takes key-values, :meth:`RegistryView.apply`
takes watch events and returns what changed, so callers wake exactly the
watchers of the services that changed (a change to one service never wakes
the watchers of another).

Indexes follow Consul's blocking-query rules: the index of a service is the
revision of the last change under that service's keys; the catalog index is
the revision of the last instance added, changed or removed anywhere. An
index never goes backwards and is never 0: a deleted service keeps its
deletion revision, and an unknown service reports the catalog index (which is
at least any deletion's revision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    CheckState,
    HealthStatus,
    Instance,
    ModelError,
    ServiceSettings,
    decode_check_state,
    decode_instance,
    decode_settings,
    worst,
)

log = logging.getLogger(__name__)

#: Deleted services remembered for their index; beyond this many the oldest
#: are forgotten (their watchers then see the catalog index, which is higher).
TOMBSTONES_MAX = 100_000


@dataclass(frozen=True, slots=True)
class StoredInstance:
    instance: Instance
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class StoredCheck:
    state: CheckState
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class NodeRecord:
    address: str
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Change:
    """One key's change, decoded from a watch event or a range read."""

    key: bytes
    value: bytes | None  # None: deleted
    create_revision: int
    mod_revision: int


@dataclass(slots=True)
class ServiceEntry:
    namespace: str
    name: str
    index: int = 1
    instances: dict[str, StoredInstance] = field(default_factory=dict)
    checks: dict[tuple[str, str], StoredCheck] = field(default_factory=dict)
    settings: ServiceSettings = field(default_factory=ServiceSettings)

    def sorted_instances(self) -> list[StoredInstance]:
        # One order for catalog and health answers (Consul sorts by node, then id).
        return sorted(
            self.instances.values(), key=lambda s: (s.instance.node, s.instance.instance_id)
        )

    def instance_checks(self, instance_id: str) -> list[tuple[str, StoredCheck]]:
        return sorted((cid, c) for (iid, cid), c in self.checks.items() if iid == instance_id)

    def status_of(self, instance_id: str) -> HealthStatus:
        return worst([c.state.status for _cid, c in self.instance_checks(instance_id)])


class RegistryView:
    """Services, instances, check states and nodes, with Consul-style indexes."""

    def __init__(self, layout: KeyLayout) -> None:
        self.layout = layout
        self.services: dict[tuple[str, str], ServiceEntry] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.catalog_index = 1
        self.nodes_index = 1
        # Per namespace, the newest change to any of its services, checks
        # included, kept when a service goes: a query over a namespace (the
        # health of every check) must wake when a service leaves, and its
        # index never goes backwards.
        self.namespace_index: dict[str, int] = {}
        self.revision = 0  # the store's revision this view has applied
        # Added to store revisions to make indexes. It grows when the store's
        # revision goes backwards (a store restored or replaced), so indexes
        # still only grow and blocking queries still wake.
        self.index_offset = 0
        self.rejected_total = 0

    # -- queries ------------------------------------------------------------

    def service(self, ns: str, name: str) -> ServiceEntry | None:
        entry = self.services.get((ns, name))
        return entry if entry is not None and entry.instances else None

    def service_index(self, ns: str, name: str) -> int:
        entry = self.services.get((ns, name))
        return max(1, entry.index if entry is not None else self.catalog_index)

    def services_index(self, ns: str | None = None) -> int:
        """The index of ``ns``'s services (every namespace's for None)."""
        if ns is None:
            return max(self.namespace_index.values(), default=1)
        return self.namespace_index.get(ns, 1)

    def live_services(self, ns: str | None = None) -> list[ServiceEntry]:
        return sorted(
            (e for (n, _s), e in self.services.items() if e.instances and ns in (None, n)),
            key=lambda e: (e.namespace, e.name),
        )

    def node_names(self) -> list[str]:
        names = set(self.nodes)
        for entry in self.services.values():
            names.update(s.instance.node for s in entry.instances.values())
        return sorted(names)

    # -- updates ------------------------------------------------------------

    def load(self, changes: Iterable[Change], revision: int) -> None:
        """Replace the view with a full read at ``revision``; indexes never go backwards."""
        previous = {k: e.index for k, e in self.services.items()}
        if revision < self.revision:
            highest = max([self.catalog_index, self.nodes_index, *previous.values()])
            self.index_offset = highest - revision + 1
        self.revision = revision
        published = revision + self.index_offset
        self.services = {}
        self.nodes = {}
        for change in changes:
            self._apply_one(change)
        for key, index in previous.items():
            entry = self.services.get(key)
            if entry is None:
                entry = self.services[key] = ServiceEntry(key[0], key[1], index)
            # What changed while the watch was lost is unknown: every watcher
            # wakes once at the read's revision, and no index goes backwards.
            entry.index = max(index, published)
        self.catalog_index = max(self.catalog_index, published, 1)
        self.nodes_index = max(self.nodes_index, published, 1)
        for ns in {*self.namespace_index, *(ns for ns, _ in self.services)}:
            self.namespace_index[ns] = max(self.namespace_index.get(ns, 1), published)

    def apply(self, changes: Iterable[Change], revision: int) -> set[tuple[str, str]]:
        """Apply watch events; returns the services whose index moved."""
        touched: set[tuple[str, str]] = set()
        for change in changes:
            key = self._apply_one(change)
            if key is not None:
                touched.add(key)
        self.revision = max(self.revision, revision)
        self._forget_tombstones()
        return touched

    def _apply_one(self, change: Change) -> tuple[str, str] | None:
        parsed = self.layout.parse(change.key)
        if parsed is None:
            return None
        if parsed.kind == "node":
            if change.value is None:
                self.nodes.pop(parsed.name, None)
            else:
                self.nodes[parsed.name] = NodeRecord(
                    _node_address(change.value), change.create_revision, change.mod_revision
                )
            self.nodes_index = max(self.nodes_index, change.mod_revision + self.index_offset)
            return None
        if parsed.kind not in ("inst", "check", "settings"):
            return None
        key = (parsed.namespace, parsed.service)
        entry = self.services.get(key)
        if entry is None:
            entry = self.services[key] = ServiceEntry(key[0], key[1], self.catalog_index)
        try:
            self._apply_service(entry, parsed.kind, parsed.instance_id, parsed.check_id, change)
        except ModelError as exc:
            # A value another writer stored that the model refuses: skip it, loudly.
            self.rejected_total += 1
            log.warning("registry: ignoring invalid value at %r: %s", change.key, exc)
            return None
        index = change.mod_revision + self.index_offset
        entry.index = max(entry.index, index)
        self.namespace_index[key[0]] = max(self.namespace_index.get(key[0], 1), index)
        if parsed.kind == "inst":
            self.catalog_index = max(self.catalog_index, index)
        return key

    def _apply_service(
        self, entry: ServiceEntry, kind: str, instance_id: str, check_id: str, change: Change
    ) -> None:
        if kind == "settings":
            entry.settings = (
                ServiceSettings() if change.value is None else decode_settings(change.value)
            )
        elif kind == "inst":
            if change.value is None:
                entry.instances.pop(instance_id, None)
            else:
                inst = decode_instance(change.value)
                if (inst.namespace, inst.service, inst.instance_id) != (
                    entry.namespace,
                    entry.name,
                    instance_id,
                ):
                    raise ModelError("instance", "stored under another service's key")
                entry.instances[instance_id] = StoredInstance(
                    inst, change.create_revision, change.mod_revision
                )
        elif change.value is None:
            entry.checks.pop((instance_id, check_id), None)
        else:
            entry.checks[(instance_id, check_id)] = StoredCheck(
                decode_check_state(change.value), change.create_revision, change.mod_revision
            )

    def _forget_tombstones(self) -> None:
        if len(self.services) <= TOMBSTONES_MAX:
            return
        dead = sorted(
            (e.index, k) for k, e in self.services.items() if not e.instances and not e.checks
        )
        for _index, key in dead[: len(self.services) - TOMBSTONES_MAX]:
            del self.services[key]


def _node_address(value: bytes) -> str:
    try:
        doc = json.loads(value)
    except ValueError:
        return ""
    address = doc.get("address", "") if isinstance(doc, dict) else ""
    return address if isinstance(address, str) else ""
