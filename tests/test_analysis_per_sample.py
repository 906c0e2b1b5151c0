"""Per-sample Shapley values: hand-computed games, efficiency, independent references."""

import numpy as np
import pytest
from shape_testing import shapley_by_orderings

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import all_coalitions, coalition_name
from sareval.evaluator.metrics import counts_for, decide
from sareval.evaluator.per_sample import (
    PerSampleShapley,
    local_cooperation,
    per_sample_scores,
    per_sample_shapley,
    shapley_weights,
    summarize_per_sample,
)
from sareval.evaluator.relevance import game_values
from sareval.evaluator.shapley import cooperation, shapley_array, shapley_values

TWO = ("sar", "opt")
THREE = ("sar", "rgb", "nir")


def _outputs(rng, players, b, k, empty_constant=True):
    out = rng.normal(size=(2 ** len(players), b, k))
    if empty_constant:
        out[0] = out[0, :1]  # the empty coalition: one output for every sample
    return out


def test_two_players_by_hand():
    # probabilities of 2 classes; the full coalition predicts class 0, the true class is 1
    probs = np.array([[[0.5, 0.5]], [[0.6, 0.4]], [[0.7, 0.3]], [[0.9, 0.1]]])
    result = per_sample_shapley(
        probs, TWO, np.array([1]), kind="probabilities", task="single-label"
    )
    # game on p(class 0): none .5, sar .6, opt .7, all .9
    sar = ((0.6 - 0.5) + (0.9 - 0.7)) / 2
    opt = ((0.7 - 0.5) + (0.9 - 0.6)) / 2
    np.testing.assert_allclose(result.prob_pred, [[sar, opt]], atol=1e-15)
    np.testing.assert_allclose(result.prob_true, [[-sar, -opt]], atol=1e-15)
    assert result.predicted.tolist() == [0] and result.correct.tolist() == [False]
    np.testing.assert_allclose(
        shapley_weights(TWO), [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    )


def test_logits_by_hand_and_softmax():
    logits = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]], [[3.0, 1.0]]])
    result = per_sample_shapley(
        logits, TWO, np.array([0]), kind="logits", task="single-label", include_logits=True
    )
    # predicted class 0 (3 > 1); logit game on class 0: 0, 1, 0, 3
    np.testing.assert_allclose(result.logit_pred, [[2.0, 1.0]])
    np.testing.assert_allclose(result.logit_true, [[2.0, 1.0]])
    p0 = 1 / (1 + np.exp(logits[:, 0, 1] - logits[:, 0, 0]))
    sar = ((p0[1] - p0[0]) + (p0[3] - p0[2])) / 2
    np.testing.assert_allclose(result.prob_pred[0, 0], sar, atol=1e-15)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_efficiency_and_independent_references(task, kind):
    rng = np.random.default_rng(3)
    b, k = 17, 4
    out = _outputs(rng, THREE, b, k)
    if kind == "probabilities":
        out = (
            np.exp(out) / np.exp(out).sum(-1, keepdims=True)
            if task == "single-label"
            else (1 / (1 + np.exp(-out)))
        )
    labels = rng.integers(0, k, b) if task == "single-label" else rng.integers(0, 2, (b, k))
    logits_ok = not (task == "single-label" and kind == "probabilities")
    kw = dict(kind=kind, task=task, include_logits=logits_ok)
    result = per_sample_shapley(out, THREE, labels, **kw)
    scores = per_sample_scores(out, THREE, labels, **kw)
    coalitions = all_coalitions(THREE)
    for name, s in scores.items():
        phi = getattr(result, name)
        # efficiency: sum over players = score(all) - score(none), per sample (and class)
        np.testing.assert_allclose(phi.sum(-1), s[..., -1] - s[..., 0], atol=1e-12)
        flat_s = s.reshape(-1, s.shape[-1])
        flat_phi = phi.reshape(-1, phi.shape[-1])
        for row_s, row_phi in zip(flat_s, flat_phi, strict=True):
            game = {c: float(v) for c, v in zip(coalitions, row_s, strict=True)}
            ref = shapley_values(game, THREE)
            indep = shapley_by_orderings(game, THREE)
            np.testing.assert_allclose(row_phi, [ref[p] for p in THREE], atol=1e-12)
            np.testing.assert_allclose(row_phi, [indep[p] for p in THREE], atol=1e-12)
            assert local_cooperation(row_s) == pytest.approx(cooperation(game, THREE), abs=1e-12)
    if task == "multi-label":
        # summed over the true classes = per-class values summed over the true classes
        true = labels != 0
        np.testing.assert_allclose(
            result.prob_true, (result.prob_class * true[..., None]).sum(1), atol=1e-12
        )
        pred = result.predicted
        np.testing.assert_allclose(
            result.prob_pred, (result.prob_class * pred[..., None]).sum(1), atol=1e-12
        )
        assert result.correct.tolist() == (pred == true).all(1).tolist()


def test_scores_pick_the_right_columns():
    rng = np.random.default_rng(0)
    out = _outputs(rng, TWO, 6, 3)
    labels = rng.integers(0, 3, 6)
    s = per_sample_scores(out, TWO, labels, kind="logits", task="single-label", include_logits=True)
    pred = out[-1].argmax(-1)
    p = np.exp(out) / np.exp(out).sum(-1, keepdims=True)
    for j in range(4):
        for n in range(6):
            assert s["logit_pred"][n, j] == out[j, n, pred[n]]
            assert s["logit_true"][n, j] == out[j, n, labels[n]]
            assert s["prob_true"][n, j] == pytest.approx(p[j, n, labels[n]], abs=1e-15)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_batch_splitting(task):
    rng = np.random.default_rng(5)
    b, k = 23, 5
    out = rng.normal(size=(8, b, k))
    labels = rng.integers(0, k, b) if task == "single-label" else rng.integers(0, 2, (b, k))
    kw = dict(kind="logits", task=task, include_logits=True)
    whole = per_sample_shapley(out, THREE, labels, **kw)
    parts = [
        per_sample_shapley(out[:, a:z], THREE, labels[a:z], **kw)
        for a, z in ((0, 7), (7, 8), (8, 23))
    ]
    joined = PerSampleShapley.concatenate(parts)
    for name in ("prob_pred", "prob_true", "logit_pred", "logit_true", "correct", "predicted"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))
    assert joined.n == b and joined.players == THREE


