"""Analyses on top of the evaluator's per-sample, per-coalition model outputs, in one namespace.

The per-sample values and detection are computed in the evaluator's own pass, so they live in
the evaluator (it never imports this package); the comparisons of two models sit on top.

- :mod:`sareval.evaluator.per_sample`: per-sample (local) Shapley values of the model's score.
- :mod:`sareval.evaluator.detection`: detecting false predictions from per-sample relevance.
- :mod:`sareval.analysis.compare`: paired (and hierarchical) bootstrap comparisons of two models.

Every function is pure and takes arrays; the common input of one batch is ``outputs`` (C, B, K):
the model's scores for every coalition, C = 2^M in
:func:`~sareval.evaluator.coalitions.all_coalitions` order (index 0 = the empty coalition,
index C - 1 = all players), B samples, K classes. Definitions: ``docs/analysis.md``.
"""

from __future__ import annotations

from sareval.analysis.compare import (
    Difference,
    format_difference,
    format_shape_differences,
    hierarchical_mean_difference,
    hierarchical_shape_difference,
    paired_mean_difference,
    paired_shape_difference,
)
from sareval.evaluator.detection import (
    DetectionRow,
    auroc,
    average_precision,
    detection_table,
    detector_scores,
    roc_curve,
)
from sareval.evaluator.per_sample import (
    PerSampleShapley,
    per_sample_scores,
    per_sample_shapley,
    summarize_per_sample,
)

__all__ = [
    "DetectionRow",
    "Difference",
    "PerSampleShapley",
    "auroc",
    "average_precision",
    "detection_table",
    "detector_scores",
    "format_difference",
    "format_shape_differences",
    "hierarchical_mean_difference",
    "hierarchical_shape_difference",
    "paired_mean_difference",
    "paired_shape_difference",
    "per_sample_scores",
    "per_sample_shapley",
    "roc_curve",
    "summarize_per_sample",
]
