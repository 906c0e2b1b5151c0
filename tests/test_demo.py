"""`sareval demo` end to end at a very small size (slow: trains and exports two models)."""

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
    args = ["demo", "--out", str(out), "--patches", "40", "--size", "32", "--epochs", "1"]
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
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "output exists" in again.output
    # --overwrite replaces what a demo wrote and nothing else
    (out / "notes.txt").write_text("mine")
    again = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "runs" / "clear" / "last.pt").exists()  # resume checkpoints removed
