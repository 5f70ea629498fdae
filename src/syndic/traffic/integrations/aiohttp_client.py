"""``PolicySession``: ``aiohttp.ClientSession.request`` run through a Policy.

::

    async with aiohttp.ClientSession() as session:
        client = PolicySession(session, policy)
        reply = await client.get("http://inventory/items/7")
        reply.status, reply.json(), reply.fallback

A wrapper rather than a ``ClientSession`` subclass (aiohttp discourages
subclassing it) or a client middleware (a middleware must hand back a live
``ClientResponse``, which a fallback value cannot be). Each try sends the
request and reads the whole body (at most ``body_bytes_max`` bytes) inside
the policy, so a reset halfway through a body is a failed try, the
connection is released before a retry, and the answer is an immutable
:class:`HTTPReply` that a fallback can replay.

Idempotency follows the HTTP adapter rules: ``idempotent=`` per call wins,
then an ``Idempotency-Key`` header, then the method (RFC 9110 §9.2.2). An
answer with a status in ``failure_statuses`` (every 5xx by default) is a
failure for the breaker and the retry; if nothing replaces it, the caller
gets it back as an :class:`HTTPReply`. A refusal (open breaker, rate limit)
without a fallback raises the typed
:class:`~syndic.traffic.errors.RejectedError`. Request bodies must be
replayable (bytes, str, a dict for ``json=``) for retries to resend them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from syndic.traffic.integrations._common import (
    BODY_BYTES_MAX_DEFAULT,
    FAILURE_STATUSES_DEFAULT,
    FALLBACK_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PolicyLike,
    ResponseTooLargeError,
    UpstreamStatusError,
    check_body_bytes_max,
    check_policy,
    check_statuses,
    fallback_payload,
    http_idempotent,
)

#: Read size per chunk, in bytes: large enough to keep the per-chunk Python
#: overhead small, small enough that the size check stops an oversized body early.
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HTTPReply:
    """A whole HTTP answer as a value. ``fallback`` is True when a fallback
    produced it rather than the callee."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    fallback: bool = False

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status < 400


class PolicySession:
    """Sends requests through ``session`` under ``policy``; see the module docstring."""

    __slots__ = ("_body_bytes_max", "_failure_statuses", "_policy", "_session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: PolicyLike,
        *,
        failure_statuses: Iterable[int] = FAILURE_STATUSES_DEFAULT,
        body_bytes_max: int = BODY_BYTES_MAX_DEFAULT,
    ) -> None:
        if not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        self._session = session
        self._policy = check_policy(policy)
        self._failure_statuses = check_statuses(failure_statuses)
        self._body_bytes_max = check_body_bytes_max(body_bytes_max)

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    async def _try(
        self, method: str, url: str, kwargs: dict[str, Any], answered: list[HTTPReply]
    ) -> HTTPReply:
        async with self._session.request(method, url, **kwargs) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
                size += len(chunk)
                if size > self._body_bytes_max:
                    raise ResponseTooLargeError(method, url, self._body_bytes_max)
                chunks.append(chunk)
            reply = HTTPReply(
                status=response.status,
                headers=CIMultiDictProxy(CIMultiDict(response.headers)),
                body=b"".join(chunks),
                url=str(response.url),
            )
        if reply.status in self._failure_statuses:
            raise UpstreamStatusError(reply.status, method, url, reply)
        answered.append(reply)
        return reply

    async def request(
        self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> HTTPReply:
        """Send ``method url`` (``kwargs`` as for ``ClientSession.request``) under the policy."""
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise ValueError(f"method must be an HTTP method token, got {method!r}")
        headers = kwargs.get("headers") or {}
        has_key = any(str(k).lower() == IDEMPOTENCY_KEY_HEADER for k in headers)
        repeatable = http_idempotent(method, has_key, idempotent)
        answered: list[HTTPReply] = []  # the successful try's reply, if any
        try:
            result: object = await self._policy.call(
                self._try, method, url, kwargs, answered, idempotent=repeatable
            )
        except UpstreamStatusError as exc:
            if isinstance(exc.answer, HTTPReply):
                return exc.answer
            raise
        if isinstance(result, HTTPReply):
            if any(result is a for a in answered):
                return result
            # The fallback replayed an earlier good answer.
            return dataclasses.replace(result, fallback=True)
        body, content_type = fallback_payload(result)
        return HTTPReply(
            status=200,
            headers=CIMultiDictProxy(
                CIMultiDict({"Content-Type": content_type, FALLBACK_HEADER: "1"})
            ),
            body=body,
            url=url,
            fallback=True,
        )

    async def get(self, url: str, **kwargs: Any) -> HTTPReply:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> HTTPReply:
        return await self.request("HEAD", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> HTTPReply:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> HTTPReply:
        return await self.request("PUT", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> HTTPReply:
        return await self.request("DELETE", url, **kwargs)
