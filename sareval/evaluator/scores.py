"""Threshold-free mean average precision per coalition: ``map_macro`` and ``map_micro``.

Average precision of one ranking (scikit-learn's ``average_precision_score``, the BigEarthNet
and reBEN papers' mAP): with the distinct scores t_1 > t_2 > ... of a class (equal scores are
ONE threshold, as in sklearn), pos_g / neg_g the positives / negatives scored t_g,
TP_g = sum_{h <= g} pos_h, FP_g likewise and P = sum_g pos_g:

    AP = sum_g (pos_g / P) * TP_g / (TP_g + FP_g)              (0 where P = 0)

Per class (``by.class.<name>.metrics.ap``) the AP of that class. ``map_micro`` = AP of all
(sample, class) pairs pooled. ``map_macro`` = mean of the per-class AP; a class without a
positive sample among the evaluated ones (absent from the subset, or from a cloud-cover bin) has
no AP, and ``ShapeConfig.reporting.map_absent_classes`` says what the mean does with it:

- ``"skip"`` (default): the mean over the classes with at least one positive. This is what
  the reBEN / BigEarthNet v2 evaluation computes: ConfigILM (``configilm/metrics.py``,
  ``get_classification_metric_collection``) uses torchmetrics'
  ``AveragePrecision(task="multilabel", average="macro")`` with the default
  ``thresholds=None``, where the class's recall ``tps / tps[-1]`` is 0/0 = NaN
  (``functional/classification/precision_recall_curve.py``) and ``_reduce_average_precision``
  (``functional/classification/average_precision.py``, torchmetrics 1.x, e.g. 1.5) warns and
  takes ``res[~isnan(res)].mean()``.
- ``"zero"``: the class counts AP 0 in the mean over all K classes, which is what
  scikit-learn's ``average_precision_score(average="macro")`` returns (1.9, with a warning).

Both equal scikit-learn's ``average_precision_score`` on the classes they average (tests). A
class's own ``ap`` (``by.class``) is 0 without positives under either policy (scikit-learn's
value; its ``n_samples`` is 0). The results say which classes entered the mean
(``classes_averaged``, ``absent_classes`` in the ``map_macro`` entry, overall and per bin, and
a warning). With sample weights w_i (bootstrap replicates) pos_g and neg_g are sums of weights,
and "absent" is per replicate.

State (:class:`ScoreState`), per evaluated pass: every non-empty coalition's model outputs as
float32 ``scores`` (J, n, K) (the raw outputs: AP depends only on the order, which a sigmoid
keeps; computing it would only add rounding ties), the labels (n, K) bool, each sample's
cloud-cover group (n,) int16, and the empty coalition's constant score (K,) (its output on the
all-baseline input, or the majority label set as 1/0). Marginal imputation
(:mod:`sareval.evaluator.absence`) keeps D donor draws per sample as D rows (labels and groups
repeated) with the empty coalition's own rows first (``empty_counted``) and each row's sample
(``clusters``), so that AP counts every draw as a sample and the bootstrap resamples samples
with all their draws. AP is a function of the multiset of
(score, label) pairs of each class, so states merge by concatenation, in any order: batches,
shards (``sareval merge``) and torchrun ranks (gathered on rank 0) give the one-process value
exactly.

Why not per-class histograms of distinct float32 values: model outputs are continuous, so
nearly every (sample, class) has its own value and a histogram entry (value, positives,
negatives: 4 + 8 + 8 bytes) costs more than the score itself (4 bytes; the labels are shared by
the coalitions). Sorting at the end builds exactly that histogram.

Memory: n * K * (4 J + 1) + 2 n bytes for n samples, K classes, J = 2^M - 1 coalitions
(BigEarthNet's 125,866 test patches, 19 classes, two players: 38 MB; four players: 148 MB).
Past :func:`max_score_bytes` (4 GiB, ``$SAREVAL_MAX_SCORE_BYTES``) the evaluation stops with an
error that says how to leave mAP out. mAP is computed automatically for multi-label models
(``method="shape"``) unless ``ShapeConfig.reporting.metrics`` names no ``map_*`` metric. A
shard's results document embeds its state (``"scores"``, :mod:`sareval.evaluator.embedded`)
for ``sareval merge``; merged and single-process documents do not carry it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sareval.choices import MAP_ABSENT_CLASSES, MapAbsentClasses
from sareval.errors import SarevalError
from sareval.evaluator.embedded import decode_arrays, encode_arrays

SCORE_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "single-label": (),
    "multi-label": ("map_macro", "map_micro"),
}
DEFAULT_MAX_SCORE_BYTES = 4 * 2**30


def max_score_bytes() -> int:
    """The memory bound of a score state: ``$SAREVAL_MAX_SCORE_BYTES`` or 4 GiB."""
    text = os.environ.get("SAREVAL_MAX_SCORE_BYTES")
    if not text:
        return DEFAULT_MAX_SCORE_BYTES
    try:
        return int(float(text))
    except ValueError:
        raise SarevalError(f"$SAREVAL_MAX_SCORE_BYTES={text!r} is not a number of bytes") from None


def score_bytes(n: int, k: int, j: int) -> int:
    """Bytes a state of n samples, K classes and J non-empty coalitions holds."""
    return n * k * (4 * j + 1) + 2 * n


def check_score_memory(n: int, k: int, j: int) -> None:
    """Raise a :class:`SarevalError` that says what to do when the state would pass the bound."""
    need, limit = score_bytes(n, k, j), max_score_bytes()
    if need > limit:
        raise SarevalError(
            f"mean average precision keeps every score: {n} samples x {k} classes x {j} "
            f"coalitions need {need / 2**30:.2f} GiB, above the limit of {limit / 2**30:.2f} GiB; "
            "leave map_macro/map_micro out (ShapeConfig.reporting.metrics), evaluate a smaller "
            "subset, or raise $SAREVAL_MAX_SCORE_BYTES"
        )


def wants_scores(task: str, method: str, metrics: Sequence[str] | None) -> bool:
    """Whether an evaluation computes mAP: multi-label SHAPE, unless ``metrics`` excludes it."""
    names = SCORE_METRIC_NAMES.get(task, ())
    if not names or method != "shape":
        return False
    return metrics is None or any(m in names for m in metrics)


# --- average precision --------------------------------------------------------------------------
def average_precision(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """AP (module docstring) of each column of ``scores`` (n, C) against ``labels`` (n, C).

    ``weights``: None, or (R, n) non-negative sample weights -> result (R, C); else (C,).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=bool)
    n, c = scores.shape
    w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.zeros((w.shape[0], c))
    for col in range(c):
        order = np.argsort(-scores[:, col].astype(np.float64), kind="stable")
        s = scores[order, col]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
        ws = w[:, order]
        y = labels[order, col]
        pos = np.add.reduceat(ws * y, starts, axis=1) if n else np.zeros((w.shape[0], 0))
        neg = np.add.reduceat(ws * ~y, starts, axis=1) if n else np.zeros((w.shape[0], 0))
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        total = tp[:, -1:] if n else np.zeros((w.shape[0], 1))
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
        ap = (pos * precision).sum(axis=1, keepdims=True)
        out[:, col] = np.divide(ap, total, out=np.zeros_like(ap), where=total > 0)[:, 0]
    return out[0] if weights is None else out


