"""map_macro over classes without a positive sample (issue 18 item 6): the policy is explicit
(``ShapeConfig.map_absent_classes``), each policy equals scikit-learn on the classes it averages,
and the results say which classes entered the mean."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from shape_testing import evaluate_doc, get_assets, naive_outputs, store_labels
from sklearn.metrics import average_precision_score

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.config import ShapeConfig
from sareval.evaluator.results import to_json_value, validate
from sareval.evaluator.scores import ScoreState, map_values

TOL = 1e-12


def sk_macro(y: np.ndarray, scores: np.ndarray, weight: np.ndarray | None = None) -> float:
    """scikit-learn's macro AP over the columns given (an absent class: 0, with a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per = [
            average_precision_score(y[:, c], scores[:, c], sample_weight=weight)
            if (y[:, c] * (1 if weight is None else weight)).any()
            else 0.0
            for c in range(y.shape[1])
        ]
    return float(np.mean(per)) if per else float("nan")


def absent_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """19 classes, some without positives; tied float32 scores."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 60)), 19
    y = rng.random((n, k)) < 0.3
    y[:, rng.choice(k, int(rng.integers(1, 4)), replace=False)] = False
    scores = np.round(rng.normal(size=(n, k)) + y, 1).astype(np.float32)
    return y, scores


@pytest.mark.parametrize("seed", range(8))
def test_each_policy_equals_sklearn_on_its_classes(seed: int) -> None:
    y, scores = absent_case(seed)
    present = y.any(axis=0)
    skip = map_values(scores, y, absent="skip")["map_macro"]
    zero = map_values(scores, y, absent="zero")["map_macro"]
    assert skip == pytest.approx(sk_macro(y[:, present], scores[:, present]), abs=TOL)
    assert zero == pytest.approx(sk_macro(y, scores), abs=TOL)
    assert zero == pytest.approx(skip * present.sum() / y.shape[1], abs=TOL)
    assert zero < skip  # the issue: 0.093 with the absent class, 0.098 without
    micro = map_values(scores, y, absent="skip")["map_micro"]
    assert micro == map_values(scores, y, absent="zero")["map_micro"]  # pooled: no policy


def test_policies_agree_when_every_class_is_present() -> None:
    rng = np.random.default_rng(3)
    y = rng.random((40, 5)) < 0.5
    y[0] = True
    scores = rng.normal(size=(40, 5)).astype(np.float32)
    a, b = map_values(scores, y, absent="skip"), map_values(scores, y, absent="zero")
    assert a["map_macro"] == b["map_macro"]  # bitwise: the same numbers as before the policy


def test_bootstrap_weights_skip_per_replicate() -> None:
    """With replicate weights, a class absent from one replicate's drawn samples is left out of
    that replicate's mean (scikit-learn with ``sample_weight`` on the classes drawn)."""
    y, scores = absent_case(11)
    rng = np.random.default_rng(5)
    weights = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=6)
    got = map_values(scores, y, weights, absent="skip")["map_macro"]
    for r in range(6):
        drawn = (weights[r][:, None] * y).sum(axis=0) > 0
        expected = sk_macro(y[:, drawn], scores[:, drawn], weights[r])
        assert got[r] == pytest.approx(expected, abs=TOL)


def test_state_records_the_classes_averaged() -> None:
    y, scores = absent_case(2)
    names = [f"c{i}" for i in range(19)]
    state = ScoreState(scores[None], y, np.zeros(len(y), np.int16), np.zeros(19, np.float32))
    absent = [n for n, p in zip(names, y.any(axis=0), strict=True) if not p]
    rec = state.macro_record(names)
    assert rec == {"classes_averaged": 19 - len(absent), "absent_classes": absent,
                   "absent_policy": "skip"}  # fmt: skip
    assert (state.per_class_ap()[:, ~y.any(axis=0)] == 0).all()  # sklearn's value, either way
    (warning,) = state.macro_warnings(names)
    assert warning.startswith(f"map_macro: {len(absent)} of 19 classes have no positive sample")
    assert "map_absent_classes='skip'" in warning
    zero = state.with_policy("zero")
    assert zero.macro_record(names)["classes_averaged"] == 19
    np.testing.assert_array_equal(zero.per_class_ap(), state.per_class_ap())
    with pytest.raises(SarevalError, match=r"ShapeConfig\.reporting\.map_absent_classes: 'nan'"):
        state.with_policy("nan")
    with pytest.raises(SarevalError, match=r"ShapeConfig\.reporting\.map_absent_classes: 'mean'"):
        ShapeConfig(map_absent_classes="mean")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def test_evaluator_policies_against_sklearn(assets) -> None:
    """On a store subset with classes absent, V of every coalition under each policy equals
    scikit-learn on the classes averaged; the entry and a warning name the absent classes."""
    model, card = assets.onnx["multi-label"], assets.cards["multi-label"]
    y = store_labels(assets.store, "clear", "multi-label").astype(bool)
    present = y.any(axis=0)
    assert 0 < present.sum() < len(present)  # the test store leaves classes out of "clear"
    coalitions, outputs = naive_outputs(model, assets.store, "clear", card)
    docs = {
        policy: evaluate_doc(model, assets.store, "clear", map_absent_classes=policy,
                             by=["class"], progress=False)
        for policy in ("skip", "zero")
    }  # fmt: skip
    names = docs["skip"]["class_names"]
    absent = [n for n, p in zip(names, present, strict=True) if not p]
    for policy, doc in docs.items():
        validate(to_json_value(doc))
        assert doc["config"]["map_absent_classes"] == policy
        entry = doc["metrics"]["map_macro"]
        assert entry["absent_classes"] == absent and entry["absent_policy"] == policy
        assert entry["classes_averaged"] == (present.sum() if policy == "skip" else len(names))
        assert any(w.startswith("map_macro:") and policy in w for w in doc["warnings"])
        empty = np.broadcast_to(np.asarray(doc["empty"]["output"], np.float32), y.shape)
        keep = present if policy == "skip" else slice(None)
        for coalition, out in zip(coalitions, outputs, strict=True):
            scores = empty if not coalition else out
            expected = sk_macro(y[:, keep], scores[:, keep])
            name = coalition_name(coalition, tuple(doc["players"]))
            assert entry["V"][name] == pytest.approx(expected, abs=1e-6)
    assert docs["skip"]["by"] == docs["zero"]["by"]  # per-class AP: 0 for an absent class
    assert all(
        v == 0 for v in docs["skip"]["by"]["class"][absent[0]]["metrics"]["ap"]["V"].values()
    )
    f1 = [d["metrics"]["f1_macro"]["V"] for d in docs.values()]
    assert f1[0] == f1[1]  # the policy touches map_macro only
