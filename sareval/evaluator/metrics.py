"""Metrics as pure functions of integer counts (sufficient statistics) that merge by summation.

Per coalition the evaluator keeps one counts object and calls ``add`` once per batch; counts of
batches, shards and processes sum exactly (``a + b``, or an all-reduce of ``to_state()``), so a
metric does not depend on batch size, shard count or backend. Every 0/0 is 0 (scikit-learn's
``zero_division=0``); macro averages run over all K classes.

Single-label (:class:`SingleLabelCounts`), state: ``confusion`` (K, K) int64, rows = true class,
columns = predicted class. With tp_k = C[k,k], support r_k = row sum, predicted c_k = column sum,
n = sum C:

    oa = sum_k tp_k / n                      (= f1/f2/precision/recall micro and samples)
    recall_k = tp_k / r_k, precision_k = tp_k / c_k
    F_beta,k = (1+b^2) tp_k / ((1+b^2) tp_k + b^2 (r_k - tp_k) + (c_k - tp_k))
    aa = mean_k recall_k over all K classes (SEN12MS; a class without samples counts 0)
    balanced_accuracy = mean recall over classes with r_k > 0 (scikit-learn)
    f1_weighted = sum_k r_k F_1,k / n
    kappa = 1 - (n - sum_k tp_k) / (n - sum_k r_k c_k / n)   (0 where undefined)

Multi-label (:class:`MultiLabelCounts`), state: per class ``tp``, ``fp``, ``fn`` (K,) int64 and
``hist`` (K+1, K+1, K+1) int64, the number of samples with each (tp_i, |pred_i|, |true_i|); n,
tn and the exact-match count follow from them. Micro sums tp/fp/fn over classes; macro averages
the per-class values; samples averages per-sample values, which are functions of the triple:

    F_beta,i = (1+b^2) tp_i / (b^2 |true_i| + |pred_i|), precision_i = tp_i / |pred_i|,
    recall_i = tp_i / |true_i|;  f_samples = sum hist * F_beta(triple) / n
    subset_accuracy = #{i: tp_i = |pred_i| = |true_i|} / n,
    hamming_loss = sum_k (fp_k + fn_k) / (n K)                (lower is better)

and the SEN12MS toolbox's multi-label accuracies (``classification/metrics.py``: ``OA_multi``
and ``multi_conf_mat``), from the same counts:

    oa = mean_i |pred_i AND true_i| / |pred_i OR true_i|,  |OR| = |pred_i| + |true_i| - tp_i
         (a sample with both sets empty scores 1: it is predicted exactly, as subset_accuracy
         counts it; the toolbox divides 0/0 there and its mean becomes NaN)
    aa = mean_k (tp_k + tn_k) / n                            (= 1 - hamming_loss)

Orientation: every metric is higher-is-better except those in :data:`LOWER_IS_BETTER`
(:func:`higher_is_better`); results record it per metric so relevance is not read backwards.
Threshold-free mean average precision (``map_macro``, ``map_micro``) needs scores, not
decisions: :mod:`sareval.evaluator.scores`.

The ``*_metrics`` functions accept counts with leading batch axes (e.g. bootstrap replicates)
and return arrays over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import ClassVar, TypeVar

import numpy as np

from sareval.choices import OUTPUT_KINDS, TASKS
from sareval.errors import SarevalError
from sareval.evaluator.increment import NUMPY, increment

METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "single-label": (
        "oa",
        "aa",
        "balanced_accuracy",
        "f1_micro",
        "f1_macro",
        "f1_samples",
        "f2_micro",
        "f2_macro",
        "f2_samples",
        "f1_weighted",
        "precision_micro",
        "precision_macro",
        "recall_micro",
        "recall_macro",
        "kappa",
    ),
    "multi-label": (
        "oa",
        "aa",
        "f1_micro",
        "f1_macro",
        "f1_samples",
        "f2_micro",
        "f2_macro",
        "f2_samples",
        "precision_micro",
        "precision_macro",
        "precision_samples",
        "recall_micro",
        "recall_macro",
        "recall_samples",
        "subset_accuracy",
        "hamming_loss",
    ),
    "segmentation": (
        "oa",
        "miou",
        "fwiou",
        "aa",
        "f1_macro",
        "f1_micro",
        "precision_macro",
        "recall_macro",
        "kappa",
    ),
}
PER_CLASS_NAMES: tuple[str, ...] = ("precision", "recall", "f1", "f2", "support")
#: segmentation: per-class metrics (``iou`` besides those of :data:`PER_CLASS_NAMES`)
SEGMENTATION_PER_CLASS_NAMES: tuple[str, ...] = ("iou", *PER_CLASS_NAMES)
#: metrics whose lower values are better (every other metric: higher is better)
LOWER_IS_BETTER: frozenset[str] = frozenset({"hamming_loss"})


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` mean a better model (False for hamming_loss)."""
    return metric not in LOWER_IS_BETTER


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, 0 where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    num, den = np.broadcast_arrays(num, den)
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def _fbeta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    b2 = beta * beta
    tp = np.asarray(tp, dtype=np.float64)
    return _div((1 + b2) * tp, (1 + b2) * tp + b2 * np.asarray(fn) + np.asarray(fp))


