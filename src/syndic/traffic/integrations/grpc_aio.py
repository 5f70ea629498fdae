"""gRPC (``grpc.aio``) interceptors: a Policy per client call, limits per served call.

Client::

    channel = grpc.aio.insecure_channel(
        target,
        interceptors=[PolicyClientInterceptor(policy, idempotent_methods={"/inv.Inventory/Get"})],
    )

Each unary-unary call runs through the policy. A call that ends with a
status in ``failure_codes`` (UNAVAILABLE, DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED by default: the ones gRPC's own retry design, gRFC A6,
treats as transient) is a failed try for the breaker and the retry; any
other status (INVALID_ARGUMENT, NOT_FOUND, ...) says the request was wrong,
not the server, so it counts as a success and is handed to the caller
unchanged. Only methods in ``idempotent_methods`` are retried or hedged
(gRPC has no method semantics to infer it from). Each try's timeout is
clipped to the remaining policy deadline, so the server sees the real
deadline in ``grpc-timeout``. A refusal by the policy (open breaker, rate
limit, full bulkhead) or its own deadline reaches the caller as an
``AioRpcError`` like any other failed call: UNAVAILABLE, RESOURCE_EXHAUSTED
or DEADLINE_EXCEEDED, with a ``retry-after`` trailer when the wait is known.

Server::

    server = grpc.aio.server(interceptors=[AdmissionServerInterceptor(
        rate_limiter=TokenBucket(rate_per_s=1000, burst=100, clock=clock, max_wait_s=0),
        concurrency=ConcurrencyLimiter(64, clock=clock, max_wait_s=0),
    )])

Every served call (all four kinds) passes the admission stages before the
handler runs; a rate refusal aborts it with RESOURCE_EXHAUSTED and a
capacity refusal (concurrency, bulkhead, overload, degraded) with
UNAVAILABLE, both with a ``retry-after`` trailer in whole seconds.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable
from typing import Any

import grpc
import grpc.aio

from syndic.traffic import deadline as _deadline
from syndic.traffic.bulkhead import Bulkhead
from syndic.traffic.clock import Clock, MonotonicClock
from syndic.traffic.degrade import Feature
from syndic.traffic.errors import DeadlineExceededError, RejectedError
from syndic.traffic.integrations._common import (
    Admission,
    PolicyLike,
    Rejection,
    check_policy,
    retry_after_header,
)
from syndic.traffic.ratelimit import KeyedLimiter, Limiter, SystemProtection

#: Statuses that say the server (or the path to it) failed; gRFC A6 lists
#: UNAVAILABLE as the retryable default, and a deadline or exhausted quota
#: is load the breaker should see.
FAILURE_CODES_DEFAULT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

#: Trailer carrying the wait a refusal advises, in whole seconds (the HTTP
#: Retry-After convention; lower-case as gRPC metadata keys must be).
RETRY_AFTER_KEY = "retry-after"

#: Most methods an interceptor may list as idempotent.
METHODS_MAX = 10_000


def _method_name(method: object) -> str:
    return method.decode("utf-8", "replace") if isinstance(method, bytes) else str(method)


def _trailer(retry_after_s: float | None) -> grpc.aio.Metadata:
    value = retry_after_header(retry_after_s)
    return grpc.aio.Metadata() if value is None else grpc.aio.Metadata((RETRY_AFTER_KEY, value))


def _as_rpc_error(exc: RejectedError | DeadlineExceededError) -> grpc.aio.AioRpcError:
    if isinstance(exc, DeadlineExceededError):
        code, retry_after_s = grpc.StatusCode.DEADLINE_EXCEEDED, None
    else:
        limited = exc.reason == "rate_limited"
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if limited else grpc.StatusCode.UNAVAILABLE
        retry_after_s = exc.retry_after_s
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(),
        _trailer(retry_after_s),
        details=f"syndic.traffic: {exc}",
    )


class _PassThrough:
    """A status the caller must see but that is not the server failing."""

    __slots__ = ("error",)

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self.error = error


class PolicyClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Runs each unary-unary call through a Policy; see the module docstring."""

    def __init__(
        self,
        policy: PolicyLike,
        *,
        failure_codes: Collection[grpc.StatusCode] = FAILURE_CODES_DEFAULT,
        idempotent_methods: Collection[str] | Callable[[str], bool] = (),
    ) -> None:
        self._policy = check_policy(policy)
        codes = frozenset(failure_codes)
        for code in codes:
            if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
                raise ValueError(
                    f"failure_codes must be non-OK grpc.StatusCode values, got {code!r}"
                )
        self._failure_codes = codes
        if callable(idempotent_methods):
            self._idempotent: Callable[[str], bool] = idempotent_methods
        else:
            if isinstance(idempotent_methods, str) or len(idempotent_methods) > METHODS_MAX:
                raise ValueError(
                    f"idempotent_methods must be a collection of at most {METHODS_MAX} "
                    "full method names or a predicate"
                )
            methods = frozenset(idempotent_methods)
            for m in methods:
                if not isinstance(m, str) or not m.startswith("/"):
                    raise ValueError(f"a method name looks like '/pkg.Service/Method', got {m!r}")
            self._idempotent = methods.__contains__

    async def _try(self, continuation: Any, details: Any, request: Any) -> Any:
        remaining_s = _deadline.remaining_s()
        if remaining_s is not None:
            timeout_s = details.timeout
            if timeout_s is None or remaining_s < timeout_s:
                details = grpc.aio.ClientCallDetails(
                    details.method,
                    max(0.0, remaining_s),
                    details.metadata,
                    details.credentials,
                    details.wait_for_ready,
                )
        call = await continuation(details, request)
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() in self._failure_codes:
                raise
            return _PassThrough(exc)

    async def intercept_unary_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: Any,
        request: Any,
    ) -> Any:
        idempotent = bool(self._idempotent(_method_name(client_call_details.method)))
        try:
            result = await self._policy.call(
                self._try, continuation, client_call_details, request, idempotent=idempotent
            )
        except (RejectedError, DeadlineExceededError) as exc:
            raise _as_rpc_error(exc) from exc
        if isinstance(result, _PassThrough):
            raise result.error
        return result


class AdmissionServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Server-side admission for every served call; see the module docstring.

    ``key`` maps a call's ``grpc.HandlerCallDetails`` to the key of
    ``keyed_limiter`` (for instance a tenant id from the metadata).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        feature: Feature | None = None,
        rate_limiter: Limiter | None = None,
        keyed_limiter: KeyedLimiter | None = None,
        key: Callable[[Any], Hashable | None] | None = None,
        concurrency: Limiter | None = None,
        bulkhead: Bulkhead | None = None,
        protection: SystemProtection | None = None,
        retry_after_s_default: float | None = 1.0,
    ) -> None:
        if key is not None and not callable(key):
            raise TypeError(f"key must be callable, got {type(key).__name__}")
        if keyed_limiter is not None and key is None:
            raise ValueError("keyed_limiter needs a key function")
        self._key = key
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

    @property
    def admission(self) -> Admission:
        return self._admission

    async def _refuse(self, context: Any, rejection: Rejection) -> None:
        code = (
            grpc.StatusCode.RESOURCE_EXHAUSTED
            if rejection.http_status == 429
            else grpc.StatusCode.UNAVAILABLE
        )
        value = retry_after_header(rejection.retry_after_s)
        trailer = () if value is None else ((RETRY_AFTER_KEY, value),)
        await context.abort(code, f"syndic.traffic: {rejection.reason}", trailing_metadata=trailer)

    def _wrap_unary_response(self, behavior: Callable[..., Any], key: Hashable | None) -> Any:
        admission = self._admission

        async def guarded(request_or_iterator: Any, context: Any) -> Any:
            verdict = await admission.enter(key)
            if isinstance(verdict, Rejection):
                await self._refuse(context, verdict)
            assert not isinstance(verdict, Rejection)
            try:
                result = behavior(request_or_iterator, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                admission.leave(verdict)

        return guarded

    def _wrap_stream_response(self, behavior: Callable[..., Any], key: Hashable | None) -> Any:
        admission = self._admission

        async def guarded(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
            verdict = await admission.enter(key)
            if isinstance(verdict, Rejection):
                await self._refuse(context, verdict)
            assert not isinstance(verdict, Rejection)
            try:
                result = behavior(request_or_iterator, context)
                if inspect.isawaitable(result):
                    # A handler that writes with context.write and returns None.
                    result = await result
                if result is not None:
                    async for item in result:
                        yield item
            finally:
                admission.leave(verdict)

        return guarded

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        key = self._key(handler_call_details) if self._key is not None else None
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary_response(handler.unary_unary, key))
        if handler.stream_unary is not None:
            return handler._replace(
                stream_unary=self._wrap_unary_response(handler.stream_unary, key)
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._wrap_stream_response(handler.unary_stream, key)
            )
        if handler.stream_stream is not None:
            return handler._replace(
                stream_stream=self._wrap_stream_response(handler.stream_stream, key)
            )
        return handler
