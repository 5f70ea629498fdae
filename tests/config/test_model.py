"""The pure parts of the configuration centre: names, formats, gray matching,
encryption envelopes, validation, key layout; and their doctests."""

from __future__ import annotations

import doctest
import importlib
import random

import pytest

from syndic.config import crypto
from syndic.config.errors import DecryptionError, InvalidInputError, SchemaViolationError
from syndic.config.formats import decode_utf8, parse_content
from syndic.config.gray import BUCKETS, ClientIdentity, bucket, choose, matches, parse_selector
from syndic.config.keys import KeyLayout
from syndic.config.model import ConfigId, Entry, EntryKind, Format, Sealed, Settings
from syndic.config.validation import check_schema, validate_content
from syndic.config.view import state_of

CID = ConfigId("prod", "orders", "breaker.yaml")


@pytest.mark.parametrize(
    "module",
    ["model", "formats", "gray", "crypto", "validation"],
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"syndic.config.{module}"))
    assert result.failed == 0


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x y", "é", "a" * 129, "-lead"])
def test_names_that_cannot_be_key_segments_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="data_id"):
        ConfigId("ns", "g", bad)


def test_config_path_round_trips() -> None:
    assert ConfigId.parse(CID.path) == CID
    with pytest.raises(InvalidInputError):
        ConfigId.parse("only/two")


def test_unknown_format_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown format 'xml' \(known: yaml, json"):
        Format.parse("xml")


def test_entry_round_trips_through_json() -> None:
    plain = Entry(
        3,
        EntryKind.GRAY,
        Format.YAML,
        "ab",
        "ana",
        "why",
        5,
        content="a: 1",
        gray_name="canary",
        selector=parse_selector({"percentage": 10}),
        rank=2,
    )
    assert Entry.decode(plain.encode()) == plain
    sealed = Entry(
        4,
        EntryKind.ROLLBACK,
        Format.JSON,
        "cd",
        "bo",
        "",
        6,
        sealed=Sealed("k1", b"n" * 12, b"ct"),
        source_version=1,
    )
    assert Entry.decode(sealed.encode()) == sealed
    assert sealed.encrypted and not plain.encrypted


def test_entry_refuses_control_characters_and_long_comments() -> None:
    with pytest.raises(InvalidInputError, match="author"):
        Entry(1, EntryKind.PUBLISH, Format.TEXT, "x", "ana\x00", "", 0, content="")
    with pytest.raises(InvalidInputError, match="comment"):
        Entry(1, EntryKind.PUBLISH, Format.TEXT, "x", "ana", "c" * 5000, 0, content="")


# -- formats ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text", "value"),
    [
        (Format.JSON, '{"a": [1, 2.5]}', {"a": [1, 2.5]}),
        (Format.YAML, "a:\n  b: true\n", {"a": {"b": True}}),
        (Format.TOML, "[a]\nb = 2\n", {"a": {"b": 2}}),
        (
            Format.PROPERTIES,
            "a=1\n! note\nb : two words\nc\\=d=e\n",
            {"a": "1", "b": "two words", "c=d": "e"},
        ),
        (Format.PROPERTIES, "long = one \\\n    two\n", {"long": "one two"}),
        (Format.TEXT, "anything {", "anything {"),
    ],
)
def test_formats_parse(fmt: Format, text: str, value: object) -> None:
    assert parse_content(fmt, text) == value


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (Format.JSON, "{'a': 1}"),
        (Format.JSON, '{"a": NaN}'),
        (Format.YAML, "a: [1, 2"),
        (Format.YAML, "a: .nan"),
        (Format.YAML, "a: &x [1]\nb: *x\n"),
        (Format.YAML, "!!python/object:os.system {}"),
        (Format.TOML, "a = "),
        (Format.PROPERTIES, "a=\\u12"),
    ],
)
def test_malformed_content_is_refused_with_its_format(fmt: Format, text: str) -> None:
    with pytest.raises(InvalidInputError, match=f"not valid {fmt.value}"):
        parse_content(fmt, text)


def test_yaml_alias_bomb_is_refused_before_expanding() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 20)
    ]
    with pytest.raises(InvalidInputError, match="aliases"):
        parse_content(Format.YAML, "\n".join(lines))


def test_non_utf8_content_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="UTF-8"):
        decode_utf8(b"\xff\xfe")


# -- gray ------------------------------------------------------------------