# ---------------------------------------------------------------------------- single-label


def single_label_per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1, F2 and support, each of shape (..., K)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    return {
        "precision": _div(tp, predicted),
        "recall": _div(tp, support),
        "f1": _fbeta(tp, predicted - tp, support - tp, 1.0),
        "f2": _fbeta(tp, predicted - tp, support - tp, 2.0),
        "support": support,
    }


def single_label_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Every single-label metric of confusion matrices (..., K, K); arrays of shape (...)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    per_class = single_label_per_class(confusion)
    support = per_class["support"]
    predicted = confusion.sum(axis=-2)
    n = support.sum(axis=-1)
    correct = np.trace(confusion, axis1=-2, axis2=-1)
    oa = _div(correct, n)
    present = support > 0
    expected_agreement = _div((support.astype(np.float64) * predicted).sum(axis=-1), n)
    kappa_den = n - expected_agreement
    kappa = np.where(kappa_den != 0, 1.0 - _div(n - correct, kappa_den), 0.0)
    return {
        "oa": oa,
        "aa": per_class["recall"].mean(axis=-1),
        "balanced_accuracy": _div((per_class["recall"] * present).sum(axis=-1), present.sum(-1)),
        "f1_micro": oa,
        "f1_macro": per_class["f1"].mean(axis=-1),
        "f1_samples": oa,
        "f2_micro": oa,
        "f2_macro": per_class["f2"].mean(axis=-1),
        "f2_samples": oa,
        "f1_weighted": _div((per_class["f1"] * support).sum(axis=-1), n),
        "precision_micro": oa,
        "precision_macro": per_class["precision"].mean(axis=-1),
        "recall_micro": oa,
        "recall_macro": per_class["recall"].mean(axis=-1),
        "kappa": kappa,
    }


# ---------------------------------------------------------------------------- segmentation


def segmentation_per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``iou`` = TP / (TP + FP + FN) over all pixels of the data set (not averaged
    per image), and those of :func:`single_label_per_class`; each of shape (..., K)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-1) + confusion.sum(axis=-2) - tp
    return {"iou": _div(tp, union), **single_label_per_class(confusion)}


