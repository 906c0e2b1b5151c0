"""``--per-sample`` with ``--shard i/n`` + ``sareval merge``: the merged ``per_sample`` and
``detection`` sections equal a single run's; corrupt, missing or mixed states are refused."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.errors import SarevalError
from sareval.evaluator.merge import merge_documents
from sareval.evaluator.results import read_results, to_json_value, validate

KW: dict[str, Any] = dict(per_sample=True, by=["class", "cloud-cover=0,0.5,1"], seed=5,
                          progress=False)  # fmt: skip
SOURCES = ["p0", "p1", "p2"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def shard_docs(model: Path, store: Path, subset: str, **kw: Any) -> list[dict[str, Any]]:
    return [
        to_json_value(evaluate_shape(model, store, subset, shard=(i, 3), batch_size=4, **kw))
        for i in range(3)
    ]


@pytest.fixture(scope="module")
def parts(assets) -> list[dict[str, Any]]:
    return shard_docs(assets.onnx["single-label"], assets.store, "clear", **KW)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_shards_merge_to_the_single_run(assets, parts, task: str) -> None:
    model = assets.onnx[task]
    subset = "clear" if task == "single-label" else "cloudy"
    single = to_json_value(evaluate_shape(model, assets.store, subset, **KW))
    shards = parts if task == "single-label" else shard_docs(model, assets.store, subset, **KW)
    for part in shards:
        validate(part)
        assert "per_sample" not in part and "detection" not in part
        assert part["per_sample_state"]["n"] == part["n_samples"]
    merged = merge_documents(shards[::-1], SOURCES[::-1])  # shard order, not argument order
    validate(merged)
    assert "per_sample_state" not in merged and "scores" not in merged
    assert list(merged) == list(single)  # the sections where a single run has them
    for key in ("per_sample", "detection", "metrics", "by", "counts"):
        assert merged[key] == single[key], key  # exact: float64 states, same seed and order
    if task == "single-label":
        assert single["detection"]["rows"]  # some wrong, some right: the bootstrap ran


def reencoded(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["per_sample_state"].update(changes)
    return out


def test_corrupt_and_missing_states_are_refused(parts) -> None:
    p0, p1, p2 = parts
    state = p1["per_sample_state"]
    cases = [
        (reencoded(p1, sha256="0" * 64), r"p1: unreadable 'per_sample_state' section .*sha256"),
        (reencoded(p1, data="not base64!"), r"p1: unreadable 'per_sample_state' section"),
        (reencoded(p1, encoding="npy"), r"p1: unreadable 'per_sample_state' section .*encoding"),
        (reencoded(p1, n=state["n"] + 1), r"p1: 'per_sample_state' section arrays do not fit"),
        (reencoded(p1, **p2["per_sample_state"]), r"p1: 'per_sample_state' holds 14 samples, "
                                                  r"the shard 13"),
    ]  # fmt: skip
    missing = copy.deepcopy(p1)
    del missing["per_sample_state"]
    cases.append((missing, r"p1: no 'per_sample_state' section \(the shards ran with per_sample"))
    for doc, message in cases:
        with pytest.raises(SarevalError, match=message) as e:
            merge_documents([p0, doc, p2], SOURCES)
        assert "\n" not in str(e.value)


def test_a_mixed_set_is_refused(assets, parts) -> None:
    model, store = assets.onnx["single-label"], assets.store
    plain = to_json_value(
        evaluate_shape(model, store, "clear", shard=(2, 3), **{**KW, "per_sample": False})
    )
    assert "per_sample_state" not in plain
    with pytest.raises(SarevalError, match="p2 and p0 differ in the evaluation options"):
        merge_documents([parts[0], parts[1], plain], SOURCES)
    stray = copy.deepcopy(plain)  # a state where the options say per_sample is off
    stray["per_sample_state"] = parts[2]["per_sample_state"]
    others = [copy.deepcopy(p) for p in parts[:2]]
    for doc in others:
        doc["config"]["per_sample"] = False
        del doc["per_sample_state"]
    with pytest.raises(SarevalError, match="p2: a 'per_sample_state' section, but per_sample is"):
        merge_documents([*others, stray], SOURCES)


def sareval_cli(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "sareval", "-q", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_shards_with_predictions_merge_to_the_single_run(assets, tmp_path: Path) -> None:
    model = assets.onnx["single-label"]
    base = ["shape", "-m", str(model), "-d", str(assets.store), "-s", "clear", "--per-sample",
            "--by", "cloud-cover", "0,0.5,1", "--seed", "5", "--batch-size", "6"]  # fmt: skip
    for i in range(3):
        sareval_cli(*base, "--shard", f"{i}/3", "-o", f"p{i}.json",
                    "--save-predictions", f"pred{i}.h5", cwd=tmp_path)  # fmt: skip
    sareval_cli("merge", "p0.json", "p1.json", "p2.json", "-o", "merged.json", cwd=tmp_path)
    merged = read_results(tmp_path / "merged.json")
    single = to_json_value(
        evaluate_shape(model, assets.store, "clear", per_sample=True, seed=5, progress=False,
                       by=["cloud-cover=0,0.5,1"], save_predictions=tmp_path / "pred.h5")
    )  # fmt: skip
    assert "per_sample_state" not in merged
    assert "per_sample_state" in json.loads((tmp_path / "p1.json").read_text())
    for key in ("per_sample", "detection", "metrics", "by"):
        assert merged[key] == single[key], key
    with h5py.File(tmp_path / "pred.h5") as whole:  # each shard's file holds its own samples
        files = [h5py.File(tmp_path / f"pred{i}.h5") for i in range(3)]
        try:
            for name in ("positions", "per_sample/prob_true", "detector/msp", "correct"):
                joined = np.concatenate([f[name][()] for f in files])
                np.testing.assert_array_equal(joined, whole[name][()], err_msg=name)
        finally:
            for f in files:
                f.close()
