"""The report layer speaks the API's names (``make_report(metrics=...)``,
``compare_predictions(replicates=...)``); the CLI turns them into its flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_report import fake_results

from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.report import make_report


def test_unknown_metric_names_the_argument_and_the_cli_its_flag(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(fake_results(np.random.default_rng(0), "clear", 9)))
    with pytest.raises(SarevalError) as e:
        make_report([str(path)], tmp_path / "rep", metrics=["oa", "bogus"])
    message = str(e.value)
    assert message.startswith("make_report: metrics bogus: not in the results; available: oa")
    assert "--" not in message
    result = CliRunner().invoke(
        cli, ["report", str(path), "--metric", "oa,bogus", "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("error: --metric bogus: not in the results; available: oa")


def test_make_report_n_boot_is_a_deprecated_alias(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="make_report"):
        report = make_report([], tmp_path / "rep", n_boot=10)
    assert report.comparisons == []
    with pytest.raises(SarevalError, match="replicates or its old name n_boot"):
        make_report([], tmp_path / "rep2", replicates=5, n_boot=10)
