"""Invalid inputs of ``merge`` and ``report --compare`` are refused with one line naming the file
or argument: embedded states holding complex or NaN arrays even with a recomputed sha256;
comparisons with the same or an empty label, one file given twice as two runs, predictions
files with NaN outputs or a dataset removed."""

from __future__ import annotations

import base64
import copy
import io
import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.cli import cli
from sareval.commands.parsing import parse_setup
from sareval.errors import SarevalError
from sareval.evaluator.embedded import encode_arrays
from sareval.evaluator.merge import merge_documents
from sareval.evaluator.results import to_json_value, validate
from sareval.report import make_report
from sareval.report.compare import Setup, compare_predictions, read_predictions

SOURCES = ["p0", "p1", "p2"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return get_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def shards(assets: Any) -> list[dict[str, Any]]:
    """Three shards of a multi-label run carrying both embedded states (mAP scores and
    per-sample values)."""
    kw: dict[str, Any] = dict(per_sample=True, by=["cloud-cover=0,0.5,1"], progress=False)
    model = assets.onnx["multi-label"]
    return [
        to_json_value(evaluate_shape(model, assets.store, "cloudy", shard=(i, 3), **kw))
        for i in range(3)
    ]


def arrays_of(section: dict[str, Any]) -> dict[str, np.ndarray]:
    raw = base64.b64decode(section["data"])
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def tampered(doc: dict[str, Any], section: str, name: str, change: Any) -> dict[str, Any]:
    """``doc`` with array ``name`` of ``section`` replaced by ``change(array)``, re-encoded with
    a recomputed sha256 (so only the content can tell it apart)."""
    out = copy.deepcopy(doc)
    arrays = arrays_of(out[section])
    arrays[name] = change(arrays[name])
    out[section] = encode_arrays(arrays, out[section]["n"])
    assert out[section]["sha256"] != doc[section]["sha256"]
    return out


def as_complex(a: np.ndarray) -> np.ndarray:
    return a.astype(np.complex64) + 1j


def all_nan(a: np.ndarray) -> np.ndarray:
    return np.full(a.shape, np.nan, a.dtype)


@pytest.mark.parametrize(
    ("section", "name", "change", "problem"),
    [
        ("scores", "scores", as_complex, "array 'scores' has dtype complex64"),
        ("scores", "scores", all_nan, "array 'scores' holds only NaN"),
        ("scores", "empty", all_nan, "array 'empty' holds only NaN"),
        ("per_sample_state", "value.prob_true", as_complex, "'value.prob_true' has dtype complex"),
        ("per_sample_state", "detector.msp", all_nan, "array 'detector.msp' holds only NaN"),
        ("per_sample_state", "cover", lambda a: np.full(a.shape, np.inf), "'cover' holds infinity"),
    ],
)
def test_merge_refuses_invalid_embedded_arrays(
    shards: list[dict[str, Any]], section: str, name: str, change: Any, problem: str
) -> None:
    bad = tampered(shards[1], section, name, change)
    with pytest.raises(SarevalError) as e:
        merge_documents([shards[0], bad, shards[2]], SOURCES)
    message = str(e.value)
    assert message.startswith(f"p1: unreadable {section!r} section (") and problem in message
    assert "\n" not in message


def test_merge_command_refuses_them_in_one_line(
    shards: list[dict[str, Any]], tmp_path: Path
) -> None:
    import json

    paths = []
    for i, doc in enumerate(shards):
        if i == 2:
            doc = tampered(doc, "scores", "scores", as_complex)
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "m.json"
    result = CliRunner().invoke(cli, ["merge", *map(str, paths), "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {paths[2]}: unreadable 'scores'")
    assert "complex64" in lines[0] and not out.exists()


def test_merge_accepts_an_unknown_cloud_cover(shards: list[dict[str, Any]]) -> None:
    """NaN cover is what "unknown" means: a state whose cover is all NaN merges, and the
    per-sample sections leave those samples out of the cloud-cover bins."""
    reference = merge_documents(shards, SOURCES)
    unknown = tampered(shards[1], "per_sample_state", "cover", all_nan)
    merged = merge_documents([shards[0], unknown, shards[2]], SOURCES)
    validate(merged)
    assert merged["metrics"] == reference["metrics"]  # counts and scores: untouched
    assert merged["per_sample"] != reference["per_sample"]  # the binned samples changed


# --- report --compare ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pred(assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("compare_validation")
    path = d / "a.h5"
    model = assets.onnx["single-label"]
    evaluate_shape(model, assets.store, "clear", save_predictions=path, progress=False)
    return path


def changed_copy(src: Path, dst: Path, change: Any) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        change(f)
    return dst


def set_nan(f: h5py.File, coalition: int, sample: int) -> None:
    out = f["outputs"][()]
    out[coalition, sample, 0] = np.nan
    f["outputs"][...] = out


def test_compare_refuses_bad_predictions_files(pred: Path, tmp_path: Path) -> None:
    read_predictions(pred)  # the original is valid
    cases = [
        (lambda f: set_nan(f, 2, 3), "/outputs of coalition opt hold 1 NaN or infinite values"),
        (lambda f: set_nan(f, 0, 0), "/outputs of coalition none hold 1 NaN"),
        (lambda f: f.__delitem__("outputs"), "no dataset /outputs"),
        (lambda f: f.__delitem__("labels"), "no dataset /labels"),
        (lambda f: f.__delitem__("decisions"), "no dataset /decisions"),
        (lambda f: f.__delitem__("ids"), "no dataset /ids"),
    ]
    for i, (change, problem) in enumerate(cases):
        bad = changed_copy(pred, tmp_path / f"bad{i}.h5", change)
        with pytest.raises(SarevalError) as e:
            compare_predictions([pred], [bad])
        assert str(e.value).startswith(f"{bad}: ") and problem in str(e.value), str(e.value)
    wrong = changed_copy(pred, tmp_path / "range.h5", lambda f: f["decisions"].__setitem__(
        (1, 0), 99))  # fmt: skip
    with pytest.raises(SarevalError, match=r"range\.h5: /decisions holds values outside 0\.\.5"):
        read_predictions(wrong)


def test_majority_empty_coalition_may_be_nan(assets: Any, tmp_path: Path) -> None:
    """The majority-class predictor's output is NaN by design: such a file compares."""
    path = tmp_path / "majority.h5"
    model = assets.onnx["single-label"]
    evaluate_shape(model, assets.store, "clear", save_predictions=path, progress=False,
                   empty_coalition="majority")  # fmt: skip
    with h5py.File(path, "r") as f:
        assert np.isnan(f["outputs"][0]).all()
    got = compare_predictions([path], [path], a="x", b="y", metrics=["oa"], replicates=20)
    assert got.relevance("oa", "sar").estimate == 0


def test_compare_refuses_same_or_empty_labels_and_repeated_runs(pred: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.h5"
    os.link(pred, link)  # the same file under another name
    for call, message in (
        (lambda: compare_predictions([pred], [pred], a="clear", b="clear"),
         "compare_predictions: both setups are labelled 'clear' (a and b)"),
        (lambda: compare_predictions([pred], [pred], a=" ", b="x"),
         "compare_predictions: label a=' ' is empty"),
        (lambda: compare_predictions([pred, pred], [pred], a="x", b="y"),
         f"{pred}: listed twice in setup 'x', as runs 1 and 2"),
        (lambda: compare_predictions([pred], [pred, link], a="x", b="y"),
         f"{link}: listed twice in setup 'y' (as {pred}), as runs 1 and 2"),
        (lambda: compare_predictions([], [pred]), "compare_predictions: runs_a is empty"),
        (lambda: parse_setup(f"={pred}"), f"--compare '={pred}': the label before '=' is empty"),
        (lambda: Setup(" ", (pred,)), "Setup.label: expected a non-empty name"),
    ):  # fmt: skip
        with pytest.raises(SarevalError) as e:
            call()
        assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_report_command_refuses_them_in_one_line(pred: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "r")
    for pair, message in (
        ((f"clear={pred}", f"clear={pred}"), "both setups are labelled 'clear'"),
        ((f"={pred}", f"b={pred}"), "the label before '=' is empty"),
        ((str(pred), str(pred)), "both setups are labelled 'a'"),  # default labels: stems
        ((f"a={pred},{pred}", f"b={pred}"), "listed twice in setup 'a'"),
    ):
        result = CliRunner().invoke(cli, ["report", "--compare", *pair, "--out", out])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "r").exists()  # refused before anything was written
    with pytest.raises(SarevalError, match="both setups are labelled 'same'"):
        make_report([], tmp_path / "r2", compare=[(Setup("same", (pred,)), Setup("same", (pred,)))])
    with pytest.raises(SarevalError, match=r"compare: expected pairs \(Setup, Setup\)"):
        make_report([], tmp_path / "r3", compare=[(f"a={pred}", f"b={pred}")])  # type: ignore[list-item]
