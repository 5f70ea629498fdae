"""Options for the Raft tests: ``--rewrite-golden`` regenerates interaction transcripts."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite-golden",
        action="store_true",
        default=False,
        help="rewrite tests/testdata/raft/*.txt with the transcripts the code produces now",
    )