def check_absent(absent: str) -> MapAbsentClasses:
    """``absent`` if it is a policy of :data:`~sareval.choices.MAP_ABSENT_CLASSES`, else an error
    naming ``ShapeConfig.reporting.map_absent_classes``."""
    if absent not in MAP_ABSENT_CLASSES:
        raise SarevalError(
            f"ShapeConfig.reporting.map_absent_classes: {absent!r} is not one of "
            f"{', '.join(MAP_ABSENT_CLASSES)}"
        )
    return absent  # type: ignore[return-value]


def class_positives(labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Positives per class of ``labels`` (n, K): (K,), or (R, K) summed with ``weights`` (R, n)."""
    labels = np.asarray(labels, dtype=bool)
    if weights is None:
        return labels.sum(axis=0)
    return np.asarray(weights, dtype=np.float64) @ labels


def macro_mean(per_class: np.ndarray, positives: np.ndarray, absent: str) -> np.ndarray:
    """The mean of ``per_class`` AP (..., K) under policy ``absent`` (module docstring); NaN
    where ``skip`` leaves no class."""
    if check_absent(absent) == "zero":
        return per_class.mean(axis=-1)  # type: ignore[no-any-return]
    present = positives > 0
    count = present.sum(axis=-1)
    total = np.where(present, per_class, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def map_values(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    absent: str = "zero",
) -> dict[str, np.ndarray]:
    """``map_macro`` (mean AP over the classes, ``absent`` policy of the module docstring; this
    function's default is scikit-learn's, evaluations pass
    ``ShapeConfig.reporting.map_absent_classes``) and ``map_micro`` (AP of all pairs) of
    ``scores`` (n, K); with ``weights`` (R, n) arrays of
    shape (R,)."""
    k = scores.shape[1]
    per_class = average_precision(scores, labels, weights)
    pooled_w = None if weights is None else np.repeat(weights, k, axis=1)
    micro = average_precision(scores.reshape(-1, 1), labels.reshape(-1, 1), pooled_w)
    macro = macro_mean(per_class, class_positives(labels, weights), absent)
    return {"map_macro": macro, "map_micro": micro[..., 0]}


# --- the state -----------------------------------------------------------------------------------


def sample_index(clusters: np.ndarray) -> np.ndarray:
    """(n,) index in [0, C) of each row's sample, from ``clusters`` (n,) the sample (global
    position) of each row: marginal imputation's D draws of a sample share one index, which a
    bootstrap replicate resamples with all its rows."""
    return np.unique(clusters, return_inverse=True)[1].reshape(-1)


@dataclass
class ScoreState:
    """Scores of every coalition of a pass (module docstring); merge with :meth:`concat`."""

    scores: np.ndarray  # (J, n, K) float32, non-empty coalitions in all_coalitions order
    labels: np.ndarray  # (n, K) bool
    groups: np.ndarray  # (n,) int16 cloud-cover group (0 without bins)
    empty: np.ndarray  # (K,) float32 constant score of the empty coalition
    absent: MapAbsentClasses = "skip"  # ShapeConfig.reporting.map_absent_classes
    #: marginal imputation: ``scores`` (2^M, n, K) hold the empty coalition's rows first
    #: (counted per row; ``empty`` unused) and ``clusters`` (n,) the sample (global position)
    #: of each row, whose donor draws a bootstrap replicate resamples together
    empty_counted: bool = False
    clusters: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_batches(
        cls,
        parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        empty: np.ndarray | None,
        n_coalitions: int,
        k: int,
        clusters: Sequence[np.ndarray] | None = None,
    ) -> ScoreState:
        """A pass's state from its batches' (outputs (J, b, K), labels (b, K), groups (b,)).

        ``empty``: the empty coalition's output on the all-baseline input (K,), or the
        majority label set (K,) bool, scored 1/0 (a constant: each class's AP = its prevalence);
        None: the outputs hold the empty coalition first (``empty_counted``).
        ``clusters``: per batch (b,), the sample of each row (marginal imputation's draws).
        """
        if not parts:
            parts = [(np.zeros((n_coalitions, 0, k)), np.zeros((0, k)), np.zeros(0))]
        kept = None
        if clusters is not None:
            kept = np.concatenate([np.zeros(0, np.int64), *clusters]).astype(np.int64)
        return cls(
            np.concatenate([p[0] for p in parts], axis=1).astype(np.float32, copy=False),
            np.concatenate([p[1] for p in parts]).astype(bool),
            np.concatenate([p[2] for p in parts]).astype(np.int16),
            np.zeros(k, np.float32)
            if empty is None
            else np.broadcast_to(np.asarray(empty, np.float32), (k,)).copy(),
            empty_counted=empty is None,
            clusters=kept,
        )

    @classmethod
    def concat(cls, states: Sequence[ScoreState]) -> ScoreState:
        """The union of the states' samples (the order does not change any AP)."""
        if not states:
            raise SarevalError("scores: nothing to merge")
        first = states[0]
        for s in states[1:]:
            if (
                s.scores.shape[0] != first.scores.shape[0]
                or s.labels.shape[1:] != (first.labels.shape[1:])
            ):
                raise SarevalError("scores: states of different coalitions or classes")
            if not np.array_equal(s.empty, first.empty):
                raise SarevalError("scores: states with different empty-coalition scores")
            if s.empty_counted != first.empty_counted or (s.clusters is None) != (
                first.clusters is None
            ):
                raise SarevalError("scores: states with and without marginal imputation's draws")
        clusters = None
        if first.clusters is not None:
            clusters = np.concatenate([s.clusters for s in states])  # type: ignore[misc]
        return cls(
            np.concatenate([s.scores for s in states], axis=1),
            np.concatenate([s.labels for s in states]),
            np.concatenate([s.groups for s in states]),
            first.empty,
            first.absent,
            first.empty_counted,
            clusters,
        )

    def rows(self) -> list[np.ndarray]:
        """Scores (n, K) of every coalition in coalition order, the empty one first."""
        if self.empty_counted:
            return list(self.scores)
        return [np.broadcast_to(self.empty, self.labels.shape), *self.scores]

    def sample_index(self) -> np.ndarray | None:
        """(n,) index in [0, C) of each row's sample (C samples, their draws sharing one), or
        None when every row is its own sample."""
        return None if self.clusters is None else sample_index(self.clusters)

    def with_policy(self, absent: str) -> ScoreState:
        """This state with ``map_macro``'s policy for absent classes (module docstring)."""
        return replace(self, absent=check_absent(absent))

    def values(self, group: int | None = None) -> dict[str, np.ndarray]:
        """Metric -> V (2^M,) in coalition order (the empty coalition first), over the samples
        of cloud-cover ``group`` (None: all)."""
        keep = slice(None) if group is None else self.groups == group
        y = self.labels[keep]
        rows = [r[keep] for r in self.rows()]
        per = [map_values(s, y, absent=self.absent) for s in rows]
        return {m: np.array([float(p[m]) for p in per]) for m in per[0]}

    def per_class_ap(self) -> np.ndarray:
        """AP of every class (column) and coalition (row, the empty one first): (2^M, K); a
        class without positives has AP 0 (scikit-learn's value) whatever the policy, which
        decides only whether ``map_macro`` averages it."""
        y = self.labels
        return np.stack([average_precision(s, y) for s in self.rows()])

    def bootstrap_values(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Metric -> V of each replicate (R, 2^M) for sample weights (R, n)."""
        y = self.labels
        per = [map_values(s, y, weights, absent=self.absent) for s in self.rows()]
        return {m: np.stack([p[m] for p in per], axis=-1) for m in per[0]}

    def macro_record(self, class_names: Sequence[str], group: int | None = None) -> dict[str, Any]:
        """What ``map_macro`` averaged over the samples of ``group`` (None: all), for its results
        entry: ``absent_classes`` (no positive sample), ``classes_averaged`` (the classes in the
        mean: those with a positive for ``skip``, all K for ``zero``), ``absent_policy``."""
        y = self.labels if group is None else self.labels[self.groups == group]
        absent = [str(c) for c, p in zip(class_names, class_positives(y), strict=True) if not p]
        averaged = len(class_names) - (len(absent) if self.absent == "skip" else 0)
        return {"classes_averaged": averaged, "absent_classes": absent,
                "absent_policy": self.absent}  # fmt: skip

    def macro_warnings(self, class_names: Sequence[str]) -> list[str]:
        """A ``map_macro:`` warning when some class has no positive sample (all samples)."""
        rec = self.macro_record(class_names)
        absent = rec["absent_classes"]
        if not absent:
            return []
        what = "left out of the mean" if self.absent == "skip" else "counted as AP 0"
        return [
            f"map_macro: {len(absent)} of {len(class_names)} classes have no positive sample "
            f"({', '.join(absent)}): {what}, {rec['classes_averaged']} classes averaged "
            f"(ShapeConfig.reporting.map_absent_classes={self.absent!r})"
        ]

    def to_json(self) -> dict[str, Any]:
        """The arrays embedded in a document (:func:`~sareval.evaluator.embedded.encode_arrays`)."""
        return encode_arrays(
            {"scores": self.scores, "labels": np.packbits(self.labels, axis=-1),
             "n_classes": np.int64(self.labels.shape[1]), "groups": self.groups,
             "empty": self.empty},
            self.n,
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, source: str = "results") -> ScoreState:
        """Decode :meth:`to_json` output; a wrong digest or layout is an error naming ``source``."""
        z, n = decode_arrays(data, source, "scores", ("scores", "labels", "n_classes", "groups",
                                                     "empty"))  # fmt: skip
        try:
            k = int(z["n_classes"])
            labels = np.unpackbits(z["labels"], axis=-1, count=k).astype(bool)
            state = cls(
                z["scores"].astype(np.float32), labels, z["groups"].astype(np.int16),
                z["empty"].astype(np.float32),
            )  # fmt: skip
            _, nn, kk = state.scores.shape
        except (TypeError, ValueError) as e:
            raise SarevalError(f"{source}: unreadable 'scores' section ({e})") from None
        if (
            kk != k
            or state.labels.shape != (nn, k)
            or state.groups.shape != (nn,)
            or (state.empty.shape != (k,) or nn != n)
        ):
            raise SarevalError(f"{source}: 'scores' section arrays do not fit together")
        return state
