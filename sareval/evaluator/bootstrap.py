"""Bootstrap confidence intervals for every V(S), relevance and cooperation.

Replicate r draws N sample indices with replacement (generator r of
``numpy.random.default_rng(seed).spawn(n_boot)``, so results do not depend on chunking). The
SAME draw serves every coalition, which keeps the pairing between coalitions: a player that
never changes a prediction gets relevance exactly 0 in every replicate. A draw enters as
multiplicity weights w = bincount(idx) (N,), and every count is a weighted sum over samples:

    single-label: confusion[t, p] = sum_{i: y_i = t, yhat_i = p} w_i
    multi-label:  tp_k = sum_i w_i [y_ik and yhat_ik] (likewise fp, fn),
                  hist[triple] = sum_{i: triple_i = triple} w_i

computed for a chunk of replicates at once (at most ``CHUNK_ELEMENTS`` weights or counts;
grouped integer sums; float64 matrix products of 0/1 features with integer weights, exact below
2^53). The metrics are those of
:mod:`sareval.evaluator.metrics`; intervals are percentile intervals
[q(alpha/2), q(1 - alpha/2)] over the replicates (NaN replicates, from Z = V(M) = 0, ignored).
Mean average precision (:func:`bootstrap_score_intervals`) uses the same draws as weights of
each sample's (score, label) pairs (weighted AP, as scikit-learn's ``sample_weight``).

Breakdowns use the SAME replicates: a class's metrics come from the replicate's counts, a
cloud-cover bin's from the replicate's weights of the bin's samples (so a bin's size varies
between replicates, as a class's support does); a bin without a sample in a replicate gives
NaN there, ignored by the percentiles.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import check_players, coalition_name, ordered_coalitions
from sareval.evaluator.interactions import interaction_record
from sareval.evaluator.metrics import (
    METRIC_NAMES,
    multi_label_metrics,
    multi_label_per_class,
    segmentation_metrics,
    segmentation_per_class,
    single_label_metrics,
    single_label_per_class,
    triple_codes,
)
from sareval.evaluator.scores import ScoreState, average_precision
from sareval.evaluator.shapley import Normalisation, shape_relevance_array

#: the per-class metrics that get intervals with ``by_class`` (``by.class`` of the results)
CLASS_METRICS = ("precision", "recall", "f1", "f2")
#: key prefix of the per-class values in :func:`bootstrap_values` (shape (R, K, 2^M))
CLASS_PREFIX = "class/"
#: key prefix of the per-group (cloud-cover bin) values in :func:`bootstrap_values` (R, G, 2^M)
GROUP_PREFIX = "group/"
CHUNK_ELEMENTS = 4_000_000  # replicates x samples held at once
MEMORY_BUDGET = 2 << 30  # bytes the replicates' per-metric values may take


def check_bootstrap(
    n_boot: int, n_coalitions: int = 2, n_classes_by_class: int = 0, n_groups: int = 0
) -> None:
    """Refuse ``n_boot`` replicates (``ShapeConfig.reporting.replicates``, at most
    :data:`~sareval.evaluator.config.MAX_REPLICATES` there) whose per-replicate state
    (a generator, and every metric's V for every coalition, held twice while stacked; with
    ``n_classes_by_class`` = K also the per-class metrics, with ``n_groups`` cloud-cover
    groups every metric per group) would exceed :data:`MEMORY_BUDGET`; called before anything
    is allocated. (The weights and counts of a chunk of replicates are bounded by
    :data:`CHUNK_ELEMENTS` in :func:`bootstrap_values`.)"""
    n_metrics = max(len(names) for names in METRIC_NAMES.values()) * (1 + n_groups)
    n_metrics += len(CLASS_METRICS) * n_classes_by_class
    estimate = n_boot * (2048 + 2 * 8 * n_metrics * (n_coalitions + 1))
    if estimate > MEMORY_BUDGET:
        raise SarevalError(
            f"ShapeConfig.reporting.replicates: {n_boot} replicates of {n_coalitions} "
            f"coalitions need about "
            f"{estimate / 2**30:.1f} GiB (budget {MEMORY_BUDGET / 2**30:.0f} GiB); use fewer"
        )


class GroupedSum:
    """Sum of weights per code: ``(R, N) -> (R, size)`` with integer arithmetic (the counts of
    every bootstrap replicate at once)."""

    def __init__(self, codes: np.ndarray, size: int) -> None:
        unique, inverse = np.unique(codes, return_inverse=True)
        self.order = np.argsort(inverse, kind="stable")
        self.starts = np.searchsorted(inverse[self.order], np.arange(len(unique)))
        self.unique = unique
        self.size = size

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        out = np.zeros((weights.shape[0], self.size), dtype=np.int64)
        out[:, self.unique] = np.add.reduceat(weights[:, self.order], self.starts, axis=1)
        return out


def _check_inputs(
    y_true: np.ndarray,
    predictions: Mapping[frozenset[str], np.ndarray],
    players: tuple[str, ...],
    task: str,
    n_classes: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    if task not in METRIC_NAMES:
        raise SarevalError(f"unknown task {task!r}; known: {list(METRIC_NAMES)}")
    y_true = np.asarray(y_true)
    shape = (y_true.shape[0],) if task == "single-label" else (y_true.shape[0], n_classes)
    if y_true.shape != shape or shape[0] == 0:
        raise SarevalError(f"bootstrap: y_true has shape {y_true.shape}; expected {shape}, N > 0")
    ordered = []
    for coalition in ordered_coalitions(players):
        if coalition not in predictions:
            raise SarevalError(
                f"bootstrap: no predictions for coalition {coalition_name(coalition, players)}"
            )
        try:
            pred = np.broadcast_to(np.asarray(predictions[coalition]), shape)
        except ValueError:
            raise SarevalError(
                f"bootstrap: predictions of {coalition_name(coalition, players)} have shape "
                f"{np.shape(predictions[coalition])}; expected {shape}"
            ) from None
        ordered.append(pred)
    if task == "single-label":
        for y in (y_true, *ordered):
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
                raise SarevalError(f"bootstrap: class indices must be integers in [0, {n_classes})")
    else:
        y_true = y_true != 0
        ordered = [p != 0 for p in ordered]
    return y_true, ordered


def replicate_weights(generators: Sequence[np.random.Generator], n: int) -> np.ndarray:
    """(R, N) int64 multiplicities of N indices drawn with replacement per generator."""
    return np.stack([np.bincount(g.integers(0, n, size=n), minlength=n) for g in generators])


def _check_groups(groups: np.ndarray | None, n_groups: int, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if (
        groups.shape != (n,)
        or not np.issubdtype(groups.dtype, np.integer)
        or n_groups < 1
        or (n and (groups.min() < 0 or groups.max() >= n_groups))
    ):
        raise SarevalError(
            f"bootstrap: groups must be (N,) = ({n},) integers in [0, n_groups = {n_groups})"
        )
    return groups.astype(np.int64)


def bootstrap_values(
    y_true: np.ndarray,
    predictions: Mapping[frozenset[str], np.ndarray],
    players: Sequence[str],
    task: str,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    by_class: bool = False,
    groups: np.ndarray | None = None,
    n_groups: int = 0,
    clusters: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Metric name -> V of every replicate, shape (n_boot, 2^M) in coalition order; with
    ``by_class`` also ``"class/<m>"`` -> (n_boot, K, 2^M) for m in :data:`CLASS_METRICS`
    (each class's precision, recall, F1, F2 from the same replicate's counts); with ``groups``
    (N,) in [0, ``n_groups``) (cloud-cover bins) also ``"group/<metric>"`` -> (n_boot, G, 2^M):
    every metric over each group's samples, weighted by the same replicate's draw.

    ``y_true``: (N,) class indices or (N, K) multi-hot; ``predictions``: every coalition (the
    empty one included) -> (N,) or (N, K) decisions, or anything broadcastable to that (a
    constant prediction for the empty coalition). ``clusters`` (N,) in [0, C): rows that are
    draws of the same sample (marginal imputation's donor draws): a replicate draws C samples
    with replacement and each row weighs as its sample (the same draws as C plain rows).
    """
    players = check_players(players)
    if n_boot < 1:
        raise SarevalError(f"bootstrap: n_boot must be at least 1, got {n_boot}")
    y_true, ordered = _check_inputs(y_true, predictions, players, task, n_classes)
    n = y_true.shape[0]
    k = n_classes
    checked = _check_groups(groups, n_groups, n)
    n_g = n_groups if checked is not None else 0
    g = checked if checked is not None else np.zeros(n, np.int64)
    if task == "single-label":
        codes = [y_true.astype(np.int64) * k + p for p in ordered]
        sums = [GroupedSum(c, k * k) for c in codes]
        group_sums = [GroupedSum(g * k * k + c, n_g * k * k) for c in codes] if n_g else []
    else:
        k1 = k + 1
        codes = [triple_codes(y_true, p) for p in ordered]
        sums = [GroupedSum(c, k1**3) for c in codes]
        group_sums = [GroupedSum(g * k1**3 + c, n_g * k1**3) for c in codes] if n_g else []
        features = [np.concatenate([y_true & p, ~y_true & p, y_true & ~p], axis=1) for p in ordered]
        # the samples sorted by group: each group's columns are one contiguous slice
        order = np.argsort(g, kind="stable")
        cuts = np.searchsorted(g[order], np.arange(n_g + 1))
        # float64 copies (a matrix product of contiguous float64 runs on BLAS)
        sorted_features = [f[order].astype(np.float64) for f in features] if n_g else []
    group_size = GroupedSum(g, n_g) if n_g else None
    generators = np.random.default_rng(seed).spawn(n_boot)
    n_draw = n if clusters is None else int(clusters.max()) + 1  # indices drawn per replicate
    per_replicate = k * k if task == "single-label" else (k + 1) ** 3  # counts of one replicate
    per_replicate *= 1 + n_g
    chunk = max(1, CHUNK_ELEMENTS // max(n, per_replicate))
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, chunk):
        weights = replicate_weights(generators[start : start + chunk], n_draw)
        if clusters is not None:
            weights = weights[:, clusters]
        r = weights.shape[0]
        per_coalition = []
        if group_size is not None:
            empty = group_size(weights) == 0  # (r, G): no sample of the group drawn
        if task != "single-label":
            w64 = weights.astype(np.float64)
            group_weights = [
                np.ascontiguousarray(w64[:, order[a:b]]) for a, b in itertools.pairwise(cuts)
            ] if n_g else []  # fmt: skip
        for j, grouped in enumerate(sums):
            if task == "single-label":
                confusion = grouped(weights).reshape(r, k, k)
                values = single_label_metrics(confusion)
                classes = single_label_per_class(confusion) if by_class else {}
                if n_g:
                    by_group = single_label_metrics(group_sums[j](weights).reshape(r, n_g, k, k))
            else:
                counts = np.rint(w64 @ features[j]).astype(np.int64)
                tp, fp, fn = counts[:, :k], counts[:, k : 2 * k], counts[:, 2 * k :]
                values = multi_label_metrics(tp, fp, fn, grouped(weights).reshape(r, k1, k1, k1))
                classes = multi_label_per_class(tp, fp, fn) if by_class else {}
                if n_g:
                    gc = np.stack(
                        [
                            np.rint(group_weights[i] @ sorted_features[j][a:b])
                            for i, (a, b) in enumerate(itertools.pairwise(cuts))
                        ],
                        axis=1,
                    ).astype(np.int64)  # (r, G, 3K)
                    hist = group_sums[j](weights).reshape(r, n_g, k1, k1, k1)
                    by_group = multi_label_metrics(
                        gc[..., :k], gc[..., k : 2 * k], gc[..., 2 * k :], hist
                    )
            values.update({CLASS_PREFIX + m: classes[m] for m in CLASS_METRICS if classes})
            if group_size is not None:
                values.update(
                    {GROUP_PREFIX + m: np.where(empty, np.nan, v) for m, v in by_group.items()}
                )
            per_coalition.append(values)
        for metric in per_coalition[0]:
            out.setdefault(metric, []).append(np.stack([v[metric] for v in per_coalition], -1))
    return {metric: np.concatenate(parts) for metric, parts in out.items()}


