"""Every example on the traffic pages runs as written (loopback only, no sleeps to speak of)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "traffic"
# Pages whose examples another test module already runs.
RUN_ELSEWHERE = {"balancing.md", "outlier.md", "rate-limiting.md"}


def examples() -> list[tuple[str, int, str]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        if page.name in RUN_ELSEWHERE:
            continue
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
        found += [(page.name, i, code) for i, code in enumerate(blocks)]
    return found


@pytest.mark.parametrize(
    ("page", "index", "code"), examples(), ids=[f"{p}#{i}" for p, i, _ in examples()]
)
def test_documented_example_runs(page: str, index: int, code: str) -> None:
    exec(compile(code, f"{DOCS / page} (example {index})", "exec"), {"__name__": "__doc_example__"})
