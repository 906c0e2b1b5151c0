"""Interrupted preprocess runs: SIGKILL at a random moment, Ctrl-C, damaged ``.partial`` rows.

Whatever happens, no file appears at the output path until the store is complete, and a re-run
finishes with arrays (and content digest) equal to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.store import Store

IMAGE_DATASETS = (
    "ids", "s1", "s2", "s2_cloudy", "s2_cloudy_available", "cloud_cover", "row_sha256",
    "labels/igbp10_single", "labels/igbp17_fractions", "geo/transform",
)  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("resume")
    generate_sen12ms(tmp / "gen", n_patches=96, size=96, seed=3)
    started = time.monotonic()
    ref = preprocess_sen12ms(
        tmp / "gen" / "sen12ms",
        tmp / "ref.h5",
        cr_root=tmp / "gen" / "sen12mscr",
        workers=1,
        chunk_rows=1,
        progress=False,
    )
    # interruptions land at a fraction of this (single-process) duration: mid-run on any machine
    duration = time.monotonic() - started
    return {"root": tmp / "gen" / "sen12ms", "cr": tmp / "gen" / "sen12mscr", "ref": ref,
            "duration": duration}  # type: ignore[dict-item]  # fmt: skip


def command(tree: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "sareval", "-q", "preprocess", "sen12ms", str(tree["root"]),
            "--cr-root", str(tree["cr"]), "--workers", "2", "--chunk-rows", "1",
            "--out", str(out)]  # fmt: skip


def assert_same_store(a: Path, b: Path) -> None:
    with Store(a) as sa, Store(b) as sb:
        assert sa.content_digest == sb.content_digest
        for name in IMAGE_DATASETS:
            np.testing.assert_array_equal(sa.file[name][()], sb.file[name][()])
        assert sa.subsets.keys() == sb.subsets.keys()
        for name, sub in sa.subsets.items():
            np.testing.assert_array_equal(sub.rows, sb.subsets[name].rows)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_moment_then_rerun(
    tree: dict[str, Path], tmp_path: Path, seed: int
) -> None:
    out = tmp_path / "out.h5"
    partial = tmp_path / "out.h5.partial"
    rng = np.random.default_rng(seed)
    proc = subprocess.Popen(command(tree, out), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.3)) * float(tree["duration"]))
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)  # the main process only, like `kill -9 PID`
        proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned workers of this test, if any
    assert killed, "the run finished before the kill: make the fixture tree larger"
    assert not out.exists(), "a killed run left a file at the output path"
    result = subprocess.run(command(tree, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.exists() and not partial.exists()
    assert_same_store(tree["ref"], out)


def test_damaged_partial_rows_are_rewritten(tree: dict[str, Path], tmp_path: Path) -> None:
    """Rows whose data no longer matches their digest (a chunk lost in a kill) are re-read."""
    out = tmp_path / "out.h5"
    s2 = sorted(tree["root"].glob("*/s2_*/*.tif"))[-1]  # the last row: in the last block
    good = s2.read_bytes()
    s2.write_bytes(good[:64])
    try:
        with pytest.raises(Exception, match="rows done are kept"):
            preprocess_sen12ms(tree["root"], out, cr_root=tree["cr"], workers=1, chunk_rows=1,
                               progress=False)  # fmt: skip
    finally:
        s2.write_bytes(good)
    partial = tmp_path / "out.h5.partial"
    with h5py.File(partial, "r+") as f:
        done = int(f.attrs["rows_written"])
        assert done >= 8
        f["s2"][3] = 0  # damage row 3
    preprocess_sen12ms(tree["root"], out, cr_root=tree["cr"], workers=1, chunk_rows=1,
                       progress=False)  # fmt: skip
    assert_same_store(tree["ref"], out)


def test_ctrl_c_keeps_only_the_partial(tree: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    partial = tmp_path / "out.h5.partial"
    proc = subprocess.Popen(command(tree, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # a twentieth of the single-process reference: mid-run even when the reference ran
        # slowly under load and this two-worker run does not (a full suite on 2 cores once
        # landed a tenth at the very end: the run had finished its last row)
        time.sleep(0.05 * float(tree["duration"]))
        assert proc.poll() is None, "the run finished before Ctrl-C: make the fixture larger"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    result = subprocess.run(command(tree, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert_same_store(tree["ref"], out)
