"""The command group: version, help, lazy commands, one-line errors, atomic output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sareval import __version__
from sareval.atomic import atomic_output
from sareval.cli import COMMANDS, cli
from sareval.errors import OutputExistsError


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "sareval " in result.output, f"{name} --help shows no example"


def test_python_dash_m_and_help_do_not_import_torch() -> None:
    code = (
        "import sys, runpy; sys.argv=['sareval','--help']; "
        "import sareval.cli as c\ntry: c.main()\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
    out = subprocess.run(
        [sys.executable, "-m", "sareval", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_atomic_output(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.json"
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert not out.exists() and list(out.parent.iterdir()) == []
    with atomic_output(out) as tmp:
        tmp.write_text("done")
    assert out.read_text() == "done"
    with pytest.raises(OutputExistsError), atomic_output(out):
        pass
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("again")
    assert out.read_text() == "again"
