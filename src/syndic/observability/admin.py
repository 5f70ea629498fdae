"""The admin API's observability and remote-debugging endpoints.

``GET  /debug/slowlog``             the latest slow requests (``?limit=``)
``GET  /debug/loggers``             loggers and levels; ``PUT`` ``{"logger", "level"}``
``GET  /debug/tasks``               asyncio tasks with stacks; ``/debug/threads`` threads
``POST /debug/capture``             ``{"kind", "count"}``: the next N requests in full;
                                    ``GET`` what was captured
``POST /debug/tracemalloc``         ``{"action": "start"|"stop"}``; ``GET ?top=`` the summary
``GET  /debug/config``              the running configuration, secrets masked
``GET  /debug/samples``             the member's own metrics over the last hour
``GET  /alerts``                    each rule's state; ``/alerts/rules`` (``PUT`` a JSON
                                    list), ``/alerts/webhooks`` (``PUT`` a list of URLs),
                                    ``/alerts/prometheus-rules.yml`` for Prometheus

Every ``/debug`` route needs the root role once auth is on.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from syndic.observability import debug, tracing
from syndic.observability.alerts.notify import WebhookError
from syndic.observability.alerts.promrules import prometheus_rules
from syndic.observability.alerts.rules import RuleError, parse_rules, rule_json
from syndic.observability.logs import (
    LogLevelError,
    logger_levels,
    request_id_var,
    set_logger_level,
)
from syndic.observability.runtime import Observability

OBSERVABILITY_KEY: Final = web.AppKey("observability", Observability)
# JSON bodies of the admin API's POST/PUT routes: a rule set is the largest.
ADMIN_BODY_BYTES_MAX: Final = 256 * 1024
REQUEST_ID_HEADER: Final = "X-Request-Id"
# Request ids a client sends are echoed; anything odd is replaced.
REQUEST_ID_CHARS_MAX: Final = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def obs(request: web.Request) -> Observability:
    return request.app[OBSERVABILITY_KEY]


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 400 with the reason if it is not JSON or too large."""
    if request.content_length is not None and request.content_length > ADMIN_BODY_BYTES_MAX:
        raise web.HTTPRequestEntityTooLarge(
            max_size=ADMIN_BODY_BYTES_MAX, actual_size=request.content_length
        )
    raw = await request.content.read(ADMIN_BODY_BYTES_MAX + 1)
    if len(raw) > ADMIN_BODY_BYTES_MAX:
        raise web.HTTPRequestEntityTooLarge(max_size=ADMIN_BODY_BYTES_MAX, actual_size=len(raw))
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer, got {raw[:20]!r}") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name} must be in {low}..{high}, got {value}")
    return value


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= REQUEST_ID_CHARS_MAX and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex


