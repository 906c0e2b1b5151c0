"""Breakdowns as first-class results: per-class and per-cloud-cover-bin sections honour
``metrics``, carry bootstrap intervals from the SAME replicates as the overall ones, include the
``unknown`` bin, never drop a sample (covers outside the edges are refused), and print.

References are independent of the evaluator's bootstrap: explicit resampling of the per-sample
decisions written by ``save_predictions`` (``numpy.random.default_rng(seed).spawn(n)``, the
documented draw), counted coalition by coalition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from shape_testing import CLASSES, get_assets

import sareval
import sareval.evaluator.bootstrap as bootstrap_module
from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import (
    bootstrap_intervals,
    bootstrap_score_intervals,
    bootstrap_values,
)
from sareval.evaluator.coalitions import all_coalitions
from sareval.evaluator.metrics import counts_for, single_label_metrics
from sareval.evaluator.results import SINGLE_LABEL_ALIASES, class_metrics_for, read_results
from sareval.evaluator.scores import ScoreState, average_precision, map_values

EDGES = [0.0, 0.5, 1.0]
F = frozenset


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def arrays(store: Path, task: str) -> dict[str, Any]:
    """The ``clear`` subset's arrays (h5py directly), with a cloud cover of our own: 8 of the
    40 samples NaN (unknown), the rest spread over [0, 1]."""
    with h5py.File(store, "r") as f:
        rows = f["subsets/clear"][()]
        a = {
            "s1": f["s1"][()][rows],
            "s2": f["s2"][()][rows],
            "label": f["labels/single" if task == "single-label" else "labels/multi"][()][rows],
        }
        bands = {s: json.loads(f[s].attrs["bands"]) for s in ("s1", "s2")}
    cover = np.random.default_rng(3).random(len(rows)).astype(np.float32)
    cover[::5] = np.nan
    return {"data": a, "bands": bands, "cover": cover}


def evaluate(assets: Any, task: str, tmp_path: Path | None = None, **kw: Any):
    a = arrays(assets.store, task)
    pred = None if tmp_path is None else tmp_path / f"{task}.h5"
    result = sareval.evaluate(
        assets.nets[task], a["data"], card=assets.cards[task], bands=a["bands"],
        class_names=CLASSES, cloud_cover=a["cover"], batch_size=7, save_predictions=pred, **kw,
    )  # fmt: skip
    return result, a, pred


def groups_of(cover: np.ndarray) -> np.ndarray:
    """0 for [0, 0.5), 1 for [0.5, 1], 2 for NaN (written apart from the runner's binning)."""
    return np.where(np.isnan(cover), 2, np.where(cover < 0.5, 0, 1))


def two_player_relevance(V: np.ndarray) -> np.ndarray:
    """Shapley value of ``sar`` (Z = 1) from V in order none, sar, opt, sar+opt."""
    return 0.5 * (V[..., 1] - V[..., 0]) + 0.5 * (V[..., 3] - V[..., 2])


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_sections_honour_metrics_and_keep_every_sample(assets, task: str) -> None:
    chosen = ["f1_macro", "oa"]
    result, a, _ = evaluate(assets, task, metrics=chosen, by_class=True, cloud_cover_bins=EDGES)
    doc = result.doc
    assert list(doc["metrics"]) == ["f1_macro", "oa"]
    bins = result.by_cloud_cover
    assert [b["label"] for b in bins] == ["[0, 0.5)", "[0.5, 1]", "unknown"]
    assert bins[-1]["bin"] is None and "cloud_cover_unknown" in doc["by"]
    for b in bins:
        assert list(b["metrics"]) == chosen
    # per class: the counterparts of the chosen metrics (single-label oa: recall)
    per_class = ["f1", "recall"] if task == "single-label" else ["f1"]
    assert class_metrics_for(task, chosen) == per_class
    for entry in result.by_class.values():
        assert list(entry["metrics"]) == per_class
    # no sample dropped: the bins' sizes sum to N, the unknown bin holds the NaN covers
    group = groups_of(a["cover"])
    assert sum(b["n_samples"] for b in bins) == result.n_samples == len(group)
    assert [b["n_samples"] for b in bins] == [int((group == g).sum()) for g in range(3)]
    # each bin's counts equal an evaluation of its samples alone (another pass)
    for g, b in enumerate(bins):
        keep = group == g
        alone = sareval.evaluate(
            assets.nets[task], {k: v[keep] for k, v in a["data"].items()},
            card=assets.cards[task], bands=a["bands"], class_names=CLASSES, metrics=chosen,
        )  # fmt: skip
        assert b["counts"] == alone.doc["counts"]
        assert b["metrics"]["oa"]["V"] == alone.values["oa"]


def test_bin_intervals_equal_explicit_resampling(assets, tmp_path: Path) -> None:
    """Every bin's (and the unknown bin's) intervals are percentiles over the SAME draws as
    the overall ones: replicate r resamples all N samples with generator r, and a bin takes
    the drawn samples that fall in it."""
    n_boot, seed, task = 60, 4, "single-label"
    result, a, pred = evaluate(
        assets, task, tmp_path, replicates=n_boot, seed=seed, cloud_cover_bins=EDGES,
        metrics=["oa", "f1_macro"], by_class=True,
    )  # fmt: skip
    with h5py.File(pred, "r") as f:
        decisions, y = f["decisions"][()], f["labels"][()]
        assert json.loads(f.attrs["coalitions"]) == result.coalitions
    group = groups_of(a["cover"])
    n = len(y)
    generators = np.random.default_rng(seed).spawn(n_boot)
    draws = [gen.integers(0, n, size=n) for gen in generators]
    for g, b in enumerate(result.by_cloud_cover):
        for metric in ("oa", "f1_macro"):
            V = np.full((n_boot, 4), np.nan)
            for r, idx in enumerate(draws):
                sel = idx[group[idx] == g]
                if not len(sel):
                    continue
                for j in range(4):
                    counts = counts_for(task, len(CLASSES))
                    counts.add(y[sel], decisions[j][sel])
                    V[r, j] = counts.metrics()[metric]
            ci = b["metrics"][metric]["ci"]
            lo_hi = np.nanpercentile(two_player_relevance(V), [2.5, 97.5])
            np.testing.assert_allclose(ci["relevance"]["sar"], lo_hi, rtol=0, atol=1e-12)
            v_lo_hi = np.nanpercentile(V[:, 3], [2.5, 97.5])
            np.testing.assert_allclose(ci["V"]["sar+opt"], v_lo_hi, rtol=0, atol=1e-12)
    # the overall intervals come from the same draws: unchanged by the bins
    plain, _, _ = evaluate(assets, task, replicates=n_boot, seed=seed, metrics=["oa", "f1_macro"])
    assert plain.intervals == result.intervals
    # per class too (same replicates): recall of class 1
    recall = np.array(
        [
            [
                (lambda c: c.per_class()["recall"][1])(_counted(task, y[idx], decisions[j][idx]))
                for j in range(4)
            ]
            for idx in draws
        ]
    )
    np.testing.assert_allclose(
        result.by_class["class1"]["metrics"]["recall"]["ci"]["relevance"]["sar"],
        np.percentile(two_player_relevance(recall), [2.5, 97.5]), rtol=0, atol=1e-12,
    )  # fmt: skip


def _counted(task: str, y: np.ndarray, dec: np.ndarray, k: int = len(CLASSES)) -> Any:
    counts = counts_for(task, k)
    counts.add(y, dec)
    return counts


def test_multi_label_bin_intervals_and_map_from_the_same_draws(monkeypatch) -> None:
    """At the bootstrap level: count metrics and mAP per group equal explicit resampling,
    whatever the chunking of replicates."""
    rng = np.random.default_rng(0)
    n, k, n_boot, seed = 90, 4, 25, 2
    y = rng.random((n, k)) < 0.4
    scores = {c: np.clip(y + rng.normal(0, 0.3 + 0.3 * (2 - len(c)), (n, k)), 0, 1)
              for c in all_coalitions(["sar", "opt"]) if c}  # fmt: skip
    predictions = {F(): np.zeros(k, bool), **{c: s > 0.5 for c, s in scores.items()}}
    groups = rng.integers(0, 3, n)
    groups[:5] = 1
    ci = bootstrap_intervals(
        y, predictions, ["sar", "opt"], "multi-label", k, n_boot, seed, groups=groups, n_groups=3
    )
    order = all_coalitions(["sar", "opt"])
    state = ScoreState(
        np.stack([scores[c] for c in order[1:]]).astype(np.float32), y,
        groups.astype(np.int16), np.full(k, 0.5, np.float32),
    )  # fmt: skip
    map_ci = bootstrap_score_intervals(
        state, ["sar", "opt"], n_boot, seed, n_groups=3, by_class=True
    )
    draws = [gen.integers(0, n, size=n) for gen in np.random.default_rng(seed).spawn(n_boot)]
    for g in range(3):
        V = np.full((n_boot, 4), np.nan)
        M = np.full((n_boot, 4), np.nan)
        for r, idx in enumerate(draws):
            sel = idx[groups[idx] == g]
            for j, c in enumerate(order):
                pred = np.broadcast_to(predictions[c], y.shape)
                V[r, j] = _counted("multi-label", y[sel], pred[sel], k).metrics()["f1_samples"]
                s = np.broadcast_to(np.float32(0.5), (len(sel), k)) if not c else scores[c][sel]
                mean_ap = map_values(np.asarray(s, np.float32), y[sel], absent=state.absent)
                M[r, j] = mean_ap["map_macro"]
        got = ci["by_group"][g]["f1_samples"]["relevance"]["sar"]
        np.testing.assert_allclose(got, np.percentile(two_player_relevance(V), [2.5, 97.5]),
                                   rtol=0, atol=1e-12)  # fmt: skip
        got = map_ci["by_group"][g]["map_macro"]["relevance"]["opt"]
        opt = 0.5 * (M[:, 2] - M[:, 0]) + 0.5 * (M[:, 3] - M[:, 1])
        np.testing.assert_allclose(got, np.percentile(opt, [2.5, 97.5]), rtol=0, atol=1e-9)
    # each class's average precision (by_class), from the same draws
    ap = np.array([[average_precision(
        np.broadcast_to(np.float32(0.5), (n, k))[idx] if not c else scores[c][idx], y[idx])[2]
        for c in order] for idx in draws])  # fmt: skip
    np.testing.assert_allclose(map_ci["by_class"][2]["ap"]["relevance"]["sar"],
                               np.percentile(two_player_relevance(ap), [2.5, 97.5]),
                               rtol=0, atol=1e-9)  # fmt: skip
    plain = bootstrap_intervals(y, predictions, ["sar", "opt"], "multi-label", k, n_boot, seed)
    assert {m: e for m, e in ci.items() if m != "by_group"} == plain
    whole = bootstrap_values(y, predictions, ["sar", "opt"], "multi-label", k, n_boot, seed,
                             groups=groups, n_groups=3)  # fmt: skip
    monkeypatch.setattr(bootstrap_module, "CHUNK_ELEMENTS", 2 * n)
    chunked = bootstrap_values(y, predictions, ["sar", "opt"], "multi-label", k, n_boot, seed,
                               groups=groups, n_groups=3)  # fmt: skip
    assert whole.keys() == chunked.keys()
    for key, v in whole.items():
        np.testing.assert_array_equal(chunked[key], v, err_msg=key)


def test_covers_outside_the_edges_are_refused(assets, tmp_path: Path) -> None:
    a = arrays(assets.store, "single-label")
    cover = a["cover"]
    beyond = cover > 0.5  # NaN compares False: unknown, not outside
    with pytest.raises(SarevalError) as e:
        evaluate(assets, "single-label", cloud_cover_bins=[0, 0.5])
    lo, hi = cover[beyond].min(), cover[beyond].max()
    assert str(e.value) == (
        "ShapeConfig.reporting.cloud_cover_bins: "
        f"{int(beyond.sum())} of {len(cover)} samples have a cloud cover outside the edges "
        f"[0, 0.5] (from {lo:.4g} to {hi:.4g}); give edges that "
        "span them, e.g. from 0 to 1 (samples are never left out of the bins)"
    )
    # the CLI: one line naming the option (the store's cloudy covers lie in [0, 1])
    with h5py.File(assets.store, "r") as f:
        stored = f["cloud_cover"][()][f["subsets/cloudy"][()]]
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, [
        "-q", "shape", "-m", str(assets.onnx["single-label"]), "-d", str(assets.store),
        "-s", "cloudy", "--by", "cloud-cover", "0,0.3", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 1
    n_out = int((stored >= 0.3).sum())
    assert result.output.startswith(
        f"error: --by cloud-cover: {n_out} of {len(stored)} samples have a cloud cover outside"
    )
    assert result.output.count("\n") == 1 and not out.exists()
    with pytest.raises(
        SarevalError, match=r"cloud_cover_bins: edges must lie in \[0, 1\].*got 0, 50"
    ):
        sareval.ShapeConfig(cloud_cover_bins=[0, 50, 100])


def test_cli_metric_prints_only_the_chosen_metrics(assets, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, [
        "-q", "shape", "-m", str(assets.onnx["single-label"]), "-d", str(assets.store),
        "-s", "cloudy", "--metric", "oa", "--metric", "f1_macro", "--by", "class",
        "--by", "cloud-cover", "0,0.5,1", "--replicates", "20", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = read_results(out)
    assert doc["config"]["metrics"] == ["oa", "f1_macro"]
    assert list(doc["metrics"]) == ["oa", "f1_macro"]
    assert all(list(b["metrics"]) == ["oa", "f1_macro"] for b in doc["by"]["cloud_cover"])
    lines = result.stdout.splitlines()
    main = lines[2 : lines.index("by class (n: samples of the class):")]
    assert [line.split()[0] for line in main] == ["oa", "f1_macro"]
    # the per-class table: recall and f1 of every class, relevance with its interval
    start = lines.index("by class (n: samples of the class):")
    assert lines[start + 1].split() == ["class", "n", "metric", "V(sar+opt)", "R(sar)", "R(opt)"]
    row = lines[start + 2].split()
    entry = doc["by"]["class"]["class0"]
    assert row[:3] == ["class0", str(entry["n_samples"]), "recall"]
    ci = entry["metrics"]["recall"]["ci"]["relevance"]["sar"]
    assert (
        f"{entry['metrics']['recall']['relevance']['sar']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"
        in (lines[start + 2])
    )
    assert lines[start + 3].split()[0] == "f1"
    # the per-bin table: each bin (and unknown) with its n, only the chosen metrics
    start = next(i for i, line in enumerate(lines) if line.startswith("by cloud cover"))
    rows = lines[start + 2 : start + 7]
    first = doc["by"]["cloud_cover"][0]
    assert rows[0].split()[:5] == ["[0,", "0.5)", str(first["n_samples"]), "oa",
                                   f"{first['metrics']['oa']['V']['sar+opt']:.4f}"]  # fmt: skip
    assert rows[1].split()[0] == "f1_macro"
    assert rows[4].split()[:3] == ["unknown", "0", "-"]
    assert not any("kappa" in line or "f2_macro" in line for line in lines)
    bad = CliRunner().invoke(cli, [
        "shape", "-m", str(assets.onnx["single-label"]), "-d", str(assets.store), "-s",
        "cloudy", "--metric", "accuracy"])  # fmt: skip
    assert bad.exit_code == 1
    assert bad.output.startswith("error: --metric: accuracy not among the single-label metrics")
    empty = CliRunner().invoke(cli, [
        "shape", "-m", str(assets.onnx["single-label"]), "-d", str(assets.store), "-s",
        "cloudy", "--metric", "oa,"])  # fmt: skip
    assert (empty.exit_code, empty.output) == (1, "error: --metric: empty metric name\n")


def test_single_label_aliases_collapse_in_the_table_only(assets) -> None:
    result, _, _ = evaluate(assets, "single-label")
    assert len(result.values) == 15  # the JSON keeps every key
    lines = str(result).splitlines()
    rows = [line.split()[0] for line in lines[2:] if line.split()[1] in ("higher", "lower")]
    assert rows == ["oa", "aa", "balanced_accuracy", "f1_macro", "f2_macro", "f1_weighted",
                    "precision_macro", "kappa"]  # fmt: skip
    assert ("oa also stands for f1_micro, f1_samples, f2_micro, f2_samples, precision_micro, "
            "recall_micro") in str(result)  # fmt: skip
    assert "aa also stands for recall_macro" in str(result)
    # multi-label keeps every row
    multi, _, _ = evaluate(assets, "multi-label")
    assert "stands for" not in str(multi) and "f1_micro" in str(multi)


def test_aliases_are_identical_by_definition() -> None:
    """What the table collapses is equal for any confusion matrix (the property it relies on)."""
    confusion = np.random.default_rng(1).integers(0, 20, size=(200, 5, 5))
    confusion[:10, 2] = 0  # absent classes
    values = single_label_metrics(confusion)
    for group in SINGLE_LABEL_ALIASES:
        for name in group[1:]:
            np.testing.assert_array_equal(values[name], values[group[0]], err_msg=name)


def test_older_results_files_still_load(assets, tmp_path: Path) -> None:
    """A file of the earlier layout (no unknown bin when empty, bins without intervals,
    every metric per bin) loads and prints."""
    result, _, _ = evaluate(assets, "single-label", cloud_cover_bins=EDGES, by_class=True)
    doc = json.loads(json.dumps(result.doc, default=float))
    del doc["by"]["cloud_cover_unknown"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc).replace("NaN", "null"))
    old = sareval.load_result(path)
    assert [b["label"] for b in old.by_cloud_cover] == ["[0, 0.5)", "[0.5, 1]"]
    assert "by cloud cover" in str(old) and "by class" in str(old)


def test_multi_label_breakdowns_carry_intervals_for_every_chosen_metric(assets) -> None:
    """mAP per bin and AP per class get intervals too (the score state's same draws)."""
    chosen = ["map_macro", "f1_samples"]
    result, _, _ = evaluate(
        assets, "multi-label", replicates=20, by_class=True, cloud_cover_bins=EDGES,
        metrics=chosen,
    )  # fmt: skip
    assert set(result.intervals) == set(chosen)
    for b in result.by_cloud_cover:
        assert b["n_samples"] > 0 and list(b["metrics"]) == chosen
        assert all("ci" in e for e in b["metrics"].values())
    for entry in result.by_class.values():
        assert list(entry["metrics"]) == ["ap", "f1"]  # in the order of the chosen metrics
        assert all("ci" in e for e in entry["metrics"].values())


def test_merged_shards_keep_the_chosen_metrics(assets) -> None:
    """``sareval merge`` recomputes every section from counts, then keeps the shards' metrics."""
    from sareval.evaluator.merge import merge_documents
    from sareval.evaluator.results import to_json_value

    kw: dict[str, Any] = dict(metrics=["f1_macro"], by_class=True, cloud_cover_bins=EDGES)
    model = assets.onnx["single-label"]
    with sareval.open_store(assets.store) as store:
        parts = [to_json_value(sareval.evaluate(model, store.subset("cloudy"), shard=(i, 2),
                                                **kw).doc) for i in range(2)]  # fmt: skip
        single = to_json_value(sareval.evaluate(model, store.subset("cloudy"), **kw).doc)
    merged = merge_documents(parts, ["p0", "p1"])
    for key in ("metrics", "by", "warnings"):
        assert merged[key] == single[key], key
    assert list(merged["metrics"]) == ["f1_macro"]
