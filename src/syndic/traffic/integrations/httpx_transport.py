"""``PolicyTransport``: an httpx transport that runs each request through a Policy.

::

    client = httpx.AsyncClient(transport=PolicyTransport(policy))

Per request, the transport:

* decides whether the request may be repeated: an ``extensions={"idempotent":
  True/False}`` mark wins, then an ``Idempotency-Key`` header, then the
  method (GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent, RFC 9110
  §9.2.2; POST and PATCH are not). Only repeatable requests are retried or
  hedged;
* sends each try through ``inner`` and reads the whole answer (at most
  ``body_bytes_max`` bytes) inside the try, so a connection reset halfway
  through a body is a failed try, and the connection is back in the pool
  before the next try starts;
* turns an answer whose status is in ``failure_statuses`` (every 5xx by
  default) into :class:`UpstreamStatusError`, which the breaker records and
  the retry may repeat; connection errors and timeouts are raised by httpx
  itself and count as failures the same way;
* gives the caller the last failure answer when retries run out and no
  fallback applies, a fallback's value as a 200 answer marked with the
  ``x-syndic-fallback`` header, and a refusal (open breaker, rate limit,
  full bulkhead) as the typed :class:`~syndic.traffic.errors.RejectedError`.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

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

#: Request extension that marks a request as repeatable (True) or not (False).
IDEMPOTENT_EXTENSION = "idempotent"


class _Buffered:
    """One whole answer as a value, so a fallback can replay it safely."""

    __slots__ = ("content", "extensions", "headers", "status")

    def __init__(
        self, status: int, headers: httpx.Headers, content: bytes, extensions: dict[str, object]
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.extensions = extensions

    def response(self, request: httpx.Request) -> httpx.Response:
        # A fresh Response each time: httpx responses are single-use streams.
        return httpx.Response(
            self.status,
            headers=self.headers,
            stream=httpx.ByteStream(self.content),
            extensions={k: v for k, v in self.extensions.items() if k != "network_stream"},
            request=request,
        )


class PolicyTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner`` (default ``httpx.AsyncHTTPTransport()``); see the module docstring.

    >>> import random
    >>> from syndic.traffic.clock import MonotonicClock
    >>> from syndic.traffic.policy import Policy
    >>> policy = Policy({"retry": {"max_attempts": 2}}, clock=MonotonicClock(),
    ...                 rng=random.Random(1))
    >>> client = httpx.AsyncClient(transport=PolicyTransport(policy))
    """

    def __init__(
        self,
        policy: PolicyLike,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        failure_statuses: Iterable[int] = FAILURE_STATUSES_DEFAULT,
        body_bytes_max: int = BODY_BYTES_MAX_DEFAULT,
    ) -> None:
        self._policy = check_policy(policy)
        if inner is not None and not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError(
                f"inner must be an httpx.AsyncBaseTransport, got {type(inner).__name__}"
            )
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._failure_statuses = check_statuses(failure_statuses)
        self._body_bytes_max = check_body_bytes_max(body_bytes_max)

    async def _try(self, request: httpx.Request, answered: list[_Buffered]) -> _Buffered:
        response = await self._inner.handle_async_request(request)
        try:
            chunks: list[bytes] = []
            size = 0
            # Raw bytes: content decoding is the client's job, after us.
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self._body_bytes_max:
                    raise ResponseTooLargeError(
                        request.method, str(request.url), self._body_bytes_max
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        answer = _Buffered(
            response.status_code, response.headers, b"".join(chunks), dict(response.extensions)
        )
        if response.status_code in self._failure_statuses:
            raise UpstreamStatusError(
                response.status_code, request.method, str(request.url), answer
            )
        answered.append(answer)
        return answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        idempotent = http_idempotent(
            request.method,
            IDEMPOTENCY_KEY_HEADER in request.headers,
            request.extensions.get(IDEMPOTENT_EXTENSION),
        )
        if idempotent and not isinstance(request.stream, httpx.ByteStream):
            # A streamed body can be sent once; buffer it so a retry can resend it.
            await request.aread()
        answered: list[_Buffered] = []  # the successful try's answer, if any
        try:
            result: object = await self._policy.call(
                self._try, request, answered, idempotent=idempotent
            )
        except UpstreamStatusError as exc:
            if isinstance(exc.answer, _Buffered):
                return exc.answer.response(request)
            raise
        if isinstance(result, _Buffered):
            response = result.response(request)
            if not any(result is a for a in answered):
                response.headers[FALLBACK_HEADER] = "1"  # an earlier good answer, replayed
            return response
        if isinstance(result, httpx.Response):
            return result  # a fallback handler built its own answer
        body, content_type = fallback_payload(result)
        return httpx.Response(
            200,
            headers={"content-type": content_type, FALLBACK_HEADER: "1"},
            content=body,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
