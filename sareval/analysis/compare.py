"""Paired comparisons of two models (or two training setups) on the same test samples.

Difference = B - A, for any quantity recomputable from per-sample arrays: the mean of a
per-sample value (correctness -> OA, a per-sample Shapley value, ...), or V(S), SHAPE relevance
and cooperation of a metric from per-coalition decisions and labels.

Paired bootstrap: replicate r draws N sample indices with replacement (generator r of
``numpy.random.default_rng(seed).spawn(n_boot)``, the evaluator's draws for the same seed) and
recomputes the quantity for BOTH models on those same samples: d*_r = q_B(draw r) - q_A(draw r).
Pairing removes the sample-to-sample difficulty both models share, so the interval is that of
the difference, not of two independent estimates. Interval: percentile [q(alpha/2),
q(1 - alpha/2)] of the d*_r. Two-sided p-value of "no difference":

    p = min(1, 2 (1 + #{r: d*_r on the other side of 0 from the estimate, 0 included}) / (R + 1))

(p = 1 when the estimate is 0; R = replicates with a finite d*). The +1 counts the observed
data as one of the resamples, so p is never 0: its floor is 2 / (R + 1) (0.002 for R = 999).
p <= alpha goes, up to that +1, with the percentile interval at level 1 - alpha excluding 0.

Several training runs per setup (seeds): a two-level (hierarchical) bootstrap. Replicate r
draws, for each setup, its n runs with replacement (row r of an (n_boot, n_A) draw for A, then
of an (n_boot, n_B) draw for B, from the generator ``default_rng([seed, 1])``, independent of
the sample draws), and one draw of N sample indices
shared by every run of both setups (the paired draw above). The setup's value is the mean over
its drawn runs of each run's value on the drawn samples. A setup's mean over runs varies with
the training (initialisation, data order: a new run is a new model) and with the finite test
set (a new test set is new samples); drawing runs reproduces the first, drawing samples the
second, and sharing the sample draw across all runs and both setups keeps the pairing. The
point estimate is the mean over B's runs minus the mean over A's runs. With one run per setup
the run draw is trivial and the result equals the paired bootstrap. With few runs (5) the run
level is coarse (126 distinct multisets; percentile intervals from few runs are too narrow
by about sqrt((n - 1) / n)): report the number of runs alongside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import (
    CHUNK_ELEMENTS,
    bootstrap_values,
    percentile_interval,
    replicate_weights,
)
from sareval.evaluator.coalitions import check_players, coalition_name, ordered_coalitions
from sareval.evaluator.metrics import METRIC_NAMES, counts_for
from sareval.evaluator.relevance import game_values
from sareval.evaluator.shapley import Normalisation, shape_relevance_array

Predictions = Mapping[frozenset[str], np.ndarray]
RUN_STREAM = 1  # run draws: default_rng([seed, RUN_STREAM]), apart from the sample draws


@dataclass(frozen=True)
class Difference:
    """B - A: point ``estimate``, percentile interval [``lo``, ``hi``], two-sided ``p_value``
    and ``n_boot``, the number of finite replicates behind them."""

    estimate: float
    lo: float
    hi: float
    p_value: float
    n_boot: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap_p_value(replicates: np.ndarray, estimate: np.ndarray | float) -> np.ndarray:
    """Two-sided bootstrap p-values (module docstring) of replicates (R, ...) around the
    estimates (...): 2 (1 + #other side of 0) / (R + 1), at most 1; 1 where the estimate is 0,
    NaN where it is NaN or no replicate is finite. NaN replicates are left out."""
    reps = np.asarray(replicates, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    finite = np.isfinite(reps)
    r = finite.sum(axis=0)
    below = (finite & (reps <= 0)).sum(axis=0)
    above = (finite & (reps >= 0)).sum(axis=0)
    other = np.where(est > 0, below, above)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2.0 * (other + 1) / (r + 1))
    p = np.where(est == 0, 1.0, p)
    return np.where(np.isnan(est) | (r == 0), np.nan, p)


def _differences(estimate: np.ndarray, replicates: np.ndarray, alpha: float) -> np.ndarray:
    """Object array (...) of :class:`Difference` from estimates (...) and replicates (R, ...)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    lo, hi = percentile_interval(replicates, alpha)
    p = bootstrap_p_value(replicates, estimate)
    n = np.isfinite(replicates).sum(axis=0)
    out = np.empty(estimate.shape, dtype=object)
    for i in np.ndindex(estimate.shape):
        out[i] = Difference(float(estimate[i]), float(lo[i]), float(hi[i]), float(p[i]), int(n[i]))
    return out


# ------------------------------------------------------------------------ means of samples


def _check_samples(values: np.ndarray, n: int | None, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or (n is not None and values.shape[0] != n):
        expected = "(N,), N > 0" if n is None else f"({n},), the same samples as model A"
        raise SarevalError(f"{what} has shape {values.shape}; expected {expected}")
    return values


def _replicate_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(R, D) means of the columns of values (N, D) on each replicate's samples."""
    n = values.shape[0]
    generators = np.random.default_rng(seed).spawn(n_boot)
    chunk = max(1, CHUNK_ELEMENTS // n)
    parts = []
    for start in range(0, n_boot, chunk):
        weights = replicate_weights(generators[start : start + chunk], n)
        parts.append(weights.astype(np.float64) @ values / n)
    return np.concatenate(parts)


def paired_mean_difference(
    values_a: np.ndarray,
    values_b: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Difference:
    """mean(values_b) - mean(values_a) of per-sample values (N,) of two models on the same
    samples (e.g. correctness 0/1 -> OA), with a paired bootstrap interval and p-value."""
    _check_n_boot(n_boot)
    a = _check_samples(values_a, None, "values_a")
    b = _check_samples(values_b, a.shape[0], "values_b")
    reps = _replicate_means(np.stack([a, b], axis=1), n_boot, seed)
    result: Any = _differences(b.mean() - a.mean(), reps[:, 1] - reps[:, 0], alpha)[()]
    return result  # type: ignore[no-any-return]


def _check_n_boot(n_boot: int) -> None:
    if n_boot < 1:
        raise SarevalError(f"n_boot must be at least 1, got {n_boot}")


# ---------------------------------------------------------------------- hierarchical core


def _run_weights(n_runs: Sequence[int], n_boot: int, seed: int) -> list[np.ndarray]:
    """Per setup, (R, n) multiplicities of its n runs drawn with replacement per replicate."""
    rng = np.random.default_rng([seed, RUN_STREAM])
    out = []
    for n in n_runs:
        draws = rng.integers(0, n, size=(n_boot, n))
        out.append((draws[:, :, None] == np.arange(n)).sum(axis=1))
    return out


def _hierarchical(
    point_a: np.ndarray,
    reps_a: np.ndarray,
    point_b: np.ndarray,
    reps_b: np.ndarray,
    n_boot: int,
    seed: int,
    alpha: float,
) -> np.ndarray:
    """Differences (...) from per-run values: point (n_runs, ...) and replicates
    (n_runs, R, ...) of each setup, every run's replicates on the same sample draws."""
    w_a, w_b = _run_weights([point_a.shape[0], point_b.shape[0]], n_boot, seed)

    def setup(reps: np.ndarray, w: np.ndarray) -> np.ndarray:
        w = w.reshape(*w.shape, *([1] * (reps.ndim - 2))).astype(np.float64)
        return (np.moveaxis(reps, 0, 1) * w).sum(axis=1) / reps.shape[0]

    estimate = point_b.mean(axis=0) - point_a.mean(axis=0)
    return _differences(estimate, setup(reps_b, w_b) - setup(reps_a, w_a), alpha)


def hierarchical_mean_difference(
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Difference:
    """Mean over B's runs minus mean over A's runs of the per-sample mean of values (N,) per
    run, all runs on the same samples; two-level bootstrap (module docstring)."""
    _check_n_boot(n_boot)
    if not runs_a or not runs_b:
        raise SarevalError("each setup needs at least one run")
    n = _check_samples(runs_a[0], None, "runs_a[0]").shape[0]
    a = np.stack([_check_samples(v, n, "a run of A") for v in runs_a])
    b = np.stack([_check_samples(v, n, "a run of B") for v in runs_b])
    columns = np.ascontiguousarray(np.concatenate([a, b]).T)  # (N, runs), as in the paired
    reps = _replicate_means(columns, n_boot, seed).T  # (runs, R)
    na = a.shape[0]
    result: Any = _hierarchical(a.mean(1), reps[:na], b.mean(1), reps[na:], n_boot, seed, alpha)
    return result[()]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ SHAPE quantities


def _quantities(V: np.ndarray, players: tuple[str, ...], z: Normalisation) -> dict[str, np.ndarray]:
    """V (..., C) -> {"V": (..., C), "relevance": (..., M), "cooperation": (...)}."""
    scores = shape_relevance_array(V, players, z)
    return {"V": V, "relevance": scores["relevance"], "cooperation": scores["cooperation"]}


def _point_values(
    y_true: np.ndarray, predictions: Predictions, players: tuple[str, ...], task: str, k: int
) -> dict[str, np.ndarray]:
    """Metric -> V (C,) on all samples, from counts of each coalition's decisions."""
    y_true = np.asarray(y_true)
    counts = {}
    for coalition in ordered_coalitions(players):
        if coalition not in predictions:
            raise SarevalError(f"no predictions for coalition {coalition_name(coalition, players)}")
        c = counts_for(task, k)
        c.add(y_true, np.broadcast_to(np.asarray(predictions[coalition]), y_true.shape))
        counts[coalition] = c
    return game_values(counts, players)


@dataclass(frozen=True)
class _RunGame:
    """One run's SHAPE quantities: point values and replicates on the shared sample draws."""

    y_true: np.ndarray
    players: tuple[str, ...]
    task: str
    n_classes: int
    metrics: list[str]
    n_boot: int
    seed: int
    z: Normalisation

    def __call__(self, predictions: Predictions) -> tuple[dict, dict]:
        """({metric: quantities on all samples}, {metric: quantities per replicate})."""
        args = (self.y_true, predictions, self.players, self.task, self.n_classes)
        values = _point_values(*args)
        boot = bootstrap_values(*args, self.n_boot, self.seed)
        return (
            {m: _quantities(values[m], self.players, self.z) for m in self.metrics},
            {m: _quantities(boot[m], self.players, self.z) for m in self.metrics},
        )


def _shape_results(
    metrics: Sequence[str],
    players: tuple[str, ...],
    differences: Callable[[str, str], np.ndarray],
) -> dict[str, dict]:
    names = [coalition_name(c, players) for c in ordered_coalitions(players)]
    out = {}
    for metric in metrics:
        v, rel, coop = (differences(metric, q) for q in ("V", "relevance", "cooperation"))
        out[metric] = {
            "V": dict(zip(names, v.tolist(), strict=True)),
            "relevance": dict(zip(players, rel.tolist(), strict=True)),
            "cooperation": coop[()],
        }
    return out


def _chosen_metrics(task: str, metrics: Sequence[str] | None) -> list[str]:
    if task not in METRIC_NAMES:
        raise SarevalError(f"unknown task {task!r}; known: {list(METRIC_NAMES)}")
    known = METRIC_NAMES[task]
    chosen = list(known if metrics is None else metrics)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise SarevalError(f"unknown {task} metrics {unknown}; known: {list(known)}")
    return chosen


def paired_shape_difference(
    y_true: np.ndarray,
    predictions_a: Predictions,
    predictions_b: Predictions,
    players: Sequence[str],
    task: str,
    n_classes: int,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    z: Normalisation = "one",
) -> dict[str, dict]:
    """B - A of V(S), relevance and cooperation, with paired bootstrap intervals::

        {metric: {"V": {coalition_name: Difference}, "relevance": {player: Difference},
                  "cooperation": Difference}}

    ``y_true`` (N,) class indices or (N, K) multi-hot; ``predictions_*``: every coalition (the
    empty one included) -> decisions (N,) or (N, K), or broadcastable to that (a constant
    empty-coalition decision), as for :func:`~sareval.evaluator.bootstrap.bootstrap_values`.
    ``metrics``: default every metric of the task; ``z`` as in SHAPE ("one" | "full").
    """
    players = check_players(players)
    chosen = _chosen_metrics(task, metrics)
    _check_n_boot(n_boot)
    game = _RunGame(y_true, players, task, n_classes, chosen, n_boot, seed, z)
    (point_a, reps_a), (point_b, reps_b) = game(predictions_a), game(predictions_b)

    def differences(metric: str, q: str) -> np.ndarray:
        estimate = point_b[metric][q] - point_a[metric][q]
        return _differences(estimate, reps_b[metric][q] - reps_a[metric][q], alpha)

    return _shape_results(chosen, players, differences)


def hierarchical_shape_difference(
    y_true: np.ndarray,
    runs_a: Sequence[Predictions],
    runs_b: Sequence[Predictions],
    players: Sequence[str],
    task: str,
    n_classes: int,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    z: Normalisation = "one",
) -> dict[str, dict]:
    """As :func:`paired_shape_difference` for several runs per setup (``runs_*``: one
    predictions mapping per run, all on the samples of ``y_true``): the mean over B's runs
    minus the mean over A's runs of each run's V, relevance and cooperation, with a two-level
    bootstrap (module docstring)."""
    players = check_players(players)
    chosen = _chosen_metrics(task, metrics)
    _check_n_boot(n_boot)
    if not runs_a or not runs_b:
        raise SarevalError("each setup needs at least one run")
    game = _RunGame(y_true, players, task, n_classes, chosen, n_boot, seed, z)
    games_a, games_b = [game(p) for p in runs_a], [game(p) for p in runs_b]

    def differences(metric: str, q: str) -> np.ndarray:
        def stack(games: list, part: int) -> np.ndarray:  # (n_runs, ...) or (n_runs, R, ...)
            return np.stack([g[part][metric][q] for g in games])

        return _hierarchical(
            stack(games_a, 0), stack(games_a, 1), stack(games_b, 0), stack(games_b, 1),
            n_boot, seed, alpha,
        )  # fmt: skip

    return _shape_results(chosen, players, differences)


# ------------------------------------------------------------------------------- formatting


def sample_paired_difference(
    runs_a: Sequence[Any],
    runs_b: Sequence[Any],
    *,
    metrics: Sequence[str],
    n_boot: int,
    seed: int,
    alpha: float,
    z: str,
) -> dict[str, dict]:
    """B - A as :func:`paired_shape_difference` (one run each) or
    :func:`hierarchical_shape_difference` (several), from runs with several rows per sample
    (``draws``): replicate r draws N samples, shared by every run, and a run counts every row
    of a drawn sample with the sample's multiplicity. ``runs_*``:
    :class:`~sareval.evaluator.predictions.Predictions` (``row_labels``, ``predictions()``,
    ``clusters``: the sample of each row)."""
    if n_boot < 1:
        raise SarevalError(f"replicates must be at least 1, got {n_boot}")
    first = runs_a[0]
    players = check_players(first.players)
    chosen = _chosen_metrics(first.task, metrics)

    def game(run: Any) -> tuple[dict, dict]:
        """({metric: quantities on all rows}, {metric: quantities per replicate})."""
        args = (run.row_labels, run.predictions(), players, run.task, run.n_classes)
        values = _point_values(*args)
        boot = bootstrap_values(*args, n_boot, seed, clusters=run.clusters)
        return (
            {m: _quantities(values[m], players, z) for m in chosen},  # type: ignore[arg-type]
            {m: _quantities(boot[m], players, z) for m in chosen},  # type: ignore[arg-type]
        )

    games_a, games_b = [game(r) for r in runs_a], [game(r) for r in runs_b]

    def differences(metric: str, q: str) -> np.ndarray:
        def stack(games: list, part: int) -> np.ndarray:  # (n_runs, ...) or (n_runs, R, ...)
            return np.stack([g[part][metric][q] for g in games])

        if len(games_a) == 1 and len(games_b) == 1:  # the paired bootstrap
            (pa, ra), (pb, rb) = games_a[0], games_b[0]
            return _differences(pb[metric][q] - pa[metric][q], rb[metric][q] - ra[metric][q],
                                alpha)  # fmt: skip
        return _hierarchical(
            stack(games_a, 0), stack(games_a, 1), stack(games_b, 0), stack(games_b, 1),
            n_boot, seed, alpha,
        )  # fmt: skip

    return _shape_results(chosen, players, differences)


def format_p(p: float) -> str:
    """``p = 0.002``; ``p < 0.001`` below that; ``p = n/a`` for NaN."""
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_difference(
    quantity: str,
    difference: Difference,
    *,
    a: str = "A",
    b: str = "B",
    subset: str | None = None,
    digits: int = 2,
) -> str:
    """``"SAR relevance, B minus A, very cloudy: +0.11 [0.08, 0.14], p = 0.002"``."""
    d = difference
    where = f", {subset}" if subset else ""
    return (
        f"{quantity}, {b} minus {a}{where}: {d.estimate:+.{digits}f} "
        f"[{d.lo:.{digits}f}, {d.hi:.{digits}f}], {format_p(d.p_value)}"
    )


def format_shape_differences(
    result: Mapping[str, dict],
    *,
    a: str = "A",
    b: str = "B",
    subset: str | None = None,
    digits: int = 2,
    player_titles: Mapping[str, str] | None = None,
) -> list[str]:
    """One :func:`format_difference` line per metric, quantity (V of the full coalition, each
    player's relevance, cooperation) of a ``*_shape_difference`` result."""
    titles = {"sar": "SAR", "opt": "optical", **(player_titles or {})}
    lines = []
    for metric, entry in result.items():
        full = list(entry["V"])[-1]
        items = [(f"{metric} of {full}", entry["V"][full])]
        items += [
            (f"{titles.get(p, p)} relevance ({metric})", d) for p, d in entry["relevance"].items()
        ]
        items.append((f"cooperation ({metric})", entry["cooperation"]))
        lines += [format_difference(q, d, a=a, b=b, subset=subset, digits=digits) for q, d in items]
    return lines
