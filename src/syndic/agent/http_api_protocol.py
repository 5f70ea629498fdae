"""The interface another subsystem implements to serve its HTTP API from the agent.

The agent owns one aiohttp application (the Consul-compatible API, the
syndic-native registry API and ``/v1/openapi.json``). Other subsystems, such as
the configuration centre, publish their endpoints in the same application and
the same OpenAPI document by passing objects that satisfy :class:`HttpApi` to
``syndic.agent.http.build_http_app(..., extra_apis=[...])``.

Example::

    from aiohttp import web

    class ConfigApi:
        def add_routes(self, app: web.Application) -> None:
            app.router.add_get("/v1/config/{data_id}", self._get)

        def openapi_paths(self) -> dict[str, Any]:
            return {"/v1/config/{data_id}": {"get": {...}}}

    app = build_http_app(agent, extra_apis=[ConfigApi()])

Rules the agent relies on:

* ``add_routes`` is called once, before the application starts, and only adds
  routes (and, if needed, ``app.on_startup`` / ``app.on_cleanup`` hooks); it
  must not replace middlewares the agent installed.
* Paths live under ``/v1/`` and must not collide with the agent's own
  (``/v1/agent``, ``/v1/catalog``, ``/v1/health``, ``/v1/kv``, ``/v1/session``,
  ``/v1/status``, ``/v1/sd``, ``/v1/registry``, ``/v1/openapi.json``); the
  builder raises ``ValueError`` on a duplicate OpenAPI path.
* ``openapi_paths`` returns an OpenAPI 3.0 "Paths Object" (path → operations)
  describing exactly the routes ``add_routes`` adds; it is merged into the
  agent's document, so the whole HTTP API is described in one place and
  checked by schemathesis. Components may be referenced through
  ``openapi_components`` if the object defines it (optional).
* The agent's middlewares apply to extra routes too: ``X-Consul-Token`` is
  mapped to syndic auth (the request's client, when auth is on, is
  ``request[syndic.agent.kv_api.REQUEST_CLIENT_KEY]``), a body read above the
  agent's ``http_body_bytes_max`` is answered 413, and the agent's typed
  errors (``HttpError``, ``BodyError``, ``ModelError``, ``ClientError``)
  become Consul-style plain-text answers.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from aiohttp import web


@runtime_checkable
class HttpApi(Protocol):
    """A set of HTTP routes plus their OpenAPI description, mounted in the agent's app."""

    def add_routes(self, app: web.Application) -> None:
        """Add this API's routes to ``app`` (called once, before startup)."""
        ...

    def openapi_paths(self) -> dict[str, Any]:
        """Return the OpenAPI 3.0 Paths Object for the routes ``add_routes`` adds."""
        ...
