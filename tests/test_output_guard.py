"""The output guard (issue 19): no command replaces an input or a special file.

Every writer, CLI and API, goes through :mod:`sareval.atomic`: an output that is an input of
the same command (same file after symlinks and hard links, or a file of an input dataset
tree) is refused naming both; a character device or FIFO is written to directly (a
``/dev/null`` twin discards, a FIFO streams, a ``/dev/full`` twin reports a full disk as one
``error:`` line) and is still that device afterwards; a folder, socket or block device is
refused; a symlink output is replaced as a link. Device nodes are made inside each test's
own folder (``mknod`` needs root; those tests are skipped otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from shape_testing import Assets, get_assets

import sareval
from sareval.atomic import atomic_output, check_outputs, output_set
from sareval.cli import cli, route_foreign_output
from sareval.errors import SarevalError
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.write_errors import OutputWriteError

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mknod of a character device needs root")
DATA = Path(__file__).parent / "data"


# --- special files made inside the test's folder --------------------------------------------------
def null_twin(folder: Path, name: str = "null") -> Path:
    """A character device with /dev/null's numbers (1, 3): writes are discarded."""
    path = folder / name
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def full_twin(folder: Path, name: str = "full") -> Path:
    """A character device with /dev/full's numbers (1, 7): every write fails with ENOSPC."""
    path = folder / name
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    return path


def is_char(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


class FifoReader:
    """A FIFO in ``folder`` with a thread reading everything written to it."""

    def __init__(self, folder: Path, name: str = "fifo") -> None:
        self.path = folder / name
        os.mkfifo(self.path)
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:  # blocks until a writer opens it
            self.data = f.read()

    def result(self, timeout: float = 30) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "nothing was written to the FIFO"
        return self.data

    def close(self) -> None:
        """Unblock the reader if no writer ever came."""
        if self.thread.is_alive():
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            self.thread.join(5)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoReader]:
    reader = FifoReader(tmp_path)
    yield reader
    reader.close()
    assert stat.S_ISFIFO(os.lstat(reader.path).st_mode)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["-q", *args])


