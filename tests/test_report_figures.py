"""Report figures of the per-class and per-sample analyses: the bars, boxes, curves and their
intervals are the numbers of the results and predictions files (read back from the artists)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import fake_results

from sareval.cli import cli
from sareval.report.collect import ResultRun, collect

CLASSES = ["Forest", "Water", "Urban"]


def with_classes(doc: dict[str, Any], rng: np.random.Generator, ci: bool) -> dict[str, Any]:
    """Add ``by.class`` with recall and F1 entries (and bootstrap intervals when ``ci``)."""
    classes = {}
    for name in CLASSES:
        metrics = {}
        for metric in ("recall", "f1"):
            rel = {"sar": float(rng.uniform(-0.2, 0.3)), "opt": float(rng.uniform(0, 0.5))}
            entry: dict[str, Any] = {"V": {"none": 0.0, "sar": 0.1, "opt": 0.2, "sar+opt": 0.4},
                                     "relevance": rel, "cooperation": 0.1}  # fmt: skip
            if ci:
                entry["ci"] = {"relevance": {p: [v - 0.05, v + 0.1] for p, v in rel.items()}}
            metrics[metric] = entry
        classes[name] = {"n_samples": 7, "metrics": metrics}
    doc.setdefault("by", {})["class"] = classes
    return doc


def bar_extents(ax: Any, label: str) -> tuple[list[float], list[tuple[float, float]]]:
    """Widths of the horizontal bars of ``label`` and their error-bar ends (lo, hi)."""
    for container in ax.containers:
        if container.get_label() == label:
            widths = [p.get_width() for p in container.patches]
            ends = []
            if container.errorbar is not None:
                for seg in container.errorbar.lines[2][0].get_segments():
                    ends.append((float(seg[0][0]), float(seg[1][0])))
            return widths, ends
    raise AssertionError(f"no bars labelled {label!r}")


def test_per_class_figure_shows_each_class_relevance_with_its_interval(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from sareval.report import figures as fg

    rng = np.random.default_rng(3)
    single = with_classes(fake_results(rng, "cloudy", 21), rng, ci=True)
    seeds = [with_classes(fake_results(rng, "cloudy", 21), rng, ci=False) for _ in range(3)]
    runs = [ResultRun("published", "cloudy", tmp_path / "p.json", single)]
    runs += [
        ResultRun("trained", "cloudy", tmp_path / f"s{i}.json", d) for i, d in enumerate(seeds)
    ]
    fig = fg.per_class_figure(runs, "recall")
    one, several = fig.axes[0], fig.axes[1]
    widths, ends = bar_extents(one, "relevance of optical")
    entries = [single["by"]["class"][c]["metrics"]["recall"] for c in CLASSES]
    assert widths == pytest.approx([e["relevance"]["opt"] for e in entries])
    expected = [tuple(e["ci"]["relevance"]["opt"]) for e in entries]
    assert np.allclose(ends, expected)
    widths, ends = bar_extents(several, "relevance of SAR")
    for c, w, (lo, hi) in zip(CLASSES, widths, ends, strict=True):
        values = [d["by"]["class"][c]["metrics"]["recall"]["relevance"]["sar"] for d in seeds]
        std = np.std(values, ddof=1)
        assert w == pytest.approx(np.mean(values))
        assert np.allclose((lo, hi), (np.mean(values) - std, np.mean(values) + std))
    assert "recall" in fig.get_suptitle() and "Z = one, baseline input-zero" in fig.get_suptitle()
    assert one.get_yticklabels()[0].get_text() == "Forest (7)"
    plt.close(fig)


def per_sample_section(rng: np.random.Generator) -> dict[str, Any]:
    levels = sorted(rng.uniform(-0.5, 0.8, size=(5, 2)).tolist())  # increasing per row
    q = np.sort(np.array(levels), axis=0)
    quantiles = {str(lv): {"sar": q[i, 0], "opt": q[i, 1]}
                 for i, lv in enumerate((0.05, 0.25, 0.5, 0.75, 0.95))}  # fmt: skip
    return {"prob_true": {"n_samples": 9, "mean": {"sar": q[2, 0] + 0.01, "opt": q[2, 1]},
                          "quantiles": quantiles}}  # fmt: skip


def test_per_sample_boxes_are_the_results_quantiles(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from sareval.report.per_sample_figures import per_sample_figure

    rng = np.random.default_rng(8)
    docs = [fake_results(rng, s, 9) for s in ("clear", "cloudy")]
    for d in docs:
        d["per_sample"] = per_sample_section(rng)
    runs = [ResultRun("m", d["provenance"]["subset"]["name"], tmp_path / "r.json", d) for d in docs]
    fig = per_sample_figure(runs)
    ax = fig.axes[1]  # optical: every quantile and the mean is a drawn y value of its box
    for i, d in enumerate(docs):
        section = d["per_sample"]["prob_true"]
        drawn = {round(float(y), 12) for line in ax.lines for y in line.get_ydata()
                 if abs(float(line.get_xdata()[0]) - (i + 1)) < 0.5}  # fmt: skip
        wanted = [q["opt"] for q in section["quantiles"].values()] + [section["mean"]["opt"]]
        assert {round(float(v), 12) for v in wanted} <= drawn
    assert "not SHAPE" in fig.get_suptitle()
    plt.close(fig)


def write_predictions(path: Path, scores: dict[str, np.ndarray], correct: np.ndarray,
                      subset: str = "cloudy", detector: bool = True) -> Path:  # fmt: skip
    """A predictions file as ``sareval shape --per-sample --save-predictions`` writes it (the
    project's writer): 2 players, 3 classes, random outputs; ``/detector`` and ``/correct``."""
    from sareval.evaluator.predictions import PredictionsWriter

    rng = np.random.default_rng(len(correct))
    n, names = len(correct), ["none", "sar", "opt", "sar+opt"]
    writer = PredictionsWriter(
        path, n=n, first_position=0, coalitions=names, n_classes=3, task="single-label",
        attrs={"players": ["sar", "opt"], "class_names": ["a", "b", "c"], "subset": subset,
               "model_sha256": "m" * 64, "store_content_digest": "d" * 64,
               "baseline": "input-zero", "empty": "baseline"},
    )  # fmt: skip
    outputs = rng.normal(size=(len(names), n, 3)).astype(np.float32)
    writer.write(slice(0, n), np.arange(n), [f"p{i}" for i in range(n)],
                 rng.integers(0, 3, n), outputs, outputs.argmax(-1))  # fmt: skip
    if detector:
        arrays = {f"detector/{name}": s for name, s in scores.items()}
        writer.write_arrays({**arrays, "correct": correct})
    writer.finish()
    return path


def test_report_draws_roc_curves_of_predictions_files(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    correct = rng.random(60) < 0.6
    scores = {"msp": rng.random(60) + 0.4 * ~correct, "sar_share": rng.random(60)}
    run = tmp_path / "runs" / "clear"
    run.mkdir(parents=True)
    write_predictions(run / "pred-cloudy.h5", scores, correct)
    (run / "shape-cloudy.json").write_text(json.dumps(fake_results(rng, "cloudy", 60)))
    found = collect([("clear", run)])
    assert [d.label for d in found.detections] == ["clear"]
    from sareval.report.per_sample_figures import roc_grid_figure

    fig = roc_grid_figure(found.detections, found.results)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for name, s in scores.items():
        assert f"{name} ({roc_auc_score(~correct, s):.3f})" in legend
    result = CliRunner().invoke(cli, ["report", f"clear={run}", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "detection_roc.png").exists()
    assert (tmp_path / "rep" / "detection_roc.svg").exists()


def test_report_refuses_bad_or_repeated_predictions_files(tmp_path: Path) -> None:
    correct = np.array([True, False, True])
    plain = write_predictions(tmp_path / "plain.h5", {}, correct, detector=False)
    good = write_predictions(tmp_path / "good.h5", {"msp": np.array([0.1, 0.9, 0.2])}, correct)
    nan = write_predictions(tmp_path / "nan.h5", {"msp": np.array([0.1, np.nan, 0.2])}, correct)
    for args, message in (
        ([str(plain)], "not a predictions file with per-sample detector scores"),
        ([str(nan)], "detector scores hold NaN"),
        ([str(good), f"again={good}"], "given twice"),
    ):
        result = CliRunner().invoke(cli, ["report", *args, "--out", str(tmp_path / "r")])
        assert result.exit_code == 1, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
