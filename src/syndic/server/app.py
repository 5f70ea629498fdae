"""Assemble one member: the node, the gRPC client API and the HTTP admin API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from syndic.server.config import ServerConfig, parse_url
from syndic.server.grpc_api import register_services
from syndic.server.grpc_api.auth import AuthSettings
from syndic.server.h2 import GrpcServer, ServerLimits
from syndic.server.http_api import build_admin_app
from syndic.server.node import MemberNode
from syndic.server.tls import client_context

log = logging.getLogger(__name__)

# A member's heap is mostly the store's long-lived records, which Python's
# cyclic collector rescans on its default thresholds (700, 10, 10) every few
# thousand allocations, and a write allocates dozens of objects. With these,
# young collections run about 70x less often and full ones rarely; the store
# holds no reference cycles, and short-lived cycles still die young. On the
# benchmark machine, 256 clients on 1 member: 9.5-9.9k -> 12.2-12.5k puts/s,
# p99 70-80 -> 40 ms.
GC_THRESHOLDS: Final = (50_000, 20, 100)


class MemberServer:
    """A running member with its listeners; ``async with`` starts and stops it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.node = MemberNode(config)
        self._grpc: GrpcServer | None = None
        self._http: web.AppRunner | None = None

    async def start(self) -> None:
        tls = client_context(self.config)  # checked before anything starts
        await self.node.start()
        self._grpc = GrpcServer(
            ServerLimits.for_member(
                self.config.max_request_bytes, self.config.max_concurrent_streams
            )
        )
        register_services(
            self._grpc,
            self.node,
            self.node.metrics,
            auth_settings=AuthSettings(token_ttl_s=self.config.auth_token_ttl),
        )
        for url in self.config.listen_client_urls:
            host, port = parse_url(url, "listen_client_urls")
            if urlsplit(url).scheme in ("https", "unixs"):
                assert tls is not None  # the config requires cert and key
                self._grpc.add_secure_port(f"{host}:{port}", tls)
            else:
                self._grpc.add_insecure_port(f"{host}:{port}")
        await self._grpc.start()
        if self.config.listen_metrics_urls:
            self._http = web.AppRunner(build_admin_app(self.node), access_log=None)
            await self._http.setup()
            for url in self.config.listen_metrics_urls:
                host, port = parse_url(url, "listen_metrics_urls")
                await web.TCPSite(self._http, host, port).start()

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self._http is not None:
            await self._http.cleanup()
        await self.node.stop()

    async def __aenter__(self) -> MemberServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def serve_until_signalled(config: ServerConfig, on_ready: object = None) -> None:
    """Run a member until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with MemberServer(config) as server:
        # What recovery loaded (the store, the log) lives as long as the
        # process: keep it out of every later collection.
        gc.freeze()
        gc.enable()  # held off by run() until the recovered state was frozen
        if callable(on_ready):
            on_ready(server)
        # A member removed from the cluster exits, as etcd's does.
        signalled = asyncio.ensure_future(stop.wait())
        removed = asyncio.ensure_future(server.node.removed.wait())
        # A member whose node loop stopped on a fault exits non-zero.
        failed = asyncio.ensure_future(server.node.failed.wait())
        await asyncio.wait((signalled, removed, failed), return_when=asyncio.FIRST_COMPLETED)
        for waiter in (signalled, removed, failed):
            waiter.cancel()
        log.info("member %s: shutting down", config.name)
    if server.node.failure:
        raise SystemExit(f"syndic: {server.node.failure}")


def run(config: ServerConfig, on_ready: object = None) -> None:
    """Run a member on uvloop (the asyncio loop when uvloop is unavailable)."""
    gc.set_threshold(*GC_THRESHOLDS)
    # Recovery builds millions of objects that live as long as the process
    # and hold no cycles; none is collected until they are frozen, so no young
    # collection walks them all once (about 0.3 CPU s per million keys).
    gc.disable()
    try:
        import uvloop

        uvloop.run(serve_until_signalled(config, on_ready))
    except ImportError:
        asyncio.run(serve_until_signalled(config, on_ready))
