"""The analysis input contract on a real evaluator pass (``save_predictions``)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.analysis.compare import paired_shape_difference
from sareval.evaluator.coalitions import all_coalitions, coalition_names
from sareval.evaluator.detection import detection_table, detector_scores
from sareval.evaluator.per_sample import per_sample_shapley

ACCURACY = {"single-label": "oa", "multi-label": "subset_accuracy"}


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_predictions_file_feeds_the_analyses(tmp_path_factory, tmp_path: Path, task: str):
    assets = get_assets(tmp_path_factory)
    card = assets.cards[task]
    out = tmp_path / "pred.h5"
    doc = evaluate_shape(
        assets.onnx[task], assets.store, "clear", batch_size=7, save_predictions=out,
        progress=False,
    )  # fmt: skip
    with h5py.File(out) as f:
        outputs, labels, decisions = f["outputs"][()], f["labels"][()], f["decisions"][()]
        players = tuple(json.loads(f.attrs["players"]))
        assert json.loads(f.attrs["coalitions"]) == coalition_names(players)
    assert players == tuple(card.modality_names)
    kw = dict(kind=card.output, task=task, threshold=card.threshold)
    result = per_sample_shapley(outputs, players, labels, **kw)
    # the sample mean of the per-sample correctness Shapley values is SHAPE's (Z = 1)
    relevance = doc["metrics"][ACCURACY[task]]["relevance"]
    np.testing.assert_allclose(result.accuracy.mean(0), [relevance[p] for p in players], atol=1e-12)
    scores = detector_scores(outputs, players, **kw)
    assert all(v.shape == (len(labels),) for v in scores.values())
    if 0 < (~result.correct).sum() < len(labels):
        rows = detection_table(scores, ~result.correct, n_boot=20)
        assert [r.detector for r in rows] == list(scores)
    preds = dict(zip(all_coalitions(players), decisions, strict=True))
    same = paired_shape_difference(labels, preds, preds, players, task, card.n_classes, n_boot=5)
    assert same[ACCURACY[task]]["relevance"][players[0]].estimate == 0.0
