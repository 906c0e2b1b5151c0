"""Detecting false predictions from per-sample modality relevance.

A detector gives each sample a score, higher = more likely wrong (a wrong prediction is the
positive class). It is judged by

    AUROC = P(s_wrong > s_correct) + 1/2 P(s_wrong = s_correct)
          = (sum of the midranks of the wrong samples - P (P + 1) / 2) / (P Q)
    AP    = sum_t (R_t - R_t-1) Prec_t   over the distinct scores t, descending

(P wrong, Q correct samples; Prec_t, R_t = precision and recall of "score >= t"), the same
numbers as scikit-learn's ``roc_auc_score`` and ``average_precision_score``. Both are NaN when
the samples are all wrong or all correct. A detector with AUROC < 0.5 ranks the other way round;
its direction is fixed here in advance, never chosen on the test data.

Detectors (:func:`detector_scores`) use no label: only the model's outputs on every coalition.
Per-sample Shapley values phi_i are those of p̂(S), the probability (softmax, or sigmoid summed
over the predicted classes for multi-label) of the class the full coalition predicts
(:mod:`sareval.evaluator.per_sample`):

- ``msp`` (baseline): 1 - max_k p_k(all) (single-label, the maximum softmax probability);
  multi-label 1 - min_k max(p_k, 1 - p_k), the least confident class decision.
- ``<player>_share`` (``sar_share``): |phi_player| / sum_i |phi_i| (1/M where all phi are 0).
- ``cooperation``: p̂(all) - p̂(none) - sum_i (p̂({i}) - p̂(none)), the part of the full
  coalition's score that no player brings alone (the interaction of all M players; for two
  players p̂(s,o) - p̂(s) - p̂(o) + p̂(none)).
- ``disagreement``: the fraction of the 2^M - 2 non-empty coalitions other than the full one
  whose decision differs from the full coalition's (argmax; multi-label: the label set); 0 for
  M = 1.

Uncertainty: percentile bootstrap over samples, every detector scored on the same resampled
samples (multiplicity weights from :mod:`sareval.evaluator.bootstrap`, so the same seed draws
the same samples as the evaluator's intervals). A detector beats the baseline when the interval
of its paired AUROC difference (detector - baseline) lies above 0 AND its own AUROC interval
lies above 0.5 (``better_than_chance``): a detector below chance is never called a success, even
against a baseline further below. :func:`summary_sentence` states this in words (the results'
``detection.summary``, the demo's sentences), naming detectors and baselines below chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import (
    CHUNK_ELEMENTS,
    GroupedSum,
    percentile_interval,
    replicate_weights,
)
from sareval.evaluator.coalitions import check_players
from sareval.evaluator.metrics import decide
from sareval.evaluator.per_sample import (
    check_outputs,
    full_decisions,
    local_cooperation,
    local_shapley,
    predicted_class_scores,
    probabilities,
)
from sareval.evaluator.scores import average_precision as column_average_precision

BASELINE = "msp"


# ------------------------------------------------------------------------ exact AUROC and AP


def _check_scores(scores: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    wrong = np.asarray(wrong)
    if scores.ndim != 1 or wrong.shape != scores.shape:
        raise SarevalError(
            f"scores {scores.shape} and wrong {wrong.shape} must both have shape (N,)"
        )
    if np.isnan(scores).any():
        raise SarevalError("detector scores hold NaN")
    if scores.size == 0:
        raise SarevalError("no samples")
    return scores, wrong.astype(bool)


@dataclass(frozen=True)
class _Ranking:
    """Samples coded by their place among the G distinct scores u_0 < ... < u_G-1 of the wrong
    samples, for one grouped sum of a replicate's weights into 3G + 1 columns:

        correct, strictly between u_j-1 and u_j: 2j (2G: above all); tied with u_j: 2j + 1
        wrong, score u_j: 2G + 1 + j

    Only these matter for AUROC and AP, which sum over the wrong samples' scores.
    """

    sums: GroupedSum
    g: int


def _ranking(scores: np.ndarray, wrong: np.ndarray) -> _Ranking:
    scores, wrong = _check_scores(scores, wrong)
    u = np.unique(scores[wrong])
    g = u.size
    j = np.searchsorted(u, scores)  # u[j - 1] < s <= u[j]
    tied = np.zeros(scores.shape, dtype=bool)
    inside = j < g
    tied[inside] = u[j[inside]] == scores[inside]
    codes = np.where(wrong, 2 * g + 1 + j, 2 * j + tied)
    return _Ranking(GroupedSum(codes, 3 * g + 1), g)


def _auroc_ap(ranking: _Ranking, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP (R,) of each replicate's sample multiplicities ``weights`` (R, N)."""
    g = ranking.g
    counts = ranking.sums(weights)  # (R, 3G + 1) exact integers
    negatives, pos = counts[:, : 2 * g + 1], counts[:, 2 * g + 1 :]
    neg_between, neg_tied = negatives[:, 0::2], negatives[:, 1::2]  # (R, G + 1), (R, G)
    n_pos, n_neg = pos.sum(axis=1), negatives.sum(axis=1)
    # correct samples with a score below u_j
    below = np.cumsum(neg_between[:, :g], axis=1) + np.cumsum(neg_tied, axis=1) - neg_tied
    twice_u = 2 * (pos * below).sum(axis=1) + (pos * neg_tied).sum(axis=1)
    tps = n_pos[:, None] - np.cumsum(pos, axis=1) + pos  # wrong samples with a score >= u_j
    fps = n_neg[:, None] - below  # correct samples with a score >= u_j
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = np.where((n_pos > 0) & (n_neg > 0), twice_u / (2.0 * n_pos * n_neg), np.nan)
        precision = np.where(pos > 0, tps / np.maximum(tps + fps, 1), 0.0)
        ap = np.where(n_pos > 0, (pos * precision).sum(axis=1) / n_pos, np.nan)
    return auroc, ap


