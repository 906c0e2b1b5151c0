"""Per-sample (local) Shapley values of the model's score, at no extra forward pass.

NOT the SHAPE score. SHAPE (:mod:`sareval.evaluator.shapley`) is the Shapley value of a
data-set metric V(S) (OA, F1, ...), which is not a sum over samples. Here the game is one
sample's score f_n(S) (a probability or logit of one class with only the players in S present)
and each sample gets its own Shapley values; their mean is the Shapley value of the mean score.
That equals a SHAPE value only where the metric is the mean of the per-sample score (OA as the
mean of ``accuracy`` below, with the empty coalition evaluated on the baseline input), never
for F-scores, AA or kappa.

Input of one batch: ``outputs`` (C, B, K), the model's outputs for every coalition, C = 2^M in
:func:`~sareval.evaluator.coalitions.all_coalitions` order (index 0 = the empty coalition,
C - 1 = all players), ``kind`` "logits" | "probabilities", labels (B,) class indices
(single-label) or (B, K) 0/1 (multi-label). The empty coalition's output is one model output
broadcast to every sample; a majority-class predictor has no score (NaN) and is refused.

Scores per coalition S and sample n (k̂_n = class predicted by the full coalition, y_n = true):

    single-label: p = softmax(logits) (or the given probabilities);
                  prob_pred = p_S[k̂_n], prob_true = p_S[y_n]; logit_* likewise from the logits
    multi-label:  p = sigmoid(logits) (or the given probabilities) per class;
                  prob_class[k] = p_S[k]; prob_true = sum_{k: y_nk = 1} p_S[k];
                  prob_pred = sum_{k: k̂_nk = 1} p_S[k]  (k̂_n = full coalition's decisions)
    both:         accuracy = 1 if coalition S's decision is right (multi-label: the whole label
                  set), else 0. Its sample mean is V_OA(S) (multi-label: subset accuracy), so
                  the sample mean of its Shapley values IS the SHAPE relevance of that metric
                  (Z = 1): the one place where the two quantities meet.

Shapley value of player i (m = M players), one weights matrix for all samples:

    phi_n,i = sum_S W[S, i] f_n(S),  W[S, i] = w(|S| - 1) if i in S else -w(|S|),
    w(s) = s! (m - s - 1)! / m!

Efficiency per sample: sum_i phi_n,i = f_n(all) - f_n(none). Results of batches concatenate
(:meth:`PerSampleShapley.concatenate`): every value depends on its own sample only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from math import factorial

import numpy as np

from sareval.choices import OUTPUT_KINDS, TASKS
from sareval.errors import SarevalError
from sareval.evaluator.coalitions import all_coalitions, check_players
from sareval.evaluator.metrics import decide
from sareval.evaluator.relevance import UNKNOWN_BIN, bin_labels, cloud_cover_bins

QUANTITIES: tuple[str, ...] = ("prob_pred", "prob_true", "accuracy", "logit_pred", "logit_true")
DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


@lru_cache(maxsize=16)
def _weights(players: tuple[str, ...]) -> np.ndarray:
    m = len(players)
    w = [factorial(s) * factorial(m - s - 1) / factorial(m) for s in range(m)]
    coalitions = all_coalitions(players)
    out = np.zeros((len(coalitions), m))
    for j, coalition in enumerate(coalitions):
        for i, player in enumerate(players):
            out[j, i] = w[len(coalition) - 1] if player in coalition else -w[len(coalition)]
    out.setflags(write=False)
    return out


def shapley_weights(players: Sequence[str]) -> np.ndarray:
    """W (2^M, M) with phi = f @ W for scores f (..., 2^M) in coalition order (formula above)."""
    return _weights(check_players(players))


def local_shapley(scores: np.ndarray, players: Sequence[str]) -> np.ndarray:
    """Shapley values (..., M) of per-sample games ``scores`` (..., 2^M) in coalition order."""
    W = shapley_weights(players)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 0 or scores.shape[-1] != W.shape[0]:
        raise SarevalError(f"scores have shape {scores.shape}; expected (..., {W.shape[0]})")
    # the weighted sum per element (not a BLAS matmul, whose blocking depends on the batch
    # size): each sample's values are bitwise the same whatever batch it is computed in
    return (scores[..., :, None] * W).sum(axis=-2)


def local_cooperation(scores: np.ndarray) -> np.ndarray:
    """Interaction of all players, (...): f(all) - f(none) - sum_i (f({i}) - f(none)).

    ``scores`` (..., 2^M) in coalition order (singletons are indices 1..M, in player order).
    Equals f(all) - f(none) - sum_i phi_i(game where only i may be present); 0 for M = 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    m = int(np.log2(scores.shape[-1]))
    if scores.ndim == 0 or 2**m != scores.shape[-1]:
        raise SarevalError(f"scores have shape {scores.shape}; expected (..., 2^M)")
    none = scores[..., 0]
    return scores[..., -1] - none - (scores[..., 1 : m + 1] - none[..., None]).sum(axis=-1)


