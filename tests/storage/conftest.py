"""Fixtures for storage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage._util import FsyncCounter


@pytest.fixture
def fsync_counter() -> FsyncCounter:
    return FsyncCounter()


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "wal"
