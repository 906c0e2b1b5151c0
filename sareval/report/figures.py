"""Figures in the study's style (matplotlib, Agg backend; each as PNG and SVG).

- ``relevance``: one panel per (metric, modality) and a cooperation column; bars = models, groups
  = test subsets; error bars = std over runs (or a single run's bootstrap interval).
- ``performance``: rows = metrics, columns = each modality alone (V({sar}), V({opt})) and all
  modalities (V(all)), the same way.
- ``per_class_<metric>`` (recall, F1, IoU; when results carry ``by.class``): each modality's
  relevance on each class's metric, one panel per model and test subset, with intervals (a
  segmentation class's size is its pixels).
- ``epochs_<metric>``: from training histories, the training loss and, per validation subset,
  V(all) and each modality's relevance over epochs (mean over seeds, band = ±1 std).
- ``cloud_cover_<metric>``: when results carry ``by.cloud_cover``: V(all) and relevance per
  cloud-cover bin (and ``unknown``), a point with its error bar per model (colour), test subset
  (marker) and bin, never joined by lines (bins are categories); a bin without samples has no
  point; a last panel gives the samples per bin (also under the ticks when all agree). Drawn by
  :func:`breakdown_figure`, which also draws segmentation's clear / cloudy pixels
  (:mod:`sareval.report.segmentation_figures`).
- ``interactions_<metric>_<n>`` (the n-th model label; results of >= 2 players and an exact
  game): the matrix of pairwise interactions (Shapley interaction index, or Banzhaf
  interaction), a panel per test subset, each cell with its value and interval, hatched where
  the interval excludes 0 (:func:`interaction_matrices`, :func:`interactions_figure`).
- ``decomposition_<metric>``: per model and test subset, the efficiency identity
  V(none) + sum_i relevance_i = V(all) as a stacked bar (V(none), then each modality's
  relevance), V(all) marked on top with its interval.

Figures that show Shapley values name the metric, Z and the baseline (:func:`game_settings`).
A colour means one thing in a whole report (:class:`Palette`): each modality has a fixed colour,
models another set, detectors a third. Tick labels are wrapped and panels sized so that no two
overlap, however long the model labels and subset names (``tests/test_figures_layout.py``).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_output
from sareval.errors import SarevalError
from sareval.evaluator.interactions import record_from_doc
from sareval.report.collect import ResultRun, TrainingRun
from sareval.report.tables import Stat, SummaryRow, group_runs, stat_over_runs

FORMATS = ("png", "svg")
PLAYER_TITLES = {"sar": "SAR", "opt": "optical"}
METRIC_TITLES = {
    "oa": "overall accuracy",
    "aa": "average accuracy",
    "balanced_accuracy": "balanced accuracy",
    "recall": "recall",
    "precision": "precision",
    "iou": "IoU",
    "miou": "mean IoU",
    "fwiou": "frequency-weighted IoU",
    "kappa": "Cohen's kappa",
}


def agg_pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "sareval"})
    return plt


def metric_title(metric: str) -> str:
    if metric in METRIC_TITLES:
        return METRIC_TITLES[metric]
    parts = metric.split("_")
    return " ".join([parts[0].upper(), *parts[1:]])


def player_title(player: str) -> str:
    return PLAYER_TITLES.get(player, player)


#: One meaning per colour in a report. Players (modalities) have fixed colours (others take
#: EXTRA_PLAYER_COLORS in first-seen order), models (labels) take MODEL_COLORS in first-seen
#: order, detectors DETECTOR_COLORS; no colour is in two of these sets, and quantities that are
#: none of them (V(none)) are NEUTRAL grey, V(all) black.
PLAYER_COLORS = {"sar": "#7b3294", "opt": "#1b7837"}
EXTRA_PLAYER_COLORS = ("#c51b7d", "#b35806", "#2166ac", "#8e0152", "#543005", "#01665e")
MODEL_COLORS = (
    "#1f77b4", "#ff7f0e", "#d62728", "#17becf", "#bcbd22", "#e377c2", "#8c564b", "#9edae5",
    "#aec7e8", "#ffbb78",
)  # fmt: skip
DETECTOR_COLORS = ("#000000", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
NEUTRAL = "#bdbdbd"
#: markers of test subsets where colour already means the model (cloud-cover figure)
SUBSET_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
#: hatches of test subsets on bars whose colour means the model (samples per bin)
SUBSET_HATCHES = ("", "//", "..", "xx")
#: tick labels are wrapped at this many characters; panels are sized to fit them side by side
WRAP = 16
#: width of one character of a 9-point tick label, in inches (generous: DejaVu Sans ~0.07)
CHAR_IN = 0.085


@dataclass(frozen=True)
class Palette:
    """The colours of one report (see :data:`PLAYER_COLORS`): ``players`` and ``models`` map
    names to colours; :meth:`of` builds it from the report's results (first-seen order), so
    every figure of a report gives a player, or a model, the same colour."""

    players: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, players: Iterable[str] = (), models: Iterable[str] = ()) -> Palette:
        extra = iter(EXTRA_PLAYER_COLORS * 4)
        pc = {p: PLAYER_COLORS.get(p) or next(extra) for p in dict.fromkeys(players)}
        mc = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(dict.fromkeys(models))}
        return cls(pc, mc)

    @classmethod
    def of_results(cls, results: Sequence[ResultRun]) -> Palette:
        return cls.of((p for r in results for p in r.players), (r.label for r in results))

    def player(self, name: str) -> str:
        return self.players.get(name) or PLAYER_COLORS.get(name) or EXTRA_PLAYER_COLORS[0]

    def model(self, label: str) -> str:
        return self.models.get(label) or MODEL_COLORS[0]


def detector_colors(n: int) -> list[str]:
    """Colours of ``n`` detectors (:data:`DETECTOR_COLORS`, cycled)."""
    return [DETECTOR_COLORS[i % len(DETECTOR_COLORS)] for i in range(n)]


def wrap(text: str, width: int = WRAP) -> str:
    """``text`` in lines of at most ``width`` characters (long words broken)."""
    lines: list[str] = []
    for part in text.split("\n"):
        lines += textwrap.wrap(part, width, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def label_width(labels: Iterable[str]) -> float:
    """Inches the widest line of ``labels`` takes at the tick font size."""
    return CHAR_IN * max((len(line) for t in labels for line in t.split("\n")), default=1)


def save(fig: Any, out: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` atomically; close the figure."""
    plt = agg_pyplot()
    try:
        return [_write(fig, out / f"{stem}.{fmt}", fmt) for fmt in FORMATS]
    finally:
        plt.close(fig)