def segmentation_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Every segmentation metric of pixel confusion matrices (..., K, K) (rows = true class).

    Which classes enter a macro average (the rule of scikit-learn's ``jaccard_score`` /
    ``f1_score`` / ``precision_score`` / ``recall_score`` with ``average="macro"`` on the same
    pixels, whose default labels are the classes in truth or prediction): ``miou``,
    ``f1_macro``, ``precision_macro``, ``recall_macro`` average over the classes with
    TP + FP + FN > 0 (a class absent from both truth and prediction is left out; present in
    one only, it counts 0); ``aa`` (mean class recall) over the classes present in the truth
    (scikit-learn's ``balanced_accuracy_score``). ``oa`` = ``f1_micro`` = correct / labelled
    pixels; ``fwiou`` = sum_k (support_k / N) IoU_k; ``kappa`` as for single-label.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    per_class = segmentation_per_class(confusion)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = per_class["support"]
    union = support + confusion.sum(axis=-2) - tp
    seen = union > 0
    n_seen = seen.sum(axis=-1)
    truth = support > 0
    single = single_label_metrics(confusion)
    n = support.sum(axis=-1)

    def macro(values: np.ndarray) -> np.ndarray:
        return _div((values * seen).sum(axis=-1), n_seen)

    return {
        "oa": single["oa"],
        "miou": macro(per_class["iou"]),
        "fwiou": _div((per_class["iou"] * support).sum(axis=-1), n),
        "aa": _div((per_class["recall"] * truth).sum(axis=-1), truth.sum(axis=-1)),
        "f1_macro": macro(per_class["f1"]),
        "f1_micro": single["oa"],
        "precision_macro": macro(per_class["precision"]),
        "recall_macro": macro(per_class["recall"]),
        "kappa": single["kappa"],
    }


# ----------------------------------------------------------------------------- multi-label


@lru_cache(maxsize=32)
def _sample_tables(n_classes: int) -> dict[str, np.ndarray]:
    """Per-sample metric of each (tp_i, |pred_i|, |true_i|) triple, flattened to (K+1)^3."""
    values = np.arange(n_classes + 1, dtype=np.float64)
    tp, pred, true = np.meshgrid(values, values, values, indexing="ij")
    tables = {
        "precision": _div(tp, pred),
        "recall": _div(tp, true),
        "f1": _div(2 * tp, true + pred),
        "f2": _div(5 * tp, 4 * true + pred),
        "exact": ((tp == pred) & (tp == true)).astype(np.float64),
        # Jaccard index of the two label sets; both empty (union 0) -> 1
        "jaccard": np.where(pred + true - tp == 0, 1.0, _div(tp, pred + true - tp)),
    }
    for table in tables.values():
        table.setflags(write=False)
    return {k: v.reshape(-1) for k, v in tables.items()}


def _hist_sum(hist: np.ndarray, table: np.ndarray) -> np.ndarray:
    """sum over triples of hist * table, for hist (..., K+1, K+1, K+1)."""
    flat = hist.reshape(*hist.shape[:-3], -1).astype(np.float64)
    return (flat * table).sum(axis=-1)


def multi_label_per_class(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1, F2 and support (tp + fn), each of shape (..., K)."""
    tp, fp, fn = (np.asarray(a, dtype=np.int64) for a in (tp, fp, fn))
    return {
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _fbeta(tp, fp, fn, 1.0),
        "f2": _fbeta(tp, fp, fn, 2.0),
        "support": tp + fn,
    }


def multi_label_metrics(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, hist: np.ndarray
) -> dict[str, np.ndarray]:
    """Every multi-label metric of counts tp, fp, fn (..., K) and hist (..., K+1, K+1, K+1)."""
    tp, fp, fn, hist = (np.asarray(a, dtype=np.int64) for a in (tp, fp, fn, hist))
    n_classes = tp.shape[-1]
    tables = _sample_tables(n_classes)
    per_class = multi_label_per_class(tp, fp, fn)
    n = hist.reshape(*hist.shape[:-3], -1).sum(axis=-1)
    tp_all, fp_all, fn_all = tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)
    correct = n[..., None] - fp - fn  # tp_k + tn_k
    return {
        "oa": _div(_hist_sum(hist, tables["jaccard"]), n),
        "aa": _div(correct, n[..., None]).mean(axis=-1),
        "f1_micro": _fbeta(tp_all, fp_all, fn_all, 1.0),
        "f1_macro": per_class["f1"].mean(axis=-1),
        "f1_samples": _div(_hist_sum(hist, tables["f1"]), n),
        "f2_micro": _fbeta(tp_all, fp_all, fn_all, 2.0),
        "f2_macro": per_class["f2"].mean(axis=-1),
        "f2_samples": _div(_hist_sum(hist, tables["f2"]), n),
        "precision_micro": _div(tp_all, tp_all + fp_all),
        "precision_macro": per_class["precision"].mean(axis=-1),
        "precision_samples": _div(_hist_sum(hist, tables["precision"]), n),
        "recall_micro": _div(tp_all, tp_all + fn_all),
        "recall_macro": per_class["recall"].mean(axis=-1),
        "recall_samples": _div(_hist_sum(hist, tables["recall"]), n),
        "subset_accuracy": _div(_hist_sum(hist, tables["exact"]), n),
        "hamming_loss": _div(fp_all + fn_all, n * n_classes),
    }


def triple_codes(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Flat index of each sample's (tp_i, |pred_i|, |true_i|) in a (K+1)^3 histogram."""
    k1 = y_true.shape[-1] + 1
    tp = np.count_nonzero(y_true & y_pred, axis=-1)
    pred = np.count_nonzero(y_pred, axis=-1)
    true = np.count_nonzero(y_true, axis=-1)
    return (tp * k1 + pred) * k1 + true


# ---------------------------------------------------------------------------- counts objects


_C = TypeVar("_C", bound="_Counts")


class _Counts:
    """Integer state arrays (``_fields``) that merge by summation."""

    task: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]]

    n_classes: int

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _init_state(self, n_classes: int, state: Mapping[str, np.ndarray] | None) -> None:
        if int(n_classes) < 1:
            raise SarevalError(f"n_classes must be at least 1, got {n_classes}")
        self.n_classes = int(n_classes)
        shapes = self._shapes()
        for name in self._fields:
            if state is None:
                value = np.zeros(shapes[name], dtype=np.int64)
            else:
                value = np.asarray(state[name])
                if value.shape != shapes[name] or not np.issubdtype(value.dtype, np.integer):
                    raise SarevalError(
                        f"{self.task} counts: field {name!r} has shape {value.shape} and dtype "
                        f"{value.dtype}; expected integers of shape {shapes[name]}"
                    )
                if (value < 0).any():
                    raise SarevalError(f"{self.task} counts: field {name!r} has negative counts")
                value = np.array(value, dtype=np.int64, order="C")  # a C-contiguous copy
            setattr(self, name, value)

    def to_state(self) -> dict[str, np.ndarray]:
        """Copies of the int64 state arrays (for JSON, shard files and all-reduce)."""
        return {name: getattr(self, name).copy() for name in self._fields}

    @classmethod
    def from_state(cls: type[_C], state: Mapping[str, np.ndarray]) -> _C:
        """Rebuild from :meth:`to_state` output (lists are accepted); K from the shapes."""
        missing = [name for name in cls._fields if name not in state]
        if missing:
            raise SarevalError(f"{cls.task} counts state lacks fields {missing}")
        arrays = {name: np.asarray(state[name]) for name in cls._fields}
        first = arrays[cls._fields[0]]
        if first.ndim < 1:
            raise SarevalError(f"{cls.task} counts state: {cls._fields[0]!r} is not an array")
        return cls(first.shape[-1], state=arrays)  # type: ignore[call-arg]

    def merge(self: _C, other: _C) -> _C:
        """New counts: the element-wise sum of both states."""
        if type(other) is not type(self) or other.n_classes != self.n_classes:
            raise SarevalError(
                f"cannot merge {other.task} counts of {other.n_classes} classes into "
                f"{self.task} counts of {self.n_classes} classes"
            )
        state = {name: getattr(self, name) + getattr(other, name) for name in self._fields}
        return type(self)(self.n_classes, state=state)  # type: ignore[call-arg]

    def __add__(self: _C, other: _C) -> _C:
        return self.merge(other)

    def __iadd__(self: _C, other: _C) -> _C:
        merged = self.merge(other)
        for name in self._fields:
            setattr(self, name, getattr(merged, name))
        return self

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.n_classes == self.n_classes
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in self._fields)
        )

    __hash__ = None  # type: ignore[assignment]

    def metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def per_class(self) -> dict[str, list[float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_classes={self.n_classes}, n={self.n})"

    @property
    def n(self) -> int:
        raise NotImplementedError


class SingleLabelCounts(_Counts):
    """Confusion matrix (K, K) int64, rows = true class, columns = predicted class."""

    task = "single-label"
    _fields = ("confusion",)
    confusion: np.ndarray

    def __init__(self, n_classes: int, state: Mapping[str, np.ndarray] | None = None) -> None:
        self._init_state(n_classes, state)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {"confusion": (self.n_classes, self.n_classes)}

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Count a batch: class indices ``y_true``, ``y_pred`` of shape (B,), in [0, K)."""
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        if y_true.ndim != 1 or y_pred.shape != y_true.shape:
            raise SarevalError(
                f"single-label counts: y_true {y_true.shape} and y_pred {y_pred.shape} must both "
                "have shape (B,)"
            )
        if y_true.size == 0:
            return
        k = self.n_classes
        for name, y in (("y_true", y_true), ("y_pred", y_pred)):
            if not np.issubdtype(y.dtype, np.integer):
                raise SarevalError(f"single-label counts: {name} has dtype {y.dtype}, not integer")
            bad = y[(y < 0) | (y >= k)]
            if bad.size:
                raise SarevalError(
                    f"single-label counts: {name} holds class {int(bad[0])} outside [0, {k})"
                )
        self.confusion += _increment("single-label", k, y_true, y_pred)["confusion"].reshape(k, k)

    def metrics(self) -> dict[str, float]:
        """Every name in ``METRIC_NAMES["single-label"]`` -> value."""
        return {k: float(v) for k, v in single_label_metrics(self.confusion).items()}

    def per_class(self) -> dict[str, list[float]]:
        """``precision``, ``recall``, ``f1``, ``f2`` and ``support`` per class (length K)."""
        return {k: v.tolist() for k, v in single_label_per_class(self.confusion).items()}


class SegmentationCounts(SingleLabelCounts):
    """The pixel confusion matrix (K, K) int64 of a segmentation data set (rows = true class;
    pixels with the ignore index are not counted); ``n`` counts pixels."""

    task = "segmentation"

    def metrics(self) -> dict[str, float]:
        """Every name in ``METRIC_NAMES["segmentation"]`` -> value."""
        return {k: float(v) for k, v in segmentation_metrics(self.confusion).items()}

    def per_class(self) -> dict[str, list[float]]:
        """``iou``, ``precision``, ``recall``, ``f1``, ``f2`` and ``support`` per class."""
        return {k: v.tolist() for k, v in segmentation_per_class(self.confusion).items()}


class MultiLabelCounts(_Counts):
    """Per-class ``tp``, ``fp``, ``fn`` (K,) and the (tp_i, |pred_i|, |true_i|) histogram."""

    task = "multi-label"
    _fields = ("tp", "fp", "fn", "hist")
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    hist: np.ndarray

    def __init__(self, n_classes: int, state: Mapping[str, np.ndarray] | None = None) -> None:
        self._init_state(n_classes, state)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        k, k1 = self.n_classes, self.n_classes + 1
        return {"tp": (k,), "fp": (k,), "fn": (k,), "hist": (k1, k1, k1)}

    @property
    def n(self) -> int:
        """Number of samples counted."""
        return int(self.hist.sum())

    @property
    def tn(self) -> np.ndarray:
        """Per-class true negatives n - tp - fp - fn."""
        return self.n - self.tp - self.fp - self.fn

    @property
    def exact_match(self) -> int:
        """Samples whose predicted label set equals the true one (tp_i = |pred_i| = |true_i|)."""
        idx = np.arange(self.n_classes + 1)
        return int(self.hist[idx, idx, idx].sum())

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Count a batch of multi-hot rows ``y_true``, ``y_pred`` (B, K) (bool or 0/1)."""
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        if y_true.ndim != 2 or y_pred.shape != y_true.shape or y_true.shape[1] != self.n_classes:
            raise SarevalError(
                f"multi-label counts: y_true {y_true.shape} and y_pred {y_pred.shape} must both "
                f"have shape (B, {self.n_classes})"
            )
        if y_true.shape[0] == 0:
            return
        inc = _increment("multi-label", self.n_classes, y_true != 0, y_pred != 0)
        for name in self._fields:
            getattr(self, name).reshape(-1)[:] += inc[name]  # C-contiguous

    def metrics(self) -> dict[str, float]:
        """Every name in ``METRIC_NAMES["multi-label"]`` -> value."""
        values = multi_label_metrics(self.tp, self.fp, self.fn, self.hist)
        return {k: float(v) for k, v in values.items()}

    def per_class(self) -> dict[str, list[float]]:
        """``precision``, ``recall``, ``f1``, ``f2`` and ``support`` per class (length K)."""
        return {k: v.tolist() for k, v in multi_label_per_class(self.tp, self.fp, self.fn).items()}


def _increment(task: str, k: int, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """One batch's state (the evaluator's one counting implementation, one row set, one group)."""
    dec = y_pred.astype(np.int64)[None] if task == "single-label" else y_pred[None]
    y = y_true.astype(np.int64) if task == "single-label" else y_true
    g = np.zeros(len(y_true), dtype=np.int64)
    return increment(NUMPY, task, k, y, dec, g, 1)  # type: ignore[no-any-return]


Counts = SingleLabelCounts | MultiLabelCounts
#: the counts class of each task
COUNTS_CLASSES: dict[str, type[SingleLabelCounts] | type[MultiLabelCounts]] = {
    "single-label": SingleLabelCounts,
    "multi-label": MultiLabelCounts,
    "segmentation": SegmentationCounts,
}


def counts_for(task: str, n_classes: int) -> SingleLabelCounts | MultiLabelCounts:
    """Empty counts for ``task`` (:data:`COUNTS_CLASSES`) and K classes."""
    if task not in COUNTS_CLASSES:
        raise SarevalError(f"unknown task {task!r}; known: {list(TASKS)}")
    return COUNTS_CLASSES[task](n_classes)


def counts_from_state(
    task: str, state: Mapping[str, np.ndarray]
) -> SingleLabelCounts | MultiLabelCounts:
    """Counts of ``task`` rebuilt from a ``to_state()`` dict."""
    if task not in COUNTS_CLASSES:
        raise SarevalError(f"unknown task {task!r}; known: {list(TASKS)}")
    return COUNTS_CLASSES[task].from_state(state)


# ------------------------------------------------------------------------ decisions, ties


def _check_task(task: str, outputs: np.ndarray) -> None:
    if task not in METRIC_NAMES:
        raise SarevalError(f"unknown task {task!r}; known: {list(TASKS)}")
    if outputs.ndim != 2:
        raise SarevalError(f"model outputs have shape {outputs.shape}; expected (B, K)")


def decision_threshold(output_kind: str, threshold: float) -> float:
    """The multi-label cut in output units: logit(threshold) for logits, else threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise SarevalError(f"threshold {threshold} is outside [0, 1]")
    if output_kind == "probabilities":
        return float(threshold)
    if output_kind == "logits":
        with np.errstate(divide="ignore"):
            return float(np.log(threshold) - np.log1p(-threshold))
    raise SarevalError(f"unknown output kind {output_kind!r}; known: logits, probabilities")


def decide(
    outputs: np.ndarray,
    task: str,
    output_kind: str = "logits",
    threshold: float = 0.5,
) -> np.ndarray:
    """Predictions from model outputs (B, K).

    single-label: argmax, ties to the lowest index -> (B,) int64.
    multi-label: sigmoid(x) >= threshold, computed as x >= logit(threshold) for logits, or
    p >= threshold for probabilities -> (B, K) bool.
    """
    outputs = np.asarray(outputs)
    _check_task(task, outputs)
    if task == "single-label":
        if output_kind not in OUTPUT_KINDS:
            raise SarevalError(
                f"unknown output kind {output_kind!r}; known: {', '.join(OUTPUT_KINDS)}"
            )
        return np.argmax(outputs, axis=1).astype(np.int64)
    return outputs >= decision_threshold(output_kind, threshold)


def ties(
    outputs: np.ndarray,
    task: str,
    output_kind: str = "logits",
    threshold: float = 0.5,
    tol: float = 1e-5,
) -> np.ndarray:
    """(B,) bool: samples whose decision could flip under a perturbation of ``tol``.

    single-label: the two largest outputs differ by at most ``tol``; multi-label: some output
    lies within ``tol`` of the decision threshold (in output units, see :func:`decide`).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    _check_task(task, outputs)
    if task == "single-label":
        if outputs.shape[1] < 2:
            return np.zeros(outputs.shape[0], dtype=bool)
        top2 = np.partition(outputs, outputs.shape[1] - 2, axis=1)[:, -2:]
        return np.asarray((top2[:, 1] - top2[:, 0]) <= tol)
    cut = decision_threshold(output_kind, threshold)
    return np.asarray((np.abs(outputs - cut) <= tol).any(axis=1))


def nonfinite_rows(outputs: np.ndarray) -> np.ndarray:
    """(B,) bool: samples with a NaN or infinite output."""
    outputs = np.asarray(outputs)
    return ~np.isfinite(outputs).reshape(outputs.shape[0], -1).all(axis=1)


def majority_prediction(y_true: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """The majority-class predictor's constant prediction for labels ``y_true``.

    single-label: the most frequent class (ties to the lowest index) as a 0-d int64 array.
    multi-label: (K,) bool, the most frequent label *set* (the modal row of ``y_true``; ties to
    the first row in ``np.unique`` order, i.e. lexicographic with False < True). This is the
    majority class of the label-powerset view of multi-label data, where each distinct label
    set is one class (Tsoumakas & Katakis 2007, "Multi-label classification: an overview"),
    so the SHAPE paper's majority-class empty coalition carries over. The per-class majority
    (scikit-learn's ``DummyClassifier("most_frequent")``) predicts the empty set whenever no
    class is on more than half the samples, as on SEN12MS and BigEarthNet, and every F-score
    of the empty coalition is then 0 whatever the data.
    Broadcast it to the batch shape to count the empty coalition.
    """
    y_true = np.asarray(y_true)
    if task == "single-label":
        if y_true.size == 0:
            raise SarevalError("majority-class predictor: no samples")
        return np.array(np.argmax(np.bincount(y_true, minlength=n_classes)), dtype=np.int64)
    if task == "multi-label":
        if y_true.ndim != 2 or y_true.shape[0] == 0:
            raise SarevalError("majority-class predictor: no samples")
        rows, counts = np.unique(y_true != 0, axis=0, return_counts=True)
        return np.asarray(rows[int(np.argmax(counts))], dtype=bool)
    raise SarevalError(f"unknown task {task!r}; known: {list(TASKS)}")
