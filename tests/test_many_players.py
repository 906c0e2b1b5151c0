"""Many and nested players through the evaluator: chunked execution, sampling, Owen values."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from shape_testing import get_assets

import sareval
from sareval.cli import cli

TASK = "multi-label"


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def run(assets, **kw):
    return sareval.evaluate(assets.onnx[TASK], (assets.store, "clear"), batch_size=9, **kw)


def test_chunked_execution_gives_identical_counts(assets) -> None:
    whole = run(assets)
    for rows in (1, 9, 20):  # one coalition of one row at a time, one batch, two coalitions
        assert run(assets, max_rows=rows).counts == whole.counts


def test_fifteen_single_band_players_complete_sampled(assets) -> None:
    """All 15 SEN12MS bands as players (2^15 coalitions exact): sampled, chunked, no traceback."""
    from shape_testing import make_card, tiny_net

    from sareval.bands import S2_BANDS

    bands = ["VV", "VH", *S2_BANDS]
    modalities = [{"name": "sar", "bands": ["VV", "VH"]}, {"name": "opt", "bands": list(S2_BANDS)}]
    card = make_card(TASK, input={"name": "input", "channels": bands}, modalities=modalities)
    players = {b: [b] for b in bands}
    r = sareval.evaluate(tiny_net(n_in=15), (assets.store, "clear"), card=card, batch_size=9,
                         players=players, orderings=8, max_rows=64)  # fmt: skip
    assert r.doc["game"]["method"] == "sampled" and len(r.coalitions) < 2**15
    entry = r.doc["metrics"]["f1_micro"]
    assert set(entry["stderr"]) == set(players) and entry["samples"] == 8
    v = entry["V"]
    assert sum(entry["relevance"].values()) == pytest.approx(v["+".join(players)] - v["none"])
    assert "+-" in str(r)


def test_sampled_matches_exact_within_interval(assets) -> None:
    groups = {"sar": ["VV", "VH"], "rgb": ["B02", "B03", "B04"], "re": ["B05", "B06", "B07"],
              "nir": ["B08", "B8A"], "swir1": ["B11"], "swir2": ["B12"]}  # fmt: skip
    exact = run(assets, players=groups, estimator="exact")
    inside = total = 0
    for seed in range(3):
        sampled = run(assets, players=groups, estimator="sampled", orderings=64, seed=seed)
        for metric in ("f1_micro", "f1_macro", "subset_accuracy"):
            e = sampled.doc["metrics"][metric]
            for p in groups:
                se = e["stderr"][p]
                inside += abs(e["relevance"][p] - exact.relevance[metric][p]) <= 3 * se + 1e-12
                total += 1
    assert inside / total >= 0.9


def test_nested_players_owen_consistent_with_modality_level(assets) -> None:
    nested = {"sar": {"VV": ["VV"], "VH": ["VH"]},
              "opt": {"rgb": ["B02", "B03", "B04"], "rest": ["B05", "B06", "B07", "B08", "B8A",
                                                              "B11", "B12"]}}  # fmt: skip
    owen = run(assets, players=nested)
    flat = run(assets)  # the card's modalities sar, opt
    assert owen.doc["game"]["method"] == "owen"
    for metric, entry in owen.doc["metrics"].items():
        assert entry["group_relevance"] == pytest.approx(flat.relevance[metric], abs=1e-12)
        assert entry["relevance"]["VV"] + entry["relevance"]["VH"] == pytest.approx(
            flat.relevance[metric]["sar"], abs=1e-12
        )
    # the CLI's nested syntax is the same run
    out = Path(owen.doc["provenance"]["store"]["path"]).parent / "owen.json"
    spec = "sar:VV=VV;sar:VH=VH;opt:rgb=B02,B03,B04;opt:rest=B05,B06,B07,B08,B8A,B11,B12"
    res = CliRunner().invoke(cli, ["shape", "-m", str(assets.onnx[TASK]), "-d", str(assets.store),
                                   "-s", "clear", "--batch-size", "9", "--players", spec,
                                   "-o", str(out), "--overwrite"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sareval.load_result(out).counts == owen.counts


def test_bootstrap_is_refused_for_sampled_games(assets) -> None:
    players = {b: [b] for b in assets.cards[TASK].channels}
    with pytest.raises(sareval.SarevalError, match="replicates: intervals are for exact games"):
        run(assets, players=players, orderings=4, replicates=10)


def test_plan_and_first_batch_estimate_are_printed(assets, capsys) -> None:
    """Before the pass: coalitions, forwards, executions and the estimated peak memory; after
    the first batch: its time and the estimated time of the pass."""
    from sareval.evaluator.runner import ACTIVATION_FACTOR

    run(assets, progress=True, max_rows=20)
    err = capsys.readouterr().err
    with sareval.open_store(assets.store) as store:
        n = len(store.subset("clear"))
        h, w = store.subset("clear").image_size
    plan = next(line for line in err.splitlines() if "coalitions" in line)
    assert f"3 forwards per sample, {3 * n:,} forwards in all" in plan
    assert "2 execution(s) per batch of 9 (at most 20 rows each" in plan
    c = len(assets.cards[TASK].channels)
    gib = 2 * 9 * c * h * w * 4 * ACTIVATION_FACTOR / 2**30  # two coalitions of 9 rows
    assert f"about {gib:.1f} GiB peak model memory, estimated" in plan
    first = next(line for line in err.splitlines() if "first batch" in line)
    assert first.startswith("sareval: first batch of 9 samples in ")
    assert f"s for all {n:,} samples" in first


def test_a_batch_that_cannot_fit_is_refused_with_the_estimate(assets, monkeypatch) -> None:
    import sareval.evaluator.runner as runner

    monkeypatch.setattr(runner, "available_memory", lambda: 1 << 20)  # 1 MiB
    with pytest.raises(sareval.SarevalError, match=r"one coalition execution of 9 rows needs "
                       r"about [0-9.]+ GiB \(estimate\), 0\.0 GiB available"):  # fmt: skip
        run(assets)
    assert run(assets, max_rows=9).counts == run(assets, max_rows=20).counts  # explicit: runs
