"""The client's settings, each with its unit and why its default is what it is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from syndic.client.errors import InvalidRequestError
from syndic.client.validate import REQUEST_BYTES_MAX_DEFAULT
from syndic.traffic.retry import Backoff

# etcd's clientv3 gives a call no deadline of its own; a script that forgets
# one hangs on a partitioned member, so syndic's client bounds every call.
CALL_TIMEOUT_S_DEFAULT = 5.0
# Longer than an election plus a round of retries, shorter than a day.
CALL_TIMEOUT_S_MAX = 86_400.0
# Events one watch may hold for a reader that fell behind before its watcher
# is paused on the server (and resumed, from where it stopped, once read):
# a few large transactions' worth (etcd allows 128 ops per txn).
WATCH_BUFFERED_EVENTS_MAX_DEFAULT = 10_000
# Watches on the client's one Watch stream: syndic's server default for
# watchers per stream (watchers_per_stream_max).
WATCH_STREAM_WATCHES_MAX_DEFAULT = 10_000


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """etcd's client TLS options: ``--cacert`` (ca_file), ``--cert``, ``--key``.

    ``ca_file`` None trusts the system roots; ``cert_file`` and ``key_file``
    (both or neither) present a client certificate (mutual TLS).
    """

    ca_file: Path | str | None = None
    cert_file: Path | str | None = None
    key_file: Path | str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidRequestError(
                "TLS cert_file and key_file go together: give both or neither"
            )
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise InvalidRequestError(f"TLS {name} {str(path)!r} is not a readable file")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a :class:`~syndic.client.Client` is built from."""

    endpoints: tuple[str, ...]
    # The whole call, retries included, unless a syndic.traffic deadline in
    # the caller's context ends sooner.
    timeout_s: float = CALL_TIMEOUT_S_DEFAULT
    # One attempt of a read (or any call safe to repeat) gives up after this
    # and tries another member, so a hung member costs this, not timeout_s.
    # Twice etcd's default election timeout: a healthy member answers a
    # linearizable read within one election. None: the whole deadline.
    attempt_timeout_s: float | None = 2.0
    request_bytes_max: int = REQUEST_BYTES_MAX_DEFAULT
    username: str | None = None
    password: str | None = None
    # A token issued by Authenticate to someone else (a console acting for
    # its logged-in user): sent on every call, never renewed, so a call
    # after it expires fails with the server's "invalid auth token".
    token: str | None = None
    tls: TlsOptions | None = None
    # gRPC keepalive (etcd: --keepalive-time, --keepalive-timeout). etcd's
    # server refuses pings more often than every 5 s (GRPCKeepAliveMinTime),
    # answering with GOAWAY, so 30 s is well clear of it.
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    # Attempts per idempotent call, the first included: enough to walk a
    # three-member cluster and wait out an election once.
    retry_attempts_max: int = 6
    retry_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.05, cap_s=1.0))
    # Retries may add at most this share of calls, plus a floor for quiet
    # clients (Finagle's RetryBudget defaults: 20%, 10 per second).
    retry_budget_ratio: float = 0.2
    retry_budget_min_per_s: float = 10.0
    # A member that failed is skipped for this long before being tried again,
    # unless every member has failed.
    endpoint_quarantine_ms: int = 1_000
    # See WATCH_BUFFERED_EVENTS_MAX_DEFAULT and WATCH_STREAM_WATCHES_MAX_DEFAULT.
    watch_buffered_events_max: int = WATCH_BUFFERED_EVENTS_MAX_DEFAULT
    watch_stream_watches_max: int = WATCH_STREAM_WATCHES_MAX_DEFAULT
    # What carries unary calls: "h2", syndic.client.h2's lean HTTP/2
    # connection in the caller's loop (a fraction of grpc.aio's CPU per
    # call), or "grpc", grpc.aio's channel. Streams always use grpc.aio.
    unary_transport: Literal["h2", "grpc"] = "h2"

    def __post_init__(self) -> None:
        endpoints: object = self.endpoints  # callers may pass anything
        if isinstance(endpoints, str) or not self.endpoints:
            raise InvalidRequestError("endpoints must be a non-empty list of 'host:port' strings")
        for endpoint in self.endpoints:
            if not isinstance(endpoint, str) or not endpoint:
                raise InvalidRequestError(f"endpoint {endpoint!r} is not a 'host:port' string")
        _positive("timeout_s", self.timeout_s, CALL_TIMEOUT_S_MAX)
        if self.attempt_timeout_s is not None:
            _positive("attempt_timeout_s", self.attempt_timeout_s, CALL_TIMEOUT_S_MAX)
        _positive("request_bytes_max", self.request_bytes_max, 2**31 - 1)
        _positive("keepalive_time_ms", self.keepalive_time_ms, 86_400_000)
        _positive("keepalive_timeout_ms", self.keepalive_timeout_ms, 86_400_000)
        _positive("retry_attempts_max", self.retry_attempts_max, 100)
        _positive("endpoint_quarantine_ms", self.endpoint_quarantine_ms, 3_600_000)
        _positive("watch_buffered_events_max", self.watch_buffered_events_max, 10_000_000)
        _positive("watch_stream_watches_max", self.watch_stream_watches_max, 1_000_000)
        if self.unary_transport not in ("h2", "grpc"):
            raise InvalidRequestError(
                f"unary_transport must be 'h2' or 'grpc', got {self.unary_transport!r}"
            )
        if (self.username is None) != (self.password is None):
            raise InvalidRequestError("username and password go together: give both or neither")
        token: object = self.token
        if token is not None and (
            self.username is not None or not isinstance(token, str) or not token
        ):
            raise InvalidRequestError("token is a non-empty string given instead of username")


def _positive(name: str, value: object, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not 0 < value <= high:
        raise InvalidRequestError(f"{name} must be in (0, {high:g}], got {value!r}")
