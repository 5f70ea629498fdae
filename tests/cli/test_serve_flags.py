"""``syndic serve``'s own flags (the overload bounds): listed with what they
mean, read into the member's settings, and refused at start-up when bad."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syndic.cli.main import cli
from syndic.cli.serve import build_config


def test_help_says_what_syndic_s_own_flags_mean() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help wraps at the terminal's width
    assert "--max-pending-proposals VALUE writes waiting on this member" in text
    assert "refused with 'too many requests' (default 10000)" in text
    assert "--max-pending-proposal-bytes VALUE bytes of writes" in text
    assert "(default 268435456)" in text
    assert "--max-pending-reads VALUE linearizable reads waiting for their ReadIndex" in text
    assert "--max-apply-gap-entries VALUE committed entries not yet applied" in text
    # etcd's own flags still say so.
    assert "--max-request-bytes VALUE as etcd's --max-request-bytes" in text


def test_flags_reach_the_member_settings() -> None:
    config = build_config(
        None,
        {
            "max_pending_proposals": "64",
            "max_pending_proposal_bytes": "8388608",
            "max_apply_gap_entries": "100",
            "max_pending_reads": "32",
        },
    )
    assert config.max_pending_proposals == 64
    assert config.max_pending_proposal_bytes == 8 * 1024 * 1024
    assert config.max_apply_gap_entries == 100
    assert config.max_pending_reads == 32


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--max-pending-proposals=0", "--max-pending-proposals must be a positive integer, got 0"),
        ("--max-pending-reads=-5", "--max-pending-reads must be a positive integer, got -5"),
        ("--max-apply-gap-entries=lots", "max-apply-gap-entries must be an integer, got 'lots'"),
        ("--max-pending-proposal-bytes=1024", "must be at least --max-request-bytes"),
    ],
)
def test_bad_bounds_stop_serve_before_anything_starts(
    tmp_path: Path, flag: str, message: str
) -> None:
    data_dir = tmp_path / "never"
    result = CliRunner().invoke(cli, ["serve", f"--data-dir={data_dir}", flag])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not data_dir.exists()
