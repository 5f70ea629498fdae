"""The command's surface: every verb answers --help, version is truthful."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from syndic import __version__
from syndic.cli.main import cli


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(cli, ["version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"syndic {__version__} ")


def test_every_verb_has_help() -> None:
    runner = CliRunner()
    for name in cli.commands:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage:" in result.output


def test_unknown_verb_is_an_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-verb"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_python_dash_m_runs_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "syndic", "version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
