"""False-prediction detection: exact AUROC / AP against scikit-learn, bootstrap, detectors."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import percentile_interval
from sareval.evaluator.detection import (
    auroc,
    average_precision,
    detection_table,
    detector_scores,
    markdown_table,
    roc_curve,
)
from sareval.evaluator.per_sample import local_cooperation, per_sample_scores

TWO = ("sar", "opt")


def _inputs(seed: int, n: int, ties: bool):
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < rng.uniform(0.05, 0.6)
    wrong[:2] = [True, False]
    if ties:
        scores = rng.integers(0, 4, n).astype(float) + 0.5 * wrong * rng.integers(0, 2, n)
    else:
        scores = rng.normal(size=n) + wrong
    return scores, wrong


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_equal_to_sklearn(seed, ties):
    scores, wrong = _inputs(seed, [7, 50, 400, 3000, 31, 2][seed], ties)
    assert auroc(scores, wrong) == pytest.approx(roc_auc_score(wrong, scores), abs=1e-12)
    assert average_precision(scores, wrong) == pytest.approx(
        average_precision_score(wrong, scores), abs=1e-12
    )
    fpr, tpr = roc_curve(scores, wrong)
    ref_fpr, ref_tpr, _ = sk_roc_curve(wrong, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, wrong), abs=1e-12)


def test_edge_cases():
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    assert np.isnan(average_precision([0.1, 0.2], [False, False]))
    with pytest.raises(SarevalError, match="NaN"):
        auroc([np.nan, 1.0], [True, False])
    with pytest.raises(SarevalError, match="both wrong and correct"):
        roc_curve([0.1, 0.2], [True, True])


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_equals_naive_resampling(ties):
    scores, wrong = _inputs(11, 120, ties)
    other = scores + np.random.default_rng(0).normal(size=scores.size)
    n_boot, seed = 200, 7
    rows = detection_table(
        {"msp": other, "d": scores}, wrong, baseline="msp", n_boot=n_boot, seed=seed
    )
    naive_auc, naive_ap, naive_diff = [], [], []
    for g in np.random.default_rng(seed).spawn(n_boot):
        idx = g.integers(0, len(wrong), size=len(wrong))
        if wrong[idx].all() or not wrong[idx].any():
            naive_auc.append(np.nan)
            naive_ap.append(np.nan)
            naive_diff.append(np.nan)
            continue
        a = roc_auc_score(wrong[idx], scores[idx])
        naive_auc.append(a)
        naive_ap.append(average_precision_score(wrong[idx], scores[idx]))
        naive_diff.append(a - roc_auc_score(wrong[idx], other[idx]))
    d = rows[1]
    assert d.detector == "d" and d.n == 120 and d.n_wrong == int(wrong.sum())
    np.testing.assert_allclose(d.auroc_ci, percentile_interval(np.array(naive_auc)), atol=1e-12)
    np.testing.assert_allclose(d.aupr_ci, percentile_interval(np.array(naive_ap)), atol=1e-12)
    np.testing.assert_allclose(
        d.auroc_minus_baseline_ci, percentile_interval(np.array(naive_diff)), atol=1e-12
    )
    assert d.auroc == pytest.approx(roc_auc_score(wrong, scores), abs=1e-12)


def test_table_flags_a_better_detector():
    rng = np.random.default_rng(4)
    n = 600
    wrong = rng.random(n) < 0.2
    good = wrong + 0.3 * rng.normal(size=n)
    useless = rng.normal(size=n)
    rows = detection_table(
        {"msp": useless, "good": good, "same": useless.copy()}, wrong, n_boot=300
    )
    by = {r.detector: r for r in rows}
    assert by["good"].beats_baseline and by["good"].auroc > 0.9
    assert not by["msp"].beats_baseline and by["msp"].auroc_minus_baseline == 0.0
    assert by["same"].auroc_minus_baseline_ci == (0.0, 0.0) and not by["same"].beats_baseline
    text = markdown_table(rows)
    assert text.count("\n") == 5 and "| good |" in text and "| yes |" in text
    assert by["good"].to_dict()["auroc_ci"] == list(by["good"].auroc_ci)
    with pytest.raises(SarevalError, match="baseline"):
        detection_table({"good": good}, wrong)


def test_detectors_by_hand():
    # 2 samples, 3 classes, players sar/opt; coalition order none, sar, opt, sar+opt
    logits = np.zeros((4, 2, 3))
    logits[:, 0] = [[0, 0, 0], [2, 0, 0], [0, 3, 0], [3, 1, 0]]  # sar agrees, opt disagrees
    logits[:, 1] = [[0, 0, 0], [0, 0, 4], [0, 0, 4], [0, 0, 5]]  # both agree
    s = detector_scores(logits, TWO, kind="logits", task="single-label")
    assert list(s) == ["msp", "sar_share", "cooperation", "disagreement"]
    p_full = np.exp(logits[-1]) / np.exp(logits[-1]).sum(-1, keepdims=True)
    np.testing.assert_allclose(s["msp"], 1 - p_full.max(-1))
    np.testing.assert_array_equal(s["disagreement"], [0.5, 0.0])
    games = per_sample_scores(logits, TWO, np.zeros(2, int), kind="logits", task="single-label")
    np.testing.assert_allclose(s["cooperation"], local_cooperation(games["prob_pred"]))
    g = games["prob_pred"][0]  # p(class 0) per coalition
    phi_sar = ((g[1] - g[0]) + (g[3] - g[2])) / 2
    phi_opt = ((g[2] - g[0]) + (g[3] - g[1])) / 2
    assert s["sar_share"][0] == pytest.approx(abs(phi_sar) / (abs(phi_sar) + abs(phi_opt)))
    # a player-free output: all phi 0 -> share 1/M
    flat = np.zeros((4, 1, 3))
    assert detector_scores(flat, TWO, kind="logits", task="single-label")["sar_share"][0] == 0.5


def test_multilabel_detectors_and_batches():
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(8, 30, 5))
    players = ("sar", "rgb", "nir")
    s = detector_scores(logits, players, kind="logits", task="multi-label")
    p = 1 / (1 + np.exp(-logits[-1]))
    np.testing.assert_allclose(s["msp"], 1 - np.maximum(p, 1 - p).min(-1))
    full = logits[-1] >= 0
    expected = np.mean([((logits[j] >= 0) != full).any(-1) for j in range(1, 7)], axis=0)
    np.testing.assert_allclose(s["disagreement"], expected)
    parts = [
        detector_scores(logits[:, a:b], players, kind="logits", task="multi-label")
        for a, b in ((0, 13), (13, 30))
    ]
    for name, v in s.items():
        np.testing.assert_array_equal(np.concatenate([q[name] for q in parts]), v)
    assert "opt_share" not in detector_scores(
        logits, players, kind="logits", task="multi-label", share_players=("sar", "opt")
    )


def test_roc_figure(tmp_path):
    from sareval.report.per_sample_figures import save_roc_figure

    scores, wrong = _inputs(1, 80, False)
    detectors = {"msp": -scores, "d": scores}
    rows = detection_table(detectors, wrong, n_boot=50)
    paths = save_roc_figure(detectors, wrong, tmp_path / "fig", rows=rows)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "d (" in paths[1].read_text()
