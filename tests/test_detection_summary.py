"""The detection summary never contradicts its table (issue 18): an AUROC below 0.5 is never
called a success, however far below chance the msp baseline is. Constructed scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sareval.evaluator.detection import detection_table, markdown_table, summary_sentence
from sareval.evaluator.in_pass import PerSampleState, _detection


def below_chance() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """msp ranks the wrong samples far below chance (about 0.12), sar_share below chance but
    above msp (about 0.27), cooperation is a good detector on a second label set."""
    rng = np.random.default_rng(18)
    n = 600
    wrong = rng.random(n) < 0.3
    msp = -1.6 * wrong + rng.normal(size=n)
    share = -0.85 * wrong + rng.normal(size=n)
    return {"msp": msp, "sar_share": share}, wrong


def test_detectors_below_chance_are_not_a_success() -> None:
    scores, wrong = below_chance()
    rows = detection_table(scores, wrong, n_boot=300, seed=1)
    by = {r.detector: r for r in rows}
    assert by["msp"].auroc == pytest.approx(roc_auc_score(wrong, scores["msp"]), abs=1e-12)
    assert by["msp"].auroc < 0.2 and 0.2 < by["sar_share"].auroc < 0.35
    share = by["sar_share"]
    assert share.auroc_minus_baseline_ci[0] > 0  # the old rule called this "beats msp"
    assert share.auroc_ci[1] < 0.5 and not share.better_than_chance
    assert not share.beats_baseline
    text = summary_sentence(rows)
    assert text.startswith("no relevance-based detector beats the msp baseline")
    assert "sar_share (AUROC " in text and "not above chance" in text
    assert f"msp baseline itself is below chance (AUROC {by['msp'].auroc:.3f})" in text
    assert "| no |" in markdown_table(rows) and "| yes |" not in markdown_table(rows)


def test_a_detector_above_chance_beats_a_baseline_below_it() -> None:
    scores, wrong = below_chance()
    rng = np.random.default_rng(2)
    scores["cooperation"] = 1.5 * wrong + rng.normal(size=wrong.size)
    rows = detection_table(scores, wrong, n_boot=300, seed=1)
    by = {r.detector: r for r in rows}
    assert by["cooperation"].better_than_chance and by["cooperation"].beats_baseline
    text = summary_sentence(rows)
    assert text.startswith("cooperation beats the msp baseline")
    assert "sar_share (AUROC" in text  # still named as below chance


def test_results_summary_uses_the_same_rule() -> None:
    """The results' ``detection.summary`` (what the demo and report print) on the same scores."""
    scores, wrong = below_chance()
    n = wrong.size
    state = PerSampleState(
        labels=np.zeros(n, np.int64),
        correct=~wrong,
        values={},
        detectors={k: v.astype(np.float64) for k, v in scores.items()},
        cover=np.full(n, np.nan),
    )
    section = _detection(state, n_boot=200, seed=0)
    assert section["summary"].startswith("no relevance-based detector beats the msp baseline")
    assert "beats the msp baseline (" not in section["summary"]
    rows = {r["detector"]: r for r in section["rows"]}
    assert rows["sar_share"]["beats_baseline"] is False
    assert rows["sar_share"]["better_than_chance"] is False
