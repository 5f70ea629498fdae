"""The lock-with-fencing example runs as documented: the paused holder's write is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "lock_fencing.py"


def test_the_paused_holders_late_write_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("A: holds reports/daily with fencing token "), lines
    assert lines[1].startswith("B: holds reports/daily with fencing token "), lines
    a_token, b_token = (int(line.split("token ")[1].split()[0]) for line in lines[:2])
    assert b_token > a_token
    assert lines[2] == "B: wrote the report", lines
    assert lines[3].startswith("A: woke up and tried to write: refused"), lines
    assert lines[4] == "the file holds: 'report by B'", lines
