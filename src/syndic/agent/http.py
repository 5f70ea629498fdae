"""The agent's HTTP application: Consul's API, syndic's registry API, the OpenAPI
document, and any extra API another subsystem mounts (:class:`HttpApi`).

Every answer to a failed request is plain text with Consul's status code;
bodies above ``http_body_bytes_max`` get 413 before a handler runs. With
``token_auth`` (the store has auth on), each request's ``X-Consul-Token``
is mapped to a syndic user (:mod:`syndic.agent.auth`), else 403.

Example::

    agent = Agent(client, AgentConfig())
    await agent.start()
    app = build_http_app(agent, extra_apis=[config_centre_api])
    runner = await start_http(app, "127.0.0.1", 8500)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from syndic.agent.agent import Agent, AgentError
from syndic.agent.auth import TokenAuth, TokenRefusedError
from syndic.agent.consul_api import ConsulApi
from syndic.agent.consul_kv import ConsulKv, KvError
from syndic.agent.decode import BodyError
from syndic.agent.direct import SentResponse
from syndic.agent.http_api_protocol import HttpApi
from syndic.agent.http_common import VARY, HttpError, accepts_gzip, text_response
from syndic.agent.kv_api import REQUEST_CLIENT_KEY, KvApi
from syndic.agent.native_api import NativeApi
from syndic.agent.openapi import build_openapi
from syndic.client import ClientError, PermissionDeniedError
from syndic.registry.model import ModelError

log = logging.getLogger(__name__)

AGENT_KEY = web.AppKey("syndic_agent", Agent)
KV_KEY = web.AppKey("syndic_consul_kv", ConsulKv)


def _token(request: web.Request) -> str | None:
    token = request.headers.get("X-Consul-Token") or request.query.get("token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None


def _error_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def consul_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as exc:
            return text_response(exc.text, exc.status)
        except BodyError as exc:
            return text_response(str(exc), 400)
        except ModelError as exc:
            return text_response(f"Invalid request: {exc}", 400)
        except (AgentError, KvError) as exc:
            return text_response(exc.message, exc.status)
        except web.HTTPRequestEntityTooLarge:
            return text_response("Request body too large", 413)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return text_response(exc.reason or "error", exc.status)
        except PermissionDeniedError as exc:
            return text_response(f"Permission denied: {exc.message}", 403)
        except ClientError as exc:
            return text_response(f"store unavailable: {exc.message}", 500)

    return consul_errors


@web.middleware
async def _gzip(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Consul gzips every answer whose request accepts gzip, and says so in ``Vary``.
    Streams a handler already started, and answers already sent, are left alone."""
    response = await handler(request)
    if response.prepared or isinstance(response, SentResponse):
        return response
    response.headers.add(*VARY)
    if isinstance(response, web.Response) and response.body and accepts_gzip(request):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _token_middleware(auth: TokenAuth) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def consul_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/v1/openapi.json":
            return await handler(request)
        try:
            request[REQUEST_CLIENT_KEY] = await auth.client_for(_token(request))
        except TokenRefusedError as exc:
            return text_response(str(exc), 403)
        return await handler(request)

    return consul_token


def build_http_app(
    agent: Agent,
    *,
    extra_apis: Sequence[HttpApi] = (),
    token_auth: TokenAuth | None = None,
) -> web.Application:
    """The aiohttp application of one agent; ``extra_apis`` add routes and OpenAPI paths."""
    config = agent.config
    middlewares = [_gzip, _error_middleware()]
    if token_auth is not None:
        middlewares.append(_token_middleware(token_auth))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=max(config.http_body_bytes_max, config.kv_value_bytes_max),
    )
    kv = ConsulKv(agent.client, agent.store.layout, config.node_name)
    agent.catalog.on_session_end = kv.session_ended
    app[AGENT_KEY] = agent
    app[KV_KEY] = kv
    document = build_openapi(extra_apis)
    body = json.dumps(document).encode()

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    own: list[ConsulApi | KvApi | NativeApi] = [
        ConsulApi(agent),
        KvApi(kv, config),
        NativeApi(agent),
    ]
    for mine in own:
        mine.add_routes(app)
    for api in extra_apis:
        api.add_routes(app)
    app.router.add_get("/v1/openapi.json", openapi)

    async def close_kv(_app: web.Application) -> None:
        await kv.close()
        if token_auth is not None:
            await token_auth.close()

    app.on_cleanup.append(close_kv)
    return app


#: On shutdown, how long open requests (blocking queries wait up to 10
#: minutes) may run before they are cut, in seconds.
SHUTDOWN_GRACE_S = 1.0


#: Connections the kernel queues for the agent before it accepts them. aiohttp's
#: default of 128 overflows when a thousand blocking queries connect at once
#: (Prometheus or consul-template reconnecting after a restart): dropped SYNs
#: are retried after 1 s, then 3 s, so a query was parked seconds late. Linux
#: caps it at net.core.somaxconn (4096 by default), as Consul's listener is.
HTTP_LISTEN_BACKLOG_CONNECTIONS = 4096


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    backlog_connections: int = HTTP_LISTEN_BACKLOG_CONNECTIONS,
) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog_connections)
    await site.start()
    return runner


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; ValueError when malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad address {addr!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
