"""The results document: JSON Schema, atomic writing, reading, CSV and console table."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets

from sareval.errors import InputFileError, OutputExistsError
from sareval.evaluator.coalitions import parse_coalition_name
from sareval.evaluator.metrics import counts_from_state
from sareval.evaluator.relevance import relevance_from_counts
from sareval.evaluator.results import (
    console_table,
    csv_rows,
    read_results,
    schema,
    to_json_value,
    validate,
    write_csv,
    write_results,
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def doc(assets) -> dict:
    return evaluate_shape(
        assets.onnx["single-label"], assets.store, "clear", normalization="full", replicates=10,
        by=["class", "cloud-cover=0,0.5,1"], progress=False,
    )  # fmt: skip


def test_schema_is_valid_draft_2020_12_and_accepts_documents(assets, doc: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    validate(to_json_value(doc))
    perceptual = evaluate_shape(
        assets.onnx["multi-label"], assets.store, "tail", method="perceptual", permutations=2,
        progress=False,
    )  # fmt: skip
    validate(to_json_value(perceptual))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("format_version",), 2, "format_version"),
        (("config", "baseline"), "mean", "config/baseline"),
        (("metrics", "oa", "V", "sar"), "high", "metrics/oa/V/sar"),
        (("counts", "sar", "confusion", 0, 0), -1, "counts/sar/confusion: "),
        (("provenance", "store"), {"path": "x"}, "provenance/store"),
    ],
)
def test_schema_rejects_broken_documents(
    doc: dict, path: tuple, value: object, message: str
) -> None:
    broken = copy.deepcopy(to_json_value(doc))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InputFileError, match=f"not a valid sareval results file: {message}"):
        validate(broken)


def test_nan_is_written_as_null_and_read_back(doc: dict, tmp_path: Path) -> None:
    doc = copy.deepcopy(doc)  # z=full: a metric with V(all) = 0 has NaN relevance
    doc["metrics"]["kappa"]["relevance"]["sar"] = float("nan")
    doc["metrics"]["kappa"]["cooperation"] = np.float64("inf")
    out = write_results(doc, tmp_path / "r.json")
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = read_results(out)
    assert back["metrics"]["kappa"]["relevance"]["sar"] is None
    assert back["metrics"]["kappa"]["cooperation"] is None
    assert back["metrics"]["oa"]["Z"] == doc["metrics"]["oa"]["V"]["sar+opt"]
    assert back["counts"] == to_json_value(doc["counts"])
    with pytest.raises(OutputExistsError):
        write_results(doc, out)
    write_results(doc, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_metrics_recompute_from_the_stored_counts(doc: dict) -> None:
    players = doc["players"]
    counts = {
        parse_coalition_name(name, players): counts_from_state(doc["task"], state)
        for name, state in doc["counts"].items()
    }
    recomputed = to_json_value(relevance_from_counts(counts, players, z="full"))
    for metric, entry in to_json_value(doc["metrics"]).items():
        entry = {k: v for k, v in entry.items() if k != "ci"}
        assert entry == recomputed[metric]


def test_read_results_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="not JSON"):
        read_results(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputFileError, match="not a sareval results file"):
        read_results(bad)
    bad.write_text(json.dumps({"format": "sareval-results", "format_version": 1}))
    with pytest.raises(InputFileError, match="required property"):
        read_results(bad)
    with pytest.raises(InputFileError, match="results file not found"):
        read_results(tmp_path / "missing.json")


def test_csv_and_console_table(doc: dict, tmp_path: Path) -> None:
    out = write_csv(doc, tmp_path / "t.csv")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(csv_rows(doc))
    oa = doc["metrics"]["oa"]
    row = next(r for r in rows if r["group"] == "all" and r["metric"] == "oa" and r["key"] == "opt"
               and r["quantity"] == "relevance")  # fmt: skip
    assert float(row["value"]) == oa["relevance"]["opt"]
    assert [float(row["ci_low"]), float(row["ci_high"])] == oa["ci"]["relevance"]["opt"]
    groups = {r["group"] for r in rows}
    assert {"all", "class:class0", "cloud_cover:unknown"} <= groups
    table = console_table(doc).splitlines()
    assert "baseline input-zero, empty baseline, Z = V(all)" in table[0]
    header = table[1].split()
    line = next(t for t in table if t.startswith("oa "))
    # cells are separated by two spaces; a bootstrapped relevance cell is "x [lo, hi]"
    cells = [c.strip() for c in line.split("  ") if c.strip()]
    values = dict(zip(header[1:], cells[1:], strict=True))
    assert values["V(opt)"] == f"{oa['V']['opt']:.4f}"
    lo, hi = oa["ci"]["relevance"]["sar"]
    assert values["R(sar)"] == f"{oa['relevance']['sar']:.4f} [{lo:.4f}, {hi:.4f}]"
    assert values["coop"] == f"{oa['cooperation']:.4f}"
    r_sar, r_opt = (float(values[k].split()[0]) for k in ("R(sar)", "R(opt)"))
    assert np.isclose(r_sar + r_opt, (oa["V"]["sar+opt"] - oa["V"]["none"]) / oa["Z"],
                      atol=2e-4)  # fmt: skip


def _multi_label_sections(z: str) -> dict:
    """Sections of a two-player multi-label game whose full model is nearly always wrong."""
    from sareval.evaluator.coalitions import all_coalitions
    from sareval.evaluator.estimators import GameSpec
    from sareval.evaluator.metrics import MultiLabelCounts
    from sareval.evaluator.results import shape_sections

    rng = np.random.default_rng(3)
    players = ("sar", "opt")
    coalitions = all_coalitions(players)
    y = rng.random((100, 4)) < 0.4
    counts = []
    for j, _ in enumerate(coalitions):
        c = MultiLabelCounts(4)
        pred = ~y if j == len(coalitions) - 1 else rng.random((100, 4)) < 0.4
        pred[:4] = y[:4]  # the full model gets 4 of 100 samples right: f1 ~ 0.04
        c.add(y, pred)
        counts.append(c)
    return shape_sections(
        task="multi-label", game=GameSpec(players), class_names=list("abcd"),
        counts=counts, z=z, by_class=False, cloud_bins=None, ties=[0] * 4,
    )  # fmt: skip


def test_tiny_full_value_warns_with_z_full() -> None:
    from sareval.evaluator.results import Z_WARN_BELOW

    sections = _multi_label_sections("full")
    small = [m for m, e in sections["metrics"].items() if abs(e["V"]["sar+opt"]) < Z_WARN_BELOW]
    assert "f1_micro" in small and "hamming_loss" not in small
    assert [w.split(":")[0] for w in sections["warnings"]] == small
    assert all("z = full" in w for w in sections["warnings"])
    assert _multi_label_sections("one")["warnings"] == []


def test_orientation_in_entries_csv_and_table(doc: dict, tmp_path: Path) -> None:
    sections = _multi_label_sections("full")
    assert sections["metrics"]["hamming_loss"]["higher_is_better"] is False
    assert all(e["higher_is_better"] for m, e in sections["metrics"].items()
               if m != "hamming_loss")  # fmt: skip
    multi = copy.deepcopy(doc)
    multi.update(sections, task="multi-label", class_names=list("abcd"))
    multi["by"] = {}
    validate(to_json_value(multi))
    rows = csv_rows(multi)
    assert {r["higher_is_better"] for r in rows if r["metric"] == "hamming_loss"} == {False}
    assert {r["higher_is_better"] for r in rows if r["metric"] == "f1_micro"} == {True}
    out = write_csv(multi, tmp_path / "m.csv")
    header = out.read_text().splitlines()[0]
    assert header.split(",")[:3] == ["group", "metric", "higher_is_better"]
    table = console_table(multi).splitlines()
    assert table[1].split()[:2] == ["metric", "better"]
    assert next(t for t in table if t.startswith("hamming_loss ")).split()[1] == "lower"
    assert next(t for t in table if t.startswith("f1_micro ")).split()[1] == "higher"
    assert any(t.startswith("warning: f1_micro: V(sar+opt)") for t in table)
