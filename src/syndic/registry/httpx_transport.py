"""``ServiceTransport``: an httpx transport that sends ``http://<service>/...`` to an instance.

::

    caller = ServiceCaller(live, SmoothWeightedRoundRobin(), policy=policy)
    async with httpx.AsyncClient(transport=ServiceTransport({"orders": caller})) as http:
        reply = await http.get("http://orders/orders/7")

A request whose host is not a known service name goes straight to ``inner``.
"""

from __future__ import annotations

import httpx

from syndic.registry.calls import ServiceCaller
from syndic.traffic.endpoints import Endpoint


class ServiceTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        callers: dict[str, ServiceCaller],
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.callers = dict(callers)
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        caller = self.callers.get(request.url.host)
        if caller is None:
            return await self.inner.handle_async_request(request)
        body = await request.aread()

        async def once(endpoint: Endpoint) -> httpx.Response:
            host, _, port = endpoint.address.rpartition(":")
            url = request.url.copy_with(host=host, port=int(port))
            routed = httpx.Request(request.method, url, headers=request.headers, content=body)
            response = await self.inner.handle_async_request(routed)
            await response.aread()
            if response.status_code >= 500:
                raise httpx.HTTPStatusError(
                    f"{request.url.host}: {response.status_code}",
                    request=routed,
                    response=response,
                )
            return response

        idempotent = request.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
        return await caller.call(once, idempotent=idempotent)

    async def aclose(self) -> None:
        await self.inner.aclose()
