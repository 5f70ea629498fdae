"""Adapters that put syndic.traffic between real clients and servers.

Each adapter lives in its own module and imports its framework only there,
so importing one never requires the others:

* :mod:`~syndic.traffic.integrations.httpx_transport` — ``PolicyTransport``,
  an ``httpx`` transport that runs every request through a Policy;
* :mod:`~syndic.traffic.integrations.aiohttp_client` — ``PolicySession``,
  a wrapper around ``aiohttp.ClientSession.request``;
* :mod:`~syndic.traffic.integrations.asgi` — ``AdmissionMiddleware``, server
  side limits for any ASGI application (429/503 with ``Retry-After``);
* :mod:`~syndic.traffic.integrations.grpc_aio` — ``PolicyClientInterceptor``
  and ``AdmissionServerInterceptor`` for ``grpc.aio``.

The HTTP client adapters buffer each answer (up to a named bound) inside the
policy, so a failure while reading the body is a failed try like any other,
a connection is back in the pool before a retry starts, and a fallback can
replay the last good answer.
"""
