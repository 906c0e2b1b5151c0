"""Report figures as a reader sees them, on results of real small evaluations given long labels:
no two tick labels overlap (their drawn bounding boxes), intervals are drawn wherever the
evaluation bootstrapped, a colour means one thing in a whole report (a player the same colour
in every figure; players, models and detectors never share one), cloud-cover bins are points
with the samples per bin, the per-sample legend shows the mean's glyph as drawn, and ROC panels
of unlabelled files are titled by their files."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_hex
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.report import figures as fg
from sareval.report import per_sample_figures as psf
from sareval.report.collect import ResultRun, collect
from sareval.report.tables import summarize

LONG_MODELS = (
    "ResNet-50 fusion trained on clear optical images only (published checkpoint)",
    "ResNet-18 trained with cloudy optical images at probability 0.5, seed 0",
)
LONG_SUBSETS = {"clear": "clear_test_subset_of_all_seasons", "cloudy": "very_cloudy_optical_images"}
METRICS = ["oa", "f1_macro"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two models (long labels) on two subsets (long names), bootstrapped, with per-class,
    cloud-cover and per-sample sections; and their predictions files (unlabelled)."""
    assets = get_assets(tmp_path_factory)
    d = tmp_path_factory.mktemp("figures_layout")
    runs, preds = [], []
    for label, model in zip(LONG_MODELS, ("single-label", "multi-label"), strict=True):
        for subset in ("clear", "cloudy"):
            pred = d / f"pred-{model}-{subset}.h5"
            doc = evaluate_shape(
                assets.onnx[model], assets.store, subset, replicates=40, per_sample=True,
                by=["class", "cloud-cover=0,0.3,0.6,1"], save_predictions=pred, progress=False,
            )  # fmt: skip
            runs.append(ResultRun(label, LONG_SUBSETS[subset], d / f"{label}.json", doc))
            preds.append(pred)
    return {"runs": runs, "preds": preds, "dir": d}


def figures(runs: list[ResultRun]) -> dict[str, Any]:
    """Every results figure of a report on ``runs`` (as make_report draws them)."""
    rows = summarize(runs, METRICS)
    settings = fg.game_settings(runs)
    return {
        "relevance": fg.relevance_figure(rows, METRICS, settings),
        "performance": fg.performance_figure(rows, METRICS, settings),
        "decomposition": fg.decomposition_figure(rows, "oa", settings),
        "cloud_cover": fg.cloud_cover_figure(runs, "oa"),
        "per_class": fg.per_class_figure(runs, "recall"),
        "per_sample": psf.per_sample_figure(runs),
    }


