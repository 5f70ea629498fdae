"""Call a service by name: pick an endpoint from a live set, call it, feed the outcome back.

:class:`ServiceCaller` joins a :class:`~syndic.registry.sdk.LiveEndpoints`
set, a balancer, an optional outlier detector and an optional traffic
policy (retries, breaker, limits from :mod:`syndic.traffic`). Each try picks
an endpoint the outlier detector has not ejected, and reports latency and
success to the balancer and the detector, so a failing instance stops
receiving calls before its health check turns critical.

::

    caller = ServiceCaller(live, SmoothWeightedRoundRobin(), policy=policy)
    reply = await caller.aiohttp_request(session, "GET", "/orders/7")
    stub_reply = await caller.grpc_call(lambda ch: OrdersStub(ch).Get(request))

For httpx, :class:`~syndic.registry.httpx_transport.ServiceTransport` routes
``http://<service>/...`` URLs the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import grpc

from syndic.registry.sdk import LiveEndpoints
from syndic.traffic.balancer import Balancer
from syndic.traffic.endpoints import Endpoint
from syndic.traffic.errors import NoEndpointError
from syndic.traffic.integrations._common import PolicyLike
from syndic.traffic.outlier import OutlierDetector

T = TypeVar("T")

#: Picks tried to find an endpoint the outlier detector has not ejected.
PICK_ATTEMPTS_MAX = 8
#: gRPC channels kept open, one per endpoint address; beyond it the oldest closes.
GRPC_CHANNELS_MAX = 256


class ServiceCaller:
    """Calls one discovered service through a balancer (and optionally a policy)."""

    def __init__(
        self,
        live: LiveEndpoints,
        balancer: Balancer,
        *,
        outlier: OutlierDetector | None = None,
        policy: PolicyLike | None = None,
        scheme: str = "http",
    ) -> None:
        self.live = live
        self.balancer = balancer
        self.outlier = outlier
        self.policy = policy
        self.scheme = scheme
        if balancer not in live.balancers:
            live.balancers.append(balancer)
            balancer.update(live.endpoints.endpoints)
        if outlier is not None and live.outlier is None:
            live.outlier = outlier
            outlier.update(live.endpoints.endpoints)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def pick(self, key: bytes | str | None = None) -> Endpoint:
        """An endpoint that is not ejected (or the last pick if all are)."""
        endpoint = self.balancer.pick(key)
        for _ in range(PICK_ATTEMPTS_MAX - 1):
            if self.outlier is None or not self.outlier.is_ejected(endpoint):
                return endpoint
            self.balancer.release(endpoint)
            endpoint = self.balancer.pick(key)
        return endpoint

    async def _try(self, fn: Callable[[Endpoint], Awaitable[T]], key: bytes | str | None) -> T:
        if not self.live.endpoints:
            raise NoEndpointError(f"{self.live.service}: no healthy instance")
        endpoint = self.pick(key)
        start = time.monotonic()
        ok = False
        try:
            result = await fn(endpoint)
            ok = True
            return result
        finally:
            latency_s = time.monotonic() - start
            self.balancer.report(endpoint, latency_s, ok)
            self.balancer.release(endpoint)
            if self.outlier is not None:
                self.outlier.report(endpoint, ok)

    async def call(
        self,
        fn: Callable[[Endpoint], Awaitable[T]],
        *,
        key: bytes | str | None = None,
        idempotent: bool | None = None,
    ) -> T:
        """Run ``fn(endpoint)`` on a picked endpoint, through the policy if there is one;
        each retry picks again."""
        if self.policy is None:
            return await self._try(fn, key)
        return await self.policy.call(self._try, fn, key, idempotent=idempotent)

    def url(self, endpoint: Endpoint, path: str) -> str:
        return f"{self.scheme}://{endpoint.address}{path if path.startswith('/') else '/' + path}"

    async def aiohttp_request(
        self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
    ) -> tuple[int, bytes]:
        """One HTTP request by service name; a 5xx counts as a failure. Returns status, body."""

        async def once(endpoint: Endpoint) -> tuple[int, bytes]:
            async with session.request(method, self.url(endpoint, path), **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=body[:200].decode()
                    )
                return resp.status, body

        return await self.call(once, idempotent=method.upper() in ("GET", "HEAD", "PUT", "DELETE"))

    def channel(self, endpoint: Endpoint) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint.address)
        if channel is None:
            if len(self._channels) >= GRPC_CHANNELS_MAX:
                oldest = next(iter(self._channels))
                self._channels.pop(oldest)
            channel = self._channels[endpoint.address] = grpc.aio.insecure_channel(endpoint.address)
        return channel

    async def grpc_call(
        self, fn: Callable[[grpc.aio.Channel], Awaitable[T]], *, idempotent: bool | None = None
    ) -> T:
        """Run ``fn(channel)`` on a channel to a picked endpoint (one channel per address)."""
        return await self.call(lambda e: fn(self.channel(e)), idempotent=idempotent)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
