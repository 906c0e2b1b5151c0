"""Figures in the study's style (matplotlib, Agg backend; each as PNG and SVG).

- ``relevance``: one panel per (metric, modality) and a cooperation column; bars = models, groups
  = test subsets; error bars = std over runs (or a single run's bootstrap interval).
- ``performance``: rows = metrics, columns = each modality alone (V({sar}), V({opt})) and all
  modalities (V(all)), the same way.
- ``per_class_<metric>`` (recall, F1; when results carry ``by.class``): each modality's
  relevance on each class's metric, one panel per model and test subset, with intervals.
- ``epochs_<metric>``: from training histories, the training loss and, per validation subset,
  V(all) and each modality's relevance over epochs (mean over seeds, band = ±1 std).
- ``cloud_cover_<metric>``: when results carry ``by.cloud_cover``: V(all) and relevance per
  cloud-cover bin, one line per model and test subset; samples per bin under the ticks; a bin
  a model has no samples in is a gap in its line (never joined across).
- ``decomposition_<metric>``: per model and test subset, the efficiency identity
  V(none) + sum_i relevance_i = V(all) as a stacked bar (V(none), then each modality's
  relevance), V(all) marked on top.

Figures that show Shapley values name the metric, Z and the baseline (:func:`game_settings`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_output
from sareval.report.collect import ResultRun, TrainingRun
from sareval.report.tables import SummaryRow, group_runs, stat_over_runs

FORMATS = ("png", "svg")
PLAYER_TITLES = {"sar": "SAR", "opt": "optical"}
METRIC_TITLES = {
    "oa": "overall accuracy",
    "aa": "average accuracy",
    "balanced_accuracy": "balanced accuracy",
    "recall": "recall",
    "precision": "precision",
}


def _plt() -> Any:
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


def colors(n: int) -> list[Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def save(fig: Any, out: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` atomically; close the figure."""
    plt = _plt()
    paths = []
    for fmt in FORMATS:
        path = out / f"{stem}.{fmt}"
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=_metadata(fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def _metadata(fmt: str) -> dict[str, Any]:
    # no creation dates: the same inputs give the same files
    return {"Date": None} if fmt == "svg" else {"Software": "sareval (matplotlib)"}


def _grouped_bars(
    ax: Any,
    subsets: Sequence[str],
    models: Sequence[str],
    stats: dict[tuple[str, str], Any],
    model_colors: Sequence[Any],
) -> None:
    """Bars of ``stats[(model, subset)]`` (a Stat) grouped by subset, one colour per model."""
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
            color=model_colors[j],
            label=model,
            error_kw={"elinewidth": 1},
        )
    ax.set_xticks(x, subsets, rotation=20 if max(map(len, subsets), default=0) > 10 else 0)
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
) -> tuple[Any, Any]:
    """Figure and axes: rows = metrics, one column per quantity of ``columns`` (a key of
    :attr:`SummaryRow.values`), bars per model grouped by test subset."""
    plt = _plt()
    models = list(dict.fromkeys(r.model for r in rows))
    subsets = list(dict.fromkeys(r.subset for r in rows))
    panel_w = max(3.0, 0.35 * len(subsets) * len(models) + 1.2)
    fig, axes = plt.subplots(
        len(metrics),
        len(columns),
        figsize=(panel_w * len(columns), 2.6 * len(metrics) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    cc = colors(len(models))
    for i, metric in enumerate(metrics):
        sel = {(r.model, r.subset): r for r in rows if r.metric == metric}
        for j, (key, title) in enumerate(zip(columns, titles, strict=True)):
            ax = axes[i, j]
            stats = {k: r.values[key] for k, r in sel.items() if key in r.values}
            _grouped_bars(ax, subsets, models, stats, cc)
            ax.set_title(f"{title} ({metric_title(metric)})")
            if j == 0:
                ax.set_ylabel(ylabel.format(metric=metric_title(metric)))
    for ax in axes[-1]:
        ax.set_xlabel("test subset")
    return fig, axes


def relevance_figure(rows: Sequence[SummaryRow], metrics: Sequence[str], settings: str = "") -> Any:
    """Grid: rows = metrics, columns = modalities + cooperation; bars per model and subset.
    ``settings``: the game's Z and baseline (:func:`game_settings`), in the title."""
    players = list(dict.fromkeys(p for r in rows for p in r.players))
    columns = [f"relevance:{p}" for p in players] + ["cooperation"]
    titles = [f"relevance of {player_title(p)}" for p in players] + ["cooperation"]
    fig, axes = _bar_grid(rows, metrics, columns, titles, "Shapley value of {metric}")
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
    rows: Sequence[SummaryRow], metrics: Sequence[str], settings: str = ""
) -> Any:
    """Grid: rows = metrics, columns = each modality alone (V({sar}), V({opt}): the other
    modalities replaced by the baseline) and all modalities (V(all)); bars per model and
    subset, one y scale per metric."""
    players = list(dict.fromkeys(p for r in rows for p in r.players))
    columns = [f"V:{p}" for p in players if len(players) > 1] + ["V(all)"]
    titles = [f"{player_title(p)} only" for p in players if len(players) > 1]
    titles.append("all modalities")
    fig, axes = _bar_grid(rows, metrics, columns, titles, "{metric}")
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


def epochs_figure(histories: Sequence[TrainingRun], metric: str) -> Any:
    """Training loss, then per validation subset V(all) and relevance over epochs."""
    plt = _plt()
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
    cc = colors(len(models))
    for j, model in enumerate(models):
        runs = [h for h in histories if h.label == model]
        label = f"{model} ({len(runs)} run{'s' if len(runs) > 1 else ''})"
        e, m, s = _epoch_series(runs, None, metric, "loss")
        axd["loss"].plot(e, m, color=cc[j], label=label, marker="o", markersize=3)
        axd["loss"].fill_between(e, m - s, m + s, color=cc[j], alpha=0.2, linewidth=0)
        for subset in subsets:
            for q in quantities:
                e, m, s = _epoch_series(runs, subset, metric, q)
                if len(e) == 0:
                    continue
                ax = axd[f"{q}|{subset}"]
                ax.plot(e, m, color=cc[j], marker="o", markersize=3)
                ax.fill_between(e, m - s, m + s, color=cc[j], alpha=0.2, linewidth=0)
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
CLASS_FIGURE_METRICS = ("recall", "f1")


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


def per_class_figure(results: Sequence[ResultRun], metric: str = "recall") -> Any:
    """Each modality's relevance on each class's ``metric`` (``by.class``): one panel per model
    and test subset, horizontal bars per class and modality; error bars = std over runs, or a
    single run's bootstrap interval. Tick labels give each class's samples."""
    plt = _plt()
    groups = {
        k: runs
        for k, runs in group_runs(results).items()
        if all(has_by_class([r], metric) for r in runs)
    }
    players = list(dict.fromkeys(p for runs in groups.values() for p in runs[0].players))
    n_classes = max((len(runs[0].doc["by"]["class"]) for runs in groups.values()), default=1)
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.8 * ncols, (0.28 * n_classes * len(players) / 2 + 1.4) * nrows
                               + 0.8),
        squeeze=False, sharex=True, layout="constrained",
    )  # fmt: skip
    cc = colors(len(players))
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
                color=cc[j],
                capsize=2,
                label=f"relevance of {player_title(player)}",
                error_kw={"elinewidth": 0.8},
            )
        sizes = [runs[0].doc["by"]["class"][c].get("n_samples", "?") for c in classes]
        ax.set_yticks(y, [f"{c} ({n})" for c, n in zip(classes, sizes, strict=True)])
        ax.invert_yaxis()
        ax.axvline(0, color="0.3", linewidth=0.6)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"{label} · {subset}" + (f" ({len(runs)} runs)" if len(runs) > 1 else ""))
    for ax in axes.ravel()[len(groups) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"Shapley value of the class's {metric_title(metric)}")
    fig.suptitle(f"Modality relevance per class: {metric_title(metric)} "
                 f"({game_settings(results)}); class (samples)")  # fmt: skip
    _legend_below(fig, axes.ravel(), title="")
    return fig


