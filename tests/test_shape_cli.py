"""``sareval shape`` and ``sareval merge`` through click: outputs, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import get_assets, write_store

from sareval.card import ONNX_METADATA_KEY, ModelCard, set_onnx_card
from sareval.cli import cli
from sareval.evaluator.results import read_results


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def invoke(*args: str | Path):
    return CliRunner().invoke(cli, ["-q", *(str(a) for a in args)])


def with_card(src: Path, out: Path, change: dict | None) -> Path:
    """A copy of the ONNX model ``src`` whose card has ``change`` applied (None: no card)."""
    model = onnx.load(str(src))
    card = json.loads(next(p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY))
    props = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if change is not None:
        card.update(change)
        set_onnx_card(model, ModelCard.from_dict(card))
    onnx.save(model, str(out))
    return out


def test_shape_writes_json_csv_and_prints_a_table(assets, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    model = assets.onnx["multi-label"]
    result = invoke(
        "shape", "--model", model, "--data", assets.store, "--subset", "cloudy",
        "--batch-size", "5", "--by", "class", "--by", "cloud-cover", "0,0.3,1", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = read_results(out)
    assert doc["config"]["cloud_cover_bins"] == [0.0, 0.3, 1.0]
    assert [b["label"] for b in doc["by"]["cloud_cover"]] == ["[0, 0.3)", "[0.3, 1]"]
    api = evaluate_shape(model, assets.store, "cloudy", by=["class"], progress=False)
    assert doc["counts"] == api["counts"]
    assert doc["provenance"]["model"]["sha256"] == api["provenance"]["model"]["sha256"]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("shape: multi-label.onnx on test.h5 / cloudy (20 samples)")
    header = ["metric", "better", "V(none)", "V(sar)", "V(opt)", "V(sar+opt)"]
    assert lines[1].split()[:6] == header
    f1 = next(line for line in lines if line.startswith("f1_micro"))
    assert f1.split()[1] == "higher"
    assert f1.split()[5] == f"{doc['metrics']['f1_micro']['V']['sar+opt']:.4f}"
    assert next(line for line in lines if line.startswith("hamming_loss")).split()[1] == "lower"
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "group", "metric", "higher_is_better", "quantity", "key", "value", "ci_low", "ci_high",
        "model", "model_sha256", "store", "store_content_digest", "subset", "method",
        "baseline", "empty_coalition", "normalization", "players", "shard",
    ]  # fmt: skip
    # every row names the run: concatenated CSVs of several runs stay identifiable
    assert {(r["model"], r["model_sha256"], r["store_content_digest"], r["subset"],
             r["baseline"], r["normalization"], r["players"]) for r in rows} == {(
        "multi-label.onnx", doc["provenance"]["model"]["sha256"],
        doc["provenance"]["store"]["content_digest"], "cloudy", doc["config"]["baseline"],
        doc["config"]["normalization"], "sar;opt",
    )}  # fmt: skip
    keyed = {(r["group"], r["metric"], r["quantity"], r["key"]): r["value"] for r in rows}
    entry = doc["by"]["class"]["class0"]["metrics"]["f1"]
    assert float(keyed["class:class0", "f1", "relevance", "sar"]) == entry["relevance"]["sar"]
    entry = doc["by"]["cloud_cover"][1]["metrics"]["f1_macro"]
    assert float(keyed["cloud_cover:[0.3, 1]", "f1_macro", "V", "opt"]) == entry["V"]["opt"]
    coop = doc["metrics"]["f1_micro"]["cooperation"]
    assert float(keyed["all", "f1_micro", "cooperation", ""]) == coop
    # every cloudy row has a cloud cover: the unknown bin is there, empty
    assert doc["by"]["cloud_cover_unknown"]["n_samples"] == 0


def test_shape_perceptual_and_help(assets, tmp_path: Path) -> None:
    result = invoke(
        "shape", "-m", assets.torchscript["single-label"], "-d", assets.store, "-s", "tail",
        "--backend", "torch", "--method", "perceptual", "--permutations", "2",
        "--out", tmp_path / "p.json", "--csv", tmp_path / "table.csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = read_results(tmp_path / "p.json")
    assert doc["method"] == "perceptual" and doc["coalitions"][0] == "sar+opt"
    assert (tmp_path / "table.csv").exists() and not (tmp_path / "p.csv").exists()
    help_text = invoke("shape", "--help").output
    assert "sareval shape --model" in help_text and "--by" in help_text


def test_shard_and_merge_through_the_cli(assets, tmp_path: Path) -> None:
    model = assets.onnx["single-label"]
    common = ["-m", model, "-d", assets.store, "-s", "clear", "--by", "cloud-cover"]
    for i in range(3):
        r = invoke("shape", *common, "--shard", f"{i}/3", "-o", tmp_path / f"part{i}.json")
        assert r.exit_code == 0, r.output
    parts = [tmp_path / f"part{i}.json" for i in (2, 0, 1)]
    r = invoke("merge", *parts, "--out", tmp_path / "merged.json")
    assert r.exit_code == 0, r.output
    merged = read_results(tmp_path / "merged.json")
    single = evaluate_shape(model, assets.store, "clear", by=["cloud-cover"], progress=False)
    assert merged["counts"] == single["counts"]
    assert merged["metrics"] == single["metrics"]
    assert merged["by"] == single["by"]
    r = invoke("merge", *parts[:2], "--out", tmp_path / "incomplete.json")
    assert r.exit_code == 1 and "shards [1] of 3 are missing" in r.output
    r = invoke("shape", *common, "--shard", "0/3")
    assert r.exit_code == 1 and "--shard needs --out" in r.output


def bad_input_cases(assets, tmp_path: Path) -> list[tuple[list, str]]:
    src = assets.onnx["single-label"]
    card = assets.cards["single-label"].to_dict()
    narrow = write_store(tmp_path / "narrow.h5", n=6, s2_bands=("B02", "B03", "B04", "B05"))
    no_nan = {band: {"mean": -12.0, "std": 4.0} for band in ("VV", "VH")}
    big = {"input": {**card["input"], "height": 16, "width": 16}}
    nan = {"normalization": {**card["normalization"], **no_nan}}
    exists = tmp_path / "exists.json"
    exists.write_text("{}")
    return [
        (["-m", with_card(src, tmp_path / "nocard.onnx", None)], "sareval card attach"),
        (["-d", narrow], "bands ['B06', 'B07', 'B08', 'B8A', 'B11', 'B12'] are missing"),
        (
            ["-m", with_card(src, tmp_path / "big.onnx", big)],
            "images are 8x8 but the model",
        ),
        (
            ["-m", with_card(src, tmp_path / "other.onnx", {"class_names": list("abcdef")})],
            "no single-label labels with the model's 6 classes; the store has: "
            "multi (multi-label, 6 classes), single (single-label, 6 classes)",
        ),
        (["-s", "nope"], "unknown subset 'nope'; known: clear, cloudy, nothing, tail"),
        (["-s", "nothing"], "subset 'nothing' is empty"),
        (
            ["-m", with_card(src, tmp_path / "nan.onnx", nan)],
            "model outputs are NaN or Inf (coalition sar: 3 samples, coalition sar+opt: 3 samples)",
        ),
        (["-o", exists], "exists.json: output exists; pass --overwrite to replace it"),
        (["--shard", "2/2", "-o", tmp_path / "s.json"], "--shard '2/2': need 0 <= i < n"),
        (["--players", "sar;rgb=B02,B03,B04"], "belong to no modality"),
    ]  # fmt: skip


def test_bad_input_is_one_line_with_exit_1(assets, tmp_path: Path) -> None:
    base = {"-m": assets.onnx["single-label"], "-d": assets.store, "-s": "clear"}
    for change, message in bad_input_cases(assets, tmp_path):
        args = dict(base)
        extra = []
        for i in range(0, len(change), 2):
            if change[i] in args:
                args[change[i]] = change[i + 1]
            else:
                extra += change[i : i + 2]
        flat = [x for kv in args.items() for x in kv] + extra
        result = invoke("shape", *flat)
        assert result.exit_code == 1, (message, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert message in lines[0], (message, lines[0])
    assert (tmp_path / "exists.json").read_text() == "{}"
    assert not (tmp_path / "s.json").exists()
