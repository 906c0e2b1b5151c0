"""Figures of the per-sample analyses (:mod:`sareval.analysis`), each as PNG and SVG.

- ``detection_roc``: ROC curves of the false-prediction detectors, one panel per model and test
  subset (from predictions files with ``/detector/*`` and ``/correct``), the legend giving each
  detector's AUROC (with the results file's bootstrap interval where there is one).
- ``per_sample_<quantity>``: the distribution of the per-sample Shapley values of ``quantity``
  (``prob_true``: the probability of the true class) per modality, one box per model and test
  subset: the box spans the 25-75 % quantiles, the line is the median, the whiskers the 5 and
  95 % quantiles, the white dot the mean (the quantiles of the results' ``per_sample``
  section); boxes take the model's colour, and a legend shows each glyph as drawn.

Both are local (per-sample) quantities, not the dataset-level SHAPE score; the titles say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.evaluator.detection import DetectionRow, auroc, roc_curve
from sareval.report.collect import DetectionRun, ResultRun
from sareval.report.figures import (
    Palette,
    agg_pyplot,
    detector_colors,
    label_width,
    player_title,
    save,
    wrap,
)

#: the per-sample quantities that get a ``per_sample_<quantity>`` figure in reports
PER_SAMPLE_FIGURE_QUANTITIES = ("prob_true",)
QUANTITY_TITLES = {
    "prob_true": "probability of the true class",
    "prob_pred": "probability of the predicted class",
    "accuracy": "correctness",
}


def _roc_panel(
    ax: Any,
    scores: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    rows: Sequence[DetectionRow | Mapping[str, Any]] = (),
) -> None:
    """One ROC curve per detector (higher score = more likely wrong) on ``ax``."""
    by_name = {_get(r, "detector"): r for r in rows}
    for color, (name, s) in zip(detector_colors(len(scores)), scores.items(), strict=True):
        fpr, tpr = roc_curve(s, wrong)
        row = by_name.get(name)
        if row is None:
            label = f"{name} ({auroc(s, wrong):.3f})"
        else:
            lo, hi = _get(row, "auroc_ci")
            label = f"{name} ({_get(row, 'auroc'):.3f} [{lo:.3f}, {hi:.3f}])"
        ax.plot(fpr, tpr, color=color, linewidth=1.4, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("correct predictions flagged (FPR)")
    ax.set_ylabel("wrong predictions flagged (TPR)")
    ax.legend(title="detector (AUROC)", fontsize=7, title_fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)


def _get(row: DetectionRow | Mapping[str, Any], name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def roc_figure(
    scores: Mapping[str, np.ndarray],
    wrong: np.ndarray,
    *,
    rows: Sequence[DetectionRow] | None = None,
    title: str | None = None,
) -> Any:
    """One ROC curve per detector (scores: name -> (N,), higher = more likely wrong) for the
    positives ``wrong``; the legend gives each AUROC, with its interval when ``rows`` (from
    :func:`~sareval.evaluator.detection.detection_table`) are given."""
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    _roc_panel(ax, scores, wrong, rows or ())
    n_wrong = int(np.count_nonzero(wrong))
    ax.set_title(title or f"false-prediction detection ({n_wrong} wrong of {len(wrong)})")
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


def _detection_rows(run: DetectionRun, results: Sequence[ResultRun]) -> list[dict[str, Any]]:
    """The detection rows (with intervals) of the results file of the same model and samples
    (same label and subset, same model sha256 and store), if there is exactly one."""
    matches = [
        r.doc["detection"]["rows"]
        for r in results
        if r.label == run.label and r.subset == run.subset
        and r.doc.get("detection", {}).get("rows")
        and r.doc["provenance"]["model"].get("sha256") == run.attrs.get("model_sha256")
        and r.doc["provenance"]["store"].get("content_digest")
        == run.attrs.get("store_content_digest")
    ]  # fmt: skip
    return list(matches[0]) if len(matches) == 1 else []


def roc_grid_figure(runs: Sequence[DetectionRun], results: Sequence[ResultRun] = ()) -> Any:
    """ROC curves per detector; rows = models, columns = test subsets (module docstring).
    Panels are titled with the run's label, and with its file's name where one label has
    several runs (seeds) or no label was given."""
    plt = agg_pyplot()
    subsets = list(dict.fromkeys(r.subset for r in runs))
    by_key: dict[tuple[str, str], list[DetectionRun]] = {}
    for r in runs:
        by_key.setdefault((r.label, r.subset), []).append(r)
    labels = list(dict.fromkeys(r.label for r in runs))
    count = {lb: max(len(g) for (x, _), g in by_key.items() if x == lb) for lb in labels}
    rows = [(lb, k) for lb in labels for k in range(count[lb])]
    fig, axes = plt.subplots(
        len(rows), len(subsets), figsize=(4.0 * len(subsets), 4.0 * len(rows) + 0.6),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for i, (base, k) in enumerate(rows):
        for j, subset in enumerate(subsets):
            group = by_key.get((base, subset), [])
            ax, run = axes[i, j], group[k] if k < len(group) else None
            name = base if run is None else _run_title(run, count[base] > 1)
            if run is None or not 0 < (~run.correct).sum() < run.correct.size:
                ax.set_axis_off()
                why = "no predictions file" if run is None else "all right or all wrong"
                ax.set_title(wrap(f"{name} · {subset}: no ROC ({why})", 44))
                continue
            wrong = ~run.correct
            _roc_panel(ax, run.detectors, wrong, _detection_rows(run, results))
            ax.set_title(wrap(f"{name} · {subset} ({int(wrong.sum())} wrong of {wrong.size})", 44))
    fig.suptitle(
        "Detecting wrong predictions from per-sample relevance (msp: max. softmax baseline)"
    )
    return fig


def _run_title(run: DetectionRun, several: bool) -> str:
    """The run's label; its file's name too where the label has several runs, or only the
    file's name where it has no label."""
    if not run.label:
        return run.path.name
    return f"{run.label} ({run.path.name})" if several else run.label


