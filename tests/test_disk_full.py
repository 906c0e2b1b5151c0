"""A full disk or a read-only folder while writing (issue 11 item 7).

Each command runs in a subprocess (an HDF5 crash must not take pytest down) with its outputs on
a small tmpfs mounted for the test (skipped where mounting is not allowed). Expected: exit 1,
one ``error: <output>: no space left on device`` line and no traceback, no temporary file
left, and a previous output (given with --overwrite) unchanged byte for byte.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from shape_testing import export_onnx, make_card, tiny_net, write_store

from sareval.cli import error_line
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.write_errors import OutputWriteError, as_write_error, output_name, write_errno

Mount = Callable[..., Path]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    """``mount(size, readonly=False)``: a fresh tmpfs of ``size`` (e.g. ``"64k"``), unmounted
    at the end of the test."""
    mounted: list[Path] = []

    def make(size: str, readonly: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def sareval(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sareval", "-q", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_failed_cleanly(
    result: subprocess.CompletedProcess[str], names: Path, folder: Path, before: dict[str, bytes]
) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]  # export says what it does first
    assert last.startswith(f"error: {names}: "), last
    assert "no space left on device" in last or "not writable" in last, last
    assert files(folder) == before, "temporary files left or a previous output changed"


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("disk_full")
    generate_sen12ms(d / "gen", n_patches=24, size=64, seed=3)
    return {
        "tree": d / "gen" / "sen12ms",
        "store": write_store(d / "s.h5", n=400, h=8, w=8),
        "model": export_onnx(tiny_net(), make_card(), d / "m.onnx"),
    }


@pytest.mark.parametrize("compression", ["none", "lzf"])
def test_preprocess_on_a_full_disk(assets: dict[str, Path], mount: Mount, compression: str) -> None:
    """none: refused before writing (the size is known); lzf: fails mid-run, two workers."""
    fs = mount("2m")
    out = fs / "st.h5"
    out.write_bytes(b"previous store")
    before = files(fs)
    result = sareval("preprocess", "sen12ms", assets["tree"], "--workers", "2", "--chunk-rows",
                     "1", "--compression", compression, "--out", out, "--overwrite")  # fmt: skip
    assert_failed_cleanly(result, out, fs, before)


@pytest.mark.parametrize("size", ["64k", "1100k"])
def test_shape_predictions_on_a_full_disk(assets: dict[str, Path], mount: Mount, size: str) -> None:
    fs = mount(size)
    for name in ("r.json", "r.csv", "p.h5"):
        (fs / name).write_text(f"previous {name}")
    before = files(fs)
    result = sareval("shape", "-m", assets["model"], "-d", assets["store"], "-s", "clear",
                     "--per-sample", "-o", fs / "r.json", "--save-predictions", fs / "p.h5",
                     "--overwrite")  # fmt: skip
    assert_failed_cleanly(result, fs / "p.h5", fs, before)


def test_shape_results_on_a_full_disk(assets: dict[str, Path], mount: Mount) -> None:
    fs = mount("64k")
    (fs / "r.json").write_text("previous results")
    (fs / "filler").write_bytes(b"\0" * (60 << 10))  # leaves less than the JSON needs
    before = files(fs)
    result = sareval("shape", "-m", assets["model"], "-d", assets["store"], "-s", "clear",
                     "--by", "class", "-o", fs / "r.json", "--overwrite")  # fmt: skip
    assert_failed_cleanly(result, fs / "r.json", fs, before)


def test_read_only_folder_is_refused_before_work(assets: dict[str, Path], mount: Mount) -> None:
    fs = mount("64k", readonly=True)
    result = sareval("shape", "-m", assets["model"], "-d", assets["store"], "-s", "clear",
                     "-o", fs / "r.json")  # fmt: skip
    assert_failed_cleanly(result, fs / "r.json", fs, {})


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_export_on_a_full_disk(mount: Mount, suffix: str) -> None:
    fs = mount("2m")
    out = fs / f"m{suffix}"
    out.write_bytes(b"previous model")
    before = files(fs)
    result = sareval("export", "--arch", "resnet18", "--preset", "study-resnet18", "--task",
                     "single-label", "--input-size", "32", "--out", out, "--overwrite")  # fmt: skip
    assert_failed_cleanly(result, out, fs, before)


@pytest.mark.slow
def test_train_on_a_full_disk(tmp_path: Path, mount: Mount) -> None:
    from test_train import write_store as write_train_store

    data = write_train_store(tmp_path / "train.h5", 16, 0)
    fs = mount("2m")
    result = sareval("train", "--data", data, "--epochs", "1", "--batch-size", "8", "--device",
                     "cpu", "--out", fs / "run")  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {fs / 'run'}/") and "no space left" in lines[0]
    assert not [p for p in (fs / "run").iterdir() if p.name.startswith(".")], "temporaries left"


def test_write_errors_are_recognised() -> None:
    hdf5 = RuntimeError("Can't write data (file write failed: filename = 'x', errno = 28, ...)")
    assert write_errno(hdf5) == errno.ENOSPC
    assert write_errno(OSError(errno.EACCES, "Permission denied")) == errno.EACCES
    assert write_errno(OSError(errno.ENOENT, "No such file")) is None
    assert write_errno(ValueError("errno = 28")) is None
    error = as_write_error(OSError(errno.EROFS, "Read-only"), "/d/.r.json.sareval-tmp-7")
    assert isinstance(error, OutputWriteError)
    assert str(error) == "/d/r.json: read-only file system"
    assert output_name("..p.h5.sareval-tmp-12.12.tmp") == Path("p.h5")
    assert output_name("s.h5.partial") == Path("s.h5")
    assert output_name("a/b.json") == Path("a/b.json")
    escaped = RuntimeError("flush failed: filename = 'd/.p.h5.sareval-tmp-1', errno = 28, x")
    assert error_line(escaped) == "d/p.h5: no space left on device"  # the CLI's last resort
