"""ROC curves of false-prediction detectors (:mod:`sareval.analysis.detection`), PNG + SVG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.analysis.detection import DetectionRow, auroc, roc_curve
from sareval.report.figures import _plt, colors, save


def roc_figure(
    scores: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    *,
    rows: Sequence[DetectionRow] | None = None,
    title: str | None = None,
) -> Any:
    """One ROC curve per detector (scores: name -> (N,), higher = more likely wrong) for the
    positives ``wrong``; the legend gives each AUROC, with its interval when ``rows`` (from
    :func:`~sareval.analysis.detection.detection_table`) are given."""
    plt = _plt()
    by_name = {r.detector: r for r in rows or ()}
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for color, (name, s) in zip(colors(len(scores)), scores.items(), strict=True):
        fpr, tpr = roc_curve(s, wrong)
        row = by_name.get(name)
        if row is None:
            label = f"{name} ({auroc(s, wrong):.3f})"
        else:
            label = f"{name} ({row.auroc:.3f} [{row.auroc_ci[0]:.3f}, {row.auroc_ci[1]:.3f}])"
        ax.plot(fpr, tpr, color=color, linewidth=1.4, label=label, drawstyle="default")
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("correct predictions flagged (FPR)")
    ax.set_ylabel("wrong predictions flagged (TPR)")
    n_wrong = int(np.count_nonzero(wrong))
    ax.set_title(title or f"false-prediction detection ({n_wrong} wrong of {len(wrong)})")
    ax.legend(title="detector (AUROC)", fontsize=7, title_fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def save_roc_figure(
    scores: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    out: str | Path,
    stem: str = "detection_roc",
    **kwargs: Any,
) -> list[Path]:
    """Write ``<out>/<stem>.png`` and ``.svg`` (arguments of :func:`roc_figure`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return save(roc_figure(scores, wrong, **kwargs), out, stem)
