"""Output sets: ``shape`` and ``merge`` outputs appear together or not at all, even when killed.

Kill times are drawn from a measured reference run: between the first temporary file and the
end of the run (SIGKILL, SIGINT and SIGTERM), so a kill can land while writing, while renaming
or after the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from shape_testing import export_onnx, make_card, tiny_net, write_store

from sareval.atomic import OutputSet, output_set, remove_stale_temporaries, set_temp_path
from sareval.errors import OutputExistsError
from sareval.evaluator.results import read_results

SAREVAL = [str(Path(sys.executable).parent / "sareval")]
NAMES = ("r.json", "r.csv", "p.h5")


def shape_command(assets: dict[str, Path], folder: Path) -> list[str]:
    return [
        *SAREVAL, "-q", "shape", "-m", str(assets["model"]), "-d", str(assets["store"]),
        "-s", "clear", "--batch-size", "5", "-o", str(folder / "r.json"),
        "--save-predictions", str(folder / "p.h5"),
    ]  # fmt: skip


def merge_command(assets: dict[str, Path], folder: Path) -> list[str]:
    parts = [str(assets[f"part{i}"]) for i in range(2)]
    return [*SAREVAL, "-q", "merge", *parts, "--out", str(folder / "r.json")]


def timed_run(cmd: list[str], folder: Path) -> tuple[float, float]:
    """Run ``cmd``; return (seconds until a temporary appears in ``folder``, total seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and any("sareval-tmp" in p.name for p in folder.iterdir()):
            first = time.monotonic() - started
        time.sleep(0.005)
    total = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return (first if first is not None else 0.5 * total), total


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("output_sets")
    store = write_store(root / "s.h5", n=400)
    model = export_onnx(tiny_net(seed=0), make_card("single-label"), root / "m.onnx")
    found: dict[str, Path] = {"store": store, "model": model}
    for i in range(2):
        part = root / f"part{i}.json"
        cmd = [*shape_command(found, root)[:-4], "--shard", f"{i}/2", "-o", str(part)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        found[f"part{i}"] = part
    return found


@pytest.fixture(scope="module")
def reference(assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Uninterrupted shape and merge runs: their outputs and (first temporary, total) times."""
    root = tmp_path_factory.mktemp("reference")
    shape_times = timed_run(shape_command(assets, root / "shape"), root / "shape")
    merge_times = timed_run(merge_command(assets, root / "merge"), root / "merge")
    return {"shape": (root / "shape", shape_times), "merge": (root / "merge", merge_times)}


def assert_same(folder: Path, ref: Path, names: tuple[str, ...]) -> None:
    assert read_results(folder / "r.json")["counts"] == read_results(ref / "r.json")["counts"]
    assert (folder / "r.csv").read_text() == (ref / "r.csv").read_text()
    if "p.h5" in names:
        with h5py.File(folder / "p.h5") as a, h5py.File(ref / "p.h5") as b:
            np.testing.assert_array_equal(a["outputs"][()], b["outputs"][()])
            np.testing.assert_array_equal(a["decisions"][()], b["decisions"][()])


def kill_and_rerun(
    cmd: list[str], folder: Path, times: tuple[float, float], sig: int, fraction: float,
    ref: Path, names: tuple[str, ...],
) -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    first, total = times
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and not any("sareval-tmp" in p.name for p in folder.iterdir())
        ):
            time.sleep(0.005)
        time.sleep(fraction * max(total - first, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    present = [n for n in names if (folder / n).exists()]
    assert present in ([], list(names)), present
    if sig != signal.SIGKILL and proc.returncode != 0 and not present:  # not killed at exit
        assert proc.returncode in (130, 143), err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert not [p for p in folder.iterdir() if "sareval-tmp" in p.name]
    if present:
        assert_same(folder, ref, names)
        return
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # stale temporaries gone
    assert_same(folder, ref, names)


SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_shape_killed_once_then_rerun(assets, reference, tmp_path: Path, sig: int) -> None:
    ref, times = reference["shape"]
    kill_and_rerun(shape_command(assets, tmp_path), tmp_path, times, sig, 0.3, ref, NAMES)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_merge_killed_once_then_rerun(assets, reference, tmp_path: Path, sig: int) -> None:
    ref, times = reference["merge"]
    names = ("r.json", "r.csv")
    kill_and_rerun(merge_command(assets, tmp_path), tmp_path, times, sig, 0.3, ref, names)


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_shape_and_merge_killed_at_random_moments(
    assets, reference, tmp_path: Path, sig: int
) -> None:
    rng = np.random.default_rng(sig)
    for i, fraction in enumerate(rng.uniform(0.0, 1.1, size=4)):
        ref, times = reference["shape"]
        cmd = shape_command(assets, tmp_path / f"s{i}")
        kill_and_rerun(cmd, tmp_path / f"s{i}", times, sig, float(fraction), ref, NAMES)
        ref, times = reference["merge"]
        cmd = merge_command(assets, tmp_path / f"m{i}")
        names = ("r.json", "r.csv")
        kill_and_rerun(cmd, tmp_path / f"m{i}", times, sig, float(fraction), ref, names)


def test_output_set_commits_together_or_not_at_all(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "sub" / "b.csv"
    with pytest.raises(RuntimeError), output_set((a, b, None)) as outputs:
        outputs.temp(a).write_text("a")
        outputs.temp(b).write_text("b")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []
    with output_set((a, b)) as outputs:
        outputs.temp(a).write_text("a")
        outputs.temp(b).write_text("b")
    assert a.read_text() == "a" and b.read_text() == "b"
    with pytest.raises(OutputExistsError), output_set((a, b)) as outputs:
        outputs.temp(a).write_text("new")
        outputs.temp(b).write_text("new")
    assert a.read_text() == "a" and not set_temp_path(a).exists()


def test_stale_temporaries_of_dead_pids_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "p.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale = [
        tmp_path / f".p.h5.sareval-tmp-{pid}",
        tmp_path / f"..p.h5.sareval-tmp-{pid}.{pid}.tmp",
    ]
    live = tmp_path / f".p.h5.sareval-tmp-{os.getppid()}"
    other = tmp_path / f".q.h5.sareval-tmp-{pid}"
    for p in (*stale, live, other):
        p.write_text("x")
    assert sorted(remove_stale_temporaries(target)) == sorted(stale)
    assert live.exists() and other.exists()
    OutputSet([target])
    assert live.exists()
