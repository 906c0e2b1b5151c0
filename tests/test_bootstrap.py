"""Paired bootstrap intervals: replicates equal explicit resampling, determinism, pairing."""

from __future__ import annotations

import numpy as np
import pytest

import sareval.evaluator.bootstrap as bootstrap_module
from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import bootstrap_intervals, bootstrap_values, percentile_interval
from sareval.evaluator.coalitions import all_coalitions
from sareval.evaluator.metrics import counts_for
from sareval.evaluator.relevance import relevance_from_counts

PLAYERS = ["sar", "opt"]
F = frozenset


def _single_label_data(n: int, k: int = 5, seed: int = 0):
    """Predictions that improve with each modality; optical helps more than SAR."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    noise = rng.integers(0, k, n)
    right = {"sar": rng.random(n) < 0.4, "opt": rng.random(n) < 0.7}
    predictions = {
        F(): np.zeros(n, dtype=np.int64),  # a constant prediction for the empty coalition
        F({"sar"}): np.where(right["sar"], y, noise),
        F({"opt"}): np.where(right["opt"], y, noise),
        F({"sar", "opt"}): np.where(right["sar"] | right["opt"], y, noise),
    }
    return y, predictions


def _multi_label_data(n: int, k: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, k)) < 0.3
    noise = rng.random((n, k)) < 0.2

    def keep(p: float) -> np.ndarray:
        return np.where(rng.random((n, k)) < p, y, noise)

    predictions = {
        F(): np.zeros(k, dtype=bool),  # broadcast to (n, k)
        F({"sar"}): keep(0.5),
        F({"opt"}): keep(0.8),
        F({"sar", "opt"}): keep(0.9),
    }
    return y, predictions


def _resampled_metrics(y, predictions, task, k, idx) -> dict[str, np.ndarray]:
    """The naive way: resample the arrays and count them, coalition by coalition."""
    per_coalition = []
    for coalition in all_coalitions(PLAYERS):
        counts = counts_for(task, k)
        pred = np.broadcast_to(predictions[coalition], y.shape)
        counts.add(y[idx], pred[idx])
        per_coalition.append(counts.metrics())
    return {m: np.array([c[m] for c in per_coalition]) for m in per_coalition[0]}


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_replicates_equal_explicit_resampling(task: str, monkeypatch) -> None:
    n, seed, n_boot = 300, 11, 7
    if task == "single-label":
        k = 5
        y, predictions = _single_label_data(n, k)
    else:
        k = 6
        y, predictions = _multi_label_data(n, k)
    values = bootstrap_values(y, predictions, PLAYERS, task, k, n_boot=n_boot, seed=seed)
    generators = np.random.default_rng(seed).spawn(n_boot)
    for r in range(n_boot):
        idx = generators[r].integers(0, n, size=n)
        expected = _resampled_metrics(y, predictions, task, k, idx)
        for metric, v in expected.items():
            np.testing.assert_allclose(values[metric][r], v, rtol=0, atol=1e-12, err_msg=metric)
    # the chunking of replicates does not change anything
    monkeypatch.setattr(bootstrap_module, "CHUNK_ELEMENTS", n * 2)
    chunked = bootstrap_values(y, predictions, PLAYERS, task, k, n_boot=n_boot, seed=seed)
    for metric in values:
        np.testing.assert_array_equal(chunked[metric], values[metric])


def test_deterministic_by_seed() -> None:
    y, predictions = _single_label_data(200)
    a = bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, n_boot=50, seed=3)
    b = bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, n_boot=50, seed=3)
    c = bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, n_boot=50, seed=4)
    assert a == b
    assert a != c
    assert set(a["oa"]) == {"V", "relevance", "cooperation", "interactions"}
    assert list(a["oa"]["V"]) == ["none", "sar", "opt", "sar+opt"]
    assert list(a["oa"]["relevance"]) == PLAYERS
    assert len(a["oa"]["cooperation"]) == 2


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
@pytest.mark.parametrize("z", ["one", "full"])
def test_intervals_contain_point_estimates(task: str, z: str) -> None:
    n = 3000
    if task == "single-label":
        k = 5
        y, predictions = _single_label_data(n, k, seed=1)
    else:
        k = 6
        y, predictions = _multi_label_data(n, k, seed=1)
    counts = {}
    for coalition, pred in predictions.items():
        counts[coalition] = counts_for(task, k)
        counts[coalition].add(y, np.broadcast_to(pred, y.shape))
    points = relevance_from_counts(counts, PLAYERS, z)
    intervals = bootstrap_intervals(y, predictions, PLAYERS, task, k, n_boot=200, seed=0, z=z)
    assert set(intervals) == set(points)
    for metric, entry in points.items():
        ci = intervals[metric]
        for name, v in entry["V"].items():
            lo, hi = ci["V"][name]
            assert lo <= v <= hi, (metric, name)
            if name != "none":  # the constant empty coalition can have a degenerate interval
                assert hi - lo < 0.2, (metric, name)
        for player, r in entry["relevance"].items():
            lo, hi = ci["relevance"][player]
            assert lo <= r <= hi, (metric, player)
        lo, hi = ci["cooperation"]
        assert lo <= entry["cooperation"] <= hi, metric


def test_bootstrap_mean_of_oa_approaches_oa() -> None:
    n, n_boot = 1000, 2000
    y, predictions = _single_label_data(n, seed=2)
    values = bootstrap_values(y, predictions, PLAYERS, "single-label", 5, n_boot=n_boot, seed=5)
    for j, coalition in enumerate(all_coalitions(PLAYERS)):
        oa = float(np.mean(np.broadcast_to(predictions[coalition], y.shape) == y))
        replicates = values["oa"][:, j]
        # bootstrap sd ~ sqrt(oa (1 - oa) / n); the mean of n_boot replicates is within 4 sd
        sd = np.sqrt(oa * (1 - oa) / n)
        assert abs(replicates.mean() - oa) < 4 * sd / np.sqrt(n_boot) + 1e-12
        assert replicates.std() == pytest.approx(sd, rel=0.1)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_pairing_gives_a_dummy_modality_exactly_zero(task: str) -> None:
    """SAR never changes a prediction: V(sar) = V(none), V(sar+opt) = V(opt) in every
    replicate, so its relevance interval is exactly [0, 0] (the same resample for every
    coalition, and Shapley values from marginal differences)."""
    n = 500
    if task == "single-label":
        k = 5
        y, predictions = _single_label_data(n, k, seed=3)
    else:
        k = 6
        y, predictions = _multi_label_data(n, k, seed=3)
    predictions[F({"sar"})] = predictions[F()]
    predictions[F({"sar", "opt"})] = predictions[F({"opt"})]
    for z in ("one", "full"):
        result = bootstrap_intervals(y, predictions, PLAYERS, task, k, n_boot=100, seed=0, z=z)
        for metric, entry in result.items():
            assert entry["relevance"]["sar"] == [0.0, 0.0], metric
            if metric not in ("hamming_loss",) and z == "one":
                assert entry["relevance"]["opt"][1] > 0.0, metric


def test_percentile_interval_and_bad_input() -> None:
    samples = np.arange(101, dtype=float)
    np.testing.assert_allclose(percentile_interval(samples, 0.1), [5.0, 95.0])
    with_nan = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    lo_hi = percentile_interval(with_nan, 0.5)
    assert lo_hi[0, 0] == 1.5 and np.isnan(lo_hi[:, 1]).all()
    with pytest.raises(SarevalError, match="alpha"):
        percentile_interval(samples, 1.5)
    y, predictions = _single_label_data(20)
    del predictions[F()]
    with pytest.raises(SarevalError, match="no predictions for coalition none"):
        bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, n_boot=5)
    y, predictions = _single_label_data(20)
    predictions[F({"sar"})] = predictions[F({"sar"})][:10]
    with pytest.raises(SarevalError, match="shape"):
        bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, n_boot=5)
    with pytest.raises(SarevalError, match="n_boot"):
        bootstrap_values(y, predictions, PLAYERS, "single-label", 5, n_boot=0)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_per_class_replicates_equal_scikit_learn_on_explicit_resamples(task: str) -> None:
    from sklearn.metrics import fbeta_score, precision_score, recall_score

    n, seed, n_boot = 250, 5, 6
    k = 5 if task == "single-label" else 6
    y, predictions = (_single_label_data if task == "single-label" else _multi_label_data)(n, k)
    values = bootstrap_values(y, predictions, PLAYERS, task, k, n_boot, seed, by_class=True)
    generators = np.random.default_rng(seed).spawn(n_boot)
    labels = list(range(k)) if task == "single-label" else None
    kw = dict(labels=labels, average=None, zero_division=0)
    for r in range(n_boot):
        idx = generators[r].integers(0, n, size=n)
        for j, coalition in enumerate(all_coalitions(PLAYERS)):
            truth, pred = y[idx], np.broadcast_to(predictions[coalition], y.shape)[idx]
            expected = {
                "precision": precision_score(truth, pred, **kw),
                "recall": recall_score(truth, pred, **kw),
                "f1": fbeta_score(truth, pred, beta=1.0, **kw),
                "f2": fbeta_score(truth, pred, beta=2.0, **kw),
            }
            for metric, v in expected.items():
                got = values[f"class/{metric}"][r, :, j]
                np.testing.assert_allclose(got, v, rtol=0, atol=1e-12, err_msg=metric)


def test_per_class_intervals_are_percentiles_of_each_class_relevance() -> None:
    y, predictions = _single_label_data(300)
    ci = bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, 200, 1, by_class=True)
    values = bootstrap_values(y, predictions, PLAYERS, "single-label", 5, 200, 1, by_class=True)
    assert len(ci["by_class"]) == 5
    assert set(ci["by_class"][0]) == {"precision", "recall", "f1", "f2"}
    for i in range(5):
        V = values["class/recall"][:, i, :]  # (R, [none, sar, opt, sar+opt])
        sar = 0.5 * (V[:, 1] - V[:, 0]) + 0.5 * (V[:, 3] - V[:, 2])  # two-player Shapley, Z = 1
        lo, hi = np.percentile(sar, [2.5, 97.5])
        np.testing.assert_allclose(ci["by_class"][i]["recall"]["relevance"]["sar"], [lo, hi])
    # the overall intervals are the same with or without by_class (same draws)
    plain = bootstrap_intervals(y, predictions, PLAYERS, "single-label", 5, 200, 1)
    assert {m: e for m, e in ci.items() if m != "by_class"} == plain
