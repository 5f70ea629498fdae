"""syndic's gRPC server on 127.0.0.1 serving etcd's API over a LocalBackend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from syndic.api.services import make_stub
from syndic.server.grpc_api import GrpcApiConfig, register_services
from syndic.server.h2 import GrpcServer, ServerLimits
from syndic.server.metrics import ServerMetrics
from tests.server.grpc_api.local_backend import LocalBackend

# A bound on every call so a broken handler fails the test instead of hanging;
# far above the milliseconds a loopback call takes.
CALL_TIMEOUT_S = 10.0
# Small request bound so oversized-request tests send little data.
TEST_MAX_REQUEST_BYTES = 64 * 1024
# The watch sender re-checks the (injected) progress clock this often.
TEST_WATCH_WAIT_TIMEOUT_S = 0.02


@dataclass
class MonotonicFake:
    """Seconds, advanced only by the test (drives periodic watch progress)."""

    now_s: float = 0.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Served:
    server: GrpcServer
    port: int
    backend: LocalBackend
    metrics: ServerMetrics
    clock: MonotonicFake
    channel: grpc.aio.Channel
    config: GrpcApiConfig = field(default_factory=GrpcApiConfig)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stub(self, service_name: str) -> object:
        return make_stub(self.channel, service_name)


async def start_served(
    backend: LocalBackend | None = None,
    config: GrpcApiConfig | None = None,
    limits: ServerLimits | None = None,
) -> Served:
    backend = backend if backend is not None else LocalBackend()
    config = config or GrpcApiConfig(
        max_request_bytes=TEST_MAX_REQUEST_BYTES,
        watch_wait_timeout_s=TEST_WATCH_WAIT_TIMEOUT_S,
        progress_notify_interval_s=60.0,
    )
    metrics = ServerMetrics()
    clock = MonotonicFake()
    server = GrpcServer(limits or ServerLimits.for_max_request_bytes(config.max_request_bytes))
    register_services(server, backend, metrics, config, clock=clock)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Served(server, port, backend, metrics, clock, channel, config)


async def stop_served(served: Served) -> None:
    await served.channel.close()
    await served.server.stop(grace=None)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    handle = await start_served()
    try:
        yield handle
    finally:
        await stop_served(handle)
