"""The store layer on syndic and on etcd: versions, compare-and-set, history,
rollback, gray release, encryption at rest, validation; bad input stores nothing."""

from __future__ import annotations

import asyncio

import pytest

from syndic.client import Client
from syndic.config import crypto
from syndic.config.errors import (
    ConfigNotFoundError,
    ConflictError,
    DecryptionError,
    InvalidInputError,
    SchemaViolationError,
)
from syndic.config.gray import ClientIdentity, choose
from syndic.config.model import ConfigId, EntryKind, Format, Settings
from syndic.config.store import ConfigStore, StoreLimits

CID = ConfigId("prod", "orders", "pool.yaml")


async def raw_keys(client: Client, store: ConfigStore) -> dict[bytes, bytes]:
    r = await client.get(store.layout.prefix, prefix=True)
    return {kv.key: kv.value for kv in r.kvs}


async def test_publish_then_get_history_in_order(config_store: ConfigStore) -> None:
    e1 = await config_store.publish(
        CID, "size: 1\n", format="yaml", expected_version=0, author="ana", comment="first"
    )
    e2 = await config_store.publish(
        CID, "size: 2\n", format=Format.YAML, expected_version=1, author="bo"
    )
    assert (e1.version, e2.version) == (1, 2)
    state = await config_store.state(CID)
    assert state.version == 2 and state.release == e2
    assert e2.sha256 != e1.sha256 and e2.author == "bo" and e2.time_ms >= e1.time_ms
    assert [e.version for e in await config_store.history(CID)] == [2, 1]
    assert await config_store.entry(CID, 1) == e1
    assert await config_store.list_configs("prod") == [CID]


async def test_publish_on_a_stale_version_names_the_current_one(config_store: ConfigStore) -> None:
    await config_store.publish(CID, "a: 1", format="yaml", expected_version=0, author="ana")
    await config_store.publish(CID, "a: 2", format="yaml", expected_version=1, author="ana")
    with pytest.raises(ConflictError, match="current version is 2") as err:
        await config_store.publish(CID, "a: 3", format="yaml", expected_version=1, author="bo")
    assert err.value.current_version == 2
    assert (await config_store.state(CID)).release.content == "a: 2"  # type: ignore[union-attr]


async def test_two_publishers_one_wins(
    client: Client, store: object, key_prefix: bytes, masters: crypto.MasterKeys
) -> None:
    endpoints = store.endpoints  # type: ignore[attr-defined]
    prefix = "/" + key_prefix.decode()
    async with Client(endpoints) as other_client:
        a = ConfigStore(client, prefix=prefix)
        b = ConfigStore(other_client, prefix=prefix)
        await a.publish(CID, "v: 0", format="yaml", expected_version=0, author="seed")
        for round_ in range(5):
            results = await asyncio.gather(
                a.publish(
                    CID, f"v: a{round_}", format="yaml", expected_version=round_ + 1, author="a"
                ),
                b.publish(
                    CID, f"v: b{round_}", format="yaml", expected_version=round_ + 1, author="b"
                ),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, ConflictError)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].current_version == round_ + 2
            state = await a.state(CID)
            assert state.release == won[0]
        assert len(await a.history(CID)) == 6


async def test_rollback_of_the_first_version_publishes_it_again(config_store: ConfigStore) -> None:
    await config_store.publish(CID, "a: 1", format="yaml", expected_version=0, author="ana")
    await config_store.publish(CID, "a: 2", format="yaml", expected_version=1, author="ana")
    back = await config_store.rollback(CID, 1, expected_version=2, author="bo")
    assert (back.version, back.kind, back.source_version, back.content) == (
        3,
        EntryKind.ROLLBACK,
        1,
        "a: 1",
    )
    assert (await config_store.state(CID)).release == back
    # Nothing was deleted: every version is still there.
    assert [e.version for e in await config_store.history(CID)] == [3, 2, 1]
    with pytest.raises(ConflictError):
        await config_store.rollback(CID, 2, expected_version=2, author="bo")
    with pytest.raises(ConfigNotFoundError, match="no version 9"):
        await config_store.rollback(CID, 9, expected_version=3, author="bo")


async def test_history_is_bounded_per_config(client: Client, key_prefix: bytes) -> None:
    store = ConfigStore(
        client, prefix="/" + key_prefix.decode(), limits=StoreLimits(history_versions_max=3)
    )
    for v in range(5):
        await store.publish(CID, f"n: {v}", format="yaml", expected_version=v, author="a")
    assert [e.version for e in await store.history(CID)] == [5, 4, 3]
    with pytest.raises(ConfigNotFoundError):
        await store.entry(CID, 2)
    # A per-config setting overrides the store's default, and lowering it trims at once.
    await store.set_settings(CID, Settings(history_versions_max=1))
    await store.publish(CID, "n: 5", format="yaml", expected_version=5, author="a")
    assert [e.version for e in await store.history(CID)] == [6]


