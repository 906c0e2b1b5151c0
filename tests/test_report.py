"""`sareval report`: tables equal mean/std computed independently; figures are valid PNG/SVG."""

from __future__ import annotations

import csv
import json
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from sareval.cli import cli

PLAYERS = ["sar", "opt"]
METRICS = ["oa", "aa", "f1_macro"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_metric(rng: np.random.Generator, bootstrap: bool = False) -> dict[str, Any]:
    """A metric block in the results layout with a consistent 2-player game."""
    v = {"none": rng.uniform(0.05, 0.15), "sar": rng.uniform(0.3, 0.5)}
    v["opt"] = rng.uniform(0.5, 0.7)
    v["sar+opt"] = rng.uniform(0.7, 0.9)
    rel_sar = (v["sar+opt"] - v["opt"] + v["sar"] - v["none"]) / 2
    rel_opt = (v["sar+opt"] - v["sar"] + v["opt"] - v["none"]) / 2
    block: dict[str, Any] = {
        "V": v,
        "relevance": {"sar": rel_sar, "opt": rel_opt},
        "cooperation": v["sar+opt"] - v["sar"] - v["opt"] + v["none"],
    }
    if bootstrap:
        block["ci"] = {
            "V": {k: [x - 0.02, x + 0.03] for k, x in v.items()},
            "relevance": {
                "sar": [rel_sar - 0.01, rel_sar + 0.01],
                "opt": [rel_opt - 0.02, rel_opt],
            },
            "cooperation": [block["cooperation"] - 0.05, block["cooperation"] + 0.05],
        }
    return block


def fake_results(
    rng: np.random.Generator, subset: str, n: int, by_cloud: bool = False, bootstrap: bool = False
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "sareval-results",
        "format_version": 1,
        "config": {"baseline": "input-zero", "z": "one"},
        "provenance": {"subset": {"name": subset, "size": n}},
        "task": "single-label",
        "players": PLAYERS,
        "coalitions": ["none", "sar", "opt", "sar+opt"],
        "n_samples": n,
        "metrics": {m: fake_metric(rng, bootstrap) for m in METRICS},
    }
    if by_cloud:
        doc["by"] = {
            "cloud_cover": [
                {
                    "bin": [a / 10, (a + 1) / 10],
                    "n_samples": 5,
                    "metrics": {m: fake_metric(rng) for m in METRICS},
                }
                for a in range(6, 10)
            ]
        }
    return doc


def fake_history(rng: np.random.Generator, epochs: int = 3) -> str:
    lines = []
    for e in range(1, epochs + 1):
        val = {
            s: {
                "n_samples": 10,
                "players": PLAYERS,
                "metrics": {m: fake_metric(rng) for m in METRICS},
            }
            for s in ("clear", "cloudy")
        }
        lines.append(json.dumps({"epoch": e, "train_loss": 2.0 / e, "val": val}))
    return "\n".join(lines) + "\n"


@pytest.fixture
def results_tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    for model in ("clear", "cloudy"):
        for seed in range(3):
            run = root / model / f"seed-{seed}"
            run.mkdir(parents=True)
            for subset in ("clear", "cloudy"):
                doc = fake_results(rng, subset, 40, by_cloud=subset == "cloudy")
                (run / f"shape-{subset}.json").write_text(json.dumps(doc))
            (run / "metrics.jsonl").write_text(fake_history(rng))
    single = root / "published.json"
    single.write_text(json.dumps(fake_results(rng, "very_cloudy", 17, bootstrap=True)))
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_report_tables_equal_independent_mean_and_std(results_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = [
        "report",
        f"clear={results_tree / 'clear'}",
        f"cloudy={results_tree / 'cloudy'}",
        f"published={results_tree / 'published.json'}",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = read_csv(out / "summary.csv")
    # independent reference: the values straight from the JSON files, statistics module
    for model in ("clear", "cloudy"):
        for subset in ("clear", "cloudy"):
            docs = [
                json.loads(
                    (results_tree / model / f"seed-{s}" / f"shape-{subset}.json").read_text()
                )
                for s in range(3)
            ]
            for metric in METRICS:
                expect = {
                    "V(all)": [d["metrics"][metric]["V"]["sar+opt"] for d in docs],
                    "relevance:sar": [d["metrics"][metric]["relevance"]["sar"] for d in docs],
                    "relevance:opt": [d["metrics"][metric]["relevance"]["opt"] for d in docs],
                    "cooperation": [d["metrics"][metric]["cooperation"] for d in docs],
                    "V:none": [d["metrics"][metric]["V"]["none"] for d in docs],
                }
                for quantity, values in expect.items():
                    (row,) = [
                        r for r in rows
                        if (r["model"], r["subset"], r["metric"], r["quantity"])
                        == (model, subset, metric, quantity)
                    ]  # fmt: skip
                    assert int(row["runs"]) == 3
                    assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
                    assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
                    assert row["ci_lo"] == ""
    # a single run with bootstrap intervals reports them
    pub = json.loads((results_tree / "published.json").read_text())
    (row,) = [
        r for r in rows
        if (r["model"], r["metric"], r["quantity"]) == ("published", "oa", "relevance:opt")
    ]  # fmt: skip
    assert row["runs"] == "1" and row["std"] == ""
    assert float(row["ci_lo"]) == pytest.approx(pub["metrics"]["oa"]["ci"]["relevance"]["opt"][0])
    md = (out / "summary.md").read_text()
    assert "### oa" in md and "| published | very_cloudy | 1 | 17 |" in md
    d0 = json.loads((results_tree / "clear/seed-0/shape-clear.json").read_text())
    vals = [
        json.loads((results_tree / f"clear/seed-{s}/shape-clear.json").read_text())["metrics"][
            "aa"
        ]["relevance"]["sar"]
        for s in range(3)
    ]
    assert f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" in md
    assert d0["players"] == PLAYERS


def test_report_figures_are_valid_png_and_svg(results_tree: Path, tmp_path: Path) -> None:
    from sareval.report import make_report

    out = tmp_path / "report"
    report = make_report(
        [("clear", results_tree / "clear"), ("cloudy", results_tree / "cloudy")],
        out,
        metrics=["oa", "f1_macro"],
    )
    names = {p.name for p in report.figures}
    for stem in ("relevance", "performance", "cloud_cover_oa", "epochs_oa", "decomposition_oa"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, names
    for p in report.figures:
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data.startswith(PNG_MAGIC)
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            assert 300 < width < 5000 and 200 < height < 5000
        else:
            root = ET.fromstring(data)
            assert root.tag.endswith("svg")
    svg = (out / "relevance.svg").read_text()
    assert "relevance of SAR" in svg and "cloudy" in svg
    assert report.metrics == ["oa", "f1_macro"]
    assert len(report.collection.histories) == 6


def test_report_refuses_bad_input(results_tree: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    res = CliRunner().invoke(cli, ["report", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert "not a sareval results file" in res.output
    res = CliRunner().invoke(
        cli,
        ["report", str(results_tree / "clear"), "--metric", "nope", "--out", str(tmp_path / "r")],
    )
    assert res.exit_code == 1 and "--metric nope" in res.output
    out = tmp_path / "exists"
    out.mkdir()
    (out / "x").write_text("x")
    res = CliRunner().invoke(cli, ["report", str(results_tree / "clear"), "--out", str(out)])
    assert res.exit_code == 1 and "output exists" in res.output


def test_default_labels_tell_training_setups_apart(tmp_path: Path) -> None:
    from sareval.report.collect import collect

    rng = np.random.default_rng(1)
    for setup, p in (("a", 0.0), ("b", 0.8)):
        doc = fake_results(rng, "cloudy", 10)
        card = {"name": "study-resnet18 resnet18", "provenance": {"training": {"cloudy_prob": p}}}
        doc["provenance"]["model"] = {"path": "model.onnx", "card": card}
        (tmp_path / f"{setup}.json").write_text(json.dumps(doc))
    (tmp_path / "run" / "seed-3").mkdir(parents=True)
    (tmp_path / "run" / "seed-3" / "metrics.jsonl").write_text(fake_history(rng, 2))
    found = collect([str(tmp_path)])
    assert sorted(r.label for r in found.results) == [
        "study-resnet18 resnet18 (cloudy-prob 0)",
        "study-resnet18 resnet18 (cloudy-prob 0.8)",
    ]
    assert [h.label for h in found.histories] == ["run"]
    assert len(found.histories[0].epochs) == 2


def test_null_values_and_perceptual_results(tmp_path: Path) -> None:
    from sareval.report import make_report

    rng = np.random.default_rng(2)
    shape = fake_results(rng, "clear", 10)
    perceptual = fake_results(rng, "clear", 10)
    perceptual["method"] = "perceptual"
    for m in perceptual["metrics"].values():
        m["cooperation"] = None  # undefined for perceptual scores (JSON null)
    shape["metrics"]["oa"]["relevance"]["opt"] = None  # e.g. Z = V(M) = 0
    (tmp_path / "a.json").write_text(json.dumps(shape))
    (tmp_path / "b.json").write_text(json.dumps(perceptual))
    report = make_report(
        [("m", tmp_path / "a.json"), ("m", tmp_path / "b.json")], tmp_path / "r", metrics=["oa"]
    )
    assert [r.model for r in report.rows] == ["m", "m [perceptual]"]  # not averaged together
    assert report.rows[0].runs == 1 and report.rows[1].runs == 1
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "| m | clear | 1 | 10 |" in md and "n/a" in md
    assert (tmp_path / "r" / "relevance.png").read_bytes().startswith(PNG_MAGIC)


def _stamped(rng: np.random.Generator, subset: str, created: str, digest: str = "d1") -> dict:
    doc = fake_results(rng, subset, 10)
    doc["provenance"].update(
        created=created,
        model={"path": "m.onnx", "sha256": "ab" * 32},
        store={"path": "s.h5", "content_digest": digest},
        shard=None,
    )
    return doc


def test_report_refuses_a_result_counted_twice(tmp_path: Path) -> None:
    from sareval.errors import SarevalError
    from sareval.report.collect import collect

    rng = np.random.default_rng(3)
    doc = _stamped(rng, "clear", "2026-01-01T00:00:00")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "r.json").write_text(json.dumps(doc))
    (tmp_path / "copy.json").write_text(json.dumps(doc))  # a copy under another name
    with pytest.raises(SarevalError, match=r"copy.json: the same result as .*r.json"):
        collect([("m", tmp_path / "a"), ("m", tmp_path / "copy.json")])
    with pytest.raises(SarevalError, match="the same result as"):  # one file reached twice
        collect([str(tmp_path / "a"), str(tmp_path / "a" / "r.json")])
    # the same shard given twice is a duplicate; two different shards are not
    for i in (0, 1):
        shard = dict(doc, provenance={**doc["provenance"], "shard": {"index": i, "count": 2}})
        (tmp_path / f"s{i}.json").write_text(json.dumps(shard))
    assert len(collect([str(tmp_path / "s0.json"), str(tmp_path / "s1.json")]).results) == 2
    with pytest.raises(SarevalError, match="the same result as"):
        collect([str(tmp_path / "s0.json"), ("x", tmp_path / "s0.json")])
    # one model and store evaluated on two subsets in the same second: two results
    other = _stamped(rng, "cloudy", "2026-01-01T00:00:00")
    (tmp_path / "c.json").write_text(json.dumps(other))
    assert len(collect([str(tmp_path / "a" / "r.json"), str(tmp_path / "c.json")]).results) == 2


def test_report_never_averages_different_settings_or_stores(tmp_path: Path) -> None:
    from sareval.errors import SarevalError
    from sareval.report import make_report

    rng = np.random.default_rng(4)
    a = _stamped(rng, "clear", "t1")
    b = _stamped(rng, "clear", "t2")
    b["config"] = {"baseline": "raw-zero", "z": "full"}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    report = make_report(
        [("m", tmp_path / "a.json"), ("m", tmp_path / "b.json")], tmp_path / "r", metrics=["oa"]
    )
    # two groups of one run each, each labelled with its settings
    assert [(r.model, r.runs) for r in report.rows] == [
        ("m [baseline=input-zero, z=one]", 1),
        ("m [baseline=raw-zero, z=full]", 1),
    ]
    # the same label and subset on another store's content: refused, both files named
    c = _stamped(rng, "clear", "t3", digest="d2")
    (tmp_path / "c.json").write_text(json.dumps(c))
    with pytest.raises(
        SarevalError, match=r"c.json and .*a.json: .* store \(content_digest\): d2 vs d1"
    ):
        make_report([("m", tmp_path / "a.json"), ("m", tmp_path / "c.json")], tmp_path / "r2")


def test_decomposition_and_cloud_cover_figures(tmp_path: Path) -> None:
    """Stacked bars reach V(all) (efficiency); a bin without samples is a gap, not a joined line;
    titles name the metric, Z and the baseline."""
    import matplotlib.pyplot as plt

    from sareval.report import figures as fg
    from sareval.report.collect import ResultRun
    from sareval.report.tables import summarize

    rng = np.random.default_rng(5)
    doc = fake_results(rng, "cloudy", 20, by_cloud=True)
    for m in doc["metrics"].values():  # make the game efficient: V(none) + sum rel = V(all)
        m["V"]["sar+opt"] = m["V"]["none"] + m["relevance"]["sar"] + m["relevance"]["opt"]
    doc["by"]["cloud_cover"][1]["n_samples"] = 0  # the 70-80 % bin is empty
    runs = [ResultRun("m", "cloudy", tmp_path / "r.json", doc)]
    rows = summarize(runs, ["oa"])
    settings = fg.game_settings(runs)
    assert settings == "Z = one, baseline input-zero"
    fig = fg.decomposition_figure(rows, "oa", settings)
    ax = fig.axes[0]
    tops = [p.get_y() + p.get_height() for p in ax.patches]  # V(none), +sar, +opt
    assert tops[-1] == pytest.approx(doc["metrics"]["oa"]["V"]["sar+opt"])
    assert "overall accuracy" in ax.get_title() and settings in ax.get_title()
    plt.close(fig)
    fig = fg.cloud_cover_figure(runs, "oa")
    line = fig.axes[0].get_lines()[0]
    y = np.asarray(line.get_ydata(), dtype=float)
    assert len(y) == 4 and np.isnan(y[1]) and np.isfinite(y[[0, 2, 3]]).all()
    assert settings in fig.get_suptitle()
    assert "(0)" in fig.axes[0].get_xticklabels()[1].get_text()  # n per bin under the ticks
    plt.close(fig)


def test_runs_csv_names_model_store_subset_and_settings(tmp_path: Path) -> None:
    from sareval.report import make_report

    rng = np.random.default_rng(6)
    docs = [_stamped(rng, "clear", "t1"), _stamped(rng, "cloudy", "t2")]
    for i, doc in enumerate(docs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(doc))
    make_report([("m", tmp_path / 'r0.json'), ("m", tmp_path / 'r1.json')], tmp_path / "rep",
                metrics=["oa"])  # fmt: skip
    with open(tmp_path / "rep" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["subset"], r["created"]) for r in rows] == [
        ("m", "clear", "t1"), ("m", "cloudy", "t2")
    ]  # fmt: skip
    for r, doc in zip(rows, docs, strict=True):
        assert r["model_sha256"] == "ab" * 32 and r["store_content_digest"] == "d1"
        assert (r["baseline"], r["z"], r["players"]) == ("input-zero", "one", "sar;opt")
        assert float(r["oa:V(all)"]) == doc["metrics"]["oa"]["V"]["sar+opt"]
        assert float(r["oa:relevance:sar"]) == doc["metrics"]["oa"]["relevance"]["sar"]
