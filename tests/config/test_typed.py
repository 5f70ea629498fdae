"""Typed loading into dataclasses: nested, optional, lists, maps; strict errors with paths."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from syndic.config.errors import InvalidInputError
from syndic.config.formats import parse_content
from syndic.config.model import Format
from syndic.config.typed import load_dataclass


@dataclass(frozen=True)
class Backoff:
    base_ms: int
    jitter: bool = True


@dataclass(frozen=True)
class Client:
    name: str
    timeout_s: float
    backoff: Backoff
    hosts: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    zone: str | None = None
    ports: tuple[int, ...] = ()


def test_nested_values_load_from_every_structured_format() -> None:
    yaml_text = (
        "name: inv\ntimeout_s: 2\nbackoff: {base_ms: 50}\nhosts: [a, b]\n"
        "weights: {a: 1, b: 0.5}\nports: [80, 443]\n"
    )
    toml_text = 'name = "inv"\ntimeout_s = 2.0\nhosts = ["a", "b"]\n[backoff]\nbase_ms = 50\n'
    loaded = load_dataclass(Client, parse_content(Format.YAML, yaml_text))
    assert loaded == Client(
        "inv", 2.0, Backoff(50), ["a", "b"], {"a": 1.0, "b": 0.5}, None, (80, 443)
    )
    assert isinstance(loaded.timeout_s, float)
    assert load_dataclass(Client, parse_content(Format.TOML, toml_text)).backoff == Backoff(50)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"name": "x", "timeout_s": 1, "backoff": {"base_ms": "50"}},
            "backoff.base_ms: expected int, got str",
        ),
        (
            {"name": "x", "timeout_s": 1, "backoff": {"base_ms": True}},
            "backoff.base_ms: expected int, got bool",
        ),
        (
            {"name": "x", "timeout_s": "1", "backoff": {"base_ms": 1}},
            "timeout_s: expected float, got str",
        ),
        ({"name": "x", "timeout_s": 1}, "backoff: is required"),
        ({"name": "x", "timeout_s": 1, "backoff": {"base_ms": 1}, "extra": 1}, "unknown fields"),
        (
            {"name": "x", "timeout_s": 1, "backoff": {"base_ms": 1}, "hosts": "a"},
            "hosts: expected list",
        ),
        (
            {"name": "x", "timeout_s": 1, "backoff": {"base_ms": 1}, "hosts": [1]},
            r"hosts\[0\]: expected str",
        ),
        ({"name": "x", "timeout_s": 1, "backoff": {"base_ms": 1}, "zone": 3}, "zone: expected"),
        ("a string", r"\$: expected mapping"),
    ],
)
def test_wrong_types_are_refused_with_the_path(doc: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_dataclass(Client, doc)


def test_only_dataclasses_are_targets() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        load_dataclass(dict, {})