@pytest.fixture(scope="module")
def drawn(evaluated: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    figs = figures(evaluated["runs"])
    figs["roc"] = psf.roc_grid_figure(collect([str(evaluated["dir"])]).detections)
    for fig in figs.values():
        fig.canvas.draw()
    yield figs
    for fig in figs.values():
        plt.close(fig)


def tick_boxes(fig: Any) -> list[tuple[str, Any]]:
    """(text, window bounding box) of every visible, non-empty tick label of ``fig``."""
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for t in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            if t.get_visible() and t.get_text().strip():
                out.append((t.get_text(), t.get_window_extent(renderer)))
    return out


def test_no_tick_labels_overlap(drawn: dict[str, Any]) -> None:
    for name, fig in drawn.items():
        boxes = tick_boxes(fig)
        assert boxes, name
        for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
            overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_w <= 0.5 or overlap_h <= 0.5, f"{name}: {ta!r} overlaps {tb!r}"
    # the long names are shown whole (wrapped onto lines, never cut)
    texts = {t.replace("\n", "") for t, _ in tick_boxes(drawn["relevance"])}
    assert {s.replace(" ", "") for s in LONG_SUBSETS.values()} <= {
        t.replace(" ", "") for t in texts
    }


def errorbar_ends(container: Any) -> list[tuple[float, float]]:
    """(lo, hi) of each vertical error bar of an ErrorbarContainer (a bar's or errorbar's)."""
    segments = container.lines[2][0].get_segments()  # none drawn for a missing point (NaN)
    return [(float(s[0][1]), float(s[1][1])) for s in segments if len(s) == 2]


def test_intervals_are_drawn_where_bootstrap_ran(
    evaluated: dict[str, Any], drawn: dict[str, Any]
) -> None:
    runs = evaluated["runs"]
    # relevance: each model's bars carry the bootstrap interval of its results, per subset
    ax = drawn["relevance"].axes[0]  # oa, relevance of SAR
    for container in ax.containers:
        model = container.get_label()
        if model not in LONG_MODELS:
            continue
        wanted = [tuple(r.doc["metrics"]["oa"]["ci"]["relevance"]["sar"])
                  for r in runs if r.label == model]  # fmt: skip
        assert container.errorbar is not None, model
        assert np.allclose(errorbar_ends(container.errorbar), wanted)
    # decomposition: V(all) with its interval
    ax = drawn["decomposition"].axes[0]
    bars = [c for c in ax.containers if c.get_label() == "V(all) interval"]
    wanted = [tuple(r.doc["metrics"]["oa"]["ci"]["V"][r.full]) for r in runs]
    assert len(bars) == 1 and np.allclose(errorbar_ends(bars[0]), wanted)
    # cloud cover: each group's points carry their bins' intervals; empty bins have no point
    ax = drawn["cloud_cover"].axes[1]  # relevance of SAR
    groups = [c for c in ax.containers if " · " in str(c.get_label())]
    assert len(groups) == len(runs)
    has_unknown = any(r.doc["by"].get("cloud_cover_unknown", {}).get("n_samples") for r in runs)
    for container, r in zip(groups, runs, strict=True):
        bins = list(r.doc["by"]["cloud_cover"])  # then the samples of unknown cover, if any
        if has_unknown:
            bins.append(r.doc["by"].get("cloud_cover_unknown") or {"n_samples": 0})
        got = iter(errorbar_ends(container))
        ys = container.lines[0].get_ydata()
        for b, y in zip(bins, ys, strict=True):
            if not b["n_samples"]:
                assert np.isnan(y)
                continue
            entry = b["metrics"]["oa"]
            assert y == pytest.approx(entry["relevance"]["sar"])
            assert next(got) == pytest.approx(tuple(entry["ci"]["relevance"]["sar"]))
    # per class: horizontal error bars = the classes' intervals
    ax = drawn["per_class"].axes[0]
    sar = next(c for c in ax.containers if c.get_label() == "relevance of SAR")
    classes = runs[0].doc["by"]["class"]
    wanted = [tuple(e["metrics"]["recall"]["ci"]["relevance"]["sar"]) for e in classes.values()]
    segments = sar.errorbar.lines[2][0].get_segments()
    assert np.allclose([(s[0][0], s[1][0]) for s in segments], wanted)


def test_cloud_cover_bins_are_points_with_their_sample_counts(
    evaluated: dict[str, Any], drawn: dict[str, Any]
) -> None:
    fig = drawn["cloud_cover"]
    for ax in fig.axes[:-1]:
        for container in ax.containers:  # categories: points, never joined by lines
            assert container.lines[0].get_linestyle() == "None"
            assert container.lines[0].get_marker() in fg.SUBSET_MARKERS
    counts = fig.axes[-1]
    assert counts.get_title() == "samples per bin"
    heights = [[p.get_height() for p in c.patches] for c in counts.containers]
    runs = evaluated["runs"]
    wanted = [[b["n_samples"] for b in r.doc["by"]["cloud_cover"]] for r in runs]
    unknown = [r.doc["by"].get("cloud_cover_unknown", {}).get("n_samples", 0) for r in runs]
    assert any(unknown)  # half the store has no cloud cover: its own category, last
    assert heights == [[*w, u] for w, u in zip(wanted, unknown, strict=True)]
    assert counts.get_xticklabels()[-1].get_text().startswith("unknown")
    assert "bootstrap interval" in fig.get_suptitle()


def colours_by_label(fig: Any) -> dict[str, set[str]]:
    """Legend-like label -> the colours its artists are drawn in, over every axes."""
    out: dict[str, set[str]] = {}
    for ax in fig.axes:
        for c in ax.containers:
            label = str(c.get_label())
            if label.startswith("_"):
                continue
            if hasattr(c, "patches"):
                out.setdefault(label, set()).update(to_hex(p.get_facecolor()) for p in c.patches)
            elif c.lines[0] is not None:  # an errorbar's points
                out.setdefault(label.split(" · ")[0], set()).add(to_hex(c.lines[0].get_color()))
        for line in ax.get_lines():
            label = str(line.get_label())
            if not label.startswith("_") and line.get_visible():
                out.setdefault(label.split(" (")[0], set()).add(to_hex(line.get_color()))
    return out


def test_a_colour_means_one_thing_in_a_report(
    evaluated: dict[str, Any], drawn: dict[str, Any]
) -> None:
    players: dict[str, set[str]] = {}
    models: dict[str, set[str]] = {}
    for name in ("relevance", "performance", "cloud_cover", "per_class", "decomposition"):
        for label, cc in colours_by_label(drawn[name]).items():
            if label.startswith("relevance of "):
                players.setdefault(label, set()).update(cc)
            elif label in LONG_MODELS:
                models.setdefault(label, set()).update(cc)
    boxes = drawn["per_sample"].axes[0].patches  # one box per results file, in order
    for r, patch in zip(evaluated["runs"], boxes, strict=True):
        models[r.label].add(to_hex(patch.get_facecolor()[:3]))
    detectors = colours_by_label(drawn["roc"])
    detector_colours = {c for label, cc in detectors.items() for c in cc if label != "_"}
    detector_colours -= {to_hex("0.6")}  # the chance diagonal
    assert set(players) == {"relevance of SAR", "relevance of optical"}
    assert set(models) == set(LONG_MODELS)
    for what in (players, models):
        for label, cc in what.items():
            assert len(cc) == 1, f"{label} is drawn in {cc}"
    player_colours = {c for cc in players.values() for c in cc}
    model_colours = {c for cc in models.values() for c in cc}
    assert len(player_colours) == 2 and len(model_colours) == 2
    assert not player_colours & model_colours
    assert not detector_colours & (player_colours | model_colours)
    assert players["relevance of SAR"] == {fg.PLAYER_COLORS["sar"]}


def test_per_sample_legend_shows_the_mean_as_drawn(drawn: dict[str, Any]) -> None:
    fig = drawn["per_sample"]
    means = [line for line in fig.axes[0].get_lines()  # markers drawn (no fliers: empty)
             if line.get_marker() not in ("None", "") and len(line.get_xdata())]  # fmt: skip
    assert means and all(line.get_marker() == "o" for line in means)
    legend = fig.legends[0]
    handle = next(h for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True)
                  if "mean" in t.get_text())  # fmt: skip
    for line in means:
        assert handle.get_marker() == line.get_marker()
        assert to_hex(handle.get_markerfacecolor()) == to_hex(line.get_markerfacecolor())
    assert "white dot mean" in fig.get_suptitle()


def test_roc_panels_of_unlabelled_files_are_titled_by_file(
    evaluated: dict[str, Any], drawn: dict[str, Any]
) -> None:
    titles = [ax.get_title().replace("\n", " ") for ax in drawn["roc"].axes]
    folder = evaluated["dir"].name
    for pred in evaluated["preds"]:
        assert sum(pred.name in t for t in titles) == 1, (pred.name, titles)
    assert all(t.startswith(f"{folder} (") for t in titles)
    assert not any("#" in t for t in titles)


@pytest.mark.slow
def test_make_report_writes_the_figures(evaluated: dict[str, Any], tmp_path: Path) -> None:
    """The report command's figures from results files written by the library."""
    import json

    from sareval.report import make_report

    inputs = []
    for i, r in enumerate(evaluated["runs"][:2]):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(r.doc))
        inputs.append((r.label, path))
    report = make_report(inputs, tmp_path / "rep", metrics=["oa"])
    names = {p.name for p in report.figures}
    for stem in ("relevance", "decomposition_oa", "cloud_cover_oa", "per_class_recall",
                 "per_sample_prob_true"):  # fmt: skip
        assert f"{stem}.png" in names and f"{stem}.svg" in names
