"""Consul's agent, catalog, health and status endpoints, and Prometheus HTTP SD.

Reads are answered from the agent's live catalog (one watch keeps it
current), so a blocking query costs nothing until its service changes.
``?consistent`` first reads the store's revision with a linearizable read
and waits until the catalog has applied it; the default and ``?stale`` read
the catalog as it is, as a Consul server answers from its own state.
"""

from __future__ import annotations

import functools
import json
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from syndic.agent.agent import Agent
from syndic.agent.catalog import Ready
from syndic.agent.decode import BodyError, decode_registration, fields, parse_json
from syndic.agent.direct import DirectAnswer
from syndic.agent.filter import Filter, FilterError, parse_filter
from syndic.agent.http_common import (
    Blocking,
    HttpError,
    blocking_params,
    body_response,
    flag,
    json_response,
    read_body,
    text_param,
    text_response,
    valid_name,
)
from syndic.agent.render import (
    agent_service_doc,
    catalog_service_doc,
    check_doc,
    instance_checks,
    node_doc,
    service_doc,
)
from syndic.client import ClientError
from syndic.registry.model import HealthStatus, Instance
from syndic.registry.view import ServiceEntry, StoredInstance

#: The Consul version syndic's API matches; tools that gate features on it see a current one.
CONSUL_VERSION = "1.17.0"
#: Consul's default server RPC port, reported in /v1/status answers.
SERVER_RPC_PORT = 8300


#: Rendered answers kept for blocking queries that wake together, by query.
RENDERED_ENTRIES_MAX = 1024


class RenderCache:
    """A bounded LRU of rendered answers; a key carries the index, so it never goes stale."""

    def __init__(self, entries_max: int = RENDERED_ENTRIES_MAX) -> None:
        self.entries_max = entries_max
        self._bodies: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
        return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        self._bodies[key] = body
        if len(self._bodies) > self.entries_max:
            self._bodies.popitem(last=False)


def _fields_of_documents() -> dict[str, tuple[str, ...]]:
    """The top-level fields of each answer's documents, which a filter's selectors may name."""
    stored = StoredInstance(Instance("default", "s", "i"), 1, 1)
    node = node_doc("n", None, "dc", "")
    return {
        "health": ("Node", "Service", "Checks"),
        "catalog": tuple(catalog_service_doc(stored, node)),
        "node": tuple(node),
        "check": tuple(check_doc(stored.instance, "c", None, "passing", "")),
        "agent_service": tuple(agent_service_doc(stored.instance, "dc")),
    }


FILTER_FIELDS = _fields_of_documents()


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """One service read's parameters: with the index, the key of its rendered answer."""

    documents: str
    ns: str
    name: str
    passing: bool
    tags: tuple[str, ...]
    node_meta: tuple[str, ...]
    only: Filter | None

    def __hash__(self) -> int:
        text = _filter_text(self.only)
        return hash(
            (self.documents, self.ns, self.name, self.passing, self.tags, self.node_meta, text)
        )


def _filter_text(only: Filter | None) -> str | None:
    """What names a filter in a rendered answer's key."""
    return only.text if only is not None else None


def _name(request: web.Request, key: str, what: str) -> str:
    return valid_name(request.match_info[key], what)


