"""Members on loopback for tests: free ports, fast timers, temp data dirs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from syndic.server.config import ServerConfig, load_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_configs(root: Path, size: int, *, heartbeat_ms: int = 20) -> list[ServerConfig]:
    """Configs for a ``size``-member cluster; timers 5x faster than etcd's defaults."""
    names = [f"m{i}" for i in range(1, size + 1)]
    peer_urls = {name: f"http://127.0.0.1:{free_port()}" for name in names}
    initial = ",".join(f"{n}={u}" for n, u in peer_urls.items())
    return [
        load_config(
            {
                "name": name,
                "data-dir": str(root / name),
                "listen-peer-urls": peer_urls[name],
                "listen-client-urls": f"http://127.0.0.1:{free_port()}",
                "initial-cluster": initial,
                "heartbeat-interval": heartbeat_ms,
                "election-timeout": heartbeat_ms * 10,
            },
            {},
        )
        for name in names
    ]


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
