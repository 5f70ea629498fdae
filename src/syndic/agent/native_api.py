"""syndic's own JSON API for what Consul lacks: namespaces, the protect threshold, zones.

============================================  =========================================
``GET  /v1/registry/namespaces``              namespaces (declared, and any in use)
``PUT  /v1/registry/namespaces/{ns}``         declare one (``{"Description": ...}``)
``GET  /v1/registry/services/{ns}/{name}/settings``   the service's settings
``PUT  /v1/registry/services/{ns}/{name}/settings``   ``{"ProtectThreshold": 0.5}``
``GET  /v1/registry/instances/{ns}/{name}``   discovery: ``?zone=``, ``?tag=``; healthy
                                              instances, or all when fewer than the
                                              protect threshold are healthy
============================================  =========================================
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from syndic.agent.agent import Agent
from syndic.agent.decode import BodyError, fields, parse_json
from syndic.agent.http_common import (
    HttpError,
    json_response,
    read_body,
    text_param,
    valid_name,
)
from syndic.registry.model import HealthStatus, ModelError, ServiceSettings, protect


def _names(request: web.Request, *keys: str) -> list[str]:
    return [valid_name(request.match_info[k], k) for k in keys]


class NativeApi:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/registry/namespaces", self.namespaces)
        r.add_put("/v1/registry/namespaces/{ns}", self.put_namespace)
        r.add_get("/v1/registry/services/{ns}/{name}/settings", self.get_settings)
        r.add_put("/v1/registry/services/{ns}/{name}/settings", self.put_settings)
        r.add_get("/v1/registry/instances/{ns}/{name}", self.instances)

    async def namespaces(self, request: web.Request) -> web.Response:
        declared = await self.agent.store.namespaces()
        view = self.agent.catalog.view
        names = set(declared) | {e.namespace for e in view.live_services()}
        out = [
            {"Name": n, "Description": declared.get(n, {}).get("description", "")}
            for n in sorted(names)
        ]
        return json_response(out, index=view.revision)

    async def put_namespace(self, request: web.Request) -> web.Response:
        (ns,) = _names(request, "ns")
        body = await read_body(request)
        f = fields(parse_json(body) if body.strip() else {}, {"description"}, "namespace")
        description = f.get("description") or ""
        if not isinstance(description, str):
            raise BodyError("Request decode failed: Description must be a string")
        try:
            await self.agent.store.put_namespace(ns, description)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from exc
        return json_response(True)

    async def get_settings(self, request: web.Request) -> web.Response:
        ns, name = _names(request, "ns", "name")
        settings = await self.agent.store.get_settings(ns, name)
        return json_response({"ProtectThreshold": settings.protect_threshold})

    async def put_settings(self, request: web.Request) -> web.Response:
        ns, name = _names(request, "ns", "name")
        f = fields(parse_json(await read_body(request)), {"protectthreshold"}, "settings")
        try:
            settings = ServiceSettings(f.get("protectthreshold", 0.0))
        except ModelError as exc:
            raise BodyError(f"Invalid settings: {exc}") from exc
        await self.agent.store.put_settings(ns, name, settings)
        return json_response(True)

    async def instances(self, request: web.Request) -> web.Response:
        ns, name = _names(request, "ns", "name")
        zone = text_param(request, "zone")
        tags = request.query.getall("tag", [])
        view = self.agent.catalog.view
        entry = view.service(ns, name)
        out: list[dict[str, Any]] = []
        protected = False
        if entry is not None:
            candidates = [
                s
                for s in entry.sorted_instances()
                if (zone is None or s.instance.zone == zone)
                and all(t in s.instance.tags for t in tags)
            ]
            status = {
                s.instance.instance_id: entry.status_of(s.instance.instance_id) for s in candidates
            }
            healthy = [
                s.instance
                for s in candidates
                if status[s.instance.instance_id] is not HealthStatus.CRITICAL
            ]
            every = [s.instance for s in candidates]
            chosen = protect(healthy, every, entry.settings.protect_threshold)
            protected = len(chosen) != len(healthy)
            for inst in chosen:
                out.append(
                    {
                        "ID": inst.instance_id,
                        "Address": inst.address,
                        "Port": inst.port,
                        "Tags": list(inst.tags),
                        "Meta": dict(inst.meta),
                        "Zone": inst.zone,
                        "Version": inst.version,
                        "Weights": {"Passing": inst.weight_passing, "Warning": inst.weight_warning},
                        "Status": status[inst.instance_id].value,
                    }
                )
        return json_response(
            {"Instances": out, "Protected": protected},
            index=view.service_index(ns, name),
        )
