"""``syndic config`` verbs end to end against a running store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syndic.cli.main import cli
from tests.stores import Store


@pytest.fixture
def run(store: Store, key_prefix: bytes):  # type: ignore[no-untyped-def]
    base = [
        "config",
        "--endpoints",
        ",".join(store.endpoints),
        "--prefix",
        "/" + key_prefix.decode(),
        "-n",
        "prod",
    ]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(cli, [*base, *args], input=input, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    return invoke


def test_publish_history_diff_rollback(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v1 = tmp_path / "pool.yaml"
    v1.write_text("size: 1\nname: pool\n")
    assert (
        "publish version 1"
        in run(
            "publish",
            "orders",
            "pool.yaml",
            str(v1),
            "--format",
            "yaml",
            "--author",
            "ana",
            "--comment",
            "first",
        ).output
    )
    assert (
        "publish version 2"
        in run(
            "publish", "orders", "pool.yaml", "--format", "yaml", input="size: 2\nname: pool\n"
        ).output
    )
    assert run("get", "orders", "pool.yaml").output == "size: 2\nname: pool\n"
    assert run("get", "orders", "pool.yaml", "--version", "1").output == "size: 1\nname: pool\n"
    diff = run("diff", "orders", "pool.yaml", "1").output
    assert "-size: 1\n+size: 2\n" in diff and "prod/orders/pool.yaml@2" in diff
    assert "rollback version 3" in run("rollback", "orders", "pool.yaml", "1").output
    history = run("history", "orders", "pool.yaml").output.splitlines()
    assert [line.split()[:2] for line in history[1:]] == [
        ["3", "rollback"],
        ["2", "publish"],
        ["1", "publish"],
    ]
    assert "ana" in history[3] and "first" in history[3]
    doc = json.loads(run("get", "orders", "pool.yaml", "--json").output)
    assert (doc["version"], doc["kind"], doc["source_version"]) == (3, "rollback", 1)


def test_stale_expected_version_and_bad_input_exit_nonzero(run) -> None:  # type: ignore[no-untyped-def]
    run("publish", "orders", "a.json", "--format", "json", input='{"a": 1}')
    out = run(
        "publish",
        "orders",
        "a.json",
        "--format",
        "json",
        "--expected-version",
        "0",
        input='{"a": 2}',
        ok=False,
    ).output
    assert "current version is 1" in out
    assert (
        "not valid json"
        in run("publish", "orders", "a.json", "--format", "json", input="{", ok=False).output
    )
    assert (
        "'xml' is not one of"
        in run("publish", "orders", "a.json", "--format", "xml", input="x", ok=False).output
    )
    assert (
        "not key=value"
        in run(
            "gray",
            "orders",
            "a.json",
            "g",
            "--format",
            "json",
            "--label",
            "zone",
            input="{}",
            ok=False,
        ).output
    )
    assert (
        "selector.labels"
        in run(
            "gray",
            "orders",
            "a.json",
            "g",
            "--format",
            "json",
            "--label",
            "zone=a b",
            input="{}",
            ok=False,
        ).output
    )
    assert [
        line.split()[0] for line in run("history", "orders", "a.json").output.splitlines()[1:]
    ] == ["1"]


def test_gray_promote_abort_and_settings(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["size"]}))
    settings = json.loads(run("settings", "orders", "b.yaml", "--schema", str(schema)).output)
    assert settings["schema"]["required"] == ["size"]
    out = run(
        "publish", "orders", "b.yaml", "--format", "yaml", input="other: 1\n", ok=False
    ).output
    assert "schema violation at $" in out
    run("publish", "orders", "b.yaml", "--format", "yaml", input="size: 1\n")
    run(
        "gray",
        "orders",
        "b.yaml",
        "eu",
        "--format",
        "yaml",
        "--label",
        "zone=eu-1",
        input="size: 2\n",
    )
    run(
        "gray",
        "orders",
        "b.yaml",
        "all",
        "--format",
        "yaml",
        "--percentage",
        "100",
        "--rank",
        "5",
        input="size: 3\n",
    )
    assert (
        run("get", "orders", "b.yaml", "--client-id", "x", "--label", "zone=eu-1").output
        == "size: 2\n"
    )
    assert run("get", "orders", "b.yaml", "--client-id", "x").output == "size: 3\n"
    assert run("get", "orders", "b.yaml").output == "size: 1\n"
    assert "abort version 4" in run("abort", "orders", "b.yaml", "all").output
    assert "promote version 5" in run("promote", "orders", "b.yaml", "eu").output
    assert run("get", "orders", "b.yaml", "--client-id", "x").output == "size: 2\n"
    assert "no live gray" in run("promote", "orders", "b.yaml", "eu", ok=False).output
