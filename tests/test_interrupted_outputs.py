"""Interrupted ``shape`` (with --save-predictions) and ``merge``: the outputs of one run appear
together or not at all, temporaries are removed (SIGINT, SIGTERM) or cleaned by the rerun
(SIGKILL), and the rerun equals an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shape_testing import get_assets, write_store

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    assets = get_assets(tmp_path_factory)
    store = write_store(tmp_path_factory.mktemp("big") / "big.h5", n=1000)
    return {"model": assets.onnx["multi-label"], "store": store}


def shape_cmd(setup: dict[str, object], out: Path) -> list[str]:
    return [sys.executable, "-m", "sareval", "-q", "shape", "-m", str(setup["model"]),
            "-d", str(setup["store"]), "-s", "clear", "--batch-size", "2", "--replicates", "50",
            "-o", str(out / "r.json"), "--save-predictions", str(out / "p.h5")]  # fmt: skip


def outputs(out: Path) -> dict[str, bool]:
    return {name: (out / name).exists() for name in ("r.json", "r.csv", "p.h5")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_interrupted_shape_leaves_all_outputs_or_none(setup, tmp_path: Path, name: str) -> None:
    ref = tmp_path / "ref"
    started = time.monotonic()
    subprocess.run(shape_cmd(setup, ref), check=True, capture_output=True)
    duration = time.monotonic() - started
    out = tmp_path / "run"
    proc = subprocess.Popen(shape_cmd(setup, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60  # wait for the run to start writing (start-up is slow)
    while not list(out.glob(".*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05 * duration)  # then mid-run, while batches are evaluated
    proc.send_signal(SIGNALS[name])
    _, err = proc.communicate(timeout=120)
    present = outputs(out)
    assert len(set(present.values())) == 1, present  # all outputs or none
    if not any(present.values()):  # interrupted mid-run (not after the outputs' rename)
        assert proc.returncode == (-9 if name == "SIGKILL" else 130), err.decode()
    if name != "SIGKILL" and proc.returncode == 130:
        assert proc.returncode == 130 and err.decode().strip().startswith("error: interrupted")
        assert not list(out.glob(".*")), list(out.glob(".*"))  # temporaries removed
    rerun = subprocess.run([*shape_cmd(setup, out), "--overwrite"], capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert all(outputs(out).values()) and not list(out.glob(".*sareval-tmp*"))
    a, b = json.loads((ref / "r.json").read_text()), json.loads((out / "r.json").read_text())
    assert a["counts"] == b["counts"] and a["metrics"] == b["metrics"]


@pytest.mark.slow
def test_interrupted_merge_leaves_both_outputs_or_none(setup, tmp_path: Path) -> None:
    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.json"
        subprocess.run([sys.executable, "-m", "sareval", "-q", "shape", "-m", str(setup["model"]),
                        "-d", str(setup["store"]), "-s", "clear", "--shard", f"{i}/2",
                        "-o", str(part)], check=True, capture_output=True)  # fmt: skip
        parts.append(str(part))
    merge = [sys.executable, "-m", "sareval", "-q", "merge", *parts, "-o", str(tmp_path / "m.json")]
    for delay in (0.05, 0.3, 0.6, 1.0):
        proc = subprocess.Popen([*merge, "--overwrite"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        present = {(tmp_path / n).exists() for n in ("m.json", "m.csv")}
        assert len(present) == 1
    assert subprocess.run([*merge, "--overwrite"], capture_output=True).returncode == 0
    assert not list(tmp_path.glob(".*sareval-tmp*"))
