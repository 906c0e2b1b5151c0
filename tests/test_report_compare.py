"""Comparisons from --save-predictions files: equal to the analysis functions on the arrays,
signs and refusals of files on different samples, stores or settings; the report command."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.analysis.compare import hierarchical_shape_difference, paired_shape_difference
from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.report.compare import compare_predictions, read_predictions

TASK = "single-label"


@pytest.fixture(scope="module")
def pred(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: the model's predictions file; B: a copy whose SAR-only coalition is always right
    (a model that uses SAR better); C: a copy with the SAR-only coalition always class 0."""
    assets = get_assets(tmp_path_factory)
    d = tmp_path_factory.mktemp("pred")
    a = d / "a.h5"
    evaluate_shape(assets.onnx[TASK], assets.store, "clear", save_predictions=a, progress=False)
    out = {"a": a, "store": assets.store, "model": assets.onnx[TASK], "dir": d}
    for name, change in (("b", "label"), ("c", "zero")):
        path = d / f"{name}.h5"
        shutil.copyfile(a, path)
        with h5py.File(path, "r+") as f:
            sar = 1  # coalition order: none, sar, opt, sar+opt
            f["decisions"][sar] = f["labels"][()] if change == "label" else 0
        out[name] = path
    return out


def test_paired_comparison_equals_the_analysis_on_the_arrays(pred: dict[str, Path]) -> None:
    a, b = read_predictions(pred["a"]), read_predictions(pred["b"])
    assert a.players == ("sar", "opt")
    got = compare_predictions([a.path], [b.path], a="A", b="B", metrics=["oa"], replicates=99)
    ref = paired_shape_difference(
        a.labels, a.predictions(), b.predictions(), a.players, TASK, a.n_classes,
        metrics=["oa"], n_boot=99,
    )  # fmt: skip
    assert got.differences == ref
    sar = got.relevance("oa", "sar")
    assert sar.estimate > 0 and sar.lo <= sar.estimate <= sar.hi  # B's SAR coalition is better
    # exchanging the setups negates the estimate; the same file twice gives exactly 0, p = 1
    back = compare_predictions([pred["b"]], [pred["a"]], metrics=["oa"], replicates=99)
    assert back.relevance("oa", "sar").estimate == -sar.estimate
    same = compare_predictions([pred["a"]], [pred["a"]], metrics=["oa"], replicates=99)
    assert same.relevance("oa", "sar").estimate == 0 and same.relevance("oa", "sar").p_value == 1
    line = next(x for x in got.lines() if x.startswith("SAR relevance (oa)"))
    assert line.startswith(f"SAR relevance (oa), B minus A, clear: {sar.estimate:+.2f} [")
    # n_boot: the deprecated name of replicates, for one release
    with pytest.warns(DeprecationWarning, match=r"n_boot=\.\.\.\) is deprecated; use replicates"):
        old = compare_predictions([a], [b], a="A", b="B", metrics=["oa"], n_boot=99)
    assert old.differences == got.differences
    with pytest.raises(SarevalError, match="replicates or its old name n_boot, not both"):
        compare_predictions([a], [b], metrics=["oa"], replicates=10, n_boot=99)


def test_several_runs_use_the_hierarchical_bootstrap(pred: dict[str, Path]) -> None:
    runs_a = [read_predictions(pred["a"]), read_predictions(pred["c"])]
    runs_b = [read_predictions(pred["b"])]
    got = compare_predictions(runs_a, runs_b, metrics=["oa"], replicates=50)
    first = runs_a[0]
    ref = hierarchical_shape_difference(
        first.labels, [r.predictions() for r in runs_a], [r.predictions() for r in runs_b],
        first.players, TASK, first.n_classes, metrics=["oa"], n_boot=50,
    )  # fmt: skip
    assert got.differences == ref and (got.runs_a, got.runs_b) == (2, 1)


def test_refuses_predictions_on_other_samples_or_stores(pred: dict[str, Path]) -> None:
    d = pred["dir"]
    other_store = d / "digest.h5"
    shutil.copyfile(pred["a"], other_store)
    with h5py.File(other_store, "r+") as f:
        f.attrs["store_content_digest"] = "0" * 64
    with pytest.raises(SarevalError, match=r"digest.h5 and .*a.h5 differ in store_content_digest"):
        compare_predictions([pred["a"]], [other_store])
    reordered = d / "ids.h5"
    shutil.copyfile(pred["a"], reordered)
    with h5py.File(reordered, "r+") as f:
        ids = f["ids"][()]
        f["ids"][0], f["ids"][1] = ids[1], ids[0]
    with pytest.raises(SarevalError, match=r"different samples \(ids: sample 0 is"):
        compare_predictions([pred["a"]], [reordered])
    subset = d / "subset.h5"
    evaluate_shape(pred["model"], pred["store"], "cloudy", save_predictions=subset, progress=False)
    with pytest.raises(SarevalError, match="differ in subset: 'cloudy' vs 'clear'"):
        compare_predictions([pred["a"]], [subset])


def test_report_command_writes_the_comparison(pred: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r"
    res = CliRunner().invoke(
        cli,
        ["report", "--compare", f"clear={pred['a']}", f"cloudy={pred['b']},{pred['c']}",
         "--metric", "oa", "--bootstrap", "50", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "cloudy minus clear on clear" in res.output and "runs: 2 vs 1" in res.output
    assert "SAR relevance (oa), cloudy minus clear, clear: +" in res.output
    md = (out / "comparisons.md").read_text()
    assert "SAR relevance (oa)" in md
    csv_lines = (out / "comparisons.csv").read_text().splitlines()
    assert csv_lines[0].startswith("a,b,subset,runs_a,runs_b,n_samples,metric,quantity,key")
    assert len(csv_lines) == 1 + 4 + 2 + 1  # V of 4 coalitions, 2 relevances, cooperation
