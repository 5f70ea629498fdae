"""etcd's v3 gRPC API served over a :class:`~syndic.server.backend.Backend`.

``register_services`` binds KV, Watch, Lease, Cluster, Maintenance and Auth
to etcd's method paths on syndic's gRPC server (or a ``grpc.aio`` one), all checking callers through
one ``AuthGate`` (etcd's authentication and permissions). Every handler is wrapped so
that syndic's errors reach the client with etcd's status code and message,
an unexpected exception is logged and answered UNKNOWN (the server keeps
serving), and each call is counted in ``grpc_server_handled``.

Example::

    server = GrpcServer()
    register_services(server, backend, metrics)
    server.add_insecure_port("127.0.0.1:2379")
    await server.start()
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from typing import Any

import grpc

from syndic.api.services import (
    AUTH_SERVICE,
    CLUSTER_SERVICE,
    ELECTION_SERVICE,
    KV_SERVICE,
    LEASE_SERVICE,
    LOCK_SERVICE,
    MAINTENANCE_SERVICE,
    WATCH_SERVICE,
    add_servicer,
    service,
)
from syndic.server.backend import Backend
from syndic.server.grpc_api.auth import AuthGate, AuthServicer, AuthSettings
from syndic.server.grpc_api.cluster import ClusterServicer
from syndic.server.grpc_api.config import GrpcApiConfig
from syndic.server.grpc_api.election import ElectionServicer
from syndic.server.grpc_api.errors import guard
from syndic.server.grpc_api.kv import KVServicer
from syndic.server.grpc_api.lease import LeaseServicer
from syndic.server.grpc_api.lock import LockServicer
from syndic.server.grpc_api.maintenance import MaintenanceServicer
from syndic.server.grpc_api.watch import WatchServicer
from syndic.server.h2 import GrpcServer
from syndic.server.metrics import ServerMetrics

__all__ = ["AuthSettings", "GrpcApiConfig", "register_services"]


def _guarded(service_name: str, servicer: object, metrics: ServerMetrics | None) -> Any:
    """A handler object whose methods are ``servicer``'s, each wrapped by ``guard``."""
    methods: dict[str, Any] = {}
    for name in service(service_name).method_names:
        behavior = getattr(servicer, name, None)
        if behavior is not None:
            methods[name] = guard(service_name, name, metrics, behavior)
    return types.SimpleNamespace(**methods)


def register_services(
    server: GrpcServer | grpc.aio.Server,
    backend: Backend,
    metrics: ServerMetrics | None,
    config: GrpcApiConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
    auth_settings: AuthSettings | None = None,
    wall_clock_s: Callable[[], float] = time.time,
) -> dict[str, tuple[str, ...]]:
    """Serve etcd's six v3 services, Lock and Election on ``server``; returns the methods
    bound per service.

    ``clock`` (monotonic seconds) times periodic watch progress and
    ``wall_clock_s`` (Unix seconds) auth token expiry; tests inject both.
    Every service checks callers through one :class:`AuthGate`.
    """
    config = config if config is not None else GrpcApiConfig()
    gate = AuthGate(backend, auth_settings, wall_clock_s)
    servicers: dict[str, object] = {
        KV_SERVICE: KVServicer(backend, config, gate),
        WATCH_SERVICE: WatchServicer(backend, config, gate, clock),
        LEASE_SERVICE: LeaseServicer(backend, gate),
        CLUSTER_SERVICE: ClusterServicer(backend, gate),
        MAINTENANCE_SERVICE: MaintenanceServicer(backend, config, gate),
        AUTH_SERVICE: AuthServicer(backend, gate),
        LOCK_SERVICE: LockServicer(backend, config, gate),
        ELECTION_SERVICE: ElectionServicer(backend, config, gate),
    }
    return {
        name: add_servicer(server, name, _guarded(name, servicer, metrics))
        for name, servicer in servicers.items()
    }
