"""A real HTTP service on loopback whose faults a test switches at runtime."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Faults:
    """What the downstream does to the next requests; counters count down."""

    fail_next: int = 0  # answer 500 to this many requests
    fail_status: int = 500
    reset_next: int = 0  # drop this many connections without answering
    slow_next: int = 0  # delay this many answers by latency_s
    latency_s: float = 0.0
    hits: int = 0
    methods: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)


def _take(faults: Faults, name: str) -> bool:
    left = getattr(faults, name)
    if left > 0:
        setattr(faults, name, left - 1)
        return True
    return False


def make_app(faults: Faults) -> web.Application:
    async def item(request: web.Request) -> web.StreamResponse:
        faults.hits += 1
        faults.methods.append(request.method)
        faults.started.set()
        await request.read()
        if _take(faults, "reset_next"):
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection die mid-request
            raise asyncio.CancelledError
        if _take(faults, "slow_next"):
            await asyncio.sleep(faults.latency_s)
        if _take(faults, "fail_next"):
            return web.json_response({"error": "injected"}, status=faults.fail_status)
        return web.json_response({"item": request.match_info["name"], "hit": faults.hits})

    async def missing(request: web.Request) -> web.Response:
        faults.hits += 1
        return web.json_response({"error": "not found"}, status=404)

    async def big(request: web.Request) -> web.Response:
        faults.hits += 1
        return web.Response(body=b"x" * 10_000)

    app = web.Application()
    app.router.add_route("*", "/items/{name}", item)
    app.router.add_get("/missing", missing)
    app.router.add_get("/big", big)
    return app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