def check_outputs(outputs: np.ndarray, players: Sequence[str], kind: str, task: str) -> np.ndarray:
    """``outputs`` as float64 (C, B, K) after checking C = 2^M, ``kind``, ``task``, finiteness."""
    players = check_players(players)
    if kind not in OUTPUT_KINDS:
        raise SarevalError(f"unknown output kind {kind!r}; known: {list(OUTPUT_KINDS)}")
    if task not in TASKS:
        raise SarevalError(f"unknown task {task!r}; known: {list(TASKS)}")
    outputs = np.asarray(outputs, dtype=np.float64)
    c = 2 ** len(players)
    if outputs.ndim != 3 or outputs.shape[0] != c or outputs.shape[2] < 1:
        raise SarevalError(
            f"outputs have shape {outputs.shape}; expected (C={c}, B, K) for players "
            f"{list(players)} (every coalition, the empty one first)"
        )
    if not np.isfinite(outputs[0]).all():
        raise SarevalError(
            "the empty coalition's outputs are not finite (a majority-class predictor has no "
            "score); per-sample Shapley values need the model's output on the baseline input"
        )
    if not np.isfinite(outputs).all():
        raise SarevalError("outputs hold NaN or infinite values")
    return outputs


def probabilities(outputs: np.ndarray, kind: str, task: str) -> np.ndarray:
    """Class probabilities of ``outputs`` (..., K): softmax (single-label) or sigmoid
    (multi-label) of logits; probabilities are returned as given (float64)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind == "probabilities":
        return outputs
    if task == "single-label":
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=-1, keepdims=True)
    return 0.5 * (1.0 + np.tanh(0.5 * outputs))  # sigmoid without overflow


def logits(outputs: np.ndarray, kind: str, task: str) -> np.ndarray:
    """Logits of ``outputs`` (..., K): as given, or log(p / (1 - p)) of multi-label
    probabilities (±inf at 0 and 1). Single-label probabilities define logits only up to a
    per-coalition constant, which changes Shapley values: refused."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind == "logits":
        return outputs
    if task == "multi-label":
        with np.errstate(divide="ignore"):
            return np.log(outputs) - np.log1p(-outputs)
    raise SarevalError(
        "logit Shapley values need logits for a single-label model; this one outputs "
        "probabilities (use the probability quantities)"
    )


def _check_labels(labels: np.ndarray, task: str, b: int, k: int) -> np.ndarray:
    labels = np.asarray(labels)
    if task == "single-label":
        if labels.shape != (b,) or not np.issubdtype(labels.dtype, np.integer):
            raise SarevalError(f"labels have shape {labels.shape}; expected ({b},) class indices")
        if b and (labels.min() < 0 or labels.max() >= k):
            raise SarevalError(f"labels must be class indices in [0, {k})")
        return labels.astype(np.int64)
    if labels.shape != (b, k):
        raise SarevalError(f"labels have shape {labels.shape}; expected ({b}, {k}) multi-hot")
    return labels != 0


def full_decisions(outputs: np.ndarray, kind: str, task: str, threshold: float) -> np.ndarray:
    """Decisions of the full coalition (the last one): (B,) int64 or (B, K) bool."""
    return decide(np.asarray(outputs)[-1], task, kind, threshold)