async def test_history_survives_store_compaction(client: Client, config_store: ConfigStore) -> None:
    for v in range(3):
        await config_store.publish(CID, f"n: {v}", format="yaml", expected_version=v, author="a")
    revision = (await client.get(b"any")).revision
    await client.compact(revision, physical=True)
    assert [e.content for e in await config_store.history(CID)] == ["n: 2", "n: 1", "n: 0"]


async def test_gray_by_labels_and_percentage_then_promote_and_abort(
    config_store: ConfigStore,
) -> None:
    await config_store.publish(CID, "ratio: 0.5", format="yaml", expected_version=0, author="a")
    g1 = await config_store.gray(
        CID,
        "eu",
        "ratio: 0.3",
        format="yaml",
        expected_version=1,
        author="a",
        selector={"labels": {"zone": "eu-1"}},
        rank=0,
    )
    await config_store.gray(
        CID,
        "tenth",
        "ratio: 0.2",
        format="yaml",
        expected_version=2,
        author="a",
        selector={"percentage": 10},
        rank=1,
    )
    state = await config_store.state(CID)
    assert [g.gray_name for g in state.grays] == ["eu", "tenth"]
    assert state.release is not None and state.release.content == "ratio: 0.5"
    eu = choose(state.release, state.grays, CID.path, ClientIdentity("x", {"zone": "eu-1"}))
    assert eu == g1
    picked = [
        choose(state.release, state.grays, CID.path, ClientIdentity(f"pod-{i}")).content  # type: ignore[union-attr]
        for i in range(1000)
    ]
    assert 50 < picked.count("ratio: 0.2") < 150
    assert picked.count("ratio: 0.2") + picked.count("ratio: 0.5") == 1000

    aborted = await config_store.abort(CID, "tenth", expected_version=3, author="a")
    promoted = await config_store.promote(CID, "eu", expected_version=4, author="a")
    state = await config_store.state(CID)
    assert state.grays == () and state.release is not None
    assert (state.release.content, state.release.source_version) == ("ratio: 0.3", 2)
    kinds = [(e.version, e.kind) for e in await config_store.history(CID)]
    assert kinds == [
        (5, EntryKind.PROMOTE),
        (4, EntryKind.ABORT),
        (3, EntryKind.GRAY),
        (2, EntryKind.GRAY),
        (1, EntryKind.PUBLISH),
    ]
    assert aborted.source_version == 3 and promoted.gray_name == "eu"
    with pytest.raises(ConfigNotFoundError, match="no live gray"):
        await config_store.abort(CID, "eu", expected_version=5, author="a")


async def test_gray_needs_a_release_and_respects_the_limit(
    client: Client, key_prefix: bytes
) -> None:
    store = ConfigStore(client, prefix="/" + key_prefix.decode(), limits=StoreLimits(grays_max=1))
    with pytest.raises(ConfigNotFoundError, match="release before a gray"):
        await store.gray(
            CID,
            "g",
            "a: 1",
            format="yaml",
            expected_version=0,
            author="a",
            selector={"percentage": 5},
        )
    await store.publish(CID, "a: 0", format="yaml", expected_version=0, author="a")
    await store.gray(
        CID, "g", "a: 1", format="yaml", expected_version=1, author="a", selector={"percentage": 5}
    )
    with pytest.raises(InvalidInputError, match="limit 1"):
        await store.gray(
            CID,
            "h",
            "a: 2",
            format="yaml",
            expected_version=2,
            author="a",
            selector={"percentage": 5},
        )