def test_buckets_are_stable_and_spread() -> None:
    assert bucket("p/g/d", "pod-1") == bucket("p/g/d", "pod-1")
    ids = [f"pod-{i}" for i in range(20_000)]
    sel = parse_selector({"percentage": 10})
    share = sum(matches(sel, "p/g/d", ClientIdentity(i)) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    # Growing a release keeps everyone already in it.
    wider = parse_selector({"percentage": 30})
    for i in ids[:2000]:
        if matches(sel, "p/g/d", ClientIdentity(i)):
            assert matches(wider, "p/g/d", ClientIdentity(i))
    # Another config picks another 10%.
    other = {i for i in ids if matches(sel, "p/g/other", ClientIdentity(i))}
    mine = {i for i in ids if matches(sel, "p/g/d", ClientIdentity(i))}
    assert len(other & mine) < len(mine) / 3
    assert all(0 <= bucket("x", i) < BUCKETS for i in ids[:100])


def test_labels_must_all_match() -> None:
    sel = parse_selector({"labels": {"zone": "eu-1", "app.version": "2.1"}})
    assert matches(sel, "p", ClientIdentity("c", {"zone": "eu-1", "app.version": "2.1", "x": "y"}))
    assert not matches(sel, "p", ClientIdentity("c", {"zone": "eu-1"}))
    assert not matches(sel, "p", ClientIdentity("c", {"zone": "eu-2", "app.version": "2.1"}))


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"percentage": 0},
        {"percentage": 101},
        {"percentage": float("nan")},
        {"percentage": True},
        {"percentage": "10"},
        {"labels": {"": "x"}},
        {"labels": {"zone": "a b"}},
        {"labels": {"zone": 1}},
        {"labels": ["zone"]},
        {"labels": {f"k{i}": "v" for i in range(40)}},
        {"ip": "10.0.0.1"},
        "10%",
    ],
)
def test_malformed_selectors_are_refused(doc: object) -> None:
    with pytest.raises(InvalidInputError, match="selector"):
        parse_selector(doc)


def test_client_identity_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="client_id"):
        ClientIdentity("")
    with pytest.raises(InvalidInputError, match="labels"):
        ClientIdentity("c", {"bad key!": "v"})


def _gray(name: str, rank: int, selector: dict[str, object]) -> Entry:
    return Entry(
        2,
        EntryKind.GRAY,
        Format.TEXT,
        "h",
        "a",
        "",
        0,
        content=name,
        gray_name=name,
        selector=parse_selector(selector),
        rank=rank,
    )


def test_lowest_ranked_matching_gray_wins_else_the_release() -> None:
    release = Entry(1, EntryKind.PUBLISH, Format.TEXT, "h", "a", "", 0, content="release")
    grays = [_gray("wide", 5, {"percentage": 100}), _gray("eu", 1, {"labels": {"zone": "eu"}})]
    eu, us = ClientIdentity("c", {"zone": "eu"}), ClientIdentity("c", {"zone": "us"})
    assert choose(release, grays, "p", eu) == grays[1]
    assert choose(release, grays, "p", us) == grays[0]
    assert choose(release, grays[1:], "p", us) == release
    assert choose(release, grays, "p", None) == release


# -- crypto ----------------------------------------------------------------


def test_seal_open_and_data_key_rotation() -> None:
    masters = crypto.MasterKeys([crypto.MasterKey.generate()])
    ring = crypto.new_keyring("prod", masters, now_ms=1)
    old = crypto.seal(ring, masters, "prod/g/d", "secret=1")
    assert b"secret" not in old.ciphertext
    rotated = crypto.rotate_data_key(ring, masters, now_ms=2)
    new = crypto.seal(rotated, masters, "prod/g/d", "secret=2")
    assert new.key_id != old.key_id
    # Old versions still open after rotation: no downtime, no re-encryption needed.
    assert crypto.open_sealed(rotated, masters, "prod/g/d", old) == "secret=1"
    assert crypto.open_sealed(rotated, masters, "prod/g/d", new) == "secret=2"
    with pytest.raises(DecryptionError, match="not in the keyring"):
        crypto.open_sealed(ring, masters, "prod/g/d", new)


def test_ciphertext_is_bound_to_its_config_and_tamper_evident() -> None:
    masters = crypto.MasterKeys([crypto.MasterKey.generate()])
    ring = crypto.new_keyring("prod", masters, now_ms=1)
    sealed = crypto.seal(ring, masters, "prod/g/d", "secret")
    with pytest.raises(DecryptionError, match="another config"):
        crypto.open_sealed(ring, masters, "prod/g/other", sealed)
    flipped = Sealed(
        sealed.key_id, sealed.nonce, bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    )
    with pytest.raises(DecryptionError):
        crypto.open_sealed(ring, masters, "prod/g/d", flipped)
    with pytest.raises(DecryptionError, match="master key"):
        crypto.open_sealed(
            ring, crypto.MasterKeys([crypto.MasterKey.generate()]), "prod/g/d", sealed
        )


