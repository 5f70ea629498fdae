"""One in-process member with its admin app, for console and observability tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from syndic.observability.admin import OBSERVABILITY_KEY
from syndic.observability.runtime import Observability
from syndic.server.app import MemberServer
from syndic.server.config import load_config
from tests.server.cluster_util import free_port


@dataclass
class Member:
    server: MemberServer
    client_port: int
    admin_port: int

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def obs(self) -> Observability:
        runner = self.server._http
        assert runner is not None
        return runner.app[OBSERVABILITY_KEY]

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target)


@asynccontextmanager
async def running_member(tmp_path: Path, **flags: str) -> AsyncIterator[Member]:
    client, peer, admin = free_port(), free_port(), free_port()
    config = load_config(
        {
            "data-dir": str(tmp_path / "m"),
            "listen-client-urls": f"http://127.0.0.1:{client}",
            "listen-peer-urls": f"http://127.0.0.1:{peer}",
            "listen-metrics-urls": f"http://127.0.0.1:{admin}",
            **flags,
        },
        {},
    )
    async with MemberServer(config) as server:
        yield Member(server, client, admin)
