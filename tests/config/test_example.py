"""The worked example runs and shows what it claims: a gray release reaching
only its share of instances, a promote, a rollback, a start from snapshot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config_gray_breaker.py"


def test_gray_release_promote_rollback_and_snapshot_start() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=240, check=True
    ).stdout
    sections = {s.split("\n", 1)[0]: s for s in out.split("\n== ")[1:]}
    v1, v2, v3, v4 = (
        next(s for t, s in sections.items() if t.startswith(f"v{n}")) for n in range(1, 5)
    )
    assert "breakers open: 0 []" in v1
    # The gray reached some, not all, instances, and only their breakers opened.
    strict = v2.split("failure_ratio 0.2: ")[1].split("\n")[0]
    opened = v2.split("breakers open: ")[1].split("\n")[0]
    assert strict == opened and not strict.startswith(("0 ", "all"))
    assert "breakers open: all" in v3
    assert "breakers open: 0 []" in v4
    assert "v4  rollback" in v4 and "v1  publish" in v4
    assert "refused at publish time" in out
    assert "restarts from its snapshot (version 4, failure_ratio 0.5)" in out