async def test_encrypted_at_rest_and_opened_with_the_master_key(
    client: Client, config_store: ConfigStore, masters: crypto.MasterKeys
) -> None:
    await config_store.set_settings(CID, Settings(encrypted=True))
    e1 = await config_store.publish(
        CID, "password: s3cret-1\n", format="yaml", expected_version=0, author="a"
    )
    raw = await raw_keys(client, config_store)
    assert not any(b"s3cret" in value for value in raw.values())
    assert e1.sealed is not None and e1.content is None
    assert await config_store.reveal(CID, e1) == "password: s3cret-1\n"

    # Rotation: a new data key seals new versions, old versions still open.
    ring = await config_store.rotate_data_key("prod")
    e2 = await config_store.publish(
        CID, "password: s3cret-2\n", format="yaml", expected_version=1, author="a"
    )
    assert e2.sealed is not None and e2.sealed.key_id == ring.active != e1.sealed.key_id
    assert await config_store.reveal(CID, e1) == "password: s3cret-1\n"
    back = await config_store.rollback(CID, 1, expected_version=2, author="a")
    assert await config_store.reveal(CID, back) == "password: s3cret-1\n"

    # Master key rotation: re-wrap under a new key, readers with only the new key open all.
    new_master = crypto.MasterKey.generate()
    both = ConfigStore(
        client,
        prefix=config_store.layout.prefix,
        masters=crypto.MasterKeys([new_master, masters.primary]),
    )
    await both.rewrap_keyring("prod")
    only_new = ConfigStore(
        client, prefix=config_store.layout.prefix, masters=crypto.MasterKeys([new_master])
    )
    assert await only_new.reveal(CID, e2) == "password: s3cret-2\n"
    with pytest.raises(DecryptionError):
        await ConfigStore(client, prefix=config_store.layout.prefix).reveal(CID, e2)


async def test_schema_violation_is_refused_with_its_path_and_stores_nothing(
    client: Client,
    config_store: ConfigStore,
) -> None:
    schema = {
        "type": "object",
        "properties": {"size": {"type": "integer", "minimum": 1}},
        "required": ["size"],
    }
    await config_store.set_settings(CID, Settings(schema=schema))
    await config_store.publish(CID, "size: 4", format="yaml", expected_version=0, author="a")
    before = await raw_keys(client, config_store)
    with pytest.raises(SchemaViolationError) as err:
        await config_store.publish(CID, "size: 0", format="yaml", expected_version=1, author="a")
    assert err.value.path == "$.size"
    assert await raw_keys(client, config_store) == before
    with pytest.raises(InvalidInputError, match="not a valid JSON Schema"):
        await config_store.set_settings(CID, Settings(schema={"type": 7}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "xml"}, "unknown format 'xml'"),
        ({"content": "x" * (100 * 1024 + 1), "format": "text"}, "over the limit of 102400 bytes"),
        ({"content": "a: [1", "format": "yaml"}, "not valid yaml"),
        ({"author": "a\x00b"}, "author"),
        ({"expected_version": -1}, "expected_version"),
        ({"expected_version": True}, "expected_version"),
    ],
)
async def test_bad_publish_is_refused_and_stores_nothing(
    client: Client, config_store: ConfigStore, kwargs: dict[str, object], message: str
) -> None:
    await config_store.publish(CID, "a: 1", format="yaml", expected_version=0, author="a")
    before = await raw_keys(client, config_store)
    args: dict[str, object] = {
        "content": "a: 2",
        "format": "yaml",
        "expected_version": 1,
        "author": "a",
    } | kwargs
    content = args.pop("content")
    with pytest.raises(InvalidInputError, match=message):
        await config_store.publish(CID, content, **args)  # type: ignore[arg-type]
    assert await raw_keys(client, config_store) == before


@pytest.mark.parametrize(
    "selector",
    [
        {"labels": {"zone": "eu 1"}},
        {"labels": {"bad key": "x"}},
        {},
        {"percentage": 0},
        {"ip": "10.0.0.7"},
    ],
)
async def test_malformed_gray_selectors_store_nothing(
    client: Client, config_store: ConfigStore, selector: dict[str, object]
) -> None:
    await config_store.publish(CID, "a: 1", format="yaml", expected_version=0, author="a")
    before = await raw_keys(client, config_store)
    with pytest.raises(InvalidInputError, match="selector"):
        await config_store.gray(
            CID, "g", "a: 2", format="yaml", expected_version=1, author="a", selector=selector
        )
    assert await raw_keys(client, config_store) == before


async def test_invalid_traffic_rules_never_reach_the_store(
    client: Client, config_store: ConfigStore
) -> None:
    await config_store.set_settings(CID, Settings(traffic_rules=True))
    await config_store.publish(
        CID, "breaker: {failure_ratio: 0.5}\n", format="yaml", expected_version=0, author="a"
    )
    before = await raw_keys(client, config_store)
    for bad in ("breaker: {failure_ratio: 2}\n", "retry: {max_attempts: '3'}\n", "nope: {}\n"):
        with pytest.raises(InvalidInputError, match="content"):
            await config_store.gray(
                CID,
                "tenth",
                bad,
                format="yaml",
                expected_version=1,
                author="a",
                selector={"percentage": 10},
            )
    assert await raw_keys(client, config_store) == before