def correct_predictions(predicted: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """(B,) bool: single-label predicted == true; multi-label the predicted label set equals
    the true one (exact match)."""
    if task == "single-label":
        return np.asarray(predicted) == np.asarray(labels)
    return (np.asarray(predicted) == (np.asarray(labels) != 0)).all(axis=-1)


def _pick(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """values (C, B, K), classes (B,) -> (B, C): each sample's class column per coalition."""
    b = np.arange(values.shape[1])
    return values[:, b, classes].T


def _masked_sum(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """values (C, B, K), mask (B, K) -> (B, C): per sample the sum over the masked classes."""
    return (values * mask).sum(axis=-1).T  # per element, as in local_shapley


def predicted_class_scores(
    outputs: np.ndarray, players: Sequence[str], *, kind: str, task: str, threshold: float = 0.5
) -> np.ndarray:
    """``prob_pred`` without labels: (B, C) probability of the full coalition's prediction
    (multi-label: summed over its predicted classes) under every coalition."""
    outputs = check_outputs(outputs, players, kind, task)
    predicted = full_decisions(outputs, kind, task, threshold)
    return _score_of(probabilities(outputs, kind, task), predicted, task)


def _score_of(values: np.ndarray, classes: np.ndarray, task: str) -> np.ndarray:
    """values (C, B, K) -> (B, C): the column of ``classes`` (B,) or the sum over the classes
    of a (B, K) mask."""
    return _pick(values, classes) if task == "single-label" else _masked_sum(values, classes)


def _games(
    outputs: np.ndarray,
    players: Sequence[str],
    labels: np.ndarray,
    kind: str,
    task: str,
    threshold: float,
    include_logits: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(scores by quantity, full-coalition decisions, checked labels)."""
    outputs = check_outputs(outputs, players, kind, task)
    _, b, k = outputs.shape
    labels = _check_labels(labels, task, b, k)
    predicted = full_decisions(outputs, kind, task, threshold)
    sources = {"prob": probabilities(outputs, kind, task)}
    if include_logits:
        sources["logit"] = logits(outputs, kind, task)
    decisions = [decide(outputs[j], task, kind, threshold) for j in range(outputs.shape[0])]
    scores = {
        "accuracy": np.stack(
            [correct_predictions(d, labels, task) for d in decisions], axis=-1
        ).astype(np.float64)
    }
    for name, values in sources.items():
        scores[f"{name}_pred"] = _score_of(values, predicted, task)
        scores[f"{name}_true"] = _score_of(values, labels, task)
        if task == "multi-label":
            scores[f"{name}_class"] = np.moveaxis(values, 0, -1)
    return scores, predicted, labels


def per_sample_scores(
    outputs: np.ndarray,
    players: Sequence[str],
    labels: np.ndarray,
    *,
    kind: str,
    task: str,
    threshold: float = 0.5,
    include_logits: bool = False,
) -> dict[str, np.ndarray]:
    """The per-sample games: quantity -> scores (B, C) in coalition order (module docstring).

    Keys ``accuracy``, ``prob_pred``, ``prob_true`` (and ``logit_pred``, ``logit_true`` with
    ``include_logits``); multi-label adds ``prob_class`` (and ``logit_class``) (B, K, C).
    """
    return _games(outputs, players, labels, kind, task, threshold, include_logits)[0]


@dataclass(frozen=True)
class PerSampleShapley:
    """Per-sample Shapley values (module docstring) of a batch or a whole subset.

    ``prob_pred``, ``prob_true``, ``accuracy`` (N, M); ``logit_pred``, ``logit_true`` (N, M) or
    None;
    ``prob_class``, ``logit_class`` (N, K, M) for multi-label (else None). ``predicted`` is the
    full coalition's decision (N,) or (N, K), ``correct`` (N,) bool, ``labels`` as given.
    """

    players: tuple[str, ...]
    task: str
    labels: np.ndarray
    predicted: np.ndarray
    correct: np.ndarray
    prob_pred: np.ndarray
    prob_true: np.ndarray
    accuracy: np.ndarray
    logit_pred: np.ndarray | None = None
    logit_true: np.ndarray | None = None
    prob_class: np.ndarray | None = None
    logit_class: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.prob_pred.shape[0])

    def quantity(self, name: str) -> np.ndarray:
        """The (N, M) array of ``name`` (one of ``QUANTITIES``); error if not computed."""
        if name not in QUANTITIES:
            raise SarevalError(f"unknown quantity {name!r}; known: {list(QUANTITIES)}")
        value = getattr(self, name)
        if value is None:
            raise SarevalError(f"{name} was not computed (include_logits=False)")
        return value

    @classmethod
    def concatenate(cls, parts: Sequence[PerSampleShapley]) -> PerSampleShapley:
        """The batches ``parts`` joined along the sample axis (players and task must agree)."""
        if not parts:
            raise SarevalError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.players != first.players or p.task != first.task:
                raise SarevalError("cannot concatenate per-sample results of different games")
        joined = {}
        for f in fields(cls):
            if f.name in ("players", "task"):
                continue
            values = [getattr(p, f.name) for p in parts]
            if any(v is None for v in values):
                if not all(v is None for v in values):
                    raise SarevalError(f"{f.name} is missing in some parts")
                continue
            joined[f.name] = np.concatenate(values, axis=0)
        return replace(first, **joined)  # type: ignore[arg-type]


def per_sample_shapley(
    outputs: np.ndarray,
    players: Sequence[str],
    labels: np.ndarray,
    *,
    kind: str,
    task: str,
    threshold: float = 0.5,
    include_logits: bool = False,
) -> PerSampleShapley:
    """Per-sample Shapley values of one batch (module docstring for the contract).

    ``outputs`` (2^M, B, K) in coalition order; ``labels`` (B,) or (B, K); ``threshold`` is
    the multi-label decision threshold on probabilities (as in the model card).
    """
    players = check_players(players)
    scores, predicted, checked = _games(
        outputs, players, labels, kind, task, threshold, include_logits
    )
    return PerSampleShapley(
        players=players,
        task=task,
        labels=np.asarray(labels),
        predicted=predicted,
        correct=correct_predictions(predicted, checked, task),
        **{name: local_shapley(s, players) for name, s in scores.items()},
    )


# ----------------------------------------------------------------------------------- summary


def _mean(values: np.ndarray) -> np.ndarray:
    """Column means of (n, M); NaN for n = 0 (without a warning)."""
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan)
    return values.mean(axis=0)


def _stats(values: np.ndarray, players: tuple[str, ...]) -> dict:
    return {
        "n_samples": int(values.shape[0]),
        "mean": dict(zip(players, _mean(values).tolist(), strict=True)),
    }


def summarize_per_sample(
    values: np.ndarray,
    players: Sequence[str],
    *,
    labels: np.ndarray | None = None,
    task: str = "single-label",
    class_names: Sequence[str] | None = None,
    cloud_cover: np.ndarray | None = None,
    bin_edges: Sequence[float] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> dict:
    """Distribution of per-sample Shapley values ``values`` (N, M), as a JSON-ready dict::

        {"n_samples": N, "mean": {player: ..}, "quantiles": {"0.05": {player: ..}, ..},
         "by_class": {class: {"n_samples": n, "mean": {player: ..}}},       # with labels
         "by_cloud_cover": {"[0, 0.5)": {...}, ..., "unknown": {...}}}       # with cover+edges

    By class: samples of true class k (single-label); samples carrying class k, so a sample
    counts in each of its classes (multi-label). By cloud cover: bins ``[e_j, e_j+1)`` (the last
    one closed) of :func:`~sareval.evaluator.relevance.cloud_cover_bins`; NaN or out-of-range
    cover goes to ``unknown`` (listed only when it has samples).
    """
    players = check_players(players)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(players):
        raise SarevalError(f"values have shape {values.shape}; expected (N, {len(players)})")
    n = values.shape[0]
    summary = _stats(values, players)
    qs = (
        np.quantile(values, list(quantiles), axis=0)
        if n
        else np.full((len(quantiles), len(players)), np.nan)
    )
    summary["quantiles"] = {
        f"{q:g}": dict(zip(players, qs[j].tolist(), strict=True)) for j, q in enumerate(quantiles)
    }
    if labels is not None:
        labels = np.asarray(labels)
        if task == "single-label":
            k = int(labels.max()) + 1 if class_names is None else len(class_names)
            members = labels[:, None] == np.arange(k)[None, :]
        else:
            members = labels != 0
            k = members.shape[1]
        if members.shape[0] != n:
            raise SarevalError(f"{members.shape[0]} labels for {n} samples")
        names = [str(i) for i in range(k)] if class_names is None else list(class_names)
        if len(names) != k:
            raise SarevalError(f"{len(names)} class names for {k} classes")
        summary["by_class"] = {
            name: _stats(values[members[:, j]], players) for j, name in enumerate(names)
        }
    if cloud_cover is not None or bin_edges is not None:
        if cloud_cover is None or bin_edges is None:
            raise SarevalError("by cloud cover needs both cloud_cover and bin_edges")
        cover = np.asarray(cloud_cover, dtype=np.float64)
        if cover.shape != (n,):
            raise SarevalError(f"cloud_cover has shape {cover.shape}; expected ({n},)")
        index = cloud_cover_bins(cover, bin_edges)
        by_bin = {
            label: _stats(values[index == j], players)
            for j, label in enumerate(bin_labels(bin_edges))
        }
        if (index < 0).any():
            by_bin[UNKNOWN_BIN] = _stats(values[index < 0], players)
        summary["by_cloud_cover"] = by_bin
    return summary