def test_multilabel_probability_logits_are_log_odds():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 5, 3))
    labels = rng.integers(0, 2, (5, 3))
    a = per_sample_shapley(
        logits, TWO, labels, kind="logits", task="multi-label", include_logits=True
    )
    probs = 1 / (1 + np.exp(-logits))
    b = per_sample_shapley(
        probs, TWO, labels, kind="probabilities", task="multi-label", include_logits=True
    )
    np.testing.assert_allclose(a.logit_class, b.logit_class, atol=1e-9)
    np.testing.assert_allclose(a.prob_true, b.prob_true, atol=1e-12)


def test_bad_inputs():
    rng = np.random.default_rng(0)
    out = rng.normal(size=(4, 3, 2))
    y = np.array([0, 1, 0])
    with pytest.raises(SarevalError, match="expected \\(C=8, B, K\\)"):
        per_sample_shapley(out, THREE, y, kind="logits", task="single-label")
    with pytest.raises(SarevalError, match="majority-class"):
        bad = out.copy()
        bad[0] = np.nan
        per_sample_shapley(bad, TWO, y, kind="logits", task="single-label")
    with pytest.raises(SarevalError, match="need logits"):
        per_sample_shapley(
            out, TWO, y, kind="probabilities", task="single-label", include_logits=True
        )
    with pytest.raises(SarevalError, match="class indices in"):
        per_sample_shapley(out, TWO, np.array([0, 1, 2]), kind="logits", task="single-label")
    with pytest.raises(SarevalError, match="unknown output kind"):
        per_sample_shapley(out, TWO, y, kind="scores", task="single-label")
    with pytest.raises(SarevalError, match="not computed"):
        per_sample_shapley(out, TWO, y, kind="logits", task="single-label").quantity("logit_pred")


def test_summary():
    rng = np.random.default_rng(2)
    n = 40
    values = rng.normal(size=(n, 2))
    labels = rng.integers(0, 3, n)
    cover = rng.uniform(0, 1, n)
    cover[:5] = np.nan
    cover[5] = 1.0  # the last bin includes its right edge
    s = summarize_per_sample(
        values, TWO, labels=labels, class_names=["a", "b", "c"], cloud_cover=cover,
        bin_edges=[0, 0.5, 1],
    )  # fmt: skip
    assert s["n_samples"] == n
    assert s["mean"]["opt"] == pytest.approx(values[:, 1].mean())
    assert s["quantiles"]["0.25"]["sar"] == pytest.approx(np.quantile(values[:, 0], 0.25))
    assert s["by_class"]["b"]["n_samples"] == int((labels == 1).sum())
    assert s["by_class"]["b"]["mean"]["sar"] == pytest.approx(values[labels == 1, 0].mean())
    bins = s["by_cloud_cover"]
    assert list(bins) == ["[0, 0.5)", "[0.5, 1]", "unknown"]
    assert bins["unknown"]["n_samples"] == 5
    high = (cover >= 0.5) & ~np.isnan(cover)
    assert bins["[0.5, 1]"]["n_samples"] == int(high.sum())
    assert bins["[0.5, 1]"]["mean"]["opt"] == pytest.approx(values[high, 1].mean())
    # multi-label: a sample counts in each of its classes; an empty class has NaN means
    multi = np.zeros((n, 3), dtype=int)
    multi[:10, 0] = 1
    multi[5:20, 1] = 1
    m = summarize_per_sample(values, TWO, labels=multi, task="multi-label")
    assert m["by_class"]["1"]["n_samples"] == 15
    assert m["by_class"]["1"]["mean"]["sar"] == pytest.approx(values[5:20, 0].mean())
    assert m["by_class"]["2"]["n_samples"] == 0 and np.isnan(m["by_class"]["2"]["mean"]["sar"])
    with pytest.raises(SarevalError, match="both"):
        summarize_per_sample(values, TWO, cloud_cover=cover)


def test_names_of_coalitions_match_the_weights():
    # the weight rows follow all_coalitions order: a player's own singleton has weight w(0)
    w = shapley_weights(THREE)
    for j, c in enumerate(all_coalitions(THREE)):
        name = coalition_name(c, THREE)
        if len(c) == 1:
            i = THREE.index(name)
            assert w[j, i] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("task", "metric"), [("single-label", "oa"), ("multi-label", "subset_accuracy")]
)
def test_mean_accuracy_shapley_is_the_shape_relevance(task, metric):
    rng = np.random.default_rng(8)
    b, k = 300, 3
    out = _outputs(rng, TWO, b, k)
    labels = rng.integers(0, k, b) if task == "single-label" else rng.integers(0, 2, (b, k))
    result = per_sample_shapley(out, TWO, labels, kind="logits", task=task)
    counts = {}
    for c, o in zip(all_coalitions(TWO), out, strict=True):
        counts[c] = counts_for(task, k)
        counts[c].add(labels, decide(o, task, "logits"))
    V = game_values(counts, TWO)[metric]
    np.testing.assert_allclose(result.accuracy.mean(0), shapley_array(V, TWO), atol=1e-12)
    assert result.accuracy.shape == (b, 2)
