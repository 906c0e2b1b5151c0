"""Spreading an evaluation: --shard i/n + merge, and torchrun (gloo, CPU) with 2 processes."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.commands.parsing import parse_shard
from sareval.errors import SarevalError
from sareval.evaluator.distributed import part_range
from sareval.evaluator.merge import merge_documents
from sareval.evaluator.results import read_results, to_json_value

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def test_parts_are_contiguous_disjoint_and_complete() -> None:
    for length in (0, 1, 5, 40, 41):
        for count in (1, 2, 3, 7):
            parts = [part_range(10, 10 + length, i, count) for i in range(count)]
            assert parts[0][0] == 10 and parts[-1][1] == 10 + length
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "a/b", "1"):
        with pytest.raises(SarevalError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize("method", ["shape", "perceptual"])
def test_shards_merge_to_the_single_process_result(assets, method: str) -> None:
    kw: dict = dict(method=method, progress=False)
    if method == "shape":
        kw["by"] = ["class", "cloud-cover=0,0.25,0.75,1"]
    else:
        kw["permutations"] = 2
    model = assets.onnx["multi-label"]
    single = evaluate_shape(model, assets.store, "clear", **kw)
    parts = [
        to_json_value(
            evaluate_shape(model, assets.store, "clear", shard=(i, 3), batch_size=4, **kw)
        )
        for i in range(3)
    ]
    assert [p["n_samples"] for p in parts] == [13, 13, 14]
    merged = merge_documents(parts[::-1], ["p2", "p1", "p0"])
    single = to_json_value(single)
    for key in ("counts", "metrics", "by", "ties", "per_class", "n_samples"):
        assert merged[key] == single[key], key
    assert merged["provenance"]["shard"] == {"merged": ["p2", "p1", "p0"]}


def test_merge_refuses_mismatched_shards(assets) -> None:
    model = assets.onnx["single-label"]
    parts = [
        to_json_value(evaluate_shape(model, assets.store, "tail", shard=(i, 2), progress=False))
        for i in range(2)
    ]
    other = to_json_value(
        evaluate_shape(
            model, assets.store, "tail", shard=(1, 2), normalization="full", progress=False
        )
    )
    single = to_json_value(evaluate_shape(model, assets.store, "tail", progress=False))
    with pytest.raises(SarevalError, match="b and a differ in the evaluation options"):
        merge_documents([parts[0], other], ["a", "b"])
    with pytest.raises(SarevalError, match="b: shard 0/2 is also in a"):
        merge_documents([parts[0], parts[0]], ["a", "b"])
    with pytest.raises(SarevalError, match="shards \\[0\\] of 2 are missing"):
        merge_documents([parts[1]], ["b"])
    with pytest.raises(SarevalError, match="not a shard result"):
        merge_documents([single, parts[1]], ["s", "b"])
    changed = json.loads(json.dumps(parts[1]))
    changed["provenance"]["model"]["sha256"] = "0" * 64
    with pytest.raises(SarevalError, match="b and a differ in the model;"):
        merge_documents([parts[0], changed], ["a", "b"])
    with pytest.raises(SarevalError, match="replicates needs every sample"):
        evaluate_shape(model, assets.store, "tail", shard=(0, 2), replicates=5, progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(entry: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [
        str(VENV_BIN / "torchrun"), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), *entry, "-q", "shape", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["script", "module"])
def test_torchrun_two_processes_equal_one(assets, tmp_path: Path, entry: str) -> None:
    model = assets.onnx["single-label"]
    script = shutil.which("sareval", path=str(VENV_BIN))
    assert script is not None
    entry_args = [script] if entry == "script" else ["-m", "sareval"]
    args = [
        "-m", str(model), "-d", str(assets.store), "-s", "clear", "--batch-size", "6",
        "--by", "class", "--by", "cloud-cover", "0,0.5,1", "--replicates", "25", "--seed", "3",
        "--save-predictions", str(tmp_path / "pred.h5"), "-o", str(tmp_path / "r.json"),
        "--per-sample",
    ]  # fmt: skip
    done = torchrun(entry_args, args, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = read_results(tmp_path / "r.json")
    single = to_json_value(
        evaluate_shape(
            model, assets.store, "clear", by=["class", "cloud-cover=0,0.5,1"], replicates=25,
            seed=3, progress=False, per_sample=True,
        )
    )  # fmt: skip
    assert doc["config"]["world_size"] == 2
    for key in ("counts", "metrics", "by", "ties", "n_samples", "per_sample", "detection"):
        assert doc[key] == single[key], key
    assert done.stdout.count("shape: single-label.onnx") == 1  # only rank 0 prints
    with (
        h5py.File(tmp_path / "pred.rank0-of-2.h5") as a,
        h5py.File(tmp_path / "pred.rank1-of-2.h5") as b,
    ):
        positions = np.concatenate([a["positions"][()], b["positions"][()]])
        np.testing.assert_array_equal(positions, np.arange(40))


@pytest.mark.slow
def test_torchrun_multi_label_map_and_shards_equal_one(assets, tmp_path: Path) -> None:
    """mAP's score states and per-sample values are gathered from the ranks; a torchrun shard
    embeds them."""
    model = assets.onnx["multi-label"]
    base = ["-m", str(model), "-d", str(assets.store), "-s", "clear", "--batch-size", "4",
            "--by", "cloud-cover", "0,0.5,1", "--replicates", "10"]  # fmt: skip
    done = torchrun(["-m", "sareval"], [*base, "-o", str(tmp_path / "r.json")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    single = to_json_value(
        evaluate_shape(
            model, assets.store, "clear", by=["cloud-cover=0,0.5,1"], replicates=10, progress=False
        )
    )
    doc = read_results(tmp_path / "r.json")
    assert "map_macro" in doc["metrics"] and "scores" not in doc
    for key in ("metrics", "by"):
        assert doc[key] == single[key], key
    base = [*base[:-2], "--per-sample"]  # no bootstrap with shards
    parts = []
    for i in range(2):
        out = tmp_path / f"p{i}.json"
        done = torchrun(["-m", "sareval"], [*base, "--shard", f"{i}/2", "-o", str(out)], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        parts.append(read_results(out))
        assert parts[-1]["per_sample_state"]["n"] == parts[-1]["n_samples"]
    merged = merge_documents(parts, ["p0", "p1"])
    single = to_json_value(
        evaluate_shape(model, assets.store, "clear", by=["cloud-cover=0,0.5,1"], progress=False,
                       per_sample=True)
    )  # fmt: skip
    for key in ("metrics", "by", "per_sample", "detection"):
        assert merged[key] == single[key], key


def test_merge_refuses_shards_of_a_modified_store_copy(assets, tmp_path: Path) -> None:
    """A shard of other data (its store digest differs) is refused: the CLI names both shard
    files and both digests. (A copy whose labels or row hashes were edited is refused earlier,
    when it is opened: tests/test_store.py.)"""
    from click.testing import CliRunner

    from sareval.cli import cli

    model = assets.onnx["single-label"]
    for i in range(2):
        doc = to_json_value(evaluate_shape(model, assets.store, "tail", shard=(i, 2),
                                           progress=False))  # fmt: skip
        if i == 1:
            doc["provenance"]["store"]["content_digest"] = "f" * 64
        (tmp_path / f"part{i}.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(
        cli, ["merge", str(tmp_path / "part0.json"), str(tmp_path / "part1.json"),
              "--out", str(tmp_path / "m.json")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "part1.json and" in result.output and "part0.json differ in the store" in result.output
    assert "f" * 64 in result.output
