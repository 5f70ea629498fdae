"""The example of two services that find and call each other by name runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.stores import Store

EXAMPLE = Path(__file__).parents[2] / "examples" / "registry_two_services.py"


def test_two_services_call_each_other_by_name(store: Store) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--endpoints", ",".join(store.endpoints)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("orders asked billing: hello from billing"), lines
    assert lines[1].startswith("billing asked orders: hello from orders"), lines
