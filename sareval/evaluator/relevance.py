"""From counts per coalition to metric values V(S) and SHAPE relevance, overall and per group.

The runner keeps one counts object per coalition (``{frozenset: SingleLabelCounts |
MultiLabelCounts}``, all 2^M coalitions, the empty one included). For every metric f,
V_f(S) = f(counts[S]) and the game V_f gives relevance and cooperation
(:mod:`sareval.evaluator.shapley`). One entry per metric, the ``metrics`` layout of the results
file::

    {"V": {"none": .., "sar": .., "opt": .., "sar+opt": ..},   # coalition names, card order
     "relevance": {"sar": .., "opt": ..}, "cooperation": .., "Z": .., "efficiency_gap": ..,
     "higher_is_better": true}       # false for hamming_loss: a positive relevance is harm

Groups (``--by``) use the same entries under ``{group: {"n_samples": n, "metrics": {...}}}``:
- per class: V = the per-class metric (recall, precision, F1, F2; segmentation: IoU too) of
  each coalition. For
  single-label, recall of class k is the accuracy on the samples of true class k, i.e. the
  relevance restricted to that class; for multi-label F1 of class k follows from its tp/fp/fn.
  ``n_samples`` is the class support.
- per cloud-cover bin: the runner keeps one counts dict per bin (:func:`cloud_cover_bins` says
  which bin each sample goes to) and every metric is computed per bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import check_players, coalition_name
from sareval.evaluator.estimators import GameSpec
from sareval.evaluator.interactions import interaction_entry
from sareval.evaluator.metrics import MultiLabelCounts, SingleLabelCounts, higher_is_better
from sareval.evaluator.shapley import Normalisation

Counts = SingleLabelCounts | MultiLabelCounts
CoalitionCounts = Mapping[frozenset[str], Counts]
UNKNOWN_BIN = "unknown"
PER_CLASS_METRICS: tuple[str, ...] = ("recall", "precision", "f1", "f2")


def as_game(players: Sequence[str] | GameSpec) -> GameSpec:
    """A :class:`GameSpec` (plain players: the exact game over all their coalitions)."""
    return players if isinstance(players, GameSpec) else GameSpec(check_players(players))


def _ordered_counts(counts: CoalitionCounts, game: GameSpec) -> list[Counts]:
    coalitions = game.coalitions
    missing = [coalition_name(c, game.players) for c in coalitions if c not in counts]
    if missing:
        raise SarevalError(f"no counts for coalitions {missing}")
    ordered = [counts[c] for c in coalitions]
    first = ordered[0]
    for c in ordered[1:]:
        if type(c) is not type(first) or c.n_classes != first.n_classes:
            raise SarevalError("counts of different tasks or class numbers across coalitions")
    return ordered


def game_values(
    counts: CoalitionCounts, players: Sequence[str] | GameSpec
) -> dict[str, np.ndarray]:
    """Metric name -> V array in the game's coalition order, from the counts of its coalitions."""
    per_coalition = [c.metrics() for c in _ordered_counts(counts, as_game(players))]
    return {name: np.array([m[name] for m in per_coalition]) for name in per_coalition[0]}


def relevance_entries(
    values: Mapping[str, np.ndarray],
    players: Sequence[str] | GameSpec,
    z: Normalisation = "one",
) -> dict[str, dict]:
    """Entries (see module docstring) for games ``{metric: V}`` (:meth:`GameSpec.entry`), each
    with the metric's orientation (``higher_is_better``) and, for exact games, the interaction
    indices (:func:`~sareval.evaluator.interactions.interaction_entry`)."""
    game = as_game(players)
    return {
        metric: {
            **game.entry(V, z),
            **interaction_entry(V, game.players, game.method),
            "higher_is_better": higher_is_better(metric),
        }
        for metric, V in values.items()
    }


def relevance_from_counts(
    counts: CoalitionCounts, players: Sequence[str] | GameSpec, z: Normalisation = "one"
) -> dict[str, dict]:
    """``{metric: entry}`` for every metric of the task, from the counts of every coalition."""
    return relevance_entries(game_values(counts, players), players, z)


def relevance_by_class(
    counts: CoalitionCounts,
    players: Sequence[str] | GameSpec,
    class_names: Sequence[str] | None = None,
    z: Normalisation = "one",
) -> dict[str, dict]:
    """``{class_name: {"n_samples": support, "metrics": {recall|precision|f1|f2: entry}}}``."""
    game = as_game(players)
    ordered = _ordered_counts(counts, game)
    k = ordered[0].n_classes
    class_names = [str(i) for i in range(k)] if class_names is None else list(class_names)
    if len(class_names) != k:
        raise SarevalError(f"{len(class_names)} class names for {k} classes")
    per_class = [c.per_class() for c in ordered]
    support = per_class[-1]["support"]  # labels only: the same for every coalition
    names = ("iou",) * ("iou" in per_class[-1]) + PER_CLASS_METRICS  # iou: segmentation
    result = {}
    for i, name in enumerate(class_names):
        values = {metric: np.array([pc[metric][i] for pc in per_class]) for metric in names}
        result[name] = {
            "n_samples": int(support[i]),
            "metrics": relevance_entries(values, game, z),
        }
    return result


def relevance_by_group(
    counts: Mapping[str, CoalitionCounts],
    players: Sequence[str] | GameSpec,
    z: Normalisation = "one",
) -> dict[str, dict]:
    """``{group: {"n_samples": n, "metrics": {metric: entry}}}`` for counts per group (bin);
    a group without samples has empty metrics."""
    game = as_game(players)
    result = {}
    for group, group_counts in counts.items():
        ordered = _ordered_counts(group_counts, game)
        n = ordered[-1].n
        result[group] = {
            "n_samples": n,
            "metrics": relevance_from_counts(group_counts, game, z) if n else {},
        }
    return result


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels ``"[a, b)"`` of the bins, the last one closed ``"[a, b]"``."""
    labels = [f"[{a:g}, {b:g})" for a, b in pairwise(edges)]
    labels[-1] = labels[-1][:-1] + "]"
    return labels


def cloud_cover_bins(cloud_cover: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per sample: i for edges[i] <= c < edges[i+1] (the last bin includes its right
    edge); -1 for NaN or values outside the edges (reported under ``UNKNOWN_BIN``)."""
    cloud_cover = np.asarray(cloud_cover, dtype=np.float64)
    edges_arr = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(edges_arr, cloud_cover, side="right") - 1
    index[cloud_cover == edges_arr[-1]] = len(edges_arr) - 2
    outside = ~np.isfinite(cloud_cover) | (index < 0) | (index > len(edges_arr) - 2)
    index[outside] = -1
    return index.astype(np.int64)
