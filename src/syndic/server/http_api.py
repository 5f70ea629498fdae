"""The HTTP admin API: ``/health``, ``/metrics``, ``/version``, ``/debug``,
``/alerts`` and the console at ``/ui``.

``/health`` answers as etcd's does (``{"health":"true"}``, 503 when the
member has no leader or an alarm is raised), so load balancers and probes
written for etcd work unchanged.
"""

from __future__ import annotations

import json

from aiohttp import web

from syndic import __version__
from syndic.console import add_console_routes
from syndic.observability.admin import add_observability_routes
from syndic.observability.runtime import Observability
from syndic.server.node import ETCD_API_VERSION, MemberNode


def build_admin_app(node: MemberNode) -> web.Application:
    """An aiohttp application serving the admin endpoints of ``node``."""

    async def health(_request: web.Request) -> web.Response:
        status = node.status()
        if status.leader_id == 0:
            body, code = {"health": "false", "reason": "RAFT NO LEADER"}, 503
        elif status.errors:
            body, code = {"health": "false", "reason": "ALARM " + "; ".join(status.errors)}, 503
        else:
            body, code = {"health": "true", "reason": ""}, 200
        return web.json_response(body, status=code)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=node.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def version(_request: web.Request) -> web.Response:
        return web.json_response(
            {"etcdserver": ETCD_API_VERSION, "etcdcluster": "3.4.0", "syndic": __version__}
        )

    async def debug(_request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(node.debug_status(), indent=2, default=str),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/version", version)
    app.router.add_get("/debug/status", debug)
    # Slow log, log levels, remote debugging, alerts, and the console at /ui.
    add_observability_routes(app, Observability(node))
    add_console_routes(app)
    return app