def test_master_key_rotation_rewraps_without_touching_contents() -> None:
    old, new = crypto.MasterKey.generate(), crypto.MasterKey.generate()
    ring = crypto.new_keyring("prod", crypto.MasterKeys([old]), now_ms=1)
    sealed = crypto.seal(ring, crypto.MasterKeys([old]), "prod/g/d", "v")
    # Readers hold both while the keyring is re-wrapped, then only the new one.
    both = crypto.MasterKeys([new, old])
    rewrapped = crypto.rewrap(ring, both)
    assert {k.master_key_id for k in rewrapped.keys} == {new.key_id}
    assert crypto.open_sealed(rewrapped, crypto.MasterKeys([new]), "prod/g/d", sealed) == "v"
    assert crypto.Keyring.decode(rewrapped.encode()) == rewrapped


def test_master_key_sources(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    key = crypto.MasterKey.generate()
    path = __import__("pathlib").Path(str(tmp_path)) / "master.key"
    path.write_text(key.to_text() + "\n")
    assert crypto.MasterKey.from_file(path) == key
    assert crypto.masters_from({"SYNDIC_CONFIG_MASTER_KEY_FILE": str(path)}).primary == key  # type: ignore[union-attr]
    assert crypto.masters_from({"SYNDIC_CONFIG_MASTER_KEY": key.to_text()}).primary == key  # type: ignore[union-attr]
    assert crypto.masters_from({}) is None
    assert key.to_text() not in repr(key)
    with pytest.raises(InvalidInputError, match="32 bytes"):
        crypto.MasterKey.from_text("c2hvcnQ=")
    with pytest.raises(InvalidInputError, match="base64"):
        crypto.MasterKey.from_text("not base64!")
    monkeypatch.delenv("SYNDIC_CONFIG_MASTER_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="not set"):
        crypto.MasterKey.from_env()


# -- validation ------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "pool": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 64}}}
    },
    "required": ["pool"],
}


def test_schema_violation_names_the_path() -> None:
    with pytest.raises(SchemaViolationError) as err:
        validate_content(Settings(schema=SCHEMA), Format.YAML, "pool: {size: 100}\n")
    assert err.value.path == "$.pool.size"
    assert validate_content(Settings(schema=SCHEMA), Format.JSON, '{"pool": {"size": 8}}') == {
        "pool": {"size": 8}
    }


def test_invalid_schemas_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="not a valid JSON Schema"):
        check_schema({"type": "no-such-type"})
    with pytest.raises(InvalidInputError, match="must be an object"):
        check_schema([1])


def test_oversized_content_is_refused_with_the_limit() -> None:
    with pytest.raises(InvalidInputError, match="over the limit of 10 bytes"):
        validate_content(Settings(), Format.TEXT, "x" * 11, content_bytes_max=10)


def test_traffic_rules_are_checked_by_the_traffic_parser() -> None:
    rules = Settings(traffic_rules=True)
    validate_content(rules, Format.YAML, "breaker: {failure_ratio: 0.5}\n")
    with pytest.raises(InvalidInputError, match=r"content\.breaker\.failure_ratio: must be in"):
        validate_content(rules, Format.YAML, "breaker: {failure_ratio: 1.5}\n")
    with pytest.raises(InvalidInputError, match="unknown"):
        validate_content(rules, Format.JSON, '{"breakr": {}}')
    with pytest.raises(InvalidInputError, match="yaml or json"):
        validate_content(rules, Format.TOML, "")


# -- keys and state --------------------------------------------------------


def test_key_layout_separates_configs_that_share_a_prefix() -> None:
    layout = KeyLayout("/t/")
    a, ab = ConfigId("n", "g", "a"), ConfigId("n", "g", "a.b")
    assert not layout.release(ab).startswith(layout.watch_prefix(a))
    assert layout.history(a, 2) < layout.history(a, 10)
    assert layout.config_of_head(layout.head(ab)) == ab
    assert layout.config_of_head(layout.release(ab)) is None
    assert not layout.head(a).startswith(layout.watch_prefix(a))
    with pytest.raises(ValueError, match="end with"):
        KeyLayout("/t")


def test_state_of_reads_release_and_ranked_grays() -> None:
    layout = KeyLayout()
    rng = random.Random(3)
    release = Entry(1, EntryKind.PUBLISH, Format.TEXT, "h", "a", "", 0, content="r")
    grays = [_gray(f"g{i}", rng.randrange(10), {"percentage": 5}) for i in range(4)]
    values = {layout.release(CID): release.encode()}
    values |= {layout.gray(CID, g.gray_name or ""): g.encode() for g in grays}
    state = state_of(layout, CID, values, 42, 5)
    assert (state.version, state.revision, state.release) == (5, 42, release)
    assert list(state.grays) == sorted(grays, key=lambda g: (g.rank, g.gray_name or ""))
