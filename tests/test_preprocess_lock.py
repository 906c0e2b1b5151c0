"""Two ``sareval preprocess`` runs on one output: the second is refused, naming the first's pid."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sareval.errors import SarevalError
from sareval.locks import lock_path, output_lock
from sareval.preprocess.synth_sen12ms import generate_sen12ms


def command(root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sareval", "-q", "preprocess", "sen12ms", str(root / "sen12ms"),
            "--cr-root", str(root / "sen12mscr"), "--workers", "1", "--chunk-rows", "1",
            "--out", str(out)]  # fmt: skip


def test_second_preprocess_on_the_same_output_is_refused(tmp_path: Path) -> None:
    generate_sen12ms(tmp_path / "gen", n_patches=48, size=96, seed=3)
    out = tmp_path / "s.h5"
    first = subprocess.Popen(
        command(tmp_path / "gen", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not lock_path(out).exists() and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = subprocess.run(
            command(tmp_path / "gen", out), capture_output=True, text=True, timeout=120
        )
        assert first.poll() is None, "the first run ended before the second started"
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(f"error: {out}: another sareval run (pid {first.pid})")
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert out.exists() and not lock_path(out).exists()
    rerun = subprocess.run(command(tmp_path / "gen", out), capture_output=True, text=True)
    assert rerun.returncode == 1 and "exists" in rerun.stderr  # the lock is gone; output kept


def test_output_lock_is_exclusive_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "s.h5"
    with output_lock(out) as path:
        assert path.read_text().strip() == str(os.getpid())
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not lock_path(out).exists()
    lock_path(out).write_text("12345\n")  # left by a killed run: taken over
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError
    assert not lock_path(out).exists()


def test_held_lock_names_its_owner(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from sareval.locks import output_lock\n"
         f"with output_lock({str(out)!r}):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SarevalError, match=f"pid {holder.pid}"), output_lock(out):
            pass
        assert lock_path(out).exists()  # the refused one does not remove the owner's file
    finally:
        holder.kill()
        holder.wait()


def test_forked_children_do_not_hold_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    ready_r, ready_w = os.pipe()
    with output_lock(out) as path:
        fd = os.open(path, os.O_RDWR)  # the same file, once the lock file is removed
        pid = os.fork()
        if pid == 0:  # the child: no lock descriptor to keep alive after the parent's release
            os.write(ready_w, b"x")  # the at-fork handlers have run once the child runs this
            time.sleep(5)
            os._exit(0)
        assert os.read(ready_r, 1) == b"x"  # wait for the child, or the test races its fork
    os.close(ready_r)
    os.close(ready_w)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free while the child lives
    finally:
        os.close(fd)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
