"""The other side of the hostile suite: what is accepted, recorded and vetted (issue 11)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from make_hostile import World, first_file, rewrite_tiff
from test_hostile import outside_folders, snapshot, stat_snapshot

from sareval.atomic import check_outputs
from sareval.cli import cli, error_line
from sareval.errors import OutputExistsError, SarevalError
from sareval.evaluator.bootstrap import check_bootstrap
from sareval.evaluator.distributed import TorchrunEnv, check_parts, torchrun_env


def test_skip_unlabelled_leaves_out_and_records(world: World, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(world.sen12ms / "sen12ms", tree)
    rewrite_tiff(first_file(tree, "*_lc_*.tif"), np.zeros_like)
    out = tmp_path / "s.h5"
    args = ["preprocess", "sen12ms", str(tree), "--workers", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--skip-unlabelled"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f.attrs["unlabelled_skipped"] == 1 and f.attrs["n_samples"] == 5
        assert np.allclose(f["labels/igbp17_fractions"][()].sum(1), 1.0)
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0 and "unlabelled skipped" in info.output, info.output


def test_check_outputs(tmp_path: Path) -> None:
    a, b = tmp_path / "r.json", tmp_path / "r.csv"
    assert check_outputs({"--out": a, "--csv": b, "--x": None}, False, json_option="--out") == {
        "--out": a,
        "--csv": b,
    }
    with pytest.raises(SarevalError, match="--csv and --out name the same file"):
        check_outputs({"--out": a, "--csv": tmp_path / "." / "r.json"}, True)
    with pytest.raises(SarevalError, match=r"give it a \.json name"):
        check_outputs({"--out": b, "--csv": tmp_path / "t.csv"}, True, json_option="--out")
    with pytest.raises(SarevalError, match="--out is the input"):
        check_outputs({"--out": a}, True, inputs=[tmp_path / "r.json"])
    a.write_text("old")
    with pytest.raises(OutputExistsError):
        check_outputs({"--out": a}, False)
    with pytest.raises(SarevalError, match="is a folder"):
        check_outputs({"--out": tmp_path}, True)
    check_outputs({"--out": tmp_path / "new" / "deeper" / "r.json"}, False)  # created later


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_outputs_unwritable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SarevalError, match="not writable"):
        check_outputs({"--out": locked / "r.json"}, False)


def test_torchrun_env() -> None:
    full = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
            "MASTER_PORT": "29500"}  # fmt: skip
    assert torchrun_env(full) == TorchrunEnv(1, 2, 1)
    assert torchrun_env({"MASTER_ADDR": "h"}) is None  # no identity: a single process
    with pytest.raises(SarevalError, match=r"^WORLD_SIZE: not set"):
        torchrun_env({"RANK": "1"})


def test_parts_and_bootstrap_bounds() -> None:
    check_parts(10, (9, 10), 1)
    check_parts(10, (0, 2), 5)
    with pytest.raises(SarevalError, match=r"ShapeConfig\.execution\.shard \(0, 11\)"):
        check_parts(10, (0, 11), 1)
    with pytest.raises(SarevalError, match="WORLD_SIZE=3"):
        check_parts(2, None, 3)
    check_bootstrap(100_000)
    with pytest.raises(SarevalError, match="GiB"):
        check_bootstrap(100_000, n_coalitions=2**10 - 1)


def test_quiet_hides_wrote_lines(tmp_path: Path) -> None:
    out = tmp_path / "card.json"
    args = ["card", "template", "--preset", "sen12ms-s1s2", "--out", str(out)]
    loud = CliRunner().invoke(cli, args)
    assert loud.exit_code == 0 and loud.stderr.startswith("wrote "), loud.output
    quiet = CliRunner().invoke(cli, ["-q", *args, "--overwrite"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output


def test_error_line_is_one_printable_line() -> None:
    assert error_line(SarevalError("a\nb")) == "a b"
    assert error_line(FileNotFoundError(2, "No such file", "/x")) == "/x: No such file"
    assert error_line(SarevalError("root-\udcff: bad")) == "root-\\udcff: bad"


def test_snapshots_see_special_files_and_outside_changes(world: World, tmp_path: Path) -> None:
    """The hostile suite's own checks (test_hostile): a special file turned into a regular file,
    a symlink replaced, and a file outside the case folder rewritten are all seen."""
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    os.symlink(tmp_path / "target", link)
    before = snapshot(tmp_path)
    assert before[str(fifo)][0] == "special" and before[str(link)] == (
        "link",
        os.fsencode(tmp_path / "target"),
    )
    fifo.unlink()
    fifo.write_text("")
    assert snapshot(tmp_path) != before
    fifo.unlink()
    os.mkfifo(fifo)
    assert snapshot(tmp_path) == before
    link.unlink()
    link.write_text("")
    assert snapshot(tmp_path) != before
    outside = stat_snapshot(outside_folders(world))
    assert str(world.store) in outside and "/dev/null" in outside
    copy = tmp_path / "copy.json"
    shutil.copy(world.shards[0], copy)
    os.replace(copy, world.shards[0])  # same bytes, a new inode: a replaced file
    assert stat_snapshot(outside_folders(world)) != outside