def _bin_label(b: Sequence[float]) -> str:
    return f"{100 * b[0]:.0f}–{100 * b[1]:.0f}%"


def has_cloud_cover(results: Sequence[ResultRun]) -> bool:
    return any(r.doc.get("by", {}).get("cloud_cover") for r in results)


def game_settings(results: Sequence[ResultRun]) -> str:
    """``"Z = one, baseline input-zero"`` from the results' configs (``/``-joined if several)."""

    def values(name: str) -> str:
        seen = dict.fromkeys(str(r.doc.get("config", {}).get(name, "?")) for r in results)
        return " / ".join(seen) or "?"

    return f"Z = {values('z')}, baseline {values('baseline')}"


def decomposition_figure(rows: Sequence[SummaryRow], metric: str, settings: str = "") -> Any:
    """Stacked bars per (model, subset): V(none) + sum_i relevance_i = V(all) (efficiency).

    Segments start at 0 with V(none) (``V:none``), each modality's relevance stacked on the
    running total (a negative relevance points down); a black tick marks V(all)."""
    plt = _plt()
    sel = [r for r in rows if r.metric == metric]
    players = list(dict.fromkeys(p for r in sel for p in r.players))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(sel) + 1.5), 3.6), layout="constrained")
    cc = colors(len(players) + 1)
    x = np.arange(len(sel))
    bottom = np.array([r.values["V:none"].mean if "V:none" in r.values else 0.0 for r in sel])
    ax.bar(x, bottom, 0.6, color=cc[0], label="V(none)")
    for k, p in enumerate(players):
        h = np.array([r.values[f"relevance:{p}"].mean for r in sel])
        ax.bar(x, h, 0.6, bottom=bottom, color=cc[k + 1], label=f"relevance of {player_title(p)}")
        bottom = bottom + h
    ax.scatter(x, [r.values["V(all)"].mean for r in sel], marker="_", s=400, color="black",
               zorder=3, label="V(all)")  # fmt: skip
    ax.set_xticks(x, [f"{r.model}\n{r.subset}" for r in sel], rotation=20, ha="right")
    ax.axhline(0, color="0.3", linewidth=0.6)
    ax.set_ylabel(metric_title(metric))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    title = f"V(none) + relevances = V(all): {metric_title(metric)}"
    ax.set_title(f"{title}\n{settings}" if settings else title)
    return fig


