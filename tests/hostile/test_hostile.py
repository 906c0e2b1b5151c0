"""Hostile inputs to every command (issue 11): each case must fail cleanly.

For every case of :func:`make_hostile.cases`: exit status non-zero; the last stderr line is one
``error: ...`` line naming the right file or option; no traceback (the command ended by
``SystemExit``, not an escaped exception); nothing written, renamed or left half-written in the
case folder (no ``.partial`` / temporary files; every file's bytes as before, the sentinels in
the outputs included); and no hostile payload ran (no canary file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from make_hostile import CANARY, Case, Invocation, World, cases

from sareval.cli import cli
from sareval.evaluator.distributed import TORCHRUN_VARIABLES

CASES = cases()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (bytes paths: names need not be UTF-8) and its content."""
    out = {}
    for dirpath, _, files in os.walk(os.fsencode(folder)):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.fsdecode(path)] = Path(os.fsdecode(path)).read_bytes()
    return out


def prepare(inv: Invocation, case_id: str) -> None:
    """Write a sentinel into every guarded output (files and folders)."""
    for path in inv.outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"sentinel of {case_id}\n")
    for folder in inv.out_dirs:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sentinel.txt").write_text(f"sentinel of {case_id}\n")


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
)
def test_hostile_input_fails_cleanly(case: Case, world: World, tmp_path: Path) -> None:
    inv = case.build(tmp_path, world)
    prepare(inv, case.id)
    before = snapshot(tmp_path)
    env = {k: None for k in TORCHRUN_VARIABLES} | inv.env
    result = CliRunner().invoke(cli, inv.args, env=env)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    last = lines[-1]
    assert last.startswith("error: "), result.output
    assert inv.names in last, f"{inv.names!r} not named in: {last}"
    assert snapshot(tmp_path) == before, "files were written, changed or left behind"
    assert not (tmp_path / CANARY).exists(), "a hostile payload ran"


def test_enough_cases() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
