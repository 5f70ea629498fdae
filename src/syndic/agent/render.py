"""Consul's JSON shapes for nodes, services, checks and health entries."""

from __future__ import annotations

from typing import Any

from syndic.registry.durations import format_duration_ms
from syndic.registry.model import MAINTENANCE_CHECK_PREFIX, CheckKind, Instance
from syndic.registry.view import NodeRecord, ServiceEntry, StoredCheck, StoredInstance


def node_doc(
    name: str, record: NodeRecord | None, dc: str, fallback_address: str
) -> dict[str, Any]:
    address = record.address if record is not None and record.address else fallback_address
    return {
        "ID": "",
        "Node": name,
        "Address": address,
        "Datacenter": dc,
        "TaggedAddresses": {"lan": address, "wan": address},
        "Meta": {},
        "CreateIndex": record.create_revision if record else 1,
        "ModifyIndex": record.mod_revision if record else 1,
    }


def weights(inst: Instance) -> dict[str, int]:
    return {"Passing": inst.weight_passing, "Warning": inst.weight_warning}


def service_doc(stored: StoredInstance) -> dict[str, Any]:
    inst = stored.instance
    return {
        "Kind": "",
        "ID": inst.instance_id,
        "Service": inst.service,
        "Tags": list(inst.tags),
        "Address": inst.address,
        "TaggedAddresses": {},
        "Meta": dict(inst.meta),
        "Port": inst.port,
        "Weights": weights(inst),
        "EnableTagOverride": inst.enable_tag_override,
        "Namespace": inst.namespace,
        "Zone": inst.zone,
        "Version": inst.version,
        "CreateIndex": stored.create_revision,
        "ModifyIndex": stored.mod_revision,
    }


def agent_service_doc(inst: Instance, dc: str) -> dict[str, Any]:
    return {
        "ID": inst.instance_id,
        "Service": inst.service,
        "Tags": list(inst.tags),
        "Meta": dict(inst.meta),
        "Port": inst.port,
        "Address": inst.address,
        "TaggedAddresses": {},
        "Weights": weights(inst),
        "EnableTagOverride": inst.enable_tag_override,
        "Datacenter": dc,
        "Namespace": inst.namespace,
    }


def catalog_service_doc(stored: StoredInstance, node: dict[str, Any]) -> dict[str, Any]:
    inst = stored.instance
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"],
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": "",
        "ServiceID": inst.instance_id,
        "ServiceName": inst.service,
        "ServiceTags": list(inst.tags),
        "ServiceAddress": inst.address,
        "ServiceTaggedAddresses": {},
        "ServiceWeights": weights(inst),
        "ServiceMeta": dict(inst.meta),
        "ServicePort": inst.port,
        "ServiceEnableTagOverride": inst.enable_tag_override,
        "Namespace": inst.namespace,
        "CreateIndex": stored.create_revision,
        "ModifyIndex": stored.mod_revision,
    }


def check_doc(
    inst: Instance, check_id: str, stored: StoredCheck | None, status: str, output: str
) -> dict[str, Any]:
    definition = inst.check(check_id)
    if check_id.startswith(MAINTENANCE_CHECK_PREFIX):
        kind, name, notes = "maintenance", stored.state.name if stored else "", output
    elif definition is not None:
        kind = definition.kind.value
        name, notes = definition.name, definition.notes
    else:
        kind, name, notes = "", check_id, ""
    interval = ""
    timeout = ""
    if definition is not None and definition.kind not in (CheckKind.TTL,):
        interval = format_duration_ms(definition.interval_ms)
        timeout = format_duration_ms(definition.timeout_ms)
    return {
        "Node": inst.node,
        "CheckID": check_id,
        "Name": name,
        "Status": status,
        "Notes": notes,
        "Output": output,
        "ServiceID": inst.instance_id,
        "ServiceName": inst.service,
        "ServiceTags": list(inst.tags),
        "Type": kind,
        "Interval": interval,
        "Timeout": timeout,
        "ExposedPort": 0,
        "Definition": {},
        "Namespace": inst.namespace,
        "CreateIndex": stored.create_revision if stored else 0,
        "ModifyIndex": stored.mod_revision if stored else 0,
    }


def instance_checks(entry: ServiceEntry, stored: StoredInstance) -> list[dict[str, Any]]:
    inst = stored.instance
    return [
        check_doc(inst, cid, c, c.state.status.value, c.state.output)
        for cid, c in entry.instance_checks(inst.instance_id)
    ]
