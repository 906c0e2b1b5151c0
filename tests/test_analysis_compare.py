"""Paired and hierarchical bootstrap comparisons against naive resampling loops."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from sareval.analysis.compare import (
    Difference,
    bootstrap_p_value,
    format_difference,
    format_shape_differences,
    hierarchical_mean_difference,
    hierarchical_shape_difference,
    paired_mean_difference,
    paired_shape_difference,
)
from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import percentile_interval
from sareval.evaluator.coalitions import all_coalitions
from sareval.evaluator.shapley import cooperation, shapley_values

TWO = ("sar", "opt")
K = 4


def _model(rng, y, skill):
    """Decisions per coalition: each coalition is right with its own probability."""
    preds = {}
    for c, p in zip(all_coalitions(TWO), skill, strict=True):
        right = rng.random(y.size) < p
        preds[c] = np.where(right, y, rng.integers(0, K, y.size))
    preds[frozenset()] = np.array(0)  # the empty coalition: one constant decision
    return preds


def _metric(name, y, p):
    if name == "oa":
        return accuracy_score(y, p)
    return f1_score(y, p, labels=range(K), average="macro", zero_division=0)


def test_paired_equals_naive_resampling():
    rng = np.random.default_rng(0)
    n, n_boot, seed = 150, 120, 5
    y = rng.integers(0, K, n)
    a = _model(rng, y, [0.25, 0.5, 0.7, 0.8])
    b = _model(rng, y, [0.25, 0.6, 0.6, 0.85])
    result = paired_shape_difference(
        y, a, b, TWO, "single-label", K, metrics=["oa", "f1_macro"], n_boot=n_boot, seed=seed
    )
    coalitions = all_coalitions(TWO)
    for metric in ("oa", "f1_macro"):
        rel, coop, v_full = [], [], []
        for g in np.random.default_rng(seed).spawn(n_boot):
            idx = g.integers(0, n, size=n)
            games = [
                {c: _metric(metric, y[idx], np.broadcast_to(m[c], (n,))[idx]) for c in coalitions}
                for m in (a, b)
            ]
            phi = [shapley_values(game, TWO) for game in games]
            rel.append([phi[1][p] - phi[0][p] for p in TWO])
            coop.append(cooperation(games[1], TWO) - cooperation(games[0], TWO))
            full = frozenset(TWO)
            v_full.append(games[1][full] - games[0][full])
        entry = result[metric]
        ci = percentile_interval(np.array(rel))
        for i, p in enumerate(TWO):
            d = entry["relevance"][p]
            np.testing.assert_allclose([d.lo, d.hi], ci[:, i], atol=1e-12)
            assert d.n_boot == n_boot
        c = entry["cooperation"]
        np.testing.assert_allclose([c.lo, c.hi], percentile_interval(np.array(coop)), atol=1e-12)
        v = entry["V"]["sar+opt"]
        np.testing.assert_allclose([v.lo, v.hi], percentile_interval(np.array(v_full)), atol=1e-12)
        v_a, v_b = (_metric(metric, y, m[frozenset(TWO)]) for m in (a, b))
        assert v.estimate == pytest.approx(v_b - v_a, abs=1e-12)
        assert v.p_value == pytest.approx(float(bootstrap_p_value(np.array(v_full), v.estimate)))


def test_large_difference_is_significant_and_identical_models_give_zero():
    rng = np.random.default_rng(1)
    y = rng.integers(0, K, 800)
    a = _model(rng, y, [0.25, 0.3, 0.5, 0.55])
    b = _model(rng, y, [0.25, 0.8, 0.5, 0.9])  # much better SAR
    result = paired_shape_difference(y, a, b, TWO, "single-label", K, metrics=["oa"], n_boot=300)
    sar = result["oa"]["relevance"]["sar"]
    assert sar.estimate > 0.15 and sar.lo > 0 and sar.p_value < 0.01
    assert sar.p_value == pytest.approx(2 / 301)
    same = paired_shape_difference(y, a, a, TWO, "single-label", K, n_boot=50, z="full")
    for entry in same.values():
        for d in [*entry["V"].values(), *entry["relevance"].values(), entry["cooperation"]]:
            if np.isnan(d.estimate):  # z="full" with V(all) = 0
                continue
            assert (d.estimate, d.lo, d.hi, d.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_multilabel_paired():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (90, K))
    flip = lambda p: np.where(rng.random(y.shape) < p, 1 - y, y)  # noqa: E731
    a = {c: flip(0.3) for c in all_coalitions(TWO)}
    b = {c: flip(0.1) for c in all_coalitions(TWO)}
    result = paired_shape_difference(
        y, a, b, TWO, "multi-label", K, metrics=["f1_micro"], n_boot=80
    )
    d = result["f1_micro"]["V"]["sar+opt"]
    assert d.estimate > 0 and d.lo <= d.estimate <= d.hi


def test_hierarchical_with_one_run_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.integers(0, K, 200)
    a = _model(rng, y, [0.25, 0.5, 0.7, 0.8])
    b = _model(rng, y, [0.25, 0.6, 0.6, 0.85])
    kw = dict(metrics=["oa", "aa"], n_boot=100, seed=9, z="full")
    paired = paired_shape_difference(y, a, b, TWO, "single-label", K, **kw)
    hier = hierarchical_shape_difference(y, [a], [b], TWO, "single-label", K, **kw)
    assert hier == paired
    # a setup of identical runs is one run
    copies = hierarchical_shape_difference(y, [a, a, a], [b, b], TWO, "single-label", K, **kw)
    for metric in paired:
        for p in TWO:
            x, z = copies[metric]["relevance"][p], paired[metric]["relevance"][p]
            assert (x.lo, x.hi, x.p_value) == pytest.approx((z.lo, z.hi, z.p_value), abs=1e-12)
            assert x.estimate == pytest.approx(z.estimate, abs=1e-12)


def test_hierarchical_means_equal_a_naive_two_level_loop():
    rng = np.random.default_rng(4)
    n, n_boot, seed = 60, 150, 2
    runs_a = [(rng.random(n) < 0.6).astype(float) for _ in range(3)]
    runs_b = [(rng.random(n) < q).astype(float) for q in (0.7, 0.8, 0.75, 0.9)]
    d = hierarchical_mean_difference(runs_a, runs_b, n_boot=n_boot, seed=seed)
    run_rng = np.random.default_rng([seed, 1])
    run_draws_a = run_rng.integers(0, 3, size=(n_boot, 3))
    run_draws_b = run_rng.integers(0, 4, size=(n_boot, 4))
    naive = []
    for r, g in enumerate(np.random.default_rng(seed).spawn(n_boot)):
        idx = g.integers(0, n, size=n)
        mean_a = np.mean([runs_a[j][idx].mean() for j in run_draws_a[r]])
        mean_b = np.mean([runs_b[j][idx].mean() for j in run_draws_b[r]])
        naive.append(mean_b - mean_a)
    np.testing.assert_allclose([d.lo, d.hi], percentile_interval(np.array(naive)), atol=1e-12)
    assert d.estimate == pytest.approx(np.mean(runs_b) - np.mean(runs_a), abs=1e-12)
    assert d.p_value == pytest.approx(float(bootstrap_p_value(np.array(naive), d.estimate)))
    one = hierarchical_mean_difference(runs_a[:1], runs_b[:1], n_boot=n_boot, seed=seed)
    assert one == paired_mean_difference(runs_a[0], runs_b[0], n_boot=n_boot, seed=seed)


def test_paired_mean_difference_naive():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=70), rng.normal(size=70) + 0.2
    d = paired_mean_difference(a, b, n_boot=200, seed=1)
    naive = [
        b[idx].mean() - a[idx].mean()
        for idx in (g.integers(0, 70, size=70) for g in np.random.default_rng(1).spawn(200))
    ]
    np.testing.assert_allclose([d.lo, d.hi], percentile_interval(np.array(naive)), atol=1e-12)
    assert d.estimate == pytest.approx(b.mean() - a.mean())
    with pytest.raises(SarevalError, match="same samples"):
        paired_mean_difference(a, b[:-1])


def test_p_value_rule():
    reps = np.array([0.1, 0.2, -0.05, 0.3])
    assert bootstrap_p_value(reps, 0.15) == pytest.approx(2 * (1 + 1) / 5)
    assert bootstrap_p_value(reps, -0.01) == pytest.approx(1.0)  # capped
    assert bootstrap_p_value(np.full(999, 0.3), 0.3) == pytest.approx(0.002)
    assert bootstrap_p_value(np.zeros(10), 0.0) == 1.0
    assert bootstrap_p_value(np.array([0.0, 0.0, 1.0]), 0.5) == 1.0  # 2 (1 + 2) / 4, capped
    assert np.isnan(bootstrap_p_value(np.array([np.nan, np.nan]), 0.3))
    two = bootstrap_p_value(np.array([[0.1, -0.1], [0.2, -0.2]]), np.array([0.1, -0.1]))
    np.testing.assert_allclose(two, [2 / 3, 2 / 3])


def test_formatting():
    d = Difference(0.1123, 0.081, 0.1449, 0.001998, 999)
    text = format_difference("SAR relevance", d, subset="very cloudy")
    assert text == "SAR relevance, B minus A, very cloudy: +0.11 [0.08, 0.14], p = 0.002"
    neg = Difference(-0.05, -0.09, -0.01, 0.0004, 5000)
    assert format_difference("OA", neg, a="clear", b="cloudy") == (
        "OA, cloudy minus clear: -0.05 [-0.09, -0.01], p < 0.001"
    )
    rng = np.random.default_rng(6)
    y = rng.integers(0, K, 50)
    a, b = _model(rng, y, [0.25, 0.5, 0.7, 0.8]), _model(rng, y, [0.25, 0.6, 0.6, 0.85])
    result = paired_shape_difference(y, a, b, TWO, "single-label", K, metrics=["oa"], n_boot=20)
    lines = format_shape_differences(result, subset="clear")
    assert [line.split(",")[0] for line in lines] == [
        "oa of sar+opt", "SAR relevance (oa)", "optical relevance (oa)", "cooperation (oa)",
    ]  # fmt: skip
    with pytest.raises(SarevalError, match="unknown single-label metrics"):
        paired_shape_difference(y, a, b, TWO, "single-label", K, metrics=["f9"])