class ConsulApi:
    """The Consul-compatible endpoints of one agent."""

    def __init__(self, agent: Agent, rng: random.Random | None = None) -> None:
        self.agent = agent
        self.config = agent.config
        self.rng = rng or random.Random()
        self._rendered = RenderCache()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        # aiohttp matches dynamic routes in order: the blocking queries that
        # Prometheus and consul-template hold open come first.
        r.add_get("/v1/health/service/{name}", self.health_service)
        r.add_get("/v1/catalog/services", self.catalog_services)
        r.add_get("/v1/catalog/service/{name}", self.catalog_service)
        r.add_get("/v1/health/checks/{name}", self.health_checks)
        r.add_get("/v1/health/state/{state}", self.health_state)
        r.add_get("/v1/catalog/nodes", self.catalog_nodes)
        r.add_get("/v1/catalog/datacenters", self.catalog_datacenters)
        r.add_get("/v1/agent/self", self.agent_self)
        r.add_get("/v1/agent/services", self.agent_services)
        r.add_get("/v1/agent/checks", self.agent_checks)
        r.add_put("/v1/agent/service/register", self.agent_register)
        r.add_put("/v1/agent/service/deregister/{id}", self.agent_deregister)
        r.add_put("/v1/agent/service/maintenance/{id}", self.agent_maintenance)
        for verb, status in (
            ("pass", HealthStatus.PASSING),
            ("warn", HealthStatus.WARNING),
            ("fail", HealthStatus.CRITICAL),
        ):
            r.add_put(f"/v1/agent/check/{verb}/{{id}}", self._ttl_handler(status))
        r.add_put("/v1/agent/check/update/{id}", self.agent_check_update)
        r.add_get("/v1/status/leader", self.status_leader)
        r.add_get("/v1/status/peers", self.status_peers)
        r.add_get("/v1/sd/prometheus", self.sd_prometheus)

    # -- helpers ----------------------------------------------------------------

    def _ns(self, request: web.Request) -> str:
        return valid_name(text_param(request, "ns") or self.config.namespace, "namespace")

    def _check_dc(self, request: web.Request) -> None:
        dc = text_param(request, "dc")
        if dc and dc != self.config.datacenter:
            raise HttpError(500, f"No path to datacenter {dc[:64]!r}")

    def _blocking(self, request: web.Request) -> Blocking:
        self._check_dc(request)
        return blocking_params(request, self.config, self.rng)

    @staticmethod
    def _filter(request: web.Request, documents: str) -> Filter | None:
        """``?filter=`` parsed and checked against the answer's fields; 400 when refused."""
        text = request.query.get("filter")
        if not text:
            return None
        try:
            parsed = parse_filter(text)
            parsed.check_fields(FILTER_FIELDS[documents])
        except FilterError as exc:
            raise HttpError(400, str(exc)) from exc
        return parsed

    def _cached(self, key: tuple[Any, ...], render: Callable[[], Any]) -> bytes:
        """The answer for ``key`` (which carries the index), JSON-encoded once: every
        watcher one change wakes asks for the same bytes."""
        body = self._rendered.get(key)
        if body is None:
            body = json.dumps(render()).encode()
            self._rendered.put(key, body)
        return body

    async def _barrier(self, b: Blocking) -> None:
        if not b.consistent:
            return
        try:
            r = await self.agent.client.get(self.agent.store.layout.all(), count_only=True)
        except ClientError as exc:
            raise HttpError(500, f"store unavailable: {exc}") from exc
        if not await self.agent.catalog.wait_revision(r.revision, b.wait_s or 5.0):
            raise HttpError(500, "timed out waiting for a consistent read")

    @staticmethod
    def _consistency(b: Blocking) -> str:
        return "stale" if b.stale else "consistent" if b.consistent else "leader"

    def _node(self, name: str) -> dict[str, Any]:
        view = self.agent.catalog.view
        return node_doc(
            name, view.nodes.get(name), self.config.datacenter, self.config.advertise_address
        )

    @staticmethod
    def _tag_filter(request: web.Request, stored: StoredInstance) -> bool:
        tags = request.query.getall("tag", [])
        return all(t in stored.instance.tags for t in tags)

    @staticmethod
    def _node_meta_filter(request: web.Request) -> bool:
        # Nodes carry no meta in syndic, so any node-meta filter matches nothing.
        return not request.query.getall("node-meta", [])

    # -- agent ------------------------------------------------------------------

    async def agent_self(self, request: web.Request) -> web.Response:
        c = self.config
        return json_response(
            {
                "Config": {
                    "Datacenter": c.datacenter,
                    "PrimaryDatacenter": c.datacenter,
                    "NodeName": c.node_name,
                    "NodeID": "",
                    "Revision": "syndic",
                    "Server": True,
                    "Version": CONSUL_VERSION,
                },
                "DebugConfig": {},
                "Coord": None,
                "Member": {
                    "Name": c.node_name,
                    "Addr": c.advertise_address,
                    "Port": 8301,
                    "Tags": {"dc": c.datacenter, "role": "consul"},
                    "Status": 1,
                },
                "Stats": {},
                "Meta": {},
                "xDS": None,
            }
        )

    async def agent_services(self, request: web.Request) -> web.Response:
        dc = self.config.datacenter
        only = self._filter(request, "agent_service")
        docs = {
            sid: agent_service_doc(s.instance, dc) for sid, s in sorted(self.agent.services.items())
        }
        if only is not None:
            docs = {sid: doc for sid, doc in docs.items() if only.matches(doc)}
        return json_response(docs)

    async def agent_checks(self, request: web.Request) -> web.Response:
        only = self._filter(request, "check")
        out: dict[str, Any] = {}
        for local in self.agent.services.values():
            for cid, lc in local.checks.items():
                out[cid] = check_doc(
                    local.instance, cid, None, lc.tracker.status.value, lc.tracker.output
                )
            maint = self.agent.maintenance_state(local)
            if maint is not None:
                cid = "_service_maintenance:" + local.instance.instance_id
                out[cid] = check_doc(local.instance, cid, None, maint.status.value, maint.output)
        if only is not None:
            out = {cid: doc for cid, doc in out.items() if only.matches(doc)}
        return json_response(out)

    async def agent_register(self, request: web.Request) -> web.Response:
        doc = parse_json(await read_body(request))
        inst = decode_registration(doc, namespace=self._ns(request), node=self.config.node_name)
        await self.agent.register(
            inst, replace_existing_checks=flag(request, "replace-existing-checks")
        )
        return text_response("")

    async def agent_deregister(self, request: web.Request) -> web.Response:
        await self.agent.deregister(_name(request, "id", "service ID"))
        return text_response("")

    async def agent_maintenance(self, request: web.Request) -> web.Response:
        sid = _name(request, "id", "service ID")
        enable = request.query.get("enable")
        if enable is None:
            raise HttpError(400, "Missing value for enable")
        if enable.lower() not in ("true", "false"):
            raise HttpError(400, f"Invalid value for enable: {enable[:32]!r}")
        reason = text_param(request, "reason") or ""
        await self.agent.set_maintenance(sid, enable.lower() == "true", reason)
        return text_response("")

    def _ttl_handler(self, status: HealthStatus) -> Any:
        async def handler(request: web.Request) -> web.Response:
            cid = _name(request, "id", "check ID")
            await self.agent.update_ttl(cid, status, text_param(request, "note") or "")
            return text_response("")

        return handler

    async def agent_check_update(self, request: web.Request) -> web.Response:
        cid = _name(request, "id", "check ID")
        f = fields(parse_json(await read_body(request)), {"status", "output"}, "update")
        status_text = f.get("status")
        try:
            status = HealthStatus(status_text)
        except ValueError as exc:
            raise BodyError(f"Invalid check status: '{str(status_text)[:32]}'") from exc
        output = f.get("output") or ""
        if not isinstance(output, str):
            raise BodyError("Request decode failed: Output must be a string")
        await self.agent.update_ttl(cid, status, output)
        return text_response("")

    # -- catalog ----------------------------------------------------------------

    async def catalog_services(self, request: web.Request) -> web.StreamResponse:
        b = self._blocking(request)
        only = self._filter(request, "catalog")
        ns = self._ns(request)
        await self._barrier(b)
        catalog = self.agent.catalog
        view = catalog.view
        node_meta = self._node_meta_filter(request)

        def render() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            if not node_meta:
                return out
            for entry in view.live_services(ns):
                tags: list[str] = []
                listed = False
                for stored in entry.sorted_instances():
                    doc = self._catalog_doc(stored)
                    if only is None or only.matches(doc):
                        listed = True
                        tags.extend(t for t in stored.instance.tags if t not in tags)
                if listed:
                    out[entry.name] = tags
            return out

        def body_of(index: int) -> bytes:
            key = ("services", ns, index, view.nodes_index, node_meta, only and only.text)
            return self._cached(key, render)

        async def wait(ready: Ready | None) -> None:
            await catalog.wait_catalog(b.index, b.wait_s, ready)

        return await self._answer(request, b, wait, lambda: view.catalog_index, body_of)

    def _catalog_doc(self, stored: StoredInstance) -> dict[str, Any]:
        return catalog_service_doc(stored, self._node(stored.instance.node))

    async def _service_read(
        self,
        request: web.Request,
        documents: str,
        render: Callable[[ServiceQuery, ServiceEntry | None], list[dict[str, Any]]],
    ) -> web.StreamResponse:
        """One service's read: ``render`` makes its documents, once per (query, index)."""
        # Everything the answer depends on is read from the request before the
        # wait: after a change wakes a thousand queries, each does only a lookup.
        b = self._blocking(request)
        query = ServiceQuery(
            documents,
            self._ns(request),
            _name(request, "name", "service name"),
            flag(request, "passing"),
            tuple(request.query.getall("tag", [])),
            tuple(request.query.getall("node-meta", [])),
            self._filter(request, documents),
        )
        await self._barrier(b)
        catalog = self.agent.catalog
        view = catalog.view

        def current() -> int:
            return view.service_index(query.ns, query.name)

        def body_of(index: int) -> bytes:
            # Every watcher of a service wakes on the same change and asks for the
            # same answer: render it once per index (and filters), not once each.
            return self._cached(
                self._service_key(query, index),
                lambda: render(query, view.service(query.ns, query.name)),
            )

        async def wait(ready: Ready | None) -> None:
            await catalog.wait_service(query.ns, query.name, b.index, b.wait_s, ready)

        return await self._answer(request, b, wait, current, body_of)

    async def _answer(
        self,
        request: web.Request,
        b: Blocking,
        wait: Callable[[Ready | None], Awaitable[None]],
        current: Callable[[], int],
        body_of: Callable[[int], bytes],
    ) -> web.StreamResponse:
        """A read's answer, after the blocking wait when ``?index`` asks for one.

        Where the request allows it, the answer is written straight to the
        connection (:mod:`syndic.agent.direct`): for a woken blocking query, in
        the very pass that wakes it, before any of the woken coroutines resume."""
        consistency = self._consistency(b)
        direct = DirectAnswer.open(request)
        if b.index:
            ready = None
            if direct is not None:
                ready = functools.partial(_send_current, direct, current, body_of, consistency)
            await wait(ready)
            if direct is not None and direct.sent:
                return direct.sent_response()
        index = current()
        body = body_of(index)
        if direct is not None and direct.send(body, index, consistency):
            return direct.sent_response()
        return body_response(body, index=index, consistency=consistency)

    async def _answer_rendered(
        self,
        request: web.Request,
        b: Blocking,
        current: Callable[[], int],
        key: tuple[Any, ...],
        render: Callable[[], Any],
    ) -> web.StreamResponse:
        """A read over many services: a blocking query waits until ``current()``
        passes its index, checked after every watch batch, and every query one
        change wakes gets the same bytes, rendered once per ``key`` and index."""
        catalog = self.agent.catalog

        def body_of(index: int) -> bytes:
            return self._cached((*key, index), render)

        async def wait(ready: Ready | None) -> None:
            await catalog.wait_any_change(lambda: current() > b.index, b.wait_s, ready)

        return await self._answer(request, b, wait, current, body_of)

    def _service_key(self, query: ServiceQuery, index: int) -> tuple[Any, ...]:
        """The index carries every change to the service; node addresses are in the answer."""
        return (query, index, self.agent.catalog.view.nodes_index)

    async def catalog_service(self, request: web.Request) -> web.StreamResponse:
        return await self._service_read(request, "catalog", self._render_catalog_service)

    def _render_catalog_service(
        self, query: ServiceQuery, entry: ServiceEntry | None
    ) -> list[dict[str, Any]]:
        if entry is None or query.node_meta:
            return []
        docs = [
            self._catalog_doc(stored)
            for stored in entry.sorted_instances()
            if all(t in stored.instance.tags for t in query.tags)
        ]
        return docs if query.only is None else query.only.select(docs)

    async def catalog_nodes(self, request: web.Request) -> web.StreamResponse:
        b = self._blocking(request)
        only = self._filter(request, "node")
        meta_matches = self._node_meta_filter(request)
        await self._barrier(b)
        view = self.agent.catalog.view

        def current() -> int:
            # The node list is the node records and every instance's node.
            return max(view.nodes_index, view.catalog_index)

        def render() -> list[dict[str, Any]]:
            nodes = [self._node(n) for n in view.node_names()] if meta_matches else []
            return only.select(nodes) if only is not None else nodes

        key = ("nodes", meta_matches, _filter_text(only))
        return await self._answer_rendered(request, b, current, key, render)

    async def catalog_datacenters(self, request: web.Request) -> web.Response:
        return json_response([self.config.datacenter])

    # -- health -----------------------------------------------------------------

    async def health_service(self, request: web.Request) -> web.StreamResponse:
        return await self._service_read(request, "health", self._render_health_service)

    def _render_health_service(
        self, query: ServiceQuery, entry: ServiceEntry | None
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if entry is None or query.node_meta:
            return out
        for stored in entry.sorted_instances():
            if not all(t in stored.instance.tags for t in query.tags):
                continue
            checks = instance_checks(entry, stored)
            if query.passing and any(c["Status"] != "passing" for c in checks):
                continue
            doc = {
                "Node": self._node(stored.instance.node),
                "Service": service_doc(stored),
                "Checks": checks,
            }
            if query.only is None or query.only.matches(doc):
                out.append(doc)
        return out

    async def health_checks(self, request: web.Request) -> web.StreamResponse:
        return await self._service_read(request, "check", _render_health_checks)

    async def health_state(self, request: web.Request) -> web.StreamResponse:
        state = request.match_info["state"]
        if state not in ("any", "passing", "warning", "critical"):
            raise HttpError(400, f"Invalid state: {state[:32]!r}")
        b = self._blocking(request)
        only = self._filter(request, "check")
        ns = self._ns(request)
        await self._barrier(b)
        view = self.agent.catalog.view

        def current() -> int:
            return view.services_index(ns)

        def render() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for entry in view.live_services(ns):
                for stored in entry.sorted_instances():
                    out.extend(
                        c for c in instance_checks(entry, stored) if state in ("any", c["Status"])
                    )
            return only.select(out) if only is not None else out

        key = ("state", state, ns, _filter_text(only))
        return await self._answer_rendered(request, b, current, key, render)

    # -- status -----------------------------------------------------------------

    async def _peer_addresses(self) -> tuple[str, list[str]]:
        client = self.agent.client
        try:
            members = (await client.member_list()).members
            status = await client.status()
        except ClientError as exc:
            raise HttpError(500, f"store unavailable: {exc}") from exc

        def address(urls: list[str]) -> str:
            parts = urlsplit(urls[0]) if urls else None
            host = parts.hostname if parts is not None and parts.hostname else "127.0.0.1"
            return f"{host}:{SERVER_RPC_PORT}"

        peers = [address(m.peer_urls) for m in members if not m.is_learner]
        leader = next((address(m.peer_urls) for m in members if m.id == status.leader), "")
        return leader, peers

    async def status_leader(self, request: web.Request) -> web.Response:
        leader, _peers = await self._peer_addresses()
        return json_response(leader)

    async def status_peers(self, request: web.Request) -> web.Response:
        _leader, peers = await self._peer_addresses()
        return json_response(peers)

    # -- Prometheus HTTP SD ------------------------------------------------------

    async def sd_prometheus(self, request: web.Request) -> web.Response:
        """Prometheus's HTTP SD format: one target group per passing instance."""
        ns = self._ns(request)
        only = text_param(request, "service")
        if only is not None:
            valid_name(only, "service")
        view = self.agent.catalog.view
        groups: list[dict[str, Any]] = []
        for entry in view.live_services(ns):
            if only is not None and entry.name != only:
                continue
            for stored in entry.sorted_instances():
                inst = stored.instance
                if entry.status_of(inst.instance_id) is not HealthStatus.PASSING:
                    continue
                address = inst.address or self._node(inst.node)["Address"]
                labels = {
                    "__meta_syndic_namespace": inst.namespace,
                    "__meta_syndic_service": inst.service,
                    "__meta_syndic_instance_id": inst.instance_id,
                    "__meta_syndic_node": inst.node,
                    "__meta_syndic_zone": inst.zone,
                    "__meta_syndic_version": inst.version,
                    # Consul SD's convention: tags joined with a leading and trailing comma.
                    "__meta_syndic_tags": "," + ",".join(inst.tags) + "," if inst.tags else "",
                }
                for k, v in inst.meta.items():
                    labels[f"__meta_syndic_meta_{k.replace('-', '_')}"] = v
                groups.append({"targets": [f"{address}:{inst.port}"], "labels": labels})
        return json_response(groups, index=view.catalog_index)


def _render_health_checks(query: ServiceQuery, entry: ServiceEntry | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if entry is not None:
        for stored in entry.sorted_instances():
            out.extend(instance_checks(entry, stored))
    return out if query.only is None else query.only.select(out)


def _send_current(
    direct: DirectAnswer,
    current: Callable[[], int],
    body_of: Callable[[int], bytes],
    consistency: str,
) -> None:
    """A woken blocking query's ``ready`` callback: its answer at the index just reached."""
    index = current()
    direct.send(body_of(index), index, consistency)