def assert_error(result: Result, *named: str) -> str:
    """Exit 1, one ``error:`` line naming every ``named``, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in named:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return get_assets(tmp_path_factory)


def shape_args(assets: Assets, *extra: str) -> list[str]:
    a = assets
    return ["shape", "-m", str(a.onnx["single-label"]), "-d", str(a.store), "-s", "clear",
            *extra]  # fmt: skip


# --- the guard itself -----------------------------------------------------------------------------
def test_same_file_after_symlinks_and_hard_links(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("x\n")
    os.link(data, tmp_path / "hard.csv")
    os.symlink(data, tmp_path / "soft.csv")
    for out in ("in.csv", "hard.csv", "soft.csv", "./sub/../in.csv"):
        with pytest.raises(SarevalError, match=r"--out is the input .*in\.csv"):
            check_outputs({"--out": tmp_path / out}, True, inputs=[data])
    assert data.read_text() == "x\n"
    with pytest.raises(SarevalError, match="--csv and --out name the same file"):
        check_outputs({"--out": tmp_path / "r.json", "--csv": tmp_path / "r.json"}, True)
    # an input folder: a new file inside it is fine, an existing file of it is not
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "b.tif").write_bytes(b"II*\x00")
    check_outputs({"--out": tree / "a" / "new.h5"}, False, inputs=[tree])
    with pytest.raises(SarevalError, match="inside the input folder"):
        check_outputs({"--out": tree / "a" / "b.tif"}, True, inputs=[tree])
    with pytest.raises(SarevalError, match="--out is the input"):
        check_outputs({"--out": tree}, True, inputs=[tree])
    with pytest.raises(SarevalError, match="is a folder"):
        check_outputs({"--out": tree}, True)


def test_symlink_output_is_replaced_as_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("keep")
    link = tmp_path / "r.json"
    os.symlink(target, link)
    with atomic_output(link, overwrite=True) as tmp:
        tmp.write_text("new")
    assert not link.is_symlink() and link.read_text() == "new"
    assert target.read_text() == "keep"
    os.symlink(tmp_path / "gone", tmp_path / "dangling")  # a dangling link: an existing output
    with pytest.raises(SarevalError, match="output exists"):
        check_outputs({"--out": tmp_path / "dangling"}, False)


def test_sockets_block_devices_and_folders_are_refused(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(SarevalError, match="is a socket"):
            check_outputs({"--out": tmp_path / "s"}, True)
    finally:
        sock.close()
    if ROOT:
        os.mknod(tmp_path / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))
        refused = pytest.raises(SarevalError, match="is a block device")
        with refused, atomic_output(tmp_path / "blk", overwrite=True) as tmp:
            tmp.write_text("x")
        assert stat.S_ISBLK(os.lstat(tmp_path / "blk").st_mode)
    refused = pytest.raises(SarevalError, match="is a folder")
    with refused, atomic_output(tmp_path, overwrite=True) as tmp:
        tmp.write_text("x")


@needs_root
def test_output_set_writes_devices_directly(tmp_path: Path) -> None:
    null, full = null_twin(tmp_path), full_twin(tmp_path)
    with output_set([null, tmp_path / "a.txt"]) as outputs:
        outputs.temp(null).write_text("discarded")
        outputs.temp(tmp_path / "a.txt").write_text("kept")
    assert is_char(null) and (tmp_path / "a.txt").read_text() == "kept"
    full_disk = pytest.raises(OutputWriteError, match=f"^{full}: no space left on device")
    with full_disk, output_set([full, tmp_path / "b.txt"]) as outputs:
        outputs.temp(full).write_text("too much")
        outputs.temp(tmp_path / "b.txt").write_text("not kept")
    assert is_char(full) and not (tmp_path / "b.txt").exists()
    assert files_in(tmp_path) == {"null", "full", "a.txt"}


# --- shape / ShapeResult.save ---------------------------------------------------------------------
@needs_root
def test_shape_to_devices(assets: Assets, tmp_path: Path) -> None:
    null, full = null_twin(tmp_path), full_twin(tmp_path)
    result = run(*shape_args(assets, "--out", str(null), "--save-predictions", str(null)))
    assert_error(result, "--save-predictions and --out name the same file")
    null2 = null_twin(tmp_path, "null2")
    result = run(*shape_args(assets, "--out", str(null), "--save-predictions", str(null2)))
    assert result.exit_code == 0, result.output
    assert is_char(null) and is_char(null2)
    assert files_in(tmp_path) == {"null", "null2", "full"}  # no null.csv, no temporaries
    out = tmp_path / "r.json"
    result = run(*shape_args(assets, "--out", str(out), "--csv", str(full)))
    assert_error(result, f"{full}: no space left on device")
    assert is_char(full) and files_in(tmp_path) == {"null", "null2", "full"}


def test_shape_streams_into_fifos(assets: Assets, tmp_path: Path, fifo: FifoReader) -> None:
    preds = FifoReader(tmp_path, "preds")
    try:
        result = run(*shape_args(assets, "--out", str(fifo.path), "--save-predictions",
                                 str(preds.path)))  # fmt: skip
        assert result.exit_code == 0, result.output
        doc = json.loads(fifo.result())
        h5 = tmp_path / "copy.h5"
        h5.write_bytes(preds.result())
    finally:
        preds.close()
    assert doc["format"] == "sareval-results"
    with h5py.File(h5) as f:
        assert f.attrs["format"] == "sareval-predictions"
        assert f["outputs"].shape[1] == doc["n_samples"]
    assert stat.S_ISFIFO(os.lstat(preds.path).st_mode)


def test_shape_refuses_its_inputs(assets: Assets, tmp_path: Path) -> None:
    a = assets
    model, store = a.onnx["single-label"], a.store
    before = store.read_bytes()
    os.link(store, tmp_path / "hard.h5")
    os.symlink(model, tmp_path / "soft.json")
    for out, named in (
        (store, store),
        (tmp_path / "hard.h5", store),
        (tmp_path / "soft.json", model),
    ):
        result = run(*shape_args(assets, "--csv", str(out), "--out", str(tmp_path / "r.json"),
                                 "--overwrite"))  # fmt: skip
        assert_error(result, str(out), str(named), "--csv is the input")
    assert store.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_shape_result_save(assets: Assets, tmp_path: Path) -> None:
    a = assets
    data = sareval.open_store(a.store).subset("clear")
    r = sareval.evaluate(a.onnx["single-label"], data, progress=False)
    with pytest.raises(SarevalError, match=r"r.txt: path is the results JSON; give it a \.json"):
        r.save(tmp_path / "r.txt")
    with pytest.raises(SarevalError, match="csv and path name the same file"):
        r.save(tmp_path / "r.json", csv=tmp_path / "r.json")
    assert files_in(tmp_path) == set()
    r.save(tmp_path / "r.json", csv=tmp_path / "r.csv")
    before = a.store.read_bytes()
    with pytest.raises(SarevalError, match="save_predictions is the input"):
        sareval.evaluate(a.onnx["single-label"], data, progress=False,
                         save_predictions=a.store, overwrite=True)  # fmt: skip
    assert a.store.read_bytes() == before
    assert json.loads((tmp_path / "r.json").read_text())["n_samples"] == r.doc["n_samples"]
    if ROOT:
        null, full = null_twin(tmp_path), full_twin(tmp_path)
        r.save(null)
        with pytest.raises(OutputWriteError, match=f"{full}: no space left on device"):
            r.save(tmp_path / "s.json", csv=full)
        assert is_char(null) and is_char(full) and not (tmp_path / "s.json").exists()
        preds = tmp_path / "p.h5"
        sareval.evaluate(a.onnx["single-label"], data, progress=False,
                         save_predictions=null)  # fmt: skip
        assert is_char(null) and not preds.exists()


# --- merge / report -------------------------------------------------------------------------------
def _shards(assets: Assets, folder: Path) -> list[Path]:
    parts = [folder / "part0.json", folder / "part1.json"]
    for i, out in enumerate(parts):
        result = run(*shape_args(assets, "--shard", f"{i}/2", "--out", str(out)))
        assert result.exit_code == 0, result.output
    return parts


def test_merge_and_report(assets: Assets, tmp_path: Path) -> None:
    parts = _shards(assets, tmp_path)
    before = parts[0].read_bytes()
    os.link(parts[0], tmp_path / "hard.json")
    for out in (parts[0], tmp_path / "hard.json"):
        result = run("merge", *map(str, parts), "--out", str(out), "--overwrite")
        assert_error(result, str(out), str(parts[0]))
    assert parts[0].read_bytes() == before
    # report --out: its input folder, or a folder holding an input, is refused
    for out in (tmp_path, tmp_path / "."):
        result = run("report", str(tmp_path), "--out", str(out), "--overwrite")
        assert_error(result, "out is or holds the input")
    result = run("report", str(parts[0]), "--out", str(tmp_path), "--overwrite")
    assert_error(result, str(parts[0]))
    assert set(files_in(tmp_path)) == {"part0.json", "part1.json", "part0.csv", "part1.csv",
                                       "hard.json"}  # fmt: skip
    if ROOT:
        null = null_twin(tmp_path)
        result = run("merge", *map(str, parts), "--out", str(null))
        assert result.exit_code == 0, result.output
        result = run("report", str(parts[0]), "--out", str(null), "--overwrite")
        assert_error(result, f"{null}: out is a character device, expected a folder")
        assert is_char(null) and "null.csv" not in files_in(tmp_path)


def test_merge_streams_into_a_fifo(assets: Assets, tmp_path: Path, fifo: FifoReader) -> None:
    parts = _shards(assets, tmp_path / "p")
    result = run("merge", *map(str, parts), "--out", str(fifo.path))
    assert result.exit_code == 0, result.output
    assert json.loads(fifo.result())["n_samples"] > 0


# --- preprocess -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guard_synth")
    generate_sen12ms(root / "s12", n_patches=4, size=16, seed=19)
    generate_bigearthnet(root / "ben", n_patches=5, size=24, seed=19)
    return root


def _tif(tree: Path) -> Path:
    return sorted(tree.rglob("*.tif"))[0]


def test_preprocess_sen12ms_refuses_inputs_and_devices(synth: Path, tmp_path: Path) -> None:
    tree, cr = synth / "s12" / "sen12ms", synth / "s12" / "sen12mscr"
    tif, cr_tif = _tif(tree), _tif(cr)
    before = tif.read_bytes(), cr_tif.read_bytes()
    base = ["preprocess", "sen12ms", str(tree), "--cr-root", str(cr), "--workers", "1"]
    for out in (tif, cr_tif):  # sen12ms and sen12ms-cr trees
        result = run(*base, "--out", str(out), "--overwrite")
        assert_error(result, str(out), "inside the input folder")
    os.symlink(tif, tmp_path / "link.h5")
    result = run(*base, "--out", str(tmp_path / "link.h5"), "--overwrite")
    assert_error(result, str(tif))
    assert (tif.read_bytes(), cr_tif.read_bytes()) == before
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    specials = [fifo, *([null_twin(tmp_path)] if ROOT else [])]
    for out in specials:
        assert_error(run(*base, "--out", str(out)), str(out), "HDF5 file")
        with pytest.raises(SarevalError, match="HDF5 file"):
            preprocess_sen12ms(tree, out, workers=1, progress=False)
    assert files_in(tmp_path) == {"link.h5", *(p.name for p in specials)}  # no .lock, .partial
    assert all(not stat.S_ISREG(os.lstat(p).st_mode) for p in specials)


def test_preprocess_bigearthnet_refuses_inputs(synth: Path, tmp_path: Path) -> None:
    ben = synth / "ben"
    split = ben / "train.csv"
    before = split.read_bytes()
    os.link(split, tmp_path / "hard.h5")
    base = ["preprocess", "bigearthnet", "--s2-root", str(ben / "BigEarthNet-v1.0"),
            "--s1-root", str(ben / "BigEarthNet-S1-v1.0"), "--split-csv", str(split),
            "--workers", "1", "--overwrite"]  # fmt: skip
    for out, named in ((tmp_path / "hard.h5", split), (_tif(ben / "BigEarthNet-S1-v1.0"), None)):
        result = run(*base, "--out", str(out))
        assert_error(result, str(out), *([str(named)] if named else []))
    assert split.read_bytes() == before


def test_preprocess_bigearthnet_v2_refuses_its_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
    from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2

    t = tmp_path / "reben"
    generate_bigearthnet_v2(t, n_patches=5, size=12, seed=19)
    meta = t / "metadata.parquet"
    before, tif = meta.read_bytes(), _tif(t / "BigEarthNet-S2")
    os.link(meta, tmp_path / "hard.parquet")
    os.symlink(meta, tmp_path / "soft.h5")
    base = ["preprocess", "bigearthnet-v2", "--s2-root", str(t / "BigEarthNet-S2"),
            "--s1-root", str(t / "BigEarthNet-S1"), "--metadata", str(meta), "--workers", "1",
            "--overwrite"]  # fmt: skip
    for out in (meta, tmp_path / "hard.parquet", tmp_path / "soft.h5", tif):
        result = run(*base, "--out", str(out))
        assert_error(result, str(out))
        with pytest.raises(SarevalError, match="input"):
            preprocess_bigearthnet_v2(t / "BigEarthNet-S2", t / "BigEarthNet-S1", meta, out,
                                      overwrite=True, workers=1, progress=False)  # fmt: skip
    assert meta.read_bytes() == before and (tmp_path / "soft.h5").is_symlink()
    assert not list(tmp_path.rglob("*.lock")) and not list(tmp_path.rglob("*.partial"))


# --- synth / card / export / train / write_store --------------------------------------------------
def test_synth_refuses_special_files_and_replaces_links(tmp_path: Path, fifo: FifoReader) -> None:
    specials = [fifo.path, *([null_twin(tmp_path)] if ROOT else [])]
    for out in specials:
        result = run("synth", "sen12ms", str(out), "--patches", "4", "--size", "8", "--overwrite")
        assert_error(result, str(out), "expected a folder")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    os.symlink(kept, tmp_path / "link")
    result = run("synth", "sen12ms", str(tmp_path / "link"), "--patches", "4", "--size", "8",
                 "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link" / "sen12ms").is_dir()
    assert files_in(kept) == {"mine.txt"}
    fifo.close()
    assert all(not stat.S_ISREG(os.lstat(p).st_mode) for p in specials)


def test_card_template_and_attach(assets: Assets, tmp_path: Path, fifo: FifoReader) -> None:
    result = run("card", "template", "--preset", "sen12ms-s1s2", "--out", str(fifo.path))
    assert result.exit_code == 0, result.output
    card = json.loads(fifo.result())
    assert card["modalities"]
    model = tmp_path / "m.onnx"
    shutil.copy(assets.onnx["single-label"], model)
    card_path = tmp_path / "card.json"
    card = dataclasses.replace(assets.cards["single-label"], height=8, width=8)
    card_path.write_text(card.to_json())
    before = model.read_bytes()
    os.link(model, tmp_path / "hard.onnx")
    for out, named in ((model, model), (tmp_path / "hard.onnx", model), (card_path, card_path)):
        result = run("card", "attach", str(model), str(card_path), "--out", str(out),
                     "--overwrite")  # fmt: skip
        assert_error(result, str(out), str(named))
    assert model.read_bytes() == before
    if ROOT:
        null = null_twin(tmp_path)
        result = run("card", "attach", str(model), str(card_path), "--out", str(null))
        assert result.exit_code == 0 and is_char(null), result.output


@needs_root
def test_export_and_train_outputs(assets: Assets, tmp_path: Path) -> None:
    from sareval.export.onnx_export import export_onnx

    a = assets
    null, full = null_twin(tmp_path), full_twin(tmp_path)
    net = a.nets["single-label"]
    card = dataclasses.replace(a.cards["single-label"], height=8, width=8)
    export_onnx(net, card, null)
    with pytest.raises(OutputWriteError, match=f"{full}: no space left on device"):
        export_onnx(net, card, full)
    assert is_char(null) and is_char(full)
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"not read")
    result = run("export", "--checkpoint", str(ckpt), "--out", str(ckpt), "--format", "onnx",
                 "--overwrite")  # fmt: skip
    assert_error(result, str(ckpt))
    assert ckpt.read_bytes() == b"not read"
    result = run("train", "--data", str(a.store), "--out", str(null), "--epochs", "1")
    assert result.exit_code == 1 and is_char(null), result.output
    assert files_in(tmp_path) == {"null", "full", "ckpt.pth"}


def test_write_store_refuses_devices_and_fifos(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    specials = [fifo, *([null_twin(tmp_path)] if ROOT else [])]
    arrays = {"s2": np.zeros((2, 13, 4, 4), np.uint16)}
    labels = {"y": (np.array([0, 1]), ["a", "b"])}
    for out in specials:
        with pytest.raises(SarevalError, match=f"^{out}: is a .*; this output is an HDF5 file"):
            sareval.write_store(out, arrays, labels)
    assert files_in(tmp_path) == {p.name for p in specials}
    assert all(not stat.S_ISREG(os.lstat(p).st_mode) for p in specials)


# --- locale and foreign warnings ------------------------------------------------------------------
def test_non_ascii_paths_under_the_c_locale(assets: Assets, tmp_path: Path) -> None:
    folder = Path(
        os.fsdecode(os.fsencode(str(tmp_path)) + "/d\xc3\xa9j\xc3\xa0-\xff".encode("latin-1"))
    )
    parts = _shards(assets, folder)
    env = {**os.environ, "LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": ""}
    exe = [sys.executable, "-c", "from sareval.cli import main; main()"]
    out = folder / "m\u00e9rg\u00e9.json"
    ok = subprocess.run([*exe, "merge", *map(str, parts), "--out", str(out)], env=env,
                        capture_output=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert out.is_file() and b"wrote " in ok.stderr and b"Traceback" not in ok.stderr
    args = ["merge", str(folder / "gone\u00e9.json"), "--out", str(folder / "n.json")]
    bad = subprocess.run([*exe, *args], env=env, capture_output=True, timeout=120)
    lines = bad.stderr.decode("utf-8", "replace").strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    assert "gone" in lines[0]
    result = run("synth", "sen12ms", str(folder / "synth"), "--patches", "4", "--size", "8")
    assert_error(result, "synth: the path is not valid UTF-8")  # GDAL would fail mid-way
    assert not (folder / "synth").exists()


def test_foreign_warnings_go_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        route_foreign_output(0)
        try:
            with caplog.at_level(logging.DEBUG):
                foreign = "/site-packages/torch/nn/modules/module.py"
                warnings.warn_explicit("a torch\nwarning", UserWarning, foreign, 7)
                own = str(Path(sareval.__file__).parent / "api.py")
                warnings.warn_explicit("ours", UserWarning, own, 3)
        finally:
            logging.captureWarnings(False)
    by_logger = {r.name: r for r in caplog.records}
    assert by_logger["py.warnings"].levelno == logging.DEBUG
    assert "a torch warning" in by_logger["py.warnings"].getMessage()
    assert by_logger["sareval"].levelno == logging.WARNING
    assert by_logger["sareval"].getMessage() == "ours"


def test_onnxruntime_warnings_are_quiet_after_routing(tmp_path: Path) -> None:
    """onnxruntime's C++ logger warns when a graph has an unused initializer; once the CLI's
    routing is installed (before onnxruntime is imported) it prints nothing."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    unused = numpy_helper.from_array(np.zeros(1, np.float32), "unused")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y], [unused])
    model = tmp_path / "unused.onnx"
    opset = [helper.make_opsetid("", 18)]
    onnx.save(helper.make_model(graph, opset_imports=opset, ir_version=9), model)
    load = f"import onnxruntime as ort; ort.InferenceSession({str(model)!r})"
    route = "from sareval.cli import route_foreign_output; route_foreign_output(0); "
    plain = subprocess.run([sys.executable, "-c", load], capture_output=True, timeout=120)
    routed = subprocess.run([sys.executable, "-c", route + load], capture_output=True, timeout=120)
    assert plain.returncode == routed.returncode == 0, (plain.stderr, routed.stderr)
    assert b"Removing initializer 'unused'" in plain.stderr  # the warning exists
    assert routed.stderr == b""