def _write(fig: Any, path: Path, fmt: str) -> Path:
    """``fig`` written atomically to ``path`` in ``fmt``, without creation dates (the same
    inputs give the same files)."""
    metadata: dict[str, Any] = {"Software": "sareval (matplotlib)"}
    if fmt == "svg":
        metadata = {"Date": None}
    elif fmt == "pdf":
        metadata = {"CreationDate": None}
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
    return path


def _grouped_bars(
    ax: Any,
    subsets: Sequence[str],
    models: Sequence[str],
    stats: dict[tuple[str, str], Any],
    palette: Palette,
) -> None:
    """Bars of ``stats[(model, subset)]`` (a Stat) grouped by subset, one colour per model;
    error bars where a Stat has an interval or a spread over runs. Tick labels are wrapped
    (:func:`wrap`); :func:`_bar_grid` sizes the panels so that they never overlap."""
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(subsets))
    for j, model in enumerate(models):
        pos, val, err_lo, err_hi = [], [], [], []
        for i, subset in enumerate(subsets):
            s = stats.get((model, subset))
            if s is None or not math.isfinite(s.mean):
                continue
            pos.append(x[i] - 0.4 + width * (j + 0.5))
            val.append(s.mean)
            lo, hi = s.error
            err_lo.append(lo)
            err_hi.append(hi)
        has_error = any(e > 0 for e in err_lo + err_hi)
        ax.bar(
            pos,
            val,
            width * 0.92,
            yerr=[err_lo, err_hi] if has_error else None,
            capsize=3,
            color=palette.model(model),
            label=model,
            error_kw={"elinewidth": 1},
        )
    ax.set_xticks(x, [wrap(t) for t in subsets])
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend_below(fig: Any, axes: Sequence[Any], title: str = "model") -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 4),
            title=title,
            frameon=False,
        )


