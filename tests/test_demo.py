"""`sareval demo` end to end at a very small size (slow: trains and exports two models, then
trains and evaluates the segmentation model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sareval.cli import cli


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--patches", "40", "--size", "32", "--epochs", "1",
            "--seg-epochs", "1"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    for label in ("clear", "cloudy"):
        run = out / "runs" / label
        assert (run / "model.onnx").is_file()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
        for subset in ("clear", "cloudy", "very_cloudy"):
            doc = json.loads((run / f"shape-{subset}.json").read_text())
            assert doc["provenance"]["subset"]["name"] == subset
            card = doc["provenance"]["model"]["card"]
            assert card["provenance"]["training"]["cloudy_prob"] == (
                0.0 if label == "clear" else 0.8
            )
    for name in ("summary.md", "summary.csv", "relevance.png", "performance.png", "epochs_oa.png"):
        assert (out / "report" / name).is_file(), name
    # the printed summary has one line per model and test subset, and says where the figures are
    lines = res.output.splitlines()
    assert sum(1 for line in lines if line.startswith(("clear-trained ", "cloudy-trained "))) == 6
    assert str(out / "report" / "relevance.png") in res.output
    # the paired comparison of the two setups, with interval and p-value, on the cloudy subsets
    for subset in ("very_cloudy", "cloudy"):
        assert re.search(
            rf"SAR relevance \(oa\), cloudy-trained minus clear-trained, {subset}: "
            r"[+-]\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\], p [=<] \d\.\d{3}",
            res.output,
        ), subset
    assert (out / "report" / "comparisons.md").is_file()
    # the detection table against the max-softmax baseline, with a plain sentence per model
    assert "False-prediction detection" in res.output
    said = [line for line in lines if re.match(r"\s+(clear|cloudy)-trained, \w+: ", line)]
    assert len(said) == 6
    assert all("baseline" in line or "not computed" in line for line in said)
    # the segmentation part: pixel-level SHAPE of the cloudy test images, its maps and report
    seg = json.loads((out / "segmentation" / "shape.json").read_text())
    assert seg["task"] == "segmentation" and seg["provenance"]["subset"]["name"] == "cloudy"
    assert seg["n_pixels"] == sum(e["n_pixels"] for e in seg["by"]["cloud_pixels"]) > 0
    assert "ci" in seg["metrics"]["miou"] and seg["pixel_relevance"]["true_probability"]["all"]
    assert (out / "segmentation" / "maps.h5").is_file()
    seg_report = out / "report-segmentation"
    for name in ("per_class_iou.png", "cloud_pixels_miou.png", "maps_1.png", "summary.md"):
        assert (seg_report / name).is_file(), name
    assert "RGB" in (seg_report / "maps_1.svg").read_text()  # the store was found
    assert str(seg_report / "maps_1.png") in res.output
    table = res.output.split("Segmentation: mean IoU")[1].splitlines()
    rows = {line.split()[0]: line for line in table[3:] if line.strip()}
    assert rows["all"].split()[1] == str(seg["n_pixels"])
    miou = seg["metrics"]["miou"]
    lo, hi = miou["ci"]["relevance"]["sar"]
    assert f"{miou['relevance']['sar']:.3f} [{lo:.3f}, {hi:.3f}]" in rows["all"]
    for e in seg["by"]["cloud_pixels"]:
        if e["n_pixels"]:
            assert f"{e['metrics']['miou']['relevance']['opt']:.3f}" in rows[e["label"]]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "output exists" in again.output
    # --overwrite replaces what a demo wrote and nothing else
    (out / "notes.txt").write_text("mine")
    again = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "runs" / "clear" / "last.pt").exists()  # resume checkpoints removed
