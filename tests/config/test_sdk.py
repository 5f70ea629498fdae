"""The SDK on syndic and on etcd: get, gray selection, listeners and async
iteration with old and new content, typed loading, encryption, snapshots,
failover files, and traffic policies bound to a data id."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syndic.client import Client
from syndic.config import crypto
from syndic.config.errors import (
    CentreUnavailableError,
    ConfigNotFoundError,
    CorruptEntryError,
    DecryptionError,
    InvalidInputError,
)
from syndic.config.gray import ClientIdentity, matches, parse_selector
from syndic.config.metrics import ConfigMetrics
from syndic.config.model import ConfigId, Settings, content_sha256
from syndic.config.sdk import ConfigChange, ConfigClient, Source
from syndic.config.store import ConfigStore
from syndic.config.traffic import bind_policy
from syndic.traffic.policy import Policy
from tests.server.cluster_util import free_port

CID = ConfigId("prod", "orders", "pool.yaml")
# Far above a loopback round trip; bounds a broken push instead of hanging.
PUSH_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Pool:
    size: int
    timeout_s: float = 1.0


def sdk(store: ConfigStore, client: Client, **kwargs: object) -> ConfigClient:
    options: dict[str, object] = {
        "client_id": "pod-1",
        "metrics": ConfigMetrics(CollectorRegistry()),
    }
    options |= kwargs
    return ConfigClient(client, namespace="prod", prefix=store.layout.prefix, **options)  # type: ignore[arg-type]


async def test_get_typed_load_and_missing(config_store: ConfigStore, client: Client) -> None:
    await config_store.publish(CID, "size: 8\n", format="yaml", expected_version=0, author="a")
    async with sdk(config_store, client) as cfg:
        value = await cfg.get("orders", "pool.yaml")
        assert (value.content, value.version, value.source) == ("size: 8\n", 1, Source.CENTRE)
        assert await cfg.load("orders", "pool.yaml", Pool) == Pool(8)
        with pytest.raises(ConfigNotFoundError):
            await cfg.get("orders", "absent.yaml")
    await config_store.publish(CID, "size: eight\n", format="yaml", expected_version=1, author="a")
    async with sdk(config_store, client) as cfg:
        with pytest.raises(InvalidInputError, match="size: expected int, got str"):
            await cfg.load("orders", "pool.yaml", Pool)


async def test_listeners_and_async_iteration_get_old_and_new(
    config_store: ConfigStore, client: Client
) -> None:
    await config_store.publish(CID, "size: 1\n", format="yaml", expected_version=0, author="a")
    async with sdk(config_store, client) as cfg:
        seen: list[ConfigChange] = []
        got = asyncio.Event()

        async def listener(change: ConfigChange) -> None:
            seen.append(change)
            got.set()

        def broken(change: ConfigChange) -> None:
            raise RuntimeError("a listener's bug")

        await cfg.add_listener("orders", "pool.yaml", broken)
        sub = await cfg.add_listener("orders", "pool.yaml", listener)
        changes = cfg.changes("orders", "pool.yaml")
        next_change = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.05)
        await config_store.publish(CID, "size: 2\n", format="yaml", expected_version=1, author="a")
        await asyncio.wait_for(got.wait(), PUSH_TIMEOUT_S)
        change = await asyncio.wait_for(next_change, PUSH_TIMEOUT_S)
        assert change == seen[0]
        assert change.old is not None and change.new is not None
        assert (change.old.content, change.new.content) == ("size: 1\n", "size: 2\n")
        assert (await cfg.get("orders", "pool.yaml")).version == 2
        sub.cancel()
        await config_store.rollback(CID, 1, expected_version=2, author="a")
        change = await asyncio.wait_for(anext(changes), PUSH_TIMEOUT_S)
        assert (change.new.content, change.new.version) == ("size: 1\n", 3)  # type: ignore[union-attr]
        assert len(seen) == 1
        await changes.aclose()


async def test_each_client_gets_its_gray(config_store: ConfigStore, client: Client) -> None:
    await config_store.publish(CID, "size: 1\n", format="yaml", expected_version=0, author="a")
    await config_store.gray(
        CID,
        "eu",
        "size: 2\n",
        format="yaml",
        expected_version=1,
        author="a",
        selector={"labels": {"zone": "eu-1"}},
    )
    async with (
        sdk(config_store, client, labels={"zone": "eu-1"}) as eu,
        sdk(config_store, client, labels={"zone": "us-1"}) as us,
    ):
        assert (await eu.get("orders", "pool.yaml")).gray_name == "eu"
        assert (await us.get("orders", "pool.yaml")).content == "size: 1\n"
        changes = eu.changes("orders", "pool.yaml")
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.05)
        await config_store.abort(CID, "eu", expected_version=2, author="a")
        change = await asyncio.wait_for(pending, PUSH_TIMEOUT_S)
        assert change.old.gray_name == "eu" and change.new.gray_name is None  # type: ignore[union-attr]
        assert change.new.content == "size: 1\n"  # type: ignore[union-attr]
        await changes.aclose()


async def test_encrypted_config_opens_in_the_sdk_only_with_the_key(
    config_store: ConfigStore, client: Client, masters: crypto.MasterKeys, tmp_path: Path
) -> None:
    await config_store.set_settings(CID, Settings(encrypted=True))
    await config_store.publish(CID, "size: 3\n", format="yaml", expected_version=0, author="a")
    async with sdk(config_store, client, masters=masters, snapshot_dir=tmp_path) as cfg:
        assert (await cfg.get("orders", "pool.yaml")).content == "size: 3\n"
        # A rotated data key reaches the SDK on the next change.
        await config_store.rotate_data_key("prod")
        changes = cfg.changes("orders", "pool.yaml")
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.05)
        await config_store.publish(CID, "size: 4\n", format="yaml", expected_version=1, author="a")
        change = await asyncio.wait_for(pending, PUSH_TIMEOUT_S)
        assert change.new.content == "size: 4\n"  # type: ignore[union-attr]
        await changes.aclose()
    # The snapshot on disk stays sealed.
    assert not any(b"size: 4" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


async def test_starts_from_the_snapshot_when_the_centre_is_unreachable(
    config_store: ConfigStore, client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await config_store.publish(CID, "size: 5\n", format="yaml", expected_version=0, author="a")
    async with sdk(config_store, client, snapshot_dir=tmp_path) as cfg:
        await cfg.get("orders", "pool.yaml")
    registry = CollectorRegistry()
    async with (
        Client([f"127.0.0.1:{free_port()}"], timeout_s=1.0) as down,
        sdk(
            config_store,
            down,
            snapshot_dir=tmp_path,
            fetch_timeout_ms=500,
            metrics=ConfigMetrics(registry),
        ) as cfg,
    ):
        with caplog.at_level(logging.WARNING, logger="syndic.config"):
            value = await cfg.get("orders", "pool.yaml")
        assert (value.content, value.version, value.source) == ("size: 5\n", 1, Source.SNAPSHOT)
        assert "starting from the snapshot of version 1" in caplog.text
        labels = {"namespace": "prod"}
        assert registry.get_sample_value("syndic_config_snapshot_starts_total", labels) == 1
        assert registry.get_sample_value("syndic_config_from_snapshot", labels) == 1
        with pytest.raises(CentreUnavailableError, match="no local snapshot"):
            await cfg.get("orders", "never-fetched.yaml")


async def test_failover_file_overrides_while_present(
    config_store: ConfigStore, client: Client, tmp_path: Path
) -> None:
    await config_store.publish(CID, "size: 6\n", format="yaml", expected_version=0, author="a")
    failover = tmp_path / "prod" / "orders" / "pool.yaml"
    async with sdk(config_store, client, failover_dir=tmp_path, failover_poll_ms=20) as cfg:
        assert (await cfg.get("orders", "pool.yaml")).source is Source.CENTRE
        changes = cfg.changes("orders", "pool.yaml")
        failover.parent.mkdir(parents=True)
        failover.write_text("size: 60\n")
        change = await asyncio.wait_for(anext(changes), PUSH_TIMEOUT_S)
        assert (change.new.content, change.new.source) == ("size: 60\n", Source.FAILOVER)  # type: ignore[union-attr]
        # A publish while the file is there does not override it...
        await config_store.publish(CID, "size: 7\n", format="yaml", expected_version=1, author="a")
        await asyncio.sleep(0.3)
        assert (await cfg.get("orders", "pool.yaml")).content == "size: 60\n"
        # ...and removing the file gives the centre's newest content back.
        failover.unlink()
        change = await asyncio.wait_for(anext(changes), PUSH_TIMEOUT_S)
        assert (change.new.content, change.new.source) == ("size: 7\n", Source.CENTRE)  # type: ignore[union-attr]
        await changes.aclose()


RULES_V1 = "name: inventory\nbreaker: {failure_ratio: 0.5, minimum_calls: 10}\n"
RULES_V2 = "name: inventory\nbreaker: {failure_ratio: 0.2, minimum_calls: 10}\n"


async def test_traffic_rules_hot_swap_and_gray_to_a_tenth_of_instances(
    config_store: ConfigStore, client: Client
) -> None:
    rules_id = ConfigId("prod", "orders", "inventory-client.yaml")
    await config_store.set_settings(rules_id, Settings(traffic_rules=True))
    await config_store.publish(rules_id, RULES_V1, format="yaml", expected_version=0, author="a")
    ids = [f"orders-{i}" for i in range(40)]
    clients = [sdk(config_store, client, client_id=i) for i in ids]
    policies = [Policy({}) for _ in ids]
    for cfg, policy in zip(clients, policies, strict=True):
        await bind_policy(cfg, policy, "orders", "inventory-client.yaml")
    assert all(p.rules.breaker.failure_ratio == 0.5 for p in policies)  # type: ignore[union-attr]

    await config_store.gray(
        rules_id,
        "tenth",
        RULES_V2,
        format="yaml",
        expected_version=1,
        author="a",
        selector={"percentage": 10},
    )
    tenth = parse_selector({"percentage": 10})
    expected = [matches(tenth, rules_id.path, ClientIdentity(i)) for i in ids]
    assert 0 < sum(expected) < len(ids) // 2

    async def ratios() -> list[bool]:
        return [p.rules.breaker.failure_ratio == 0.2 for p in policies]  # type: ignore[union-attr]

    for _ in range(int(PUSH_TIMEOUT_S / 0.05)):
        if await ratios() == expected:
            break
        await asyncio.sleep(0.05)
    assert await ratios() == expected

    await config_store.promote(rules_id, "tenth", expected_version=2, author="a")
    for _ in range(int(PUSH_TIMEOUT_S / 0.05)):
        if all(await ratios()):
            break
        await asyncio.sleep(0.05)
    assert all(await ratios())
    for cfg in clients:
        await cfg.close()


async def test_a_hand_written_bad_value_keeps_the_last_good_config(
    config_store: ConfigStore, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    first = await config_store.publish(
        CID, "size: 1\n", format="yaml", expected_version=0, author="a"
    )
    async with sdk(config_store, client, retry_ms_max=100) as cfg:
        await cfg.get("orders", "pool.yaml")
        changes = cfg.changes("orders", "pool.yaml")
        with caplog.at_level(logging.ERROR, logger="syndic.config"):
            await client.put(config_store.layout.release(CID), b"{not an entry")
            for _ in range(100):
                if "unreadable state" in caplog.text:
                    break
                await asyncio.sleep(0.05)
        assert "unreadable state" in caplog.text
        assert (await cfg.get("orders", "pool.yaml")).content == "size: 1\n"
        with pytest.raises(CorruptEntryError, match="release: not a config entry"):
            await config_store.publish(
                CID, "size: 2\n", format="yaml", expected_version=1, author="a"
            )
        # Repaired by hand, the client follows again.
        fixed = dataclasses.replace(first, content="size: 3\n", sha256=content_sha256("size: 3\n"))
        await client.put(config_store.layout.release(CID), fixed.encode())
        change = await asyncio.wait_for(anext(changes), PUSH_TIMEOUT_S)
        assert change.new.content == "size: 3\n"  # type: ignore[union-attr]
        await changes.aclose()


async def test_sdk_follows_a_master_key_rotation(
    config_store: ConfigStore, client: Client, masters: crypto.MasterKeys
) -> None:
    await config_store.set_settings(CID, Settings(encrypted=True))
    await config_store.publish(CID, "size: 9\n", format="yaml", expected_version=0, author="a")
    new = crypto.MasterKey.generate()
    async with sdk(config_store, client, masters=crypto.MasterKeys([new])) as cfg:
        # This client was given only the new key before the keyring was re-wrapped.
        with pytest.raises(DecryptionError, match="master key"):
            await cfg.get("orders", "pool.yaml")
        both = ConfigStore(
            client,
            prefix=config_store.layout.prefix,
            masters=crypto.MasterKeys([new, masters.primary]),
        )
        await both.rewrap_keyring("prod")
        assert (await cfg.get("orders", "pool.yaml")).content == "size: 9\n"