def _full_sample(scores: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranking = _ranking(scores, wrong)
    return _auroc_ap(ranking, np.ones((1, len(np.asarray(scores))), np.int64))


def auroc(scores: np.ndarray, wrong: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (N,) for the positives ``wrong`` (N,) bool."""
    return float(_full_sample(scores, wrong)[0][0])


def average_precision(scores: np.ndarray, wrong: np.ndarray) -> float:
    """Average precision (step-wise, scikit-learn's) of ``scores`` (N,) for the positives
    ``wrong`` (N,) bool: :func:`sareval.evaluator.scores.average_precision` of one column,
    NaN without a wrong sample."""
    scores, wrong = _check_scores(scores, wrong)
    if not wrong.any():
        return float("nan")
    return float(column_average_precision(scores[:, None], wrong[:, None])[0])


def roc_curve(scores: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0) to (1, 1), one point per distinct
    score (descending); the trapezoidal area under it is :func:`auroc`."""
    scores, wrong = _check_scores(scores, wrong)
    order = np.argsort(-scores, kind="stable")
    s, w = scores[order], wrong[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last sample of each run of equal scores
    tps = np.cumsum(w)[last]
    fps = np.cumsum(~w)[last]
    if tps[-1] == 0 or fps[-1] == 0:
        raise SarevalError("a ROC curve needs both wrong and correct samples")
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


# --------------------------------------------------------------------------------- detectors


def _confidence(probs: np.ndarray, task: str) -> np.ndarray:
    if task == "single-label":
        return probs.max(axis=-1)
    return np.maximum(probs, 1.0 - probs).min(axis=-1)


def detector_scores(
    outputs: np.ndarray,
    players: Sequence[str],
    *,
    kind: str,
    task: str,
    threshold: float = 0.5,
    share_players: Sequence[str] = ("sar",),
) -> dict[str, np.ndarray]:
    """Detector name -> (B,) scores (higher = more likely wrong) of one batch (module docstring).

    ``outputs`` (2^M, B, K) in coalition order, ``kind`` "logits" | "probabilities", ``task``;
    ``share_players``: the players that get a ``<player>_share`` detector (those present).
    Scores of batches concatenate.
    """
    players = check_players(players)
    outputs = check_outputs(outputs, players, kind, task)
    m, b = len(players), outputs.shape[1]
    p_hat = predicted_class_scores(outputs, players, kind=kind, task=task, threshold=threshold)
    phi = local_shapley(p_hat, players)
    scores = {BASELINE: 1.0 - _confidence(probabilities(outputs[-1], kind, task), task)}
    total = np.abs(phi).sum(axis=1)
    for player in share_players:
        if player in players:
            share = np.abs(phi[:, players.index(player)])
            with np.errstate(invalid="ignore", divide="ignore"):
                scores[f"{player}_share"] = np.where(total > 0, share / total, 1.0 / m)
    scores["cooperation"] = local_cooperation(p_hat)
    full = full_decisions(outputs, kind, task, threshold)
    differs = [  # the non-empty coalitions other than the full one
        (decide(outputs[j], task, kind, threshold) != full).reshape(b, -1).any(axis=1)
        for j in range(1, outputs.shape[0] - 1)
    ]
    scores["disagreement"] = np.mean(differs, axis=0) if differs else np.zeros(b)
    return scores


# ------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class DetectionRow:
    """One detector's AUROC and AP with percentile intervals, and its paired AUROC difference
    to the baseline (``beats_baseline``: the difference's interval lies above 0 and the
    detector is ``better_than_chance``: its AUROC interval lies above 0.5)."""

    detector: str
    auroc: float
    auroc_ci: tuple[float, float]
    aupr: float
    aupr_ci: tuple[float, float]
    n_wrong: int
    n: int
    auroc_minus_baseline: float
    auroc_minus_baseline_ci: tuple[float, float]
    beats_baseline: bool
    better_than_chance: bool = False

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def detection_table(
    scores: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    *,
    baseline: str = BASELINE,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[DetectionRow]:
    """Rows in the order of ``scores`` (detector -> (N,) scores, higher = more likely wrong) for
    the positives ``wrong`` (N,) bool; ``baseline`` must be one of the detectors.

    Replicate r scores every detector on the same N indices drawn with replacement (generator r
    of ``default_rng(seed).spawn(n_boot)``); intervals are percentile intervals at level
    1 - alpha; replicates without a wrong or a correct sample are left out (NaN).
    """
    if baseline not in scores:
        raise SarevalError(f"baseline detector {baseline!r} is not among {list(scores)}")
    if n_boot < 1:
        raise SarevalError(f"n_boot must be at least 1, got {n_boot}")
    wrong = np.asarray(wrong).astype(bool)
    n = wrong.shape[0]
    if n == 0:
        raise SarevalError("no samples")
    rankings = {name: _ranking(s, wrong) for name, s in scores.items()}
    ones = np.ones((1, n), np.int64)
    point = {name: _auroc_ap(r, ones) for name, r in rankings.items()}
    generators = np.random.default_rng(seed).spawn(n_boot)
    chunk = max(1, CHUNK_ELEMENTS // n)
    reps: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in scores}
    for start in range(0, n_boot, chunk):
        weights = replicate_weights(generators[start : start + chunk], n)
        for name, r in rankings.items():
            reps[name].append(_auroc_ap(r, weights))
    boot = {
        name: (np.concatenate([a for a, _ in parts]), np.concatenate([p for _, p in parts]))
        for name, parts in reps.items()
    }
    rows = []
    for name in scores:
        diff = boot[name][0] - boot[baseline][0]
        diff_ci = _interval(diff, alpha)
        auroc_ci = _interval(boot[name][0], alpha)
        above_chance = bool(auroc_ci[0] > 0.5)
        rows.append(
            DetectionRow(
                detector=name,
                auroc=float(point[name][0][0]),
                auroc_ci=auroc_ci,
                aupr=float(point[name][1][0]),
                aupr_ci=_interval(boot[name][1], alpha),
                n_wrong=int(wrong.sum()),
                n=n,
                auroc_minus_baseline=float(point[name][0][0] - point[baseline][0][0]),
                auroc_minus_baseline_ci=diff_ci,
                beats_baseline=name != baseline and bool(diff_ci[0] > 0) and above_chance,
                better_than_chance=above_chance,
            )
        )
    return rows


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = percentile_interval(samples, alpha)
    return float(lo), float(hi)


def markdown_table(rows: Sequence[DetectionRow], digits: int = 3) -> str:
    """The rows as a markdown table (AUROC and AP with intervals, n_wrong / n, vs baseline)."""

    def ci(v: float, c: tuple[float, float]) -> str:
        return f"{v:.{digits}f} [{c[0]:.{digits}f}, {c[1]:.{digits}f}]"

    lines = [
        "| detector | AUROC [CI] | AP [CI] | wrong / n | AUROC - baseline | beats |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.detector} | {ci(r.auroc, r.auroc_ci)} | {ci(r.aupr, r.aupr_ci)} | "
            f"{r.n_wrong} / {r.n} | {r.auroc_minus_baseline:+.{digits}f} "
            f"[{r.auroc_minus_baseline_ci[0]:+.{digits}f}, "
            f"{r.auroc_minus_baseline_ci[1]:+.{digits}f}] | {'yes' if r.beats_baseline else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def summary_sentence(rows: Sequence[DetectionRow], baseline: str = BASELINE) -> str:
    """One plain sentence on the rows that never contradicts them: the detectors that beat the
    baseline (module docstring), else that none does; detectors whose AUROC exceeds the
    baseline's only below chance, and a baseline below chance, are named as such."""
    base = next((r for r in rows if r.detector == baseline), None)
    others = [r for r in rows if r.detector != baseline]
    better = [r.detector for r in others if r.beats_baseline]
    if better:
        text = (
            f"{', '.join(better)} beat{'s' if len(better) == 1 else ''} the {baseline} baseline "
            "(the AUROC difference's interval lies above 0 and the AUROC's above 0.5)"
        )
    else:
        text = f"no relevance-based detector beats the {baseline} baseline"
    below = [
        r for r in others
        if not r.beats_baseline and r.auroc_minus_baseline_ci[0] > 0 and not r.better_than_chance
    ]  # fmt: skip
    if below:
        names = ", ".join(f"{r.detector} (AUROC {r.auroc:.3f})" for r in below)
        text += (
            f"; {names} rank{'s' if len(below) == 1 else ''} above {baseline} but not above "
            "chance (0.5): no success"
        )
    if base is not None and base.auroc < 0.5:
        text += f"; the {baseline} baseline itself is below chance (AUROC {base.auroc:.3f})"
    return text
