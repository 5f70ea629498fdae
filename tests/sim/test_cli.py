"""``syndic sim`` and ``syndic demo``: output format and exit codes."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from syndic.cli.demo import demo
from syndic.cli.main import cli
from syndic.cli.sim import parse_seeds, sim
from syndic.sim import PLANTED_BUGS


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(sim, list(args))
    return result.exit_code, result.output


def test_clean_sweep_prints_parameters_and_summary_and_exits_zero() -> None:
    code, out = run("--nodes", "3", "--seeds", "1-4", "--faults", "all", "--ticks", "80")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("sim: nodes=3 seeds=1-4 (4) faults=all ticks=80")
    assert lines[-1] == "seeds: 4, violations: 0"
    assert "FAIL" not in out


def test_failing_sweep_prints_replay_commands_and_exits_one() -> None:
    # Seed 1 is the first this planted bug fails on (a fixed schedule).
    code, out = run("--nodes", "5", "--seeds", "1-3", "--bug", "stale-leader-read")
    assert code == 1, out
    fails = re.findall(r"FAIL seed (\d+): (\S+)", out)
    assert fails, out
    replays = re.findall(r"replay: (syndic sim .*)", out)
    assert len(replays) == len(fails)
    assert "--bug stale-leader-read" in replays[0]
    assert "--scenario deposed-leader" in replays[0]
    assert out.strip().splitlines()[-1] == f"seeds: 3, violations: {len(fails)}"
    # The replay command reproduces the same violation.
    seed = fails[0][0]
    args = replays[0].split()[2:]
    code2, out2 = run(*args)
    assert code2 == 1
    assert f"seed {seed}: VIOLATION" in out2
    assert "VIOLATION linearizability" in out2  # the transcript line


def test_single_seed_trace_prints_the_transcript() -> None:
    code, out = run("--seed", "7", "--trace", "--ticks", "60")
    assert code == 0, out
    assert out.splitlines()[0].split()[1] == "START"
    assert "seed 7: ok" in out
    _, out_again = run("--seed", "7", "--trace", "--ticks", "60")
    assert out_again == out


def test_bug_list_names_every_bug() -> None:
    code, out = run("--bug", "list")
    assert code == 0
    for name in PLANTED_BUGS:
        assert re.search(rf"^{re.escape(name)}\s+\S", out, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "meteor"], "unknown fault kind"),
        (["--bug", "nope"], "unknown bug"),
        (["--seeds", "9-3"], "first <= last"),
        (["--seeds", "a-b"], "not a seed"),
        (["--seeds", "1-3", "--seed", "2"], "not both"),
        (["--nodes", "0"], "0"),
        (["--scenario", "nope"], "nope"),
    ],
)
def test_bad_arguments_exit_two(args: list[str], message: str) -> None:
    code, out = run(*args)
    assert code == 2
    assert message in out


def test_parse_seeds() -> None:
    assert parse_seeds("1-3,7,2") == [1, 2, 3, 7]
    with pytest.raises(click.BadParameter):
        parse_seeds(",")


def test_parallel_sweep_matches_serial() -> None:
    serial = run("--nodes", "3", "--seeds", "1-4", "--ticks", "60")
    parallel = run("--nodes", "3", "--seeds", "1-4", "--ticks", "60", "--jobs", "2")
    assert serial[0] == parallel[0] == 0
    assert serial[1].splitlines()[1:] == parallel[1].splitlines()[1:]


def test_demo_is_readable_and_passes() -> None:
    result = CliRunner().invoke(demo, ["--seed", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "LEADER" in out
    assert "result: all checks passed" in out
    assert "syndic sim --nodes 5 --seeds 1-200 --faults all" in out


def test_verbs_are_registered() -> None:
    assert "sim" in cli.commands
    assert "demo" in cli.commands
