"""Golden interaction tests: each tests/testdata/raft/*.txt script must replay exactly.

Run ``pytest tests/raft --rewrite-golden`` to regenerate the transcripts after an
intended behaviour change, then review the diff like any other code change.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from .interaction import parse_script, render_script, run_script

TESTDATA = Path(__file__).resolve().parents[1] / "testdata" / "raft"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_golden_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    expected, actual = run_script(path)
    if expected == actual:
        return
    if request.config.getoption("--rewrite-golden", default=False):
        path.write_text(actual)
        return
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"{path.name} (checked in)",
            tofile=f"{path.name} (now)",
        )
    )
    pytest.fail(f"transcript differs; rerun with --rewrite-golden if intended:\n{diff}")


def test_golden_scripts_exist() -> None:
    names = {p.stem for p in SCRIPTS}
    assert {"election", "replication", "partition", "snapshot", "membership"} <= names


def test_parse_and_render_round_trip() -> None:
    text = "# c\nadd-nodes 3\n----\nok\n\nstatus\n----\na\nb\n"
    assert render_script(parse_script(text)) == text


def test_parse_rejects_missing_separator() -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_script("add-nodes 3\nstatus\n")