def _bar_grid(
    rows: Sequence[SummaryRow],
    metrics: Sequence[str],
    columns: Sequence[str],
    titles: Sequence[str],
    ylabel: str,
    palette: Palette | None = None,
) -> tuple[Any, Any]:
    """Figure and axes: rows = metrics, one column per quantity of ``columns`` (a key of
    :attr:`SummaryRow.values`), bars per model grouped by test subset."""
    plt = agg_pyplot()
    models = list(dict.fromkeys(r.model for r in rows))
    subsets = list(dict.fromkeys(r.subset for r in rows))
    palette = palette or Palette.of((p for r in rows for p in r.players), models)
    group_w = max(0.35 * len(models), label_width(wrap(t) for t in subsets) + 0.25)
    panel_w = max(3.0, group_w * len(subsets) + 1.2)
    fig, axes = plt.subplots(
        len(metrics),
        len(columns),
        figsize=(panel_w * len(columns), 2.6 * len(metrics) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for i, metric in enumerate(metrics):
        sel = {(r.model, r.subset): r for r in rows if r.metric == metric}
        for j, (key, title) in enumerate(zip(columns, titles, strict=True)):
            ax = axes[i, j]
            stats = {k: r.values[key] for k, r in sel.items() if key in r.values}
            _grouped_bars(ax, subsets, models, stats, palette)
            ax.set_title(f"{title} ({metric_title(metric)})")
            if j == 0:
                ax.set_ylabel(ylabel.format(metric=metric_title(metric)))
    for ax in axes[-1]:
        ax.set_xlabel("test subset")
    return fig, axes


def relevance_figure(
    rows: Sequence[SummaryRow],
    metrics: Sequence[str],
    settings: str = "",
    palette: Palette | None = None,
) -> Any:
    """Grid: rows = metrics, columns = modalities + cooperation; bars per model and subset.
    ``settings``: the game's Z and baseline (:func:`game_settings`), in the title."""
    players = list(dict.fromkeys(p for r in rows for p in r.players))
    columns = [f"relevance:{p}" for p in players] + ["cooperation"]
    titles = [f"relevance of {player_title(p)}" for p in players] + ["cooperation"]
    fig, axes = _bar_grid(rows, metrics, columns, titles, "Shapley value of {metric}", palette)
    for i in range(len(metrics)):
        _share_ylim(axes[i, : len(players)])  # modalities of one metric: compare bar heights
    title = "Modality relevance (SHAPE) per test subset"
    fig.suptitle(f"{title} ({settings})" if settings else title)
    _legend_below(fig, axes.ravel())
    return fig


def _share_ylim(axes: Sequence[Any]) -> None:
    """One y range for ``axes`` (the union of theirs)."""
    lo = min(a.get_ylim()[0] for a in axes)
    hi = max(a.get_ylim()[1] for a in axes)
    for a in axes:
        a.set_ylim(lo, hi)


def performance_figure(
    rows: Sequence[SummaryRow],
    metrics: Sequence[str],
    settings: str = "",
    palette: Palette | None = None,
) -> Any:
    """Grid: rows = metrics, columns = each modality alone (V({sar}), V({opt}): the other
    modalities replaced by the baseline) and all modalities (V(all)); bars per model and
    subset, one y scale per metric."""
    players = list(dict.fromkeys(p for r in rows for p in r.players))
    columns = [f"V:{p}" for p in players if len(players) > 1] + ["V(all)"]
    titles = [f"{player_title(p)} only" for p in players if len(players) > 1]
    titles.append("all modalities")
    fig, axes = _bar_grid(rows, metrics, columns, titles, "{metric}", palette)
    for i in range(len(metrics)):
        _share_ylim(axes[i])
        bottom, top = axes[i, 0].get_ylim()
        for ax in axes[i]:
            ax.set_ylim(min(0.0, bottom), 1.0 if top <= 1.0 else top)
    title = "Performance with each modality alone and with all"
    fig.suptitle(f"{title} (absent modalities: {settings})" if settings else title)
    _legend_below(fig, axes.ravel())
    return fig


def _epoch_series(
    histories: Sequence[TrainingRun], subset: str | None, metric: str, key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std over runs of one quantity (``loss``, ``V(all)``, a player)."""
    per_run = []
    for h in histories:
        series = {}
        for rec in h.epochs:
            if key == "loss":
                if rec.get("train_loss") is not None:  # a Lightning log may have none
                    series[rec["epoch"]] = rec["train_loss"]
                continue
            val = rec.get("val", {}).get(subset)
            if not val or metric not in val["metrics"]:
                continue
            m = val["metrics"][metric]
            if key == "V(all)":
                series[rec["epoch"]] = m["V"]["+".join(val["players"])]
            else:
                series[rec["epoch"]] = m["relevance"][key]
        per_run.append(series)
    epochs = sorted(set().union(*per_run)) if per_run else []
    mean, std = [], []
    for e in epochs:
        vals = [s[e] for s in per_run if e in s]
        st = stat_over_runs(vals)
        mean.append(st.mean)
        std.append(st.std if st.runs > 1 else 0.0)
    return np.array(epochs), np.array(mean), np.array(std)


def epochs_figure(
    histories: Sequence[TrainingRun], metric: str, palette: Palette | None = None
) -> Any:
    """Training loss, then per validation subset V(all) and relevance over epochs; a colour
    per model (``palette``, default: the histories' labels in order)."""
    plt = agg_pyplot()
    models = list(dict.fromkeys(h.label for h in histories))
    subsets = list(
        dict.fromkeys(s for h in histories for rec in h.epochs for s in rec.get("val", {}))
    )
    players = list(
        dict.fromkeys(
            p
            for h in histories
            for rec in h.epochs
            for v in rec.get("val", {}).values()
            for p in v["players"]
        )
    )
    quantities = ["V(all)", *players]
    ncols = max(len(subsets), 1)
    mosaic = [["loss"] * ncols] + [[f"{q}|{s}" for s in subsets] for q in quantities]
    if not subsets:
        mosaic = [["loss"]]
    fig, axd = plt.subplot_mosaic(
        mosaic,
        figsize=(4.2 * ncols, 2.3 * len(mosaic) + 0.9),
        layout="constrained",
    )
    palette = palette or Palette.of(players, models)
    for model in models:
        color = palette.model(model)
        runs = [h for h in histories if h.label == model]
        label = f"{model} ({len(runs)} run{'s' if len(runs) > 1 else ''})"
        e, m, s = _epoch_series(runs, None, metric, "loss")
        axd["loss"].plot(e, m, color=color, label=label, marker="o", markersize=3)
        axd["loss"].fill_between(e, m - s, m + s, color=color, alpha=0.2, linewidth=0)
        for subset in subsets:
            for q in quantities:
                e, m, s = _epoch_series(runs, subset, metric, q)
                if len(e) == 0:
                    continue
                ax = axd[f"{q}|{subset}"]
                ax.plot(e, m, color=color, marker="o", markersize=3)
                ax.fill_between(e, m - s, m + s, color=color, alpha=0.2, linewidth=0)
    axd["loss"].set_title("training loss")
    axd["loss"].set_ylabel("loss")
    for subset in subsets:
        for q in quantities:
            ax = axd[f"{q}|{subset}"]
            what = (
                f"{metric_title(metric)} (all)"
                if q == "V(all)"
                else f"relevance of {player_title(q)}"
            )
            ax.set_title(f"{what}, validation {subset}")
        axd[f"{quantities[-1]}|{subset}"].set_xlabel("epoch")
    for q in quantities:  # one scale per row: subsets side by side compare directly
        row = [axd[f"{q}|{s}"] for s in subsets]
        lo = min(a.get_ylim()[0] for a in row)
        hi = max(a.get_ylim()[1] for a in row)
        for a in row:
            a.set_ylim(lo, hi)
        if subsets:
            row[0].set_ylabel("value" if q == "V(all)" else "Shapley value")
    for ax in axd.values():
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axd["loss"].legend(frameon=False, title="model")
    fig.suptitle(f"Training: loss, {metric_title(metric)} and modality relevance per epoch")
    return fig


#: the per-class metrics of ``by.class`` that get a ``per_class_<metric>`` figure
CLASS_FIGURE_METRICS = ("recall", "f1", "iou")


def has_by_class(results: Sequence[ResultRun], metric: str) -> bool:
    return any(
        metric in g.get("metrics", {})
        for r in results
        for g in r.doc.get("by", {}).get("class", {}).values()
    )


def _class_stats(runs: Sequence[ResultRun], metric: str, player: str) -> dict[str, Any]:
    """Class -> Stat of ``player``'s relevance on the class's ``metric`` over ``runs`` (a single
    run: its bootstrap interval, when computed)."""
    out = {}
    for name in runs[0].doc["by"]["class"]:
        entries = [r.doc["by"]["class"].get(name, {}).get("metrics", {}).get(metric) for r in runs]
        values = [e["relevance"][player] for e in entries if e is not None]
        if len(values) != len(runs) or any(v is None for v in values):
            continue
        ci = (entries[0] or {}).get("ci", {}).get("relevance", {}).get(player)
        out[name] = stat_over_runs(values, tuple(ci) if len(runs) == 1 and ci else None)
    return out


def per_class_figure(
    results: Sequence[ResultRun], metric: str = "recall", palette: Palette | None = None
) -> Any:
    """Each modality's relevance on each class's ``metric`` (``by.class``): one panel per model
    and test subset, horizontal bars per class and modality (the modality's colour); error bars
    = std over runs, or a single run's bootstrap interval. Tick labels give each class's
    samples, wrapped; each class's row is as tall as its label."""
    plt = agg_pyplot()
    palette = palette or Palette.of_results(results)
    groups = {
        k: runs
        for k, runs in group_runs(results).items()
        if all(has_by_class([r], metric) for r in runs)
    }
    players = list(dict.fromkeys(p for runs in groups.values() for p in runs[0].players))
    ticks = {
        key: [wrap(f"{c} ({e.get('n_samples', '?')})", 2 * WRAP)
              for c, e in runs[0].doc["by"]["class"].items()]
        for key, runs in groups.items()
    }  # fmt: skip
    n_classes = max((len(t) for t in ticks.values()), default=1)
    lines = max((t.count("\n") + 1 for tt in ticks.values() for t in tt), default=1)
    row_h = max(0.16 * len(players), 0.17 * lines) + 0.12
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    panel_w = 2.8 + label_width(t for tt in ticks.values() for t in tt)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_w * ncols, (row_h * n_classes + 1.4) * nrows + 0.8),
        squeeze=False, sharex=True, layout="constrained",
    )  # fmt: skip
    height = 0.8 / len(players)
    for ax, ((label, subset), runs) in zip(axes.ravel(), groups.items(), strict=False):
        classes = list(runs[0].doc["by"]["class"])
        y = np.arange(len(classes))
        for j, player in enumerate(players):
            stats = _class_stats(runs, metric, player)
            rows = [(i, stats[c]) for i, c in enumerate(classes) if c in stats]
            err = np.array([s.error for _, s in rows]).T.reshape(2, -1)
            ax.barh(
                [y[i] - 0.4 + height * (j + 0.5) for i, _ in rows],
                [s.mean for _, s in rows],
                height * 0.9,
                xerr=err if err.any() else None,
                color=palette.player(player),
                capsize=2,
                label=f"relevance of {player_title(player)}",
                error_kw={"elinewidth": 0.8},
            )
        ax.set_yticks(y, ticks[(label, subset)])
        ax.invert_yaxis()
        ax.axvline(0, color="0.3", linewidth=0.6)
        ax.grid(axis="x", alpha=0.3)
        title = f"{label} · {subset}" + (f" ({len(runs)} runs)" if len(runs) > 1 else "")
        ax.set_title(wrap(title, int(panel_w / 0.09)))
    for ax in axes.ravel()[len(groups) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"Shapley value of the class's {metric_title(metric)}")
    unit = "pixels" if all(r.doc.get("task") == "segmentation" for r in results) else "samples"
    fig.suptitle(f"Modality relevance per class: {metric_title(metric)} "
                 f"({game_settings(results)}); class ({unit})")  # fmt: skip
    _legend_below(fig, axes.ravel(), title="")
    return fig


def _bin_label(b: Sequence[float]) -> str:
    return f"{100 * b[0]:.0f}–{100 * b[1]:.0f}%"


def has_cloud_cover(results: Sequence[ResultRun]) -> bool:
    return any(r.doc.get("by", {}).get("cloud_cover") for r in results)


def game_settings(results: Sequence[ResultRun]) -> str:
    """``"Z = one, baseline input-zero"`` from the results' configs (``/``-joined if several)."""

    def values(*names: str) -> str:  # the first name a config has (Z: now "normalization")
        seen = dict.fromkeys(
            str(next((c[n] for n in names if n in c), "?"))
            for c in (r.doc.get("config", {}) for r in results)
        )
        return " / ".join(seen) or "?"

    return f"Z = {values('normalization', 'z')}, baseline {values('baseline')}"


def decomposition_figure(
    rows: Sequence[SummaryRow], metric: str, settings: str = "", palette: Palette | None = None
) -> Any:
    """Stacked bars per (model, subset): V(none) + sum_i relevance_i = V(all) (efficiency).

    Segments start at 0 with V(none) (``V:none``, grey), each modality's relevance (in the
    modality's colour) stacked on the running total (a negative relevance points down); a black
    tick marks V(all), with its error bar (std over runs or the bootstrap interval) where there
    is one. Tick labels (model, subset) are wrapped and each bar is as wide as its label."""
    plt = agg_pyplot()
    sel = [r for r in rows if r.metric == metric]
    players = list(dict.fromkeys(p for r in sel for p in r.players))
    palette = palette or Palette.of(players, (r.model for r in rows))
    ticks = [wrap(r.model) + "\n" + wrap(f"on {r.subset}") for r in sel]
    bar_w = max(0.7, label_width(ticks) + 0.25)
    fig, ax = plt.subplots(
        figsize=(max(4.0, bar_w * len(sel) + 1.5), 3.6 + 0.15 * max(
            (t.count("\n") for t in ticks), default=0)),
        layout="constrained",
    )  # fmt: skip
    x = np.arange(len(sel))
    bottom = np.array([r.values["V:none"].mean if "V:none" in r.values else 0.0 for r in sel])
    ax.bar(x, bottom, 0.6, color=NEUTRAL, label="V(none)")
    for p in players:
        h = np.array([r.values[f"relevance:{p}"].mean for r in sel])
        ax.bar(x, h, 0.6, bottom=bottom, color=palette.player(p),
               label=f"relevance of {player_title(p)}")  # fmt: skip
        bottom = bottom + h
    v_all = [r.values["V(all)"] for r in sel]
    ax.scatter(x, [v.mean for v in v_all], marker="_", s=400, color="black", zorder=3,
               label="V(all)")  # fmt: skip
    err = np.array([v.error for v in v_all]).T.reshape(2, -1)
    if err.any():
        ax.errorbar(x, [v.mean for v in v_all], yerr=err, fmt="none", ecolor="black",
                    capsize=4, elinewidth=1, zorder=4, label="V(all) interval")  # fmt: skip
    ax.set_xticks(x, ticks)
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.set_ylabel(metric_title(metric))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    title = f"V(none) + relevances = V(all): {metric_title(metric)}"
    ax.set_title(f"{title}\n{settings}" if settings else title)
    return fig


def _bin_entries(doc: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(bin key, entry) of a results document: ``(lo, hi)`` per bin of ``by.cloud_cover``, then
    ``"unknown"`` for ``by.cloud_cover_unknown`` (samples without a cloud cover)."""
    by = doc.get("by", {})
    out: list[tuple[Any, dict[str, Any]]] = [(tuple(e["bin"]), e) for e in by["cloud_cover"]]
    unknown = by.get("cloud_cover_unknown")
    if isinstance(unknown, dict) and unknown.get("n_samples"):
        out.append(("unknown", unknown))
    return out


#: one panel of :func:`breakdown_figure`: its title and, for a run, a category and the run's
#: entry of that category, the value and its bootstrap interval (None: no value)
Getter = Callable[[ResultRun, Any, dict[str, Any]], tuple[float | None, Any]]


@dataclass(frozen=True)
class Breakdown:
    """How :func:`breakdown_figure` reads one breakdown of a results document into categories:
    ``entries(doc)`` -> (category, entry) pairs (an empty list: the document has none),
    ``order(categories)`` -> the x order, ``tick(category)`` -> its tick label, ``count`` the
    entry's size key counted in ``unit`` (``n_samples``: samples), ``xlabel`` the axis."""

    entries: Callable[[dict[str, Any]], list[tuple[Any, dict[str, Any]]]]
    order: Callable[[Iterable[Any]], list[Any]]
    tick: Callable[[Any], str]
    xlabel: str
    count: str = "n_samples"
    unit: str = "samples"
    count_title: str = "samples per bin"


def metric_getters(metric: str, players: Sequence[str]) -> list[tuple[str, Getter]]:
    """Panels of V(all) and each player's relevance of ``metric`` from a breakdown entry's
    ``metrics`` (with the entry's ``ci`` as interval)."""

    def getter(q: str) -> Getter:
        def get(run: ResultRun, category: Any, entry: dict[str, Any]) -> tuple[float | None, Any]:
            m = entry.get("metrics", {}).get(metric)
            if not m:
                return None, None
            c = m.get("ci") or {}
            if q == "V(all)":
                return m["V"].get(run.full), (c.get("V") or {}).get(run.full)
            return m["relevance"].get(q), (c.get("relevance") or {}).get(q)

        return get

    titles = [f"{metric_title(metric)} (all)"] + [
        f"relevance of {player_title(p)}" for p in players
    ]
    return list(zip(titles, [getter(q) for q in ["V(all)", *players]], strict=True))


def breakdown_figure(
    results: Sequence[ResultRun],
    breakdown: Breakdown,
    panels: Callable[[Sequence[str]], list[tuple[str, Getter]]],
    title: str,
    palette: Palette | None = None,
) -> Any:
    """Values per category of a breakdown (cloud-cover bins, clear / cloudy pixels), and the
    size of each category.

    ``panels(players)``: one panel per (title, getter); the first has the ylabel "value", the
    others "Shapley value". One point per model (colour) and test subset (marker) and category,
    with an error bar: the std over runs, or a single run's bootstrap interval. Categories are
    categories: points are never joined by lines; one without members has no point. The last
    panel gives each group's size per category (also under the ticks when all agree)."""
    plt = agg_pyplot()
    palette = palette or Palette.of_results(results)
    groups = {
        k: runs
        for k, runs in group_runs(results).items()
        if all(breakdown.entries(r.doc) for r in runs)
    }
    players = list(dict.fromkeys(p for runs in groups.values() for p in runs[0].players))
    quantities = panels(players)
    keys = dict.fromkeys(
        key for runs in groups.values() for r in runs for key, _ in breakdown.entries(r.doc)
    )
    cats = breakdown.order(keys)
    size = breakdown.count
    sizes = {tuple((k, e.get(size, 0)) for k, e in breakdown.entries(r.doc))
             for runs in groups.values() for r in runs}  # fmt: skip
    ticks = [breakdown.tick(c) for c in cats]
    if len(sizes) == 1:
        n_of = dict(next(iter(sizes)))
        ticks = [f"{t}\n({n_of.get(c, 0)})" for t, c in zip(ticks, cats, strict=True)]
    panel_w = max(3.4, len(cats) * (label_width(ticks) + 0.3) + 1.0)
    fig, axes = plt.subplots(
        1, len(quantities) + 1, figsize=(panel_w * (len(quantities) + 1), 3.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    subsets = list(dict.fromkeys(s for _, s in groups))
    step = 0.8 / max(len(groups), 1)
    dodge = step * (np.arange(len(groups)) - (len(groups) - 1) / 2)  # side by side per category
    for j, ((label, subset), runs) in enumerate(groups.items()):
        style: dict[str, Any] = dict(color=palette.model(label), markersize=5,
                                     marker=SUBSET_MARKERS[subsets.index(subset) % 8])  # fmt: skip
        xs = np.arange(len(cats)) + dodge[j]
        entries = [dict(breakdown.entries(r.doc)) for r in runs]
        for k, (_, get) in enumerate(quantities):
            means = np.full(len(cats), np.nan)  # a category without members: no point
            err = np.zeros((2, len(cats)))
            for i, c in enumerate(cats):
                vals, ci = [], None
                for r, found in zip(runs, entries, strict=True):
                    if not found.get(c) or not found[c].get(size, 1):
                        continue
                    v, ci = get(r, c, found[c])
                    if v is not None:
                        vals.append(v)
                if vals:
                    st = stat_over_runs(vals, tuple(ci) if ci and len(vals) == 1 else None)
                    means[i] = st.mean
                    err[:, i] = st.error
            axes[0, k].errorbar(
                xs, means, yerr=err if err.any() else None, linestyle="none", capsize=3,
                elinewidth=1, label=f"{label} · {subset}", **style,
            )  # fmt: skip
        n = [max((found.get(c) or {}).get(size, 0) for found in entries) for c in cats]
        bars = axes[0, -1].bar(xs, n, step * 0.9, color=style["color"], edgecolor="0.2",
                               linewidth=0.5, hatch=SUBSET_HATCHES[subsets.index(subset) % 4],
                               label=f"{label} · {subset}")  # fmt: skip
        axes[0, -1].bar_label(bars, fontsize=7, padding=1)
    for k, (panel_title, _) in enumerate(quantities):
        axes[0, k].set_title(panel_title)
        axes[0, k].axhline(0, color="0.3", linewidth=0.6)
    axes[0, -1].set_title(breakdown.count_title)
    axes[0, -1].set_ylabel(breakdown.unit)
    for ax in axes[0]:
        ax.set_xticks(range(len(cats)), ticks)
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_xlabel(breakdown.xlabel + (f" ({breakdown.unit})" if len(sizes) == 1 else ""))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0, 0].set_ylabel("value")
    if len(quantities) > 1:
        axes[0, 1].set_ylabel("Shapley value")
    fig.suptitle(f"{title}; error bars: ± std over runs, or one run's bootstrap interval")
    _legend_below(fig, axes.ravel(), title="model · test subset")
    return fig


def _bin_order(keys: Iterable[Any]) -> list[Any]:
    """Cloud-cover bins in order, ``unknown`` last."""
    keys = list(keys)
    return sorted(k for k in keys if k != "unknown") + (["unknown"] if "unknown" in keys else [])


#: the per-cloud-cover-bin breakdown (``by.cloud_cover`` and ``by.cloud_cover_unknown``)
CLOUD_COVER = Breakdown(
    entries=lambda doc: _bin_entries(doc) if doc.get("by", {}).get("cloud_cover") else [],
    order=_bin_order,
    tick=lambda b: "unknown" if b == "unknown" else _bin_label(b),
    xlabel="cloud cover of the optical image",
)


def cloud_cover_figure(
    results: Sequence[ResultRun], metric: str, palette: Palette | None = None
) -> Any:
    """V(all) and each modality's relevance per cloud-cover bin, and the samples per bin
    (:func:`breakdown_figure` of :data:`CLOUD_COVER`); samples without a cloud cover form the
    ``unknown`` bin."""
    title = (f"{metric_title(metric)} and modality relevance by cloud cover "
             f"({game_settings(results)})")  # fmt: skip
    return breakdown_figure(
        results, CLOUD_COVER, lambda players: metric_getters(metric, players), title, palette
    )


#: pairwise interaction indices the ``interactions_<metric>_<n>`` figures may show (results key
#: -> title); the Shapley interaction index by default
INTERACTION_INDICES = {
    "sii": "Shapley interaction index",
    "banzhaf_interaction": "Banzhaf interaction",
}


@dataclass(frozen=True)
class InteractionMatrix:
    """Pairwise interactions of one model (``label``) on one test ``subset``: ``cells[(i, j)]``
    (i before j in ``players``) is the index's value over the runs (:class:`Stat`: mean; a
    single run's bootstrap interval in ``lo``/``hi``, or the std over several runs)."""

    label: str
    subset: str
    metric: str
    index: str
    players: list[str]
    cells: dict[tuple[str, str], Stat]

    def excludes_zero(self, pair: tuple[str, str]) -> bool:
        """True when the cell has an interval (or ±std) and 0 lies outside it."""
        st = self.cells[pair]
        below, above = st.error
        if not (below or above) or not math.isfinite(st.mean):
            return False
        return st.mean - below > 0 or st.mean + above < 0


def _pair_key(a: str, b: str, players: Sequence[str]) -> str:
    return "+".join(p for p in players if p in (a, b))  # coalition_name of {a, b}


def interaction_matrices(
    results: Sequence[ResultRun], metric: str, index: str = "sii"
) -> list[InteractionMatrix]:
    """One :class:`InteractionMatrix` per (model label, test subset) whose results have at
    least 2 players and an exact game (``record_from_doc``: what ``ShapeResult.interactions``
    returns); ``index``: a key of :data:`INTERACTION_INDICES`."""
    if index not in INTERACTION_INDICES:
        raise SarevalError(
            f"index: expected one of {', '.join(INTERACTION_INDICES)}, got {index!r}"
        )
    out = []
    for (label, subset), runs in group_runs(results).items():
        players = runs[0].players
        if len(players) < 2 or any(r.players != players for r in runs):
            continue
        records = [record_from_doc(r.doc).get(metric, {}).get(index) for r in runs]
        if any(rec is None for rec in records):
            continue
        cells = {}
        for a, b in itertools.combinations(players, 2):
            key = _pair_key(a, b, players)
            values = [rec[key] for rec in records]  # type: ignore[index]
            ci = None
            if len(runs) == 1:
                bounds = (
                    ((runs[0].doc["metrics"][metric].get("ci") or {}).get("interactions") or {})
                    .get(index, {})
                    .get(key)
                )
                ci = None if bounds is None else (float(bounds[0]), float(bounds[1]))
            cells[(a, b)] = stat_over_runs([math.nan if v is None else v for v in values], ci)
        out.append(InteractionMatrix(label, subset, metric, index, list(players), cells))
    return out


def interactions_figure(matrices: Sequence[InteractionMatrix]) -> Any:
    """Matrices of pairwise interactions (players x players, symmetric; the diagonal is blank),
    a panel per test subset of one model: each cell coloured by its value (diverging, 0 white)
    and annotated with the value and its interval ``[lo, hi]`` (or ``± std``); cells whose
    interval excludes 0 are hatched."""
    plt = agg_pyplot()
    if not matrices:
        raise SarevalError("matrices: no interaction matrix to draw")
    players = list(dict.fromkeys(p for m in matrices for p in m.players))
    texts = [st.text() for m in matrices for st in m.cells.values()]
    cell_w = max(0.9, label_width([t.replace(" [", "\n[") for t in texts]) + 0.2)
    ticks = [wrap(player_title(p)) for p in players]
    left = label_width(ticks) + 0.6
    n = len(players)
    side = cell_w * n
    fig, axes = plt.subplots(
        1, len(matrices), squeeze=False, layout="constrained",
        figsize=((side + left + 1.2) * len(matrices), side * 0.7 + 2.2),
    )  # fmt: skip
    limit = max(
        (abs(st.mean) + max(st.error) for m in matrices for st in m.cells.values()
         if math.isfinite(st.mean)),
        default=1.0,
    ) or 1.0  # fmt: skip
    image = None
    for ax, m in zip(axes[0], matrices, strict=True):
        grid = np.full((n, n), np.nan)
        for (a, b), st in m.cells.items():
            i, j = players.index(a), players.index(b)
            grid[i, j] = grid[j, i] = st.mean
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for (a, b), st in m.cells.items():
            i, j = players.index(a), players.index(b)
            for r, c in ((i, j), (j, i)):
                ax.text(c, r, st.text().replace(" [", "\n[").replace(" ± ", "\n± "),
                        ha="center", va="center", fontsize=7,
                        bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0})  # fmt: skip
                if m.excludes_zero((a, b)):
                    box = plt.Rectangle(
                        (c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.35",
                        linewidth=0, gid="excludes-zero",
                    )  # fmt: skip
                    ax.add_patch(box)
        for d in range(n):
            ax.add_patch(plt.Rectangle((d - 0.5, d - 0.5), 1, 1, color=NEUTRAL))
        ax.set_xticks(range(n), ticks)
        ax.set_yticks(range(n), ticks)
        ax.set_title(wrap(f"on {m.subset}", 40))
    if image is not None:
        what = f"{INTERACTION_INDICES[matrices[0].index]} ({matrices[0].metric})"
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label=what)
    title = (
        f"Pairwise {INTERACTION_INDICES[matrices[0].index]}: "
        f"{metric_title(matrices[0].metric)}, {matrices[0].label}"
    )
    fig.suptitle(f"{wrap(title, 70)}\n(hatched: interval excludes 0)")
    return fig


def absence_figure(
    relevance: dict[str, dict[str, float]],
    intervals: dict[str, dict[str, Sequence[float]]],
    metric: str,
    settings: str = "",
) -> Any:
    """Relevance per absence operator (:func:`~sareval.report.absence.compare_absence`): one
    group of bars per player, one bar per operator (``relevance[operator][player]``, colours
    of :data:`MODEL_COLORS` in the operators' order), error bars from ``intervals[operator]
    [player]`` = [lo, hi] (an operator missing one interval has no error bars)."""
    plt = agg_pyplot()
    operators = list(relevance)
    players = list(dict.fromkeys(p for op in operators for p in relevance[op]))
    palette = Palette.of(models=operators)
    ticks = [wrap(player_title(p)) for p in players]
    group_w = max(0.35 * len(operators), label_width(ticks) + 0.25)
    fig, ax = plt.subplots(
        figsize=(max(4.0, group_w * len(players) + 2.5), 3.6), layout="constrained"
    )
    width = 0.8 / max(len(operators), 1)
    x = np.arange(len(players))
    for j, op in enumerate(operators):
        val = np.array([relevance[op][p] for p in players], dtype=np.float64)
        bounds = intervals.get(op, {})
        err = None
        if all(p in bounds for p in players):
            lo_hi = np.array([bounds[p] for p in players], dtype=np.float64).reshape(-1, 2)
            err = np.stack([val - lo_hi[:, 0], lo_hi[:, 1] - val])  # below, above the bar
        ax.bar(x - 0.4 + width * (j + 0.5), val, width * 0.92, yerr=err, capsize=3,
               color=palette.model(op), label=op, error_kw={"elinewidth": 1})  # fmt: skip
    ax.set_xticks(x, ticks)
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_ylabel(f"Shapley value of {metric_title(metric)}")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title="absence")  # fmt: skip
    title = f"Relevance per absence operator ({metric_title(metric)}; 95 % bootstrap intervals)"
    ax.set_title(f"{title}\n{settings}" if settings else title)
    return fig


#: formats :func:`save_as` writes, by file suffix
SAVE_AS_FORMATS = ("png", "pdf", "svg")


def figure_format(path: Path) -> str:
    """The format of ``path``'s suffix (one of :data:`SAVE_AS_FORMATS`), else an error."""
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in SAVE_AS_FORMATS:
        raise SarevalError(f"path: {str(path)!r} should end in .png, .pdf or .svg (the format)")
    return fmt


def save_as(fig: Any, path: Path) -> Path:
    """Write ``fig`` atomically to ``path`` in the format of its suffix (:func:`figure_format`;
    no creation date); close the figure."""
    plt = agg_pyplot()
    try:
        fmt = figure_format(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _write(fig, path, fmt)
    finally:
        plt.close(fig)
