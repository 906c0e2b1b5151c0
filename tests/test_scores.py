"""Mean average precision (map_macro, map_micro) against scikit-learn: the AP function, the
score state (JSON round trip, merging), the evaluator's values per coalition and bin, batch-size
and shard invariance, the bootstrap and the memory bound."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets, naive_outputs, shapley_by_orderings, store_labels
from sklearn.metrics import average_precision_score

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.merge import merge_documents
from sareval.evaluator.results import to_json_value, validate
from sareval.evaluator.scores import ScoreState, average_precision, map_values, score_bytes
from sareval.store import Store

TOL = 1e-12


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def sk_map(y: np.ndarray, scores: np.ndarray, average: str) -> float:
    """scikit-learn's mAP; a class without positives gives 0 (what sklearn 1.9 returns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if y.shape[1] == 1 and average == "macro":
            return float(average_precision_score(y[:, 0], scores[:, 0])) if y.any() else 0.0
        return float(average_precision_score(y, scores, average=average))


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Random labels and float32 scores: ties (rounded scores), classes without positives or
    without negatives, one sample, one class, constant scores."""
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(60):
        n, k = int(rng.integers(1, 80)), int(rng.integers(1, 7))
        y = rng.random((n, k)) < rng.uniform(0.0, 0.9)
        scores = rng.normal(size=(n, k)) + y * rng.uniform(0, 2)
        scores = np.round(scores, int(rng.integers(0, 4))).astype(np.float32)
        if k > 1 and rng.random() < 0.3:
            y[:, 0] = False
        if k > 1 and rng.random() < 0.3:
            y[:, -1] = True
        cases.append((y, scores))
    y = rng.random((30, 4)) < 0.4
    cases.append((y, np.zeros((30, 4), np.float32)))  # one threshold: AP = prevalence
    cases.append((np.zeros((5, 3), bool), rng.normal(size=(5, 3)).astype(np.float32)))
    return cases


@pytest.mark.parametrize("case", range(len(_cases())))
def test_map_equals_sklearn(case: int) -> None:
    y, scores = _cases()[case]
    got = map_values(scores, y)
    for average in ("macro", "micro"):
        assert got[f"map_{average}"] == pytest.approx(sk_map(y, scores, average), abs=TOL)


def test_constant_scores_give_the_prevalence() -> None:
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], bool)
    np.testing.assert_allclose(average_precision(np.full((4, 2), 0.3), y), [0.5, 0.25])


def test_weighted_ap_equals_sklearn_sample_weight() -> None:
    rng = np.random.default_rng(1)
    y = rng.random((50, 3)) < 0.4
    scores = np.round(rng.normal(size=(50, 3)), 1).astype(np.float32)
    weights = rng.integers(0, 4, (5, 50))
    got = average_precision(scores, y, weights)
    for r in range(5):
        for c in range(3):
            expected = average_precision_score(y[:, c], scores[:, c], sample_weight=weights[r])
            assert got[r, c] == pytest.approx(expected, abs=TOL)


def _state(rng: np.random.Generator, n: int, j: int = 3, k: int = 4) -> ScoreState:
    return ScoreState(
        rng.normal(size=(j, n, k)).astype(np.float32),
        rng.random((n, k)) < 0.4,
        rng.integers(0, 3, n).astype(np.int16),
        rng.normal(size=k).astype(np.float32),
    )


def test_state_json_round_trip_and_concat_order() -> None:
    rng = np.random.default_rng(2)
    a, b = _state(rng, 17), _state(rng, 9)
    b.empty = a.empty
    back = ScoreState.from_json(a.to_json())
    for field in ("scores", "labels", "groups", "empty"):
        np.testing.assert_array_equal(getattr(back, field), getattr(a, field))
        assert getattr(back, field).dtype == getattr(a, field).dtype
    ab, ba = ScoreState.concat([a, b]), ScoreState.concat([b, a])
    for m, v in ab.values().items():
        np.testing.assert_array_equal(v, ba.values()[m])  # bitwise: the order never matters
    data = a.to_json()
    data["sha256"] = "0" * 64
    with pytest.raises(SarevalError, match=r"r\.json: unreadable 'scores'.*sha256"):
        ScoreState.from_json(data, "r.json")
    assert score_bytes(125_866, 19, 3) < 40e6  # BigEarthNet test, two players


def test_evaluator_map_equals_sklearn_per_coalition(assets) -> None:
    card = assets.cards["multi-label"]
    y = store_labels(assets.store, "clear", "multi-label").astype(bool)
    docs = [
        evaluate_shape(
            assets.onnx["multi-label"], assets.store, "clear", batch_size=bs, progress=False
        )
        for bs in (1, 7, 64)
    ]
    for doc in docs[1:]:
        assert to_json_value(doc["metrics"]) == to_json_value(docs[0]["metrics"])
    doc = docs[0]
    coalitions, outputs = naive_outputs(assets.onnx["multi-label"], assets.store, "clear", card)
    players = tuple(doc["players"])
    empty = np.broadcast_to(np.asarray(doc["empty"]["output"], np.float32), y.shape)
    for coalition, out in zip(coalitions, outputs, strict=True):
        scores = empty if not coalition else out
        name = coalition_name(coalition, players)
        for average in ("macro", "micro"):
            keep = y.any(axis=0) if average == "macro" else slice(None)  # default policy: skip
            expected = sk_map(y[:, keep], scores[:, keep], average)
            assert doc["metrics"][f"map_{average}"]["V"][name] == pytest.approx(expected, abs=1e-6)
    for metric in ("map_macro", "map_micro"):
        entry = doc["metrics"][metric]
        assert entry["higher_is_better"] is True
        V = {c: entry["V"][coalition_name(c, players)] for c in coalitions}
        phi = shapley_by_orderings(V, players)
        for p in players:
            assert entry["relevance"][p] == pytest.approx(phi[p], abs=TOL)
    assert "scores" not in doc  # only shards carry the state


def test_map_per_cloud_cover_bin_and_bootstrap(assets) -> None:
    doc = evaluate_shape(
        assets.onnx["multi-label"],
        assets.store,
        "cloudy",
        by=["cloud-cover=0,0.5,1", "class"],
        replicates=20,
        empty_coalition="majority",
        progress=False,
    )
    validate(to_json_value(doc))
    card = assets.cards["multi-label"]
    coalitions, outputs = naive_outputs(assets.onnx["multi-label"], assets.store, "cloudy", card)
    y = store_labels(assets.store, "cloudy", "multi-label").astype(bool)
    with Store(assets.store) as st:
        cover = st.cloud_cover(st.subset("cloudy").rows)
    majority = np.asarray(doc["empty"]["decision"], np.float32)
    for entry in doc["by"]["cloud_cover"]:
        lo, hi = entry["bin"]
        keep = (cover >= lo) & ((cover < hi) | (cover == 1.0))
        if not keep.any():
            continue
        for coalition, out in zip(coalitions, outputs, strict=True):
            scores = np.broadcast_to(majority, y.shape) if not coalition else out
            name = coalition_name(coalition, tuple(doc["players"]))
            expected = sk_map(y[keep], scores[keep], "micro")
            assert entry["metrics"]["map_micro"]["V"][name] == pytest.approx(expected, abs=1e-6)
    for i, cls in enumerate(doc["class_names"]):  # per-class AP
        entry = doc["by"]["class"][cls]["metrics"]["ap"]
        for coalition, out in zip(coalitions, outputs, strict=True):
            scores = np.broadcast_to(majority, y.shape) if not coalition else out
            expected = sk_map(y[:, i : i + 1], scores[:, i : i + 1], "macro")
            name = coalition_name(coalition, tuple(doc["players"]))
            assert entry["V"][name] == pytest.approx(expected, abs=1e-6)
    ci = doc["metrics"]["map_macro"]["ci"]
    lo, hi = ci["V"]["sar+opt"]
    assert lo <= doc["metrics"]["map_macro"]["V"]["sar+opt"] <= hi


def test_shards_carry_scores_and_merge_to_one_process(assets) -> None:
    model = assets.onnx["multi-label"]
    kw = {"by": ["cloud-cover=0,0.5,1", "class"], "progress": False}
    single = to_json_value(evaluate_shape(model, assets.store, "cloudy", **kw))
    parts = [
        to_json_value(
            evaluate_shape(model, assets.store, "cloudy", shard=(i, 3), batch_size=5, **kw)
        )
        for i in range(3)
    ]
    for part in parts:
        validate(part)
        assert part["scores"]["n"] == part["n_samples"]
    merged = merge_documents(parts[::-1], ["p2", "p1", "p0"])
    assert "scores" not in merged
    for key in ("metrics", "by"):
        assert merged[key] == single[key], key
    assert "map_macro" in merged["by"]["cloud_cover"][0]["metrics"]
    no_scores = dict(parts[1])
    del no_scores["scores"]
    with pytest.raises(SarevalError, match="p1: no 'scores' section"):
        merge_documents([parts[0], no_scores, parts[2]], ["p0", "p1", "p2"])


def test_opting_out_and_the_memory_bound(assets, monkeypatch: pytest.MonkeyPatch) -> None:
    model = assets.onnx["multi-label"]
    doc = evaluate_shape(model, assets.store, "clear", metrics=["f1_macro"], progress=False)
    assert list(doc["metrics"]) == ["f1_macro"]
    only = evaluate_shape(model, assets.store, "clear", metrics=["map_micro"], progress=False)
    assert list(only["metrics"]) == ["map_micro"]
    monkeypatch.setenv("SAREVAL_MAX_SCORE_BYTES", "1000")
    with pytest.raises(
        SarevalError,
        match=r"mean average precision keeps every score.*"
        "SAREVAL_MAX_SCORE_BYTES",
    ):
        evaluate_shape(model, assets.store, "clear", progress=False)
    evaluate_shape(model, assets.store, "clear", metrics=["f1_macro"], progress=False)
    single = evaluate_shape(assets.onnx["single-label"], assets.store, "clear", progress=False)
    assert "map_macro" not in single["metrics"]
    with pytest.raises(SarevalError, match="map_\\* are SHAPE metrics, not perceptual scores"):
        evaluate_shape(
            model, assets.store, "clear", method="perceptual", metrics=["map_micro"], progress=False
        )
