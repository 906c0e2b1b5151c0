"""Hostile inputs to every command (issue 11): each case must fail cleanly.

For every case of :func:`make_hostile.cases`: exit status non-zero; the last stderr line is one
``error: ...`` line naming the right file or option, preceded by nothing but sareval's own
``sareval:`` / ``warning:`` lines (no foreign warnings); no traceback (the command ended by
``SystemExit``, not an escaped exception); nothing written, renamed or left half-written in the
case folder (no ``.partial`` / temporary files; every file's bytes as before, the sentinels in
the outputs included; every symlink, device node, FIFO and socket still what it was, never
turned into a regular file); nothing outside the case folder changed (the session's valid
material, /dev/null, /dev/full); and no hostile payload ran (no canary file).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from make_hostile import CANARY, Case, Invocation, World, cases

from sareval.cli import cli
from sareval.evaluator.distributed import TORCHRUN_VARIABLES

CASES = cases()


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder`` (bytes paths: names need not be UTF-8): a regular file's
    content, a symlink's target, a special file's type and device numbers (never opened: a
    FIFO would block, a /dev/full twin reads forever)."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(os.fsencode(folder)):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                out[os.fsdecode(path)] = Path(os.fsdecode(path)).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                out[os.fsdecode(path)] = ("link", os.readlink(path))
            else:
                out[os.fsdecode(path)] = ("special", stat.S_IFMT(st.st_mode), st.st_rdev)
    return out


def stat_snapshot(folders: list[Path]) -> dict[str, tuple[int, int, int, int]]:
    """(type and mode, inode, size, mtime) of every entry under ``folders`` and of the real
    /dev/null and /dev/full: cheap enough to take around every case, and any write, rename,
    replacement or deletion changes it."""
    out = {}
    for folder in folders:
        for dirpath, dirs, files in os.walk(os.fsencode(folder)):
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                out[os.fsdecode(path)] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)
    for device in ("/dev/null", "/dev/full"):
        if os.path.lexists(device):
            st = os.lstat(device)
            out[device] = (st.st_mode, st.st_ino, 0, 0)
    return out


def outside_folders(world: World) -> list[Path]:
    """What a case may read but must never change: the session's valid material."""
    return sorted({world.root, world.store.parent, world.model.parent})


def prepare(inv: Invocation, case_id: str) -> None:
    """Write a sentinel into every guarded output (files and folders)."""
    for path in inv.outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"sentinel of {case_id}\n")
    for folder in inv.out_dirs:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sentinel.txt").write_text(f"sentinel of {case_id}\n")


def marks(case: Case) -> list[pytest.MarkDecorator]:
    out = [pytest.mark.slow] if case.slow else []
    if case.root:
        out.append(pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root"))
    return out


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=marks(c)) for c in CASES])
def test_hostile_input_fails_cleanly(case: Case, world: World, tmp_path: Path) -> None:
    outside = stat_snapshot(outside_folders(world))
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
    # before it only sareval's own progress and warnings (no foreign warnings, issue 19)
    assert all(line.startswith(("sareval: ", "warning: ")) for line in lines[:-1]), result.output
    assert inv.names in last, f"{inv.names!r} not named in: {last}"
    assert snapshot(tmp_path) == before, "files were written, changed or left behind"
    assert stat_snapshot(outside_folders(world)) == outside, "a file outside the case changed"
    assert not (tmp_path / CANARY).exists(), "a hostile payload ran"


def test_enough_cases() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
