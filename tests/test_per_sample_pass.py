"""Per-sample relevance and detection computed in the evaluator's pass (ShapeConfig.per_sample)."""

from __future__ import annotations

from itertools import permutations
from math import factorial
from pathlib import Path

import h5py
import numpy as np
import pytest
from shape_testing import get_assets
from sklearn.metrics import average_precision_score, roc_auc_score

import sareval
from sareval.evaluator.coalitions import all_coalitions


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_per_sample_values_equal_a_naive_loop(assets, task: str, tmp_path: Path) -> None:
    pred = tmp_path / "pred.h5"
    r = sareval.evaluate(assets.onnx[task], (assets.store, "clear"), batch_size=7,
                         per_sample=True, save_predictions=pred)  # fmt: skip
    players = r.players
    with h5py.File(pred) as f:
        outputs, labels = f["outputs"][()], f["labels"][()]
        phi = f["per_sample/prob_true"][()]
        msp_score = f["detector/msp"][()]
        correct = f["correct"][()]
    coalitions = all_coalitions(players)
    index = {c: j for j, c in enumerate(coalitions)}
    probs = softmax(outputs) if task == "single-label" else 1 / (1 + np.exp(-outputs))
    for i in range(0, len(labels), 5):  # the naive loop: average marginal over orderings
        if task == "single-label":
            score = probs[:, i, labels[i]]
        else:
            score = (probs[:, i] * (labels[i] != 0)).sum(-1)
        naive = np.zeros(len(players))
        for order in permutations(range(len(players))):
            before: frozenset[str] = frozenset()
            for p in order:
                after = before | {players[p]}
                naive[p] += score[index[after]] - score[index[before]]
                before = after
        naive /= factorial(len(players))
        np.testing.assert_allclose(phi[i], naive, atol=1e-5)
        assert phi[i].sum() == pytest.approx(score[-1] - score[0], abs=1e-5)  # efficiency
    det = r.doc["detection"]
    wrong = ~correct
    assert det["n_wrong"] == wrong.sum() and det["n"] == len(wrong)
    if 0 < wrong.sum() < len(wrong):
        msp = next(row for row in det["rows"] if row["detector"] == "msp")
        assert msp["auroc"] == pytest.approx(roc_auc_score(wrong, msp_score), abs=1e-12)
        assert msp["aupr"] == pytest.approx(average_precision_score(wrong, msp_score), abs=1e-12)
        assert "baseline" in det["summary"]
    else:
        assert det["summary"].startswith("not computed") and task == "multi-label"
    mean = r.doc["per_sample"]["accuracy"]["mean"]
    metric = "oa" if task == "single-label" else "subset_accuracy"
    for p in players:  # mean per-sample correctness Shapley = SHAPE relevance (Z = 1)
        assert mean[p] == pytest.approx(r.relevance[metric][p], abs=1e-6)


def test_per_sample_is_independent_of_batch_size(assets) -> None:
    task = "multi-label"
    a = sareval.evaluate(assets.onnx[task], (assets.store, "clear"), batch_size=3, per_sample=True)
    b = sareval.evaluate(assets.onnx[task], (assets.store, "clear"), batch_size=40, per_sample=True)
    # model outputs may differ in the last bits between batch sizes (other kernels)
    assert_close_tree(a.doc["per_sample"], b.doc["per_sample"])
    assert_close_tree(a.doc["detection"], b.doc["detection"])


def assert_close_tree(a: object, b: object) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_close_tree(a[k], b[k])
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5, nan_ok=True)
    else:
        assert a == b


def test_per_sample_refusals(assets) -> None:
    needs = "per_sample: needs an exact game and ShapeConfig.game.empty_coalition"
    with pytest.raises(sareval.SarevalError, match=needs):
        sareval.evaluate(assets.onnx["single-label"], (assets.store, "clear"), per_sample=True,
                         empty_coalition="majority")  # fmt: skip
    with pytest.raises(TypeError, match="per_sample"):  # SHAPE's, not the perceptual score's
        sareval.perceptual_score(assets.onnx["single-label"], (assets.store, "clear"),
                                 per_sample=True)  # type: ignore[call-arg]  # fmt: skip
    sareval.ShapeConfig(per_sample=True, shard=(0, 2))  # merged by `sareval merge`


def test_predictions_file_holds_ids_and_cloud_cover_per_sample(assets, tmp_path: Path) -> None:
    """Each sample's id and the cloud cover of the optical image read, beside its values."""
    pred = tmp_path / "pred.h5"
    sareval.evaluate(assets.onnx["single-label"], (assets.store, "cloudy"), batch_size=4,
                     per_sample=True, save_predictions=pred)  # fmt: skip
    with h5py.File(assets.store) as store, h5py.File(pred) as f:
        rows = f["rows"][()]
        np.testing.assert_array_equal(f["ids"][()], store["ids"][()][rows])
        cover = store["cloud_cover"][()][rows].astype(np.float32)
        assert np.isfinite(cover).any()
        np.testing.assert_array_equal(f["cloud_cover"][()], cover)
        assert f["per_sample/prob_true"].shape[0] == len(rows)
