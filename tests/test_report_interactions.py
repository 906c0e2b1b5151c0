"""The report's pairwise interaction matrices (``interactions_<metric>_<n>``).

A real evaluation with three players (a planted redundancy and synergy, from
tests/test_interactions.py), saved and read back by ``make_report``: the figure is written, its
numbers are ``ShapeResult.interactions``, the intervals are drawn (and hatched where they
exclude 0) when replicates ran, and no tick labels overlap.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
import pytest

import sareval
from sareval.errors import SarevalError
from sareval.report import figures as fg
from sareval.report import make_report
from sareval.report.collect import collect
from tests.test_figures_layout import tick_boxes
from tests.test_interactions import _planted_card, _planted_model

PLAYERS = {"sar": ["VV"], "rgb": ["B02"], "nir": ["B08"]}


def _evaluate(replicates: int, seed: int = 0) -> sareval.ShapeResult:
    rng = np.random.default_rng(seed)
    n = 160
    sar = rng.choice([-1.0, 1.0], n) * rng.uniform(1, 2, n)
    opt = rng.choice([-1.0, 1.0], n) * rng.uniform(1, 2, n)
    y = (np.sign(sar) != np.sign(opt)).astype(np.int64)
    s1 = np.broadcast_to(sar[:, None, None, None], (n, 1, 4, 4)).astype(np.float32)
    s2 = np.broadcast_to(opt[:, None, None, None], (n, 2, 4, 4)).astype(np.float32)
    return sareval.evaluate(
        _planted_model, {"s1": s1, "s2": s2, "label": y}, card=_planted_card(),
        data_options={"bands": {"s1": ["VV"], "s2": ["B02", "B08"]}}, players=PLAYERS,
        replicates=replicates, metrics=["oa", "f1_macro"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("interactions")
    boot, plain = _evaluate(100), _evaluate(0)
    boot.save(d / "boot.json")
    plain.save(d / "plain.json")
    return {"dir": d, "boot": boot, "plain": plain}


def _cell_texts(fig: Any) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_report_writes_the_matrix_with_the_results_values(saved: dict[str, Any]) -> None:
    out = saved["dir"] / "report"
    report = make_report([("planted", saved["dir"] / "boot.json")], out, metrics=["oa"])
    assert out / "interactions_oa_1.png" in report.figures
    assert (out / "interactions_oa_1.svg").stat().st_size > 0
    r = saved["boot"]
    (matrix,) = fg.interaction_matrices(collect([saved["dir"] / "boot.json"]).results, "oa")
    sii, ci = r.interactions["oa"]["sii"], r.intervals["oa"]["interactions"]["sii"]
    assert len(matrix.cells) == 3
    for (a, b), st in matrix.cells.items():
        key = f"{a}+{b}"
        assert st.mean == sii[key] and [st.lo, st.hi] == ci[key]  # exact, from the file
    fig = fg.interactions_figure([matrix])
    texts = _cell_texts(fig)
    assert len(texts) == 6  # both triangles of the 3 x 3 matrix
    drawn = sorted(float(t.split("\n")[0]) for t in texts)
    assert drawn == pytest.approx(sorted(2 * list(sii.values())), abs=6e-4)
    # intervals drawn, as [lo, hi]; the planted pairs exclude 0 and are hatched
    for t in texts:
        lo, hi = map(float, re.findall(r"\[(\S+), (\S+)\]", t)[0])
        assert lo <= float(t.split("\n")[0]) + 5e-4 and hi >= float(t.split("\n")[0]) - 5e-4
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "excludes-zero"]
    assert len(hatched) == 2 * sum(matrix.excludes_zero(p) for p in matrix.cells) == 6
    fig.canvas.draw()
    boxes = tick_boxes(fig)
    assert {t for t, _ in boxes} >= {"SAR", "rgb", "nir"}
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
        assert overlap_w <= 0.5 or overlap_h <= 0.5, f"{ta!r} overlaps {tb!r}"


def test_banzhaf_option_and_no_intervals_without_replicates(saved: dict[str, Any]) -> None:
    results = collect([saved["dir"] / "plain.json"]).results
    (matrix,) = fg.interaction_matrices(results, "f1_macro", "banzhaf_interaction")
    bii = saved["plain"].interactions["f1_macro"]["banzhaf_interaction"]
    assert {f"{a}+{b}": st.mean for (a, b), st in matrix.cells.items()} == bii
    fig = fg.interactions_figure([matrix])
    assert not any("[" in t for t in _cell_texts(fig))
    assert not any(p.get_gid() == "excludes-zero" for ax in fig.axes for p in ax.patches)
    out = saved["dir"] / "report-bii"
    report = make_report([saved["dir"] / "plain.json"], out,
                         interaction_index="banzhaf_interaction")  # fmt: skip
    assert out / "interactions_f1_macro_1.png" in report.figures
    with pytest.raises(SarevalError, match="interaction_index"):
        make_report([saved["dir"] / "plain.json"], out, interaction_index="owen", overwrite=True)


def test_cli_interaction_index_option(saved: dict[str, Any]) -> None:
    from click.testing import CliRunner

    from sareval.cli import cli

    out = saved["dir"] / "cli-report"
    args = ["report", f"planted={saved['dir'] / 'boot.json'}", "--metric", "oa", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--interaction-index", "banzhaf_interaction"])
    assert result.exit_code == 0, result.output
    assert (out / "interactions_oa_1.png").exists()
    bad = CliRunner().invoke(cli, [*args, "--overwrite", "--interaction-index", "moebius"])
    assert bad.exit_code == 2 and "--interaction-index" in bad.output
