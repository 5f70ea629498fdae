"""Channels to the members, endpoint choice, auth tokens, and the retry loop.

One ``grpc.aio`` channel per endpoint, opened on first use. Calls go round
robin over the endpoints not recently failed (etcd clientv3 balances the
same way). A call that fails is classified once, here:

* the member is unreachable, has no leader, or the connection broke: the
  endpoint is skipped for ``endpoint_quarantine_ms`` and the call goes to
  the next one, if it may be retried;
* a read (or any call refused before it was applied, such as "no leader" or
  a connection that was never made) may be retried; a write whose request
  was sent but whose answer was lost raises :class:`OutcomeUnknownError`;
* an expired auth token is renewed once and the call repeated (the server
  refused it unread);
* anything else is the server's answer, raised as its typed error.

Retries go through :class:`syndic.traffic.retry.Retry`: its budget bounds
how much extra load failover can add, its backoff has full jitter, and the
call's deadline (``timeout_s``, or a tighter ``syndic.traffic.deadline``
in the caller's context) bounds the whole loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    AUTH_SERVICE,
    GRPC_OVERHEAD_BYTES,
    ServiceStub,
    make_stub,
    service,
)
from syndic.client.config import ClientConfig, TlsOptions
from syndic.client.errors import (
    NEVER_APPLIED_MESSAGES,
    ClientError,
    ClosedError,
    DeadlineExceededError,
    InvalidRequestError,
    OutcomeUnknownError,
    TokenExpiredError,
    UnavailableError,
    error_from_status,
)
from syndic.client.h2 import STREAM_REFUSED, H2Channel, tls_context
from syndic.observability.tracing import trace_metadata, tracing_enabled
from syndic.traffic import deadline as _deadline
from syndic.traffic.budget import RetryBudget
from syndic.traffic.clock import Clock, MonotonicClock
from syndic.traffic.retry import Retry, RetryConfig

# gRPC's texts for a connection that was never made: the request did not
# leave this process, so even a write may go elsewhere.
_NOT_CONNECTED: Final = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "no route to host",
)
# etcd's texts for a member that cannot serve right now; another may.
_MEMBER_UNHEALTHY: Final = frozenset(
    {
        "etcdserver: no leader",
        "etcdserver: not leader",
        "etcdserver: leader changed",
        "etcdserver: server stopped",
        "etcdserver: request timed out",
        "etcdserver: request timed out, possibly due to previous leader failure",
        "etcdserver: request timed out, possibly due to connection lost",
        "etcdserver: too many requests",
    }
)
_INVALID_TOKEN: Final = "etcdserver: invalid auth token"
# Answers that say the member never took the request.
_NEVER_SENT: Final = NEVER_APPLIED_MESSAGES | {STREAM_REFUSED}
# A deadline scope must be positive; a call out of time fails its next attempt.
_EPSILON_S: Final = 1e-6


def endpoint_target(endpoint: str) -> tuple[str, bool]:
    """(host:port, wants TLS) for 'host:port', 'http://host:port' or 'https://host:port'."""
    for scheme, secure in (("https://", True), ("http://", False), ("unixs://", True)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/"), secure
    return endpoint, False


def channel_options(config: ClientConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        # etcd's server refuses pings on an idle connection (PermitWithoutStream false).
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_send_message_length", config.request_bytes_max + GRPC_OVERHEAD_BYTES),
        # A range reply is bounded by the server's limits, not the client's.
        ("grpc.max_receive_message_length", -1),
        # Failover is the client's job; gRPC's own retries would repeat writes.
        ("grpc.enable_retries", 0),
        # Reconnect quickly after a member restarts; gRPC's default grows to 120 s.
        ("grpc.max_reconnect_backoff_ms", 1_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
    ]


def _path(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


def _credentials(tls: TlsOptions | None) -> grpc.ChannelCredentials:
    def read(path: Path | str | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    tls = tls or TlsOptions()
    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_file),
        private_key=read(tls.key_file),
        certificate_chain=read(tls.cert_file),
    )


class _Endpoint:
    """One member's address and its channels, opened on first use (a grpc.aio
    channel binds to the running loop, so it cannot be made earlier).

    Unary calls go over ``h2`` (:mod:`syndic.client.h2`) when the client's
    ``unary_transport`` is "h2", streams always over the grpc.aio channel."""

    __slots__ = ("_channel", "_open", "failed_until_s", "h2", "stubs", "target", "unaries")

    def __init__(
        self,
        target: str,
        open_channel: Callable[[], grpc.aio.Channel],
        h2: H2Channel | None = None,
    ) -> None:
        self.target = target
        self._open = open_channel
        self.h2 = h2
        self._channel: grpc.aio.Channel | None = None
        self.failed_until_s = 0.0
        self.stubs: dict[str, ServiceStub] = {}
        self.unaries: dict[tuple[str, str, bool], Any] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = self._open()
        return self._channel

    def stub(self, service_name: str) -> ServiceStub:
        stub = self.stubs.get(service_name)
        if stub is None:
            stub = self.stubs[service_name] = make_stub(self.channel, service_name)
        return stub

    def unary(self, service_name: str, method_name: str, raw: bool = False) -> Any:
        """The channel's callable for a unary method, made once; ``raw`` takes
        and returns wire bytes (:mod:`syndic.client.wire`), otherwise protobufs.

        The client builds every request itself from checked arguments, so
        the per-call type check of :class:`ServiceStub` is skipped on this,
        the hottest path; the path and message types still come from the one
        table in :mod:`syndic.api.services`.
        """
        key = (service_name, method_name, raw)
        call = self.unaries.get(key)
        if call is None:
            spec = service(service_name).method(method_name)
            make = self.h2.method if self.h2 is not None else self.channel.unary_unary
            call = self.unaries[key] = make(
                spec.path,
                request_serializer=None if raw else spec.request_type.SerializeToString,
                response_deserializer=None if raw else spec.response_type.FromString,
            )
        return call

    async def close(self) -> None:
        if self.h2 is not None:
            self.h2.close()
        self.unaries.clear()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self.stubs.clear()


class Transport:
    """The members a client talks to; see the module docstring."""

    def __init__(
        self, config: ClientConfig, *, clock: Clock | None = None, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.rng = rng if rng is not None else random.Random()
        self._endpoints = [self._open(endpoint) for endpoint in config.endpoints]
        self._next = 0
        self._quarantine_s = config.endpoint_quarantine_ms / 1000
        self._token: str | None = None
        self._token_generation = 0
        self._token_lock = asyncio.Lock()
        self.metadata: tuple[tuple[str, str], ...] | None = (
            None if config.token is None else (("token", config.token),)
        )
        self.closed = False
        self._budget = RetryBudget(
            ratio=config.retry_budget_ratio,
            min_retries_per_s=config.retry_budget_min_per_s,
            window_s=10.0,
            clock=self.clock,
        )
        # Attempts after the first; None when the config allows only one.
        self._retry: Retry | None = None
        if config.retry_attempts_max > 1:
            self._retry = Retry(
                RetryConfig(
                    max_attempts=config.retry_attempts_max - 1,
                    backoff=config.retry_backoff,
                    idempotent=True,
                ),
                clock=self.clock,
                rng=self.rng,
                budget=self._budget,
                retry_on=(),
                retry_if=lambda exc: isinstance(exc, ClientError) and exc.retry_safe,
                counts_requests=False,  # call() counted the request already
            )

    def _open(self, endpoint: str) -> _Endpoint:
        target, secure = endpoint_target(endpoint)
        options = channel_options(self.config)
        tls = self.config.tls
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        lean = self.config.unary_transport == "h2"
        if secure or tls is not None:
            credentials = _credentials(tls)
            h2 = None
            if lean:
                tls = tls or TlsOptions()
                context = tls_context(_path(tls.ca_file), _path(tls.cert_file), _path(tls.key_file))
                hostname = tls.server_name or target.rpartition(":")[0]
                h2 = H2Channel(target, ssl_context=context, server_hostname=hostname)
            return _Endpoint(
                target, lambda: grpc.aio.secure_channel(target, credentials, options), h2
            )
        h2 = H2Channel(target, ssl_context=None, server_hostname=None) if lean else None
        return _Endpoint(target, lambda: grpc.aio.insecure_channel(target, options), h2)

    @property
    def targets(self) -> list[str]:
        return [e.target for e in self._endpoints]

    # ------------------------------------------------------------ endpoints

    def pick(self, avoid: _Endpoint | None = None) -> _Endpoint:
        """The next endpoint round robin, skipping quarantined ones (and ``avoid``)."""
        endpoints = self._endpoints
        count = len(endpoints)
        if count == 1:
            return endpoints[0]
        now_s = self.clock.now_s()
        start = self._next
        for step in range(count):
            endpoint = endpoints[(start + step) % count]
            if endpoint.failed_until_s <= now_s and endpoint is not avoid:
                self._next = (start + step + 1) % count
                return endpoint
        # Every member failed lately: try the one that failed longest ago.
        return min(endpoints, key=lambda e: (e is avoid, e.failed_until_s))

    def endpoint_for(self, endpoint: str) -> _Endpoint:
        target, _ = endpoint_target(endpoint)
        for candidate in self._endpoints:
            if candidate.target == target:
                return candidate
        raise InvalidRequestError(
            f"endpoint {endpoint!r} is not one of the client's endpoints {self.targets}"
        )

    def mark_failed(self, endpoint: _Endpoint) -> None:
        endpoint.failed_until_s = self.clock.now_s() + self._quarantine_s

    def mark_healthy(self, endpoint: _Endpoint) -> None:
        endpoint.failed_until_s = 0.0

    # ------------------------------------------------------------ auth

    async def authenticate(self, *, force: bool = False) -> None:
        """Exchange the username and password for a token (etcd: Auth/Authenticate).

        Without ``force`` an existing token is kept; with it, the token is
        renewed unless another caller renewed it while this one waited."""
        if self.config.username is None:
            return
        generation = self._token_generation
        async with self._token_lock:
            if self._token is not None and (not force or generation != self._token_generation):
                return
            request = rpc_pb2.AuthenticateRequest(
                name=self.config.username, password=self.config.password or ""
            )
            response = await self.call(
                AUTH_SERVICE, "Authenticate", request, idempotent=True, authenticated=False
            )
            self._token = str(response.token)
            self.metadata = (("token", self._token),)
            self._token_generation += 1

    # ------------------------------------------------------------ calls

    def classify(
        self, exc: grpc.aio.AioRpcError, endpoint: _Endpoint, method: str, idempotent: bool
    ) -> ClientError:
        """The typed error for a failed attempt, with ``retry_safe`` set when
        the call may be repeated (on another member)."""
        code = exc.code()
        details = exc.details() or ""
        if code is grpc.StatusCode.UNAVAILABLE or details in _MEMBER_UNHEALTHY:
            self.mark_failed(endpoint)
            lowered = details.lower()
            never_sent = details in _NEVER_SENT or any(text in lowered for text in _NOT_CONNECTED)
            if not (idempotent or never_sent):
                return OutcomeUnknownError(method, f"{code.name}: {details}")
            error: ClientError = UnavailableError(
                f"{endpoint.target}: {details or code.name}", code=code
            )
            error.retry_safe = True
            return error
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            if not idempotent:
                return OutcomeUnknownError(method, f"deadline exceeded: {details}")
            return DeadlineExceededError(f"{method}: deadline exceeded ({details})", code=code)
        if details == _INVALID_TOKEN and self.config.username is not None:
            return TokenExpiredError(details, code=code)
        return error_from_status(code, details)

    async def call(
        self,
        service_name: str,
        method: str,
        request: Any,
        *,
        idempotent: bool,
        authenticated: bool = True,
        endpoint: str | None = None,
    ) -> Any:
        """One unary call with failover and retries; returns the protobuf
        response, or its wire bytes if ``request`` is wire bytes.

        ``endpoint`` pins the call to that member (maintenance asks one
        member about itself); it is then retried on that member only."""
        if self.closed:
            raise ClosedError("the client is closed")
        if authenticated and self.config.username is not None and self._token is None:
            await self.authenticate()
        # The call's deadline: timeout_s, or the caller's syndic.traffic
        # deadline if that ends sooner.
        timeout_s = self.config.timeout_s
        outer = _deadline.current()
        if outer is not None:
            timeout_s = min(timeout_s, outer.remaining_s())
        deadline = _deadline.Deadline(self.clock, self.clock.now_s() + timeout_s)
        state = _AttemptState(self, service_name, method, request, idempotent, deadline)
        state.authenticated = authenticated
        if endpoint is not None:
            state.pinned = self.endpoint_for(endpoint)
        self._budget.record_request()
        try:
            # The first attempt runs outside the retry loop: it is every
            # call's cost, and the loop is only needed once one failed.
            return await state.attempt()
        except ClientError as exc:
            if not exc.retry_safe or self._retry is None:
                raise
        with _deadline.scope(max(deadline.remaining_s(), _EPSILON_S), clock=self.clock):
            return await self._retry.call(state.attempt)

    async def close(self) -> None:
        self.closed = True
        for endpoint in self._endpoints:
            await endpoint.close()


class _AttemptState:
    """One call's attempts: the last endpoint tried and whether auth was renewed."""

    __slots__ = (
        "authenticated",
        "deadline",
        "endpoint",
        "idempotent",
        "method",
        "pinned",
        "renewed",
        "request",
        "service_name",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        service_name: str,
        method: str,
        request: Any,
        idempotent: bool,
        deadline: _deadline.Deadline,
    ) -> None:
        self.transport = transport
        self.service_name = service_name
        self.method = method
        self.request = request
        self.idempotent = idempotent
        self.deadline = deadline
        self.endpoint: _Endpoint | None = None
        self.pinned: _Endpoint | None = None
        self.renewed = False
        # Authenticate itself goes without the token: a stale one would be
        # refused, and renewing it from inside the renewal would deadlock.
        self.authenticated = True

    async def attempt(self) -> Any:
        transport = self.transport
        remaining_s = self.deadline.remaining_s()
        if remaining_s <= 0:
            raise DeadlineExceededError(f"{self.method}: deadline exceeded before an attempt")
        endpoint = self.pinned or transport.pick(avoid=self.endpoint)
        self.endpoint = endpoint
        call = endpoint.unary(self.service_name, self.method, type(self.request) is bytes)
        timeout_s = remaining_s
        attempt_s = transport.config.attempt_timeout_s
        if self.idempotent and attempt_s is not None and attempt_s < remaining_s:
            # A hung member (stopped, partitioned) must not eat the whole
            # deadline of a call another member could answer. A write gets
            # all of it: a write cut short cannot be tried elsewhere anyway.
            timeout_s = attempt_s
        try:
            metadata = transport.metadata if self.authenticated else None
            if tracing_enabled():
                # The member's span for this call joins the caller's trace.
                metadata = trace_metadata(metadata)
            return await call(self.request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            error = transport.classify(exc, endpoint, self.method, self.idempotent)
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED and timeout_s < remaining_s:
                transport.mark_failed(endpoint)
                error.retry_safe = True
        if isinstance(error, TokenExpiredError) and self.authenticated and not self.renewed:
            # The server refused the call unread: renew and repeat once.
            self.renewed = True
            await transport.authenticate(force=True)
            error.retry_safe = True
            self.endpoint = None
        raise error

    def __repr__(self) -> str:
        return f"_AttemptState({self.service_name}/{self.method})"
