"""The registry's model: validation, encoding and the key layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.registry.durations import DurationError, format_duration_ms, parse_duration_ms
from syndic.registry.keys import KeyLayout
from syndic.registry.model import (
    NAME_LENGTH_MAX,
    CheckDefinition,
    CheckKind,
    CheckState,
    HealthStatus,
    Instance,
    ModelError,
    ServiceSettings,
    decode_check_state,
    decode_instance,
    encode_check_state,
    encode_instance,
    protect,
)


def web(i: str = "web-1", **kw: object) -> Instance:
    fields: dict[str, object] = {"address": "10.0.0.1", "port": 8080, **kw}
    return Instance("default", "web", i, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/b", "a\x00b", "a b", "a\nb", "x" * (NAME_LENGTH_MAX + 1), "a\\b"]
)
def test_hostile_names_are_refused(bad: str) -> None:
    with pytest.raises(ModelError):
        web(bad)
    with pytest.raises(ModelError):
        Instance("default", bad, "i")
    with pytest.raises(ModelError):
        KeyLayout().instance("default", "web", bad)


def test_limits() -> None:
    with pytest.raises(ModelError, match="Port"):
        web(port=70000)
    with pytest.raises(ModelError, match="Tags"):
        web(tags=tuple(str(i) for i in range(65)))
    with pytest.raises(ModelError, match="Meta"):
        web(meta={"bad key!": "v"})
    with pytest.raises(ModelError, match="Weights"):
        web(weight_passing=0)
    with pytest.raises(ModelError, match="TTL"):
        CheckDefinition("c", CheckKind.TTL)
    with pytest.raises(ModelError, match="HTTP"):
        CheckDefinition("c", CheckKind.HTTP, target="ftp://x", interval_ms=1000)
    with pytest.raises(ModelError, match="Interval"):
        CheckDefinition("c", CheckKind.TCP, target="h:1", interval_ms=10)
    with pytest.raises(ModelError, match="duplicate"):
        web(checks=(CheckDefinition("c", CheckKind.TTL, ttl_ms=1e3),) * 2)
    with pytest.raises(ModelError, match="ProtectThreshold"):
        ServiceSettings(1.5)


names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_.:"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))


@given(
    iid=names,
    tags=st.lists(st.text(max_size=10).filter(lambda t: "\x00" not in t), max_size=5),
    port=st.integers(0, 65535),
    ephemeral=st.booleans(),
    zone=st.sampled_from(["", "a", "b"]),
)
def test_instance_round_trip(
    iid: str, tags: list[str], port: int, ephemeral: bool, zone: str
) -> None:
    check = CheckDefinition(
        "c1", CheckKind.HTTP, target="http://x/h", interval_ms=2000, success_before_passing=2
    )
    inst = web(iid, port=port, tags=tuple(tags), ephemeral=ephemeral, zone=zone, checks=(check,))
    assert decode_instance(encode_instance(inst)) == inst
    layout = KeyLayout("p/")
    parsed = layout.parse(layout.instance("default", "web", iid))
    assert parsed is not None and (parsed.kind, parsed.instance_id) == ("inst", iid)
    parsed = layout.parse(layout.check("default", "web", iid, "c1"))
    assert parsed is not None and (parsed.kind, parsed.check_id) == ("check", "c1")


def test_corrupt_stored_values_are_refused() -> None:
    for data in (b"not json", b"[]", b'{"namespace": "default"}'):
        with pytest.raises(ModelError):
            decode_instance(data)
    with pytest.raises(ModelError):
        decode_check_state(b'{"status": "sick", "output": ""}')
    state = CheckState(HealthStatus.WARNING, "slow")
    assert decode_check_state(encode_check_state(state)) == state


def test_key_layout_is_stable() -> None:
    lay = KeyLayout()
    assert lay.instance("default", "web", "w1") == b"syndic/registry/svc/default/web/inst/w1"
    assert lay.check("default", "web", "w1", "c") == b"syndic/registry/svc/default/web/check/w1/c"
    assert lay.settings("ns", "web") == b"syndic/registry/svc/ns/web/settings"
    assert lay.parse(b"other/key") is None
    assert lay.parse(b"syndic/registry/svc/a/b/junk/x") is None
    with pytest.raises(ModelError):
        KeyLayout("no-trailing-slash")


def test_protect_threshold() -> None:
    a, b, c = web("a"), web("b"), web("c")
    assert protect([a], [a, b, c], 0.5) == [a, b, c]  # 1/3 healthy < 50%: all
    assert protect([a, b], [a, b, c], 0.5) == [a, b]
    assert protect([], [a], 0.0) == []


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("120000ms", 120_000),
        ("1.5h", 5_400_000),
        ("250us", 0.25),
        (".5s", 500),
    ],
)
def test_durations(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["", "10", "-1s", "1x", "s", "1s2", "1" * 100 + "s", "1 s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_ms(bad)


def test_format_duration() -> None:
    assert [format_duration_ms(x) for x in (0, 250, 10_000, 90_000, 3_600_000)] == [
        "0s",
        "250ms",
        "10s",
        "1m30s",
        "1h0m0s",
    ]
