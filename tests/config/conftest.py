"""Configuration centre tests run against syndic and Debian's etcd with the same code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from syndic.client import Client
from syndic.config import crypto
from syndic.config.store import ConfigStore
from tests.stores import Store, key_prefix, store, store_kind  # noqa: F401


@pytest.fixture
def masters() -> crypto.MasterKeys:
    return crypto.MasterKeys([crypto.MasterKey.generate()])


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:  # noqa: F811
    async with Client(store.endpoints, timeout_s=10.0) as c:
        yield c


@pytest.fixture
def config_store(client: Client, key_prefix: bytes, masters: crypto.MasterKeys) -> ConfigStore:  # noqa: F811
    return ConfigStore(client, prefix="/" + key_prefix.decode(), masters=masters)
