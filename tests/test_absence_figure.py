"""AbsenceComparison.figure: each player's relevance per absence operator with the run's own
bootstrap interval, read back from the matplotlib artists, and the file written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.sources import ArrayData
from sareval.report.absence import AbsenceComparison
from sareval.report.figures import MODEL_COLORS, absence_figure

N, SIZE, K = 20, 16, 2
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04"]


class Votes(torch.nn.Module):
    """Class 1 where the mean of VV plus that of B04 exceeds 1.5 (both modalities matter)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((2, 3))
        return torch.stack([torch.zeros_like(m[:, 0]), m[:, 0] + m[:, 4] - 1.5], 1)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> AbsenceComparison:
    rng = np.random.default_rng(3)
    y = rng.integers(0, K, N)
    s1 = rng.normal(0, 1, (N, 2, SIZE, SIZE)).astype(np.float32)
    s1 += (y + rng.normal(0, 0.8, N))[:, None, None, None].astype(np.float32)
    s2 = rng.normal(0, 1, (N, 13, SIZE, SIZE)).astype(np.float32)
    s2[:, 3] += (2.0 * y + rng.normal(0, 1.2, N))[:, None, None].astype(np.float32)
    card = ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task="single-label", class_names=["a", "b"], input_size=SIZE,
        normalization={b: {"mean": 0.0, "std": 1.0} for b in SAR + OPT},
        absence=["fill", "marginal"],
    )  # fmt: skip
    net = Votes().eval()
    return sareval.compare_absence(
        net, ArrayData({"s1": s1, "s2": s2}, y), ["fill", "marginal"], card=card,
        metrics=["oa"], replicates=40, workdir=tmp_path_factory.mktemp("absence"),
    )  # fmt: skip


def bars_and_errors(fig: Any) -> dict[str, tuple[list[float], np.ndarray, Any]]:
    """Per operator (legend label): bar heights in player order, error bar ends (P, 2) and the
    face colour, from the axes' bar containers."""
    ax = fig.axes[0]
    out = {}
    for c in ax.containers:
        if not hasattr(c, "patches"):
            continue  # an ErrorbarContainer (also reached through c.errorbar)
        heights = [p.get_height() for p in c.patches]
        ends = np.array([[s[0][1], s[1][1]] for s in c.errorbar.lines[2][0].get_segments()])
        colour = c.patches[0].get_facecolor()
        out[c.get_label()] = (heights, ends, colour)
    return out


def test_bars_are_the_relevances_and_error_bars_the_intervals(
    comparison: AbsenceComparison,
) -> None:
    import matplotlib.colors as mcolors

    relevance = {op: comparison.results[op].relevance["oa"] for op in comparison.operators}
    intervals = {
        op: comparison.results[op].intervals["oa"]["relevance"] for op in comparison.operators
    }
    fig = absence_figure(relevance, intervals, "oa")
    drawn = bars_and_errors(fig)
    assert list(drawn) == ["fill", "marginal"]
    for j, op in enumerate(comparison.operators):
        heights, ends, colour = drawn[op]
        assert heights == pytest.approx([relevance[op][p] for p in ("sar", "opt")], abs=1e-12)
        want = np.array([intervals[op][p] for p in ("sar", "opt")])
        np.testing.assert_allclose(ends, want, atol=1e-12)
        assert mcolors.to_hex(colour) == MODEL_COLORS[j]
    # one group per player: the players' bars sit around ticks 0 and 1, operators side by side
    xs = {op: [p.get_x() + p.get_width() / 2 for p in c.patches]
          for op, c in zip(drawn, [c for c in fig.axes[0].containers if hasattr(c, "patches")],
                           strict=True)}  # fmt: skip
    assert xs["fill"][0] < 0 < xs["marginal"][0] < xs["fill"][1] < 1 < xs["marginal"][1]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["SAR", "optical"]


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_figure_file_is_written(comparison: AbsenceComparison, tmp_path: Path,
                                suffix: str) -> None:  # fmt: skip
    path = comparison.figure("oa", tmp_path / f"absence.{suffix}")
    assert path == tmp_path / f"absence.{suffix}"
    magic = {"png": b"\x89PNG", "pdf": b"%PDF"}[suffix]
    assert path.read_bytes().startswith(magic)


def test_figure_refuses_an_unknown_metric_or_format(
    comparison: AbsenceComparison, tmp_path: Path
) -> None:
    with pytest.raises(SarevalError, match="metric"):
        comparison.figure("no_such_metric", tmp_path / "a.png")
    with pytest.raises(SarevalError, match="path"):
        comparison.figure("oa", tmp_path / "a.jpg")
    assert not list(tmp_path.iterdir())
