"""Verbs are imported only when run: ``syndic --help`` lists every verb from
the table in ``syndic.cli.main`` without importing one, the table cannot
drift from the verbs' own help, and ``syndic serve`` does not load the
simulator, the agent or the configuration centre."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest

from syndic.cli.lazy import LazyCommands, LazyGroup, Verb, VerbLoadError, load_verb
from syndic.cli.main import VERBS, cli, version
from tests.server.cluster_util import free_port
from tests.server.processes import member_process

# Runs the real entry point and writes the names in sys.modules, at exit, to
# the file named by its first argument; the rest is the command line.
_RUN_AND_LIST_MODULES = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "syndic"
from syndic.cli.main import main
main()
"""
COMMAND_TIMEOUT_S = 60
MEMBER_READY_TIMEOUT_S = 60

# What no verb but its own may import: the other verbs' modules and the
# subsystems only they use.
OTHER_VERB_MODULES = {
    verb.module for name, verb in VERBS.items() if verb.module != "syndic.cli.serve"
}
NOT_FOR_SERVE = ("syndic.sim", "syndic.check", "syndic.agent")
NOT_FOR_SERVE_HELP = (
    *NOT_FOR_SERVE,
    "syndic.console",
    "syndic.config",
    "syndic.registry",
    "syndic.client",
    "syndic.server.app",
    "aiohttp",
    "grpc",
)


def _under(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def _run_listing_modules(tmp_path: Path, *args: str) -> tuple[str, list[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, str(out), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(out.read_text())
    return done.stdout, modules


def _group() -> LazyGroup:
    group = LazyGroup("syndic", verbs=VERBS, help=cli.help)
    group.add_command(version)
    return group


def _help(group: click.Group, width: int) -> str:
    return group.get_help(click.Context(group, info_name="syndic", terminal_width=width))


@pytest.mark.parametrize("name", sorted(VERBS))
def test_table_summary_is_the_verbs_own_short_help(name: str) -> None:
    command = load_verb(name, VERBS[name])
    assert command.get_short_help_str(limit=10_000) == VERBS[name].summary
    assert not command.hidden
    assert not command.deprecated


@pytest.mark.parametrize("width", [40, 80, 120])
def test_listing_is_what_click_prints_with_every_verb_loaded(width: int) -> None:
    lazy, loaded = _group(), _group()
    for name in loaded.list_commands(click.Context(loaded)):
        loaded.commands[name]
    assert _help(lazy, width) == _help(loaded, width)
    assert "Commands:" in _help(lazy, width)


def test_group_help_lists_every_verb_and_imports_none(tmp_path: Path) -> None:
    output, modules = _run_listing_modules(tmp_path, "--help")
    listed = [line.split()[0] for line in output.split("Commands:\n", 1)[1].splitlines()]
    assert listed == sorted([*VERBS, "version"])
    assert _under(modules, tuple({verb.module for verb in VERBS.values()})) == []


def test_serve_help_loads_only_the_member_settings(tmp_path: Path) -> None:
    output, modules = _run_listing_modules(tmp_path, "serve", "--help")
    assert "--initial-cluster" in output
    assert "syndic.cli.serve" in modules  # the control: the verb itself was loaded
    assert _under(modules, (*NOT_FOR_SERVE_HELP, *OTHER_VERB_MODULES)) == []


def test_a_running_member_loads_no_other_verb(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    peer_port = free_port()
    member = member_process(
        "syndic", tmp_path, "m1", peer_port, f"m1=http://127.0.0.1:{peer_port}", "new"
    )
    # [python, -m, syndic, serve, flags...] -> the same run, listing its modules.
    assert member.argv[:4] == [sys.executable, "-m", "syndic", "serve"]
    member.argv = [sys.executable, "-c", _RUN_AND_LIST_MODULES, str(out), *member.argv[3:]]
    member.start()
    try:
        _wait_health(member.admin_port, member.log_path)
        member.signal(signal.SIGTERM)
        assert member.process is not None
        member.process.wait(COMMAND_TIMEOUT_S)
    finally:
        member.kill()
    modules: list[str] = json.loads(out.read_text())
    assert "syndic.server.app" in modules  # the control: a member did run
    assert _under(modules, (*NOT_FOR_SERVE, *OTHER_VERB_MODULES)) == []


def _wait_health(admin_port: int, log_path: Path) -> None:
    deadline = time.monotonic() + MEMBER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{admin_port}/health"
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(
        f"member not healthy in {MEMBER_READY_TIMEOUT_S}s:\n{log_path.read_text()}"
    )


def test_membership_and_listing_import_nothing() -> None:
    commands = LazyCommands({"ghost": Verb("syndic.cli.no_such_module", "ghost", "Haunt.")})
    assert "ghost" in commands
    assert list(commands) == ["ghost"]
    assert len(commands) == 1
    assert commands.listing("ghost").get_short_help_str() == "Haunt."
    # A lookup does import, and a broken entry says so instead of "no such command".
    with pytest.raises(ModuleNotFoundError):
        commands.get("ghost")


def test_unknown_verb_is_missing() -> None:
    commands = LazyCommands(VERBS)
    assert "nope" not in commands
    assert commands.get("nope") is None
    with pytest.raises(KeyError):
        del commands["nope"]


def test_entry_that_is_not_a_command_is_refused() -> None:
    with pytest.raises(VerbLoadError, match="not a click command"):
        load_verb("verbs", Verb("syndic.cli.main", "VERBS", "Not a verb."))


def test_entry_naming_another_verb_is_refused() -> None:
    with pytest.raises(VerbLoadError, match="named 'dev', listed as 'serve'"):
        load_verb("serve", Verb("syndic.cli.serve", "dev", "Run one member."))


@pytest.mark.parametrize(
    ("module", "attribute", "summary"),
    [
        ("os", "system", "Not syndic's."),
        ("syndic.cli.serve", "not an identifier", "Bad name."),
        ("syndic.cli.serve", "serve", ""),
        ("syndic.cli.serve", "serve", "Two\nlines."),
    ],
)
def test_malformed_table_entries_are_refused(module: str, attribute: str, summary: str) -> None:
    with pytest.raises(ValueError):
        Verb(module, attribute, summary)


def test_added_command_replaces_the_table_entry() -> None:
    commands = LazyCommands(VERBS)
    replacement = click.Command("serve", help="Something else.")
    commands["serve"] = replacement
    assert commands["serve"] is replacement
    assert commands.listing("serve") is replacement
    assert sorted(commands) == sorted(VERBS)
    del commands["serve"]
    assert "serve" not in commands
    assert len(commands) == len(VERBS) - 1
