"""The console's services page: instances and their checks read from the
registry's keys, registration and deregistration through the registry's store
layer over ``syndic.client`` connected to the member itself."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Final

from aiohttp import web

from syndic.client import Client
from syndic.kv.messages import RangeRequest, prefix_end
from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    CheckDefinition,
    CheckKind,
    Instance,
    ModelError,
    decode_check_state,
    decode_instance,
)
from syndic.registry.store import RegistryStore

# Registry keys read for one listing (instances and check states).
REGISTRY_KEYS_LISTED_MAX: Final = 20_000
# TTL of the check a console registration carries, so its health shows.
CONSOLE_CHECK_TTL_MS: Final = 60_000.0
# Logged-in users with a client of their own at once; each holds a channel.
# A console has a handful of operators; the least recently used is closed.
USER_CLIENTS_MAX: Final = 16


async def list_services(node: Any, layout: KeyLayout) -> list[dict[str, Any]]:
    prefix = layout.services()
    resp = await node.range(
        RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=REGISTRY_KEYS_LISTED_MAX)
    )
    services: dict[tuple[str, str], dict[str, Any]] = {}
    checks: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for kv in resp.kvs:
        parsed = layout.parse(kv.key)
        if parsed is None:
            continue
        key = (parsed.namespace, parsed.service)
        entry = services.setdefault(key, {"namespace": key[0], "service": key[1], "instances": []})
        try:
            if parsed.kind == "inst":
                inst = decode_instance(kv.value)
                entry["instances"].append(
                    {
                        "id": inst.instance_id,
                        "address": inst.address,
                        "port": inst.port,
                        "tags": list(inst.tags),
                        "ephemeral": inst.ephemeral,
                    }
                )
            elif parsed.kind == "check":
                state = decode_check_state(kv.value)
                checks.setdefault((*key, parsed.instance_id), []).append(
                    {"id": parsed.check_id, "status": state.status.value, "output": state.output}
                )
        except ModelError:
            continue  # a record another version wrote: skipped, not fatal
    out = []
    for (ns, name), entry in sorted(services.items()):
        for inst in entry["instances"]:
            inst["checks"] = checks.get((ns, name, inst["id"]), [])
        if entry["instances"]:
            out.append(entry)
    return out


def instance_from(body: object) -> Instance:
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    try:
        port = body.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, int):
            raise ModelError("Port", "must be an integer")
        return Instance(
            namespace=str(body.get("namespace") or "default"),
            service=str(body.get("service", "")),
            instance_id=str(body.get("instance_id", "")),
            address=str(body.get("address", "")),
            port=port,
            checks=(
                CheckDefinition(
                    "console-ttl", CheckKind.TTL, name="TTL", ttl_ms=CONSOLE_CHECK_TTL_MS
                ),
            ),
        )
    except ModelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


class RegistryAccess:
    """Clients of the member itself for the registry's writes and the
    configuration centre's routes: one without credentials while auth is
    off, and with auth on one per logged-in user's token, so the member's
    gRPC API checks each write against that user's role (etcd: the
    ``token`` metadata of every call)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.layout = KeyLayout()
        self._client: Client | None = None
        self._users: OrderedDict[str, Client] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _endpoint(self) -> str:
        url = self.node.config.advertise_client_urls[0]
        return str(url).split("://", 1)[-1]

    def client(self) -> Client:
        # grpc.aio opens no connection until the first call.
        if self._client is None:
            self._client = Client([self._endpoint()])
        return self._client

    def client_for(self, token: str | None) -> Client:
        """The client that speaks for ``token``'s user (None: auth is off)."""
        if token is None:
            return self.client()
        client = self._users.get(token)
        if client is not None:
            self._users.move_to_end(token)
            return client
        # The console holds the user's token, not a password: a voided token
        # fails the call (the user logs in again) instead of being renewed.
        client = Client([self._endpoint()], token=token)
        self._users[token] = client
        while len(self._users) > USER_CLIENTS_MAX:
            _, evicted = self._users.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return client

    def store(self, token: str | None = None) -> RegistryStore:
        return RegistryStore(self.client_for(token), self.layout)

    async def close(self) -> None:
        clients = [*self._users.values(), *([self._client] if self._client else [])]
        self._users.clear()
        self._client = None
        for client in clients:
            await client.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
