"""Two services that find and call each other by name through syndic's registry.

``orders`` and ``billing`` each serve HTTP on a free port, register
themselves (ephemeral: they vanish if the process dies), discover the other
by name and call it through a balancer. Start syndic first (``make run``),
then::

    .venv/bin/python examples/registry_two_services.py --endpoints 127.0.0.1:2379

The same services are visible to Consul tools: ``curl
http://127.0.0.1:8500/v1/health/service/orders`` while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import aiohttp
from aiohttp import web

from syndic.client import Client
from syndic.registry.calls import ServiceCaller
from syndic.registry.model import CheckDefinition, CheckKind, HealthStatus, Instance
from syndic.registry.sdk import Registry
from syndic.traffic.balancer import SmoothWeightedRoundRobin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One small HTTP service: answers /hello, and calls its peer by name on /ask."""

    def __init__(self, name: str, peer: str, registry: Registry) -> None:
        self.name, self.peer, self.registry = name, peer, registry
        self.port = free_port()
        self.http: aiohttp.ClientSession | None = None
        self.caller: ServiceCaller | None = None

    async def hello(self, _request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {self.name} on port {self.port}")

    async def ask(self, _request: web.Request) -> web.Response:
        assert self.caller is not None and self.http is not None
        status, body = await self.caller.aiohttp_request(self.http, "GET", "/hello")
        return web.Response(text=f"{self.name} asked {self.peer}: {body.decode()} ({status})")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/hello", self.hello)
        app.router.add_get("/ask", self.ask)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        # Registered as passing: the heartbeat (the lease) is what keeps it alive.
        check = CheckDefinition(
            "alive", CheckKind.TTL, ttl_ms=3_600_000, initial_status=HealthStatus.PASSING
        )
        instance = Instance(
            "default",
            self.name,
            f"{self.name}-{self.port}",
            "127.0.0.1",
            self.port,
            checks=(check,),
        )
        self.registration = await self.registry.register(instance, heartbeat_ttl_s=5)
        self.http = aiohttp.ClientSession()

    async def find_peer(self) -> None:
        live = await self.registry.discover(self.peer)
        await live.wait_for(lambda endpoints: len(endpoints) > 0, timeout_s=10)
        self.caller = ServiceCaller(live, SmoothWeightedRoundRobin())
        self.live = live

    async def stop(self) -> None:
        await self.live.close()
        await self.registration.close()
        if self.http is not None:
            await self.http.close()
        await self.runner.cleanup()


async def main(endpoints: list[str]) -> None:
    async with Client(endpoints) as client:
        registry = Registry(client)
        orders = Service("orders", "billing", registry)
        billing = Service("billing", "orders", registry)
        await orders.start()
        await billing.start()
        await orders.find_peer()
        await billing.find_peer()
        async with aiohttp.ClientSession() as http:
            for service in (orders, billing):
                async with http.get(f"http://127.0.0.1:{service.port}/ask") as resp:
                    print(await resp.text())
        await orders.stop()
        await billing.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    args = parser.parse_args()
    asyncio.run(main(args.endpoints.split(",")))