def cloud_cover_figure(results: Sequence[ResultRun], metric: str) -> Any:
    """V(all) and each modality's relevance per cloud-cover bin; a line per model and subset."""
    plt = _plt()
    groups = {
        k: runs
        for k, runs in group_runs(results).items()
        if all(r.doc.get("by", {}).get("cloud_cover") for r in runs)
    }
    players = list(dict.fromkeys(p for runs in groups.values() for p in runs[0].players))
    quantities = ["V(all)", *players]
    fig, axes = plt.subplots(
        1, len(quantities), figsize=(4.0 * len(quantities), 3.4), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    cc = colors(len(groups))
    all_bins: dict[tuple[float, float], None] = {}
    for runs in groups.values():
        for b in runs[0].doc["by"]["cloud_cover"]:
            all_bins.setdefault(tuple(b["bin"]))
    bins = sorted(all_bins)
    dodge = 0.08 * (np.arange(len(groups)) - (len(groups) - 1) / 2)  # error bars side by side
    for j, ((label, subset), runs) in enumerate(groups.items()):
        full = runs[0].full
        for k, q in enumerate(quantities):
            # a bin without samples is NaN: matplotlib breaks the line there (never joined)
            xs = np.arange(len(bins)) + dodge[j]
            means = np.full(len(bins), np.nan)
            errs = np.zeros(len(bins))
            for i, b in enumerate(bins):
                vals = []
                for r in runs:
                    for entry in r.doc["by"]["cloud_cover"]:
                        if tuple(entry["bin"]) == b and metric in entry["metrics"]:
                            m = entry["metrics"][metric]
                            v = m["V"][full] if q == "V(all)" else m["relevance"][q]
                            if entry.get("n_samples", 1) > 0 and v is not None:
                                vals.append(v)
                if vals:
                    st = stat_over_runs(vals)
                    means[i] = st.mean
                    errs[i] = st.std if st.runs > 1 else 0.0
            axes[0, k].errorbar(
                xs, means, yerr=errs, color=cc[j], marker="o", markersize=4, capsize=3,
                label=f"{label} · {subset}",
            )  # fmt: skip
    # samples per bin under the tick labels when every model and subset has the same bins
    sizes = {
        tuple((tuple(e["bin"]), e["n_samples"]) for e in r.doc["by"]["cloud_cover"])
        for runs in groups.values()
        for r in runs
    }
    tick_labels = [_bin_label(b) for b in bins]
    if len(sizes) == 1:
        n_of = dict(next(iter(sizes)))
        tick_labels = [f"{t} ({n_of.get(b, 0)})" for t, b in zip(tick_labels, bins, strict=True)]
    for k, q in enumerate(quantities):
        ax = axes[0, k]
        ax.set_title(
            f"{metric_title(metric)} (all)" if q == "V(all)" else f"relevance of {player_title(q)}"
        )
        ax.set_xticks(range(len(bins)), tick_labels, rotation=45, ha="right")
        ax.set_xlabel(
            "cloud cover of the optical image (samples)" if len(sizes) == 1 else "cloud cover"
        )
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("value")
    axes[0, 1].set_ylabel("Shapley value")
    fig.suptitle(
        f"{metric_title(metric)} and modality relevance by cloud cover ({game_settings(results)})"
    )
    _legend_below(fig, axes.ravel(), title="model · test subset")
    return fig
