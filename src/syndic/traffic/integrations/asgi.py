"""``AdmissionMiddleware``: server-side limits for any ASGI application.

::

    app = AdmissionMiddleware(
        app,
        rate_limiter=TokenBucket(rate_per_s=500, burst=50, clock=clock, max_wait_s=0),
        concurrency=ConcurrencyLimiter(64, clock=clock, max_wait_s=0.05),
        protection=SystemProtection(clock=clock, cpu_usage=cpu_fraction),
        exempt_paths={"/health"},
    )

Each HTTP request passes the stages of
:class:`~syndic.traffic.integrations._common.Admission` (degrade switch,
rate, per-key rate, concurrency, bulkhead, adaptive protection). A refused
request never reaches the application: it is answered ``429 Too Many
Requests`` when the caller exceeded a rate (RFC 6585 §4) and ``503 Service
Unavailable`` when the server cannot take more, both with ``Retry-After``
(RFC 9110 §10.2.3) rounded up from the wait the rejecting stage computed
(a token bucket knows when its next token is due), or from
``retry_after_s_default`` when the stage cannot know. The body is a small
JSON object ``{"error": reason, "retry_after_s": ...}`` that names no
internal setting. Lifespan and WebSocket scopes pass through untouched, as do
``exempt_paths`` (health checks must answer under load, or the orchestrator
restarts a busy but healthy server).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Hashable, MutableMapping
from typing import Any

from syndic.traffic.bulkhead import Bulkhead
from syndic.traffic.clock import Clock, MonotonicClock
from syndic.traffic.degrade import Feature
from syndic.traffic.integrations._common import (
    Admission,
    Rejection,
    retry_after_header,
)
from syndic.traffic.ratelimit import KeyedLimiter, Limiter, SystemProtection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Most exempt paths; a handful (health, readiness, metrics) is the use.
EXEMPT_PATHS_MAX = 64


def client_address_key(scope: Scope) -> Hashable | None:
    """Key requests by the client's IP address (for a per-caller ``keyed_limiter``)."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client and isinstance(client[0], str):
        return client[0]
    return None


class AdmissionMiddleware:
    """Wraps an ASGI app with server-side admission; see the module docstring."""

    __slots__ = ("_admission", "_app", "_exempt", "_key", "rejected_total")

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Clock | None = None,
        feature: Feature | None = None,
        rate_limiter: Limiter | None = None,
        keyed_limiter: KeyedLimiter | None = None,
        key: Callable[[Scope], Hashable | None] = client_address_key,
        concurrency: Limiter | None = None,
        bulkhead: Bulkhead | None = None,
        protection: SystemProtection | None = None,
        retry_after_s_default: float | None = 1.0,
        exempt_paths: Collection[str] = (),
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI callable, got {type(app).__name__}")
        if not callable(key):
            raise TypeError(f"key must be callable, got {type(key).__name__}")
        if isinstance(exempt_paths, str) or len(exempt_paths) > EXEMPT_PATHS_MAX:
            raise ValueError(
                f"exempt_paths must be a collection of at most {EXEMPT_PATHS_MAX} paths"
            )
        for path in exempt_paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"exempt path must be a str starting with '/', got {path!r}")
        self._app = app
        self._key = key
        self._exempt = frozenset(exempt_paths)
        self._admission = Admission(
            clock=clock if clock is not None else MonotonicClock(),
            feature=feature,
            rate_limiter=rate_limiter,
            keyed_limiter=keyed_limiter,
            concurrency=concurrency,
            bulkhead=bulkhead,
            protection=protection,
            retry_after_s_default=retry_after_s_default,
        )
        self.rejected_total = 0

    @property
    def admission(self) -> Admission:
        """The admission stages; ``admission.add_listener`` observes rejections."""
        return self._admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") in self._exempt:
            await self._app(scope, receive, send)
            return
        verdict = await self._admission.enter(self._key(scope))
        if isinstance(verdict, Rejection):
            self.rejected_total += 1
            await _refuse(send, verdict)
            return
        try:
            await self._app(scope, receive, send)
        finally:
            self._admission.leave(verdict)


async def _refuse(send: Send, rejection: Rejection) -> None:
    payload: dict[str, object] = {"error": rejection.reason}
    if rejection.retry_after_s is not None:
        payload["retry_after_s"] = round(rejection.retry_after_s, 3)
    body = json.dumps(payload, separators=(",", ":")).encode("ascii")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    retry_after = retry_after_header(rejection.retry_after_s)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode("ascii")))
    await send({"type": "http.response.start", "status": rejection.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