def percentile_interval(samples: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """[q(alpha/2), q(1 - alpha/2)] along axis 0 (NaNs ignored), shape (2, ...)."""
    if not 0.0 < alpha < 1.0:
        raise SarevalError(f"bootstrap: alpha must be in (0, 1), got {alpha}")
    samples = np.asarray(samples, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN
        return np.nanpercentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)


def bootstrap_intervals(
    y_true: np.ndarray,
    predictions: Mapping[frozenset[str], np.ndarray],
    players: Sequence[str],
    task: str,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    z: Normalisation = "one",
    by_class: bool = False,
    groups: np.ndarray | None = None,
    n_groups: int = 0,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    """Percentile intervals per metric::

        {metric: {"V": {coalition_name: [lo, hi]}, "relevance": {player: [lo, hi]},
                  "cooperation": [lo, hi]}}

    with ``by_class`` the key ``"by_class"``: one such ``{metric: ...}`` per class (in
    class order) for the metrics of :data:`CLASS_METRICS`; with ``groups`` the key
    ``"by_group"``: one ``{metric: ...}`` of every metric per group 0 .. ``n_groups`` - 1.
    Arguments as for :func:`bootstrap_values`; ``z`` as in
    :func:`~sareval.evaluator.shapley.shape_relevance_array`.
    """
    players = check_players(players)
    check_bootstrap(
        n_boot, 2 ** len(players) - 1, n_classes if by_class else 0,
        n_groups if groups is not None else 0,
    )  # fmt: skip
    values = bootstrap_values(
        y_true, predictions, players, task, n_classes, n_boot, seed, by_class=by_class,
        groups=groups, n_groups=n_groups, clusters=clusters,
    )  # fmt: skip
    overall = {m: v for m, v in values.items() if "/" not in m}
    result: dict[str, Any] = _intervals(overall, players, alpha, z)
    if by_class:
        result["by_class"] = [
            _intervals(
                {m: values[CLASS_PREFIX + m][:, i, :] for m in CLASS_METRICS}, players, alpha, z
            )
            for i in range(n_classes)
        ]
    if groups is not None:
        names = [m[len(GROUP_PREFIX) :] for m in values if m.startswith(GROUP_PREFIX)]
        result["by_group"] = [
            _intervals({m: values[GROUP_PREFIX + m][:, i, :] for m in names}, players, alpha, z)
            for i in range(n_groups)
        ]
    return result


def _intervals(
    values: Mapping[str, np.ndarray], players: tuple[str, ...], alpha: float, z: Normalisation
) -> dict[str, dict]:
    names = [coalition_name(c, players) for c in ordered_coalitions(players)]
    result = {}
    for metric, V in values.items():
        scores = shape_relevance_array(V, players, z)
        v_ci = percentile_interval(V, alpha)
        r_ci = percentile_interval(scores["relevance"], alpha)
        c_ci = percentile_interval(scores["cooperation"], alpha)
        result[metric] = {
            "V": {name: v_ci[:, j].tolist() for j, name in enumerate(names)},
            "relevance": {p: r_ci[:, i].tolist() for i, p in enumerate(players)},
            "cooperation": c_ci.tolist(),
            "interactions": interaction_record(  # the same replicates' interaction indices
                V, players, summary=lambda a: percentile_interval(a, alpha).T.tolist()
            ),
        }
    return result


def bootstrap_score_intervals(
    state: ScoreState,
    players: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    z: Normalisation = "one",
    n_groups: int = 0,
    by_class: bool = False,
) -> dict[str, Any]:
    """Intervals as :func:`bootstrap_intervals` for ``map_macro`` / ``map_micro``, from the
    SAME replicate draws (generator r of ``default_rng(seed).spawn(n_boot)`` over the state's
    samples, in pass order), so they pair with the count metrics' replicates; with
    ``n_groups``, ``"by_group"`` as there: group i's replicate weighs only the samples of
    ``state.groups == i`` (a replicate without one: NaN); with ``by_class``, ``"by_class"``:
    each class's average precision ``ap``. A state with ``clusters`` (marginal imputation)
    resamples its samples, each with all its draws (as :func:`bootstrap_values`)."""
    players = check_players(players)
    n, k = state.labels.shape
    if n == 0:
        raise SarevalError("bootstrap: no samples")
    generators = np.random.default_rng(seed).spawn(n_boot)
    chunk = max(1, CHUNK_ELEMENTS // (n * k))
    masks = [state.groups == i for i in range(n_groups)]
    clusters = state.sample_index()
    n_draw = n if clusters is None else int(clusters.max()) + 1
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, chunk):
        weights = replicate_weights(generators[start : start + chunk], n_draw)
        if clusters is not None:
            weights = weights[:, clusters]
        for metric, v in state.bootstrap_values(weights).items():
            parts.setdefault(metric, []).append(v)
        if by_class:
            per_row = [average_precision(s, state.labels, weights) for s in state.rows()]
            parts.setdefault(CLASS_PREFIX + "ap", []).append(np.stack(per_row, axis=-1))
        for i, mask in enumerate(masks):
            w = weights * mask
            empty = w.sum(axis=1) == 0
            for metric, v in state.bootstrap_values(w).items():
                v = np.where(empty[:, None], np.nan, v)
                parts.setdefault(f"{GROUP_PREFIX}{i}/{metric}", []).append(v)
    values = {m: np.concatenate(v) for m, v in parts.items()}
    result: dict[str, Any] = _intervals(
        {m: v for m, v in values.items() if "/" not in m}, players, alpha, z
    )
    if by_class:
        ap = values[CLASS_PREFIX + "ap"]  # (R, K, 2^M)
        result["by_class"] = [_intervals({"ap": ap[:, i, :]}, players, alpha, z) for i in range(k)]
    if n_groups:
        result["by_group"] = []
        for i in range(n_groups):
            prefix = f"{GROUP_PREFIX}{i}/"
            group = {m[len(prefix) :]: v for m, v in values.items() if m.startswith(prefix)}
            result["by_group"].append(_intervals(group, players, alpha, z))
    return result


def merge_intervals(*parts: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Interval dicts of :func:`bootstrap_intervals` / :func:`bootstrap_score_intervals` in one:
    metrics side by side, ``by_class`` / ``by_group`` lists merged element by element."""
    given = [p for p in parts if p]
    if not given:
        return None
    out: dict[str, Any] = {}
    for part in given:
        for key, value in part.items():
            if key in ("by_class", "by_group") and key in out:
                out[key] = [{**a, **b} for a, b in zip(out[key], value, strict=True)]
            else:
                out[key] = value
    return out


def bootstrap_image_intervals(
    per_image: np.ndarray,
    row_coalitions: Sequence[frozenset[str]],
    players: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    z: Normalisation = "one",
    by_class: bool = False,
    image_groups: np.ndarray | None = None,
    n_groups: int = 0,
) -> dict[str, Any]:
    """Intervals as :func:`bootstrap_intervals` for segmentation, resampling IMAGES (pixels of
    one image are not independent): replicate r draws N images with replacement (generator r
    of ``default_rng(seed).spawn(n_boot)``) and its pixel confusion matrices are the
    multiplicity-weighted sums of the images' matrices ``per_image`` (N, J, 3, K, K) (row sets
    ``row_coalitions``, pixel states of :mod:`sareval.evaluator.pixels`); float64 products of
    integers, exact below 2^53. Keys: the overall metrics; ``by_class`` (``iou``, precision,
    recall, f1, f2 per class); ``by_group`` (each image group of ``image_groups`` (N,) in
    [0, ``n_groups``): its images only, NaN in a replicate without one); ``by_pixels``
    (each pixel state: clear, cloudy, unknown)."""
    players = check_players(players)
    n, _, n_states, k, _ = per_image.shape
    if n == 0:
        raise SarevalError("bootstrap: no images")
    position = {c: i for i, c in enumerate(row_coalitions)}
    order = [position[c] for c in ordered_coalitions(players)]
    flat = per_image[:, order].reshape(n, -1).astype(np.float64)  # (N, 2^M * 3 * K * K)
    groups = np.zeros(n, np.int64) if image_groups is None else np.asarray(image_groups, np.int64)
    generators = np.random.default_rng(seed).spawn(n_boot)
    chunk = max(1, CHUNK_ELEMENTS // max(n, flat.shape[1]))
    class_metrics = ("iou", *CLASS_METRICS)
    parts: dict[str, list[np.ndarray]] = {}

    def put(key: str, values: np.ndarray) -> None:
        parts.setdefault(key, []).append(values)

    for start in range(0, n_boot, chunk):
        weights = replicate_weights(generators[start : start + chunk], n).astype(np.float64)
        r = weights.shape[0]
        cells = np.rint(weights @ flat).astype(np.int64).reshape(r, len(order), n_states, k, k)
        confusion = cells.sum(axis=2)  # (r, 2^M, K, K)
        for m, v in segmentation_metrics(confusion).items():
            put(m, v)
        if by_class:
            per_class = segmentation_per_class(confusion)  # (r, 2^M, K)
            for m in class_metrics:
                put(CLASS_PREFIX + m, np.swapaxes(per_class[m], 1, 2))  # (r, K, 2^M)
        for p in range(n_states):
            for m, v in segmentation_metrics(cells[:, :, p]).items():
                put(f"pixels/{p}/{m}", v)
        for g in range(n_groups):
            w = weights * (groups == g)
            gc = np.rint(w @ flat).astype(np.int64).reshape(r, len(order), n_states, k, k)
            empty = w.sum(axis=1) == 0
            for m, v in segmentation_metrics(gc.sum(axis=2)).items():
                put(f"{GROUP_PREFIX}{g}/{m}", np.where(empty[:, None], np.nan, v))
    values = {key: np.concatenate(v) for key, v in parts.items()}

    def section(prefix: str) -> dict[str, np.ndarray]:
        return {key[len(prefix) :]: v for key, v in values.items() if key.startswith(prefix)}

    result: dict[str, Any] = _intervals(
        {m: v for m, v in values.items() if "/" not in m}, players, alpha, z
    )
    if by_class:
        per = section(CLASS_PREFIX)
        result["by_class"] = [
            _intervals({m: v[:, i, :] for m, v in per.items()}, players, alpha, z) for i in range(k)
        ]
    result["by_pixels"] = [
        _intervals(section(f"pixels/{p}/"), players, alpha, z) for p in range(n_states)
    ]
    if n_groups:
        result["by_group"] = [
            _intervals(section(f"{GROUP_PREFIX}{g}/"), players, alpha, z) for g in range(n_groups)
        ]
    return result
