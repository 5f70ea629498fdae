"""SyncConfigClient: the SDK from code without an event loop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from syndic.client import Client
from syndic.client.errors import ClosedError
from syndic.config.errors import ConfigNotFoundError
from syndic.config.metrics import ConfigMetrics
from syndic.config.model import ConfigId
from syndic.config.sdk import ConfigChange
from syndic.config.store import ConfigStore
from syndic.config.sync import SyncConfigClient
from tests.stores import Store

CID = ConfigId("prod", "orders", "pool.json")


@dataclass(frozen=True)
class Pool:
    size: int


def publish(store: Store, prefix: str, content: str, expected: int) -> None:
    async def run() -> None:
        async with Client(store.endpoints) as client:
            await ConfigStore(client, prefix=prefix).publish(
                CID, content, format="json", expected_version=expected, author="t"
            )

    asyncio.run(run())


def test_get_load_and_listen_without_an_event_loop(store: Store, key_prefix: bytes) -> None:
    prefix = "/" + key_prefix.decode()
    publish(store, prefix, '{"size": 1}', 0)
    seen: list[ConfigChange] = []
    got = threading.Event()

    def listener(change: ConfigChange) -> None:
        seen.append(change)
        got.set()

    with SyncConfigClient(
        store.endpoints,
        namespace="prod",
        prefix=prefix,
        client_id="c",
        metrics=ConfigMetrics(CollectorRegistry()),
    ) as cfg:
        assert cfg.load("orders", "pool.json", Pool) == Pool(1)
        with pytest.raises(ConfigNotFoundError):
            cfg.get("orders", "absent.json")
        cfg.add_listener("orders", "pool.json", listener)
        publish(store, prefix, '{"size": 2}', 1)
        assert got.wait(15)
        assert seen[0].new is not None and seen[0].new.content == '{"size": 2}'
        assert cfg.get("orders", "pool.json").version == 2
    with pytest.raises(ClosedError, match="closed"):
        cfg.get("orders", "pool.json")