@web.middleware
async def observe_http(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id, a server span (when tracing is on), latency and the slow check."""
    rid = _request_id(request)
    token = request_id_var.set(rid)
    observer = obs(request).observer
    t0 = time.perf_counter()
    code = 500
    trace_id = ""
    resource = request.match_info.route.resource
    span_name = f"HTTP {request.method} {resource.canonical if resource else request.path}"
    try:
        with tracing.tracer().start_as_current_span(
            span_name,
            context=tracing.extract_headers(request.headers),
            kind=SpanKind.SERVER,
        ) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                code = exc.status
                trace_id = tracing.trace_id_of(span)
                exc.headers[REQUEST_ID_HEADER] = rid
                raise
            finally:
                span.set_attribute("http.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            code = response.status
            span.set_attribute("http.status_code", code)
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = rid
            trace_id = tracing.trace_id_of(span)
            return response
    finally:
        if request.path not in ("/metrics", "/health"):
            observer.finish(
                f"HTTP {request.method}",
                (time.perf_counter() - t0) * 1000.0,
                str(code),
                None,
                trace_id,
                client_request=False,
            )
        request_id_var.reset(token)


def _admin(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        obs(request).auth.require_admin(request)
        return await handler(request)

    return checked


async def slowlog(request: web.Request) -> web.Response:
    o = obs(request)
    limit = int_param(request, "limit", 100, 1, 10_000)
    return web.json_response(
        {
            "threshold_ms": o.observer.slow_log.threshold_ms,
            "recorded": o.observer.slow_log.recorded,
            "entries": [dataclasses.asdict(e) for e in o.observer.slow_log.entries(limit)],
        }
    )


async def loggers_get(_request: web.Request) -> web.Response:
    return web.json_response(logger_levels())


async def loggers_put(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='body must be {"logger": name, "level": LEVEL}')
    try:
        return web.json_response(set_logger_level(body.get("logger", ""), body.get("level")))
    except LogLevelError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def tasks(_request: web.Request) -> web.Response:
    return web.json_response(debug.task_dump())


async def threads(_request: web.Request) -> web.Response:
    return web.json_response(debug.thread_dump())


async def capture_post(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("count"), int):
        raise web.HTTPBadRequest(text='body must be {"kind": "etcdserverpb.KV/Put", "count": N}')
    kind = body.get("kind", "")
    if not isinstance(kind, str) or len(kind) > 200:
        raise web.HTTPBadRequest(text="kind must be a method name such as etcdserverpb.KV/Put")
    try:
        obs(request).observer.arm_capture(kind, body["count"])
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response({"kind": kind, "count": body["count"]})


async def capture_get(request: web.Request) -> web.Response:
    o = obs(request).observer
    return web.json_response(
        {
            "kind": o.capture_kind,
            "left": o.capture_left,
            "captured": [dataclasses.asdict(c) for c in o.captured],
        }
    )


async def tracemalloc_post(request: web.Request) -> web.Response:
    body = await read_json(request)
    action = body.get("action") if isinstance(body, dict) else None
    memory = obs(request).memory
    if action == "start":
        memory.start()
    elif action == "stop":
        memory.stop()
    else:
        raise web.HTTPBadRequest(text='body must be {"action": "start"} or {"action": "stop"}')
    return web.json_response({"action": action})


async def tracemalloc_get(request: web.Request) -> web.Response:
    top = int_param(request, "top", 20, 1, debug.TRACEMALLOC_TOP_MAX)
    return web.json_response(obs(request).memory.summary(top))


async def config(request: web.Request) -> web.Response:
    return web.json_response(debug.masked_config(obs(request).node.config))


async def samples(request: web.Request) -> web.Response:
    return web.json_response(obs(request).ring.as_json())


async def alerts(request: web.Request) -> web.Response:
    obs(request).auth.info(request)
    return web.json_response({"alerts": obs(request).alerts.status()})


async def alert_rules_get(request: web.Request) -> web.Response:
    return web.json_response([rule_json(r) for r in obs(request).alerts.rules])


async def alert_rules_put(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        rules = parse_rules(body)
    except RuleError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    obs(request).alerts.set_rules(rules)
    return web.json_response({"rules": len(rules)})


async def webhooks_get(request: web.Request) -> web.Response:
    n = obs(request).notifier
    return web.json_response({"webhooks": n.webhooks, "delivered": n.delivered, "failed": n.failed})


async def webhooks_put(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        obs(request).notifier.set_webhooks(body)
    except WebhookError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response({"webhooks": obs(request).notifier.webhooks})


async def alert_rules_prometheus(request: web.Request) -> web.Response:
    text = prometheus_rules(obs(request).alerts.rules)
    return web.Response(text=text, content_type="application/yaml")


def add_observability_routes(app: web.Application, o: Observability) -> None:
    """Mount the routes, the middleware and the sampler's lifetime on ``app``."""
    app[OBSERVABILITY_KEY] = o
    app.middlewares.append(observe_http)
    r = app.router
    r.add_get("/debug/slowlog", _admin(slowlog))
    r.add_get("/debug/loggers", _admin(loggers_get))
    r.add_put("/debug/loggers", _admin(loggers_put))
    r.add_get("/debug/tasks", _admin(tasks))
    r.add_get("/debug/threads", _admin(threads))
    r.add_post("/debug/capture", _admin(capture_post))
    r.add_get("/debug/capture", _admin(capture_get))
    r.add_post("/debug/tracemalloc", _admin(tracemalloc_post))
    r.add_get("/debug/tracemalloc", _admin(tracemalloc_get))
    r.add_get("/debug/config", _admin(config))
    r.add_get("/debug/samples", samples)
    r.add_get("/alerts", alerts)
    r.add_get("/alerts/rules", _admin(alert_rules_get))
    r.add_put("/alerts/rules", _admin(alert_rules_put))
    r.add_get("/alerts/webhooks", _admin(webhooks_get))
    r.add_put("/alerts/webhooks", _admin(webhooks_put))
    r.add_get("/alerts/prometheus-rules.yml", alert_rules_prometheus)

    async def on_startup(_app: web.Application) -> None:
        o.start()

    async def on_cleanup(_app: web.Application) -> None:
        await o.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
