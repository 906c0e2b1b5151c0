"""The SHAPE evaluator: coalition games over modalities, metrics from counts, relevance.

Pure-math core (numpy only):

- :mod:`~sareval.evaluator.coalitions`: the 2^M coalitions, their order and names
  (``"sar+opt"``, ``"none"``).
- :mod:`~sareval.evaluator.metrics`: integer counts per coalition that merge by summation
  (:class:`SingleLabelCounts`, :class:`MultiLabelCounts`), metrics as pure functions of them,
  decision rules (:func:`decide`) and near-ties (:func:`ties`).
- :mod:`~sareval.evaluator.shapley`: exact Shapley values, SHAPE scores (Z = 1 or V(M)) and
  cooperation, for mappings or arrays of games.
- :mod:`~sareval.evaluator.relevance`: counts per coalition -> V per metric -> relevance, per
  class and per cloud-cover bin.
- :mod:`~sareval.evaluator.bootstrap`: paired bootstrap intervals from per-sample decisions.

Execution (torch, onnx and onnxruntime are imported only when used):

- :func:`~sareval.evaluator.runner.run_evaluation` behind :func:`sareval.evaluate`: the
  streaming pass over a data source (:mod:`~sareval.evaluator.sources`,
  :mod:`~sareval.evaluator.reader` thread, :mod:`~sareval.evaluator.counting`) under a
  :class:`~sareval.evaluator.config.ShapeConfig`.
- :mod:`~sareval.evaluator.preamble`: raw store batch -> every coalition's network input, as
  numpy, an ONNX graph composed with the model, or a torch module;
  :mod:`~sareval.evaluator.backends`: onnxruntime and torch; :mod:`~sareval.evaluator.players`.
- :mod:`~sareval.evaluator.results` (+ ``results.schema.json``), :mod:`~sareval.evaluator.merge`,
  :mod:`~sareval.evaluator.distributed`, :mod:`~sareval.evaluator.perceptual`,
  :mod:`~sareval.evaluator.predictions`; :mod:`~sareval.evaluator.embedded`: the states a shard
  embeds in its results for ``merge``.
"""

from __future__ import annotations

from sareval.choices import Z_CHOICES
from sareval.evaluator.bootstrap import bootstrap_intervals, bootstrap_values, percentile_interval
from sareval.evaluator.coalitions import (
    all_coalitions,
    coalition_index,
    coalition_mask,
    coalition_name,
    coalition_names,
    parse_coalition_name,
)
from sareval.evaluator.metrics import (
    METRIC_NAMES,
    PER_CLASS_NAMES,
    MultiLabelCounts,
    SingleLabelCounts,
    counts_for,
    counts_from_state,
    decide,
    decision_threshold,
    majority_prediction,
    multi_label_metrics,
    nonfinite_rows,
    single_label_metrics,
    ties,
)
from sareval.evaluator.relevance import (
    UNKNOWN_BIN,
    bin_labels,
    cloud_cover_bins,
    game_values,
    parse_bin_edges,
    relevance_by_class,
    relevance_by_group,
    relevance_entries,
    relevance_from_counts,
)
from sareval.evaluator.shapley import (
    cooperation,
    cooperation_array,
    game_array,
    shape_relevance,
    shape_relevance_array,
    shapley_array,
    shapley_values,
)

__all__ = [
    "METRIC_NAMES",
    "PER_CLASS_NAMES",
    "UNKNOWN_BIN",
    "Z_CHOICES",
    "MultiLabelCounts",
    "SingleLabelCounts",
    "all_coalitions",
    "bin_labels",
    "bootstrap_intervals",
    "bootstrap_values",
    "cloud_cover_bins",
    "coalition_index",
    "coalition_mask",
    "coalition_name",
    "coalition_names",
    "cooperation",
    "cooperation_array",
    "counts_for",
    "counts_from_state",
    "decide",
    "decision_threshold",
    "game_array",
    "game_values",
    "majority_prediction",
    "multi_label_metrics",
    "nonfinite_rows",
    "parse_bin_edges",
    "parse_coalition_name",
    "percentile_interval",
    "relevance_by_class",
    "relevance_by_group",
    "relevance_entries",
    "relevance_from_counts",
    "shape_relevance",
    "shape_relevance_array",
    "shapley_array",
    "shapley_values",
    "single_label_metrics",
    "ties",
]