def has_per_sample(results: Sequence[ResultRun], quantity: str = "prob_true") -> bool:
    return any(quantity in (r.doc.get("per_sample") or {}) for r in results)


#: how the per-sample boxes draw the mean (a white dot), and the legend with it
MEAN_PROPS: dict[str, Any] = {"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black",
              "markersize": 5}  # fmt: skip


def per_sample_figure(
    results: Sequence[ResultRun], quantity: str = "prob_true", palette: Palette | None = None
) -> Any:
    """Box plots of the per-sample Shapley values of ``quantity`` (module docstring): one panel
    per modality, one box per results file with a ``per_sample`` section (model · subset), in
    the model's colour; a legend shows the glyphs (box, median, whiskers, mean) as drawn."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = agg_pyplot()
    palette = palette or Palette.of_results(results)
    runs = [r for r in results if quantity in (r.doc.get("per_sample") or {})]
    players = list(dict.fromkeys(p for r in runs for p in r.players))
    ticks = [wrap(r.label) + "\n" + wrap(f"on {r.subset}") for r in runs]
    box_w = max(0.55, label_width(ticks) + 0.25)
    lines = max((t.count("\n") + 1 for t in ticks), default=1)
    fig, axes = plt.subplots(
        1, len(players), figsize=(max(3.6, box_w * len(runs) + 1.6) * len(players),
                                  3.6 + 0.15 * lines),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for k, player in enumerate(players):
        ax = axes[0, k]
        boxes = []
        for r, tick in zip(runs, ticks, strict=True):
            section = r.doc["per_sample"][quantity]
            q = {float(level): v.get(player) for level, v in section["quantiles"].items()}
            mean = section["mean"].get(player)
            values = [q.get(0.05), q.get(0.25), q.get(0.5), q.get(0.75), q.get(0.95), mean]
            if any(v is None or not math.isfinite(v) for v in values):
                values = [math.nan] * 6
            lo, q1, med, q3, hi, mean = values
            boxes.append({"whislo": lo, "q1": q1, "med": med, "q3": q3, "whishi": hi,
                          "mean": mean, "fliers": [], "label": tick})  # fmt: skip
        artists = ax.bxp(boxes, showmeans=True, patch_artist=True, widths=0.6,
                         meanprops=MEAN_PROPS, medianprops={"color": "black"})  # fmt: skip
        for patch, r in zip(artists["boxes"], runs, strict=True):
            patch.set_facecolor(palette.model(r.label))
            patch.set_alpha(0.6)
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_title(f"{player_title(player)}")
        ax.grid(axis="y", alpha=0.3)
        if k == 0:
            what = QUANTITY_TITLES.get(quantity, quantity)
            ax.set_ylabel(f"per-sample Shapley value\nof the {what}")
    glyphs = [
        Patch(facecolor="0.85", edgecolor="black", label="25–75 % (box)"),
        Line2D([], [], color="black", label="median (line)"),
        Line2D([], [], color="black", marker="|", markersize=8, linestyle="none",
               label="5 % and 95 % (whiskers)"),
        Line2D([], [], linestyle="none", label="mean (white dot)", **MEAN_PROPS),
    ]  # fmt: skip
    fig.legend(handles=glyphs, loc="outside lower center", ncols=4, frameon=False, fontsize=8)
    settings = sorted({f"baseline {r.doc['config'].get('baseline')}" for r in runs})
    fig.suptitle(
        "Per-sample relevance (local Shapley values, not SHAPE): box 25–75 %, whiskers 5–95 %, "
        f"line median, white dot mean; {', '.join(settings)}",
        fontsize=9,
    )
    return fig
