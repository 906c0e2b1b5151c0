"""From counts per coalition to relevance entries, per class and per cloud-cover bin."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from sareval.commands.parsing import parse_bin_edges
from sareval.errors import SarevalError
from sareval.evaluator.coalitions import all_coalitions
from sareval.evaluator.config import Reporting
from sareval.evaluator.metrics import METRIC_NAMES, counts_for
from sareval.evaluator.relevance import (
    bin_labels,
    cloud_cover_bins,
    game_values,
    relevance_by_class,
    relevance_by_group,
    relevance_from_counts,
)
from sareval.evaluator.shapley import shape_relevance

PLAYERS = ["sar", "opt"]
NAMES = ["none", "sar", "opt", "sar+opt"]


def _data(task: str, n: int = 400, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    if task == "single-label":
        y = rng.integers(0, k, n)
        preds = [np.where(rng.random(n) < q, y, rng.integers(0, k, n)) for q in (0, 0.3, 0.6, 0.8)]
    else:
        y = rng.random((n, k)) < 0.4
        preds = [np.where(rng.random((n, k)) < q, y, rng.random((n, k)) < 0.3)
                 for q in (0, .3, .6, .8)]  # fmt: skip
    return y, dict(zip(all_coalitions(PLAYERS), preds, strict=True))


def _counts(task: str, y, predictions, k: int = 4, mask=None):
    out = {}
    for coalition, pred in predictions.items():
        out[coalition] = counts_for(task, k)
        sel = slice(None) if mask is None else mask
        out[coalition].add(y[sel], pred[sel])
    return out


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
@pytest.mark.parametrize("z", ["one", "full"])
def test_relevance_from_counts(task: str, z: str) -> None:
    y, predictions = _data(task)
    counts = _counts(task, y, predictions)
    entries = relevance_from_counts(counts, PLAYERS, z)
    assert tuple(entries) == METRIC_NAMES[task]
    for metric, entry in entries.items():
        V = {name: counts[c].metrics()[metric] for name, c in zip(NAMES, counts, strict=True)}
        assert entry["V"] == V and list(entry["V"]) == NAMES
        expected = shape_relevance(V, PLAYERS, z)
        assert entry["relevance"] == expected["relevance"]
        assert entry["cooperation"] == expected["cooperation"]
        assert entry["Z"] == expected["Z"]
        assert abs(entry["efficiency_gap"]) < 1e-12
    values = game_values(counts, PLAYERS)
    assert values["f1_macro"].shape == (4,)


def test_by_class_single_label_is_relevance_on_the_class_samples() -> None:
    y, predictions = _data("single-label")
    counts = _counts("single-label", y, predictions)
    names = ["forest", "water", "urban", "crops"]
    by_class = relevance_by_class(counts, PLAYERS, names)
    assert list(by_class) == names
    for k, name in enumerate(names):
        mask = y == k
        # V = accuracy restricted to the samples of true class k (numpy masking)
        V = {
            n: float(np.mean(predictions[c][mask] == k))
            for n, c in zip(NAMES, predictions, strict=True)
        }
        entry = by_class[name]["metrics"]["recall"]
        assert entry["V"] == pytest.approx(V, abs=1e-15)
        assert entry["relevance"] == pytest.approx(shapley_dict(V), abs=1e-12)
        assert by_class[name]["n_samples"] == int(mask.sum())
        assert set(by_class[name]["metrics"]) == {"recall", "precision", "f1", "f2"}


def shapley_dict(V: dict[str, float]) -> dict[str, float]:
    """Two-player Shapley values by the closed form of the reference."""
    return {
        "sar": (V["sar+opt"] - V["opt"] + V["sar"] - V["none"]) / 2,
        "opt": (V["sar+opt"] - V["sar"] + V["opt"] - V["none"]) / 2,
    }


def test_by_class_multi_label_uses_per_class_f1() -> None:
    y, predictions = _data("multi-label")
    counts = _counts("multi-label", y, predictions)
    by_class = relevance_by_class(counts, PLAYERS)
    assert list(by_class) == ["0", "1", "2", "3"]
    for k in range(4):
        V = {
            n: f1_score(y[:, k], predictions[c][:, k], zero_division=0)
            for n, c in zip(NAMES, predictions, strict=True)
        }
        entry = by_class[str(k)]["metrics"]["f1"]
        assert entry["V"] == pytest.approx(V, abs=1e-12)
        assert entry["relevance"] == pytest.approx(shapley_dict(V), abs=1e-12)
        assert by_class[str(k)]["n_samples"] == int(y[:, k].sum())
    with pytest.raises(SarevalError, match="class names"):
        relevance_by_class(counts, PLAYERS, ["a"])


def test_cloud_cover_bins() -> None:
    edges = parse_bin_edges("0,0.1,0.5,1")
    assert edges == [0.0, 0.1, 0.5, 1.0]
    assert bin_labels(edges) == ["[0, 0.1)", "[0.1, 0.5)", "[0.5, 1]"]
    cover = np.array([0.0, 0.05, 0.1, 0.3, 0.5, 0.99, 1.0, np.nan, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(cloud_cover_bins(cover, edges), [0, 0, 1, 1, 2, 2, 2, -1, -1, -1])
    with pytest.raises(SarevalError, match="bad bin edges"):
        parse_bin_edges("a,b")
    for bad in ("0", "0,0.5,0.5", "0,inf", "0,1.5"):  # parsed, then refused by Reporting
        with pytest.raises(SarevalError, match=r"ShapeConfig\.reporting\.cloud_cover_bins"):
            Reporting(cloud_cover_bins=parse_bin_edges(bad))


def test_relevance_by_cloud_cover_bin() -> None:
    y, predictions = _data("single-label", n=300, seed=1)
    rng = np.random.default_rng(2)
    cover = rng.random(300)
    cover[:20] = np.nan
    edges = [0.0, 0.3, 1.0]
    bins = cloud_cover_bins(cover, edges)
    labels = [*bin_labels(edges), "unknown"]
    per_bin = {
        label: _counts("single-label", y, predictions, mask=bins == (i if i < 2 else -1))
        for i, label in enumerate(labels)
    }
    result = relevance_by_group(per_bin, PLAYERS, "full")
    assert list(result) == labels
    for i, label in enumerate(labels):
        mask = bins == (i if i < 2 else -1)
        assert result[label]["n_samples"] == int(mask.sum())
        V = {
            n: float(np.mean(predictions[c][mask] == y[mask]))
            for n, c in zip(NAMES, predictions, strict=True)
        }
        assert result[label]["metrics"]["oa"]["V"] == pytest.approx(V, abs=1e-15)
    assert result["unknown"]["n_samples"] == 20


def test_missing_or_mixed_counts_are_refused() -> None:
    y, predictions = _data("single-label")
    counts = _counts("single-label", y, predictions)
    del counts[frozenset()]
    with pytest.raises(SarevalError, match="no counts for coalitions"):
        relevance_from_counts(counts, PLAYERS)
    counts[frozenset()] = counts_for("multi-label", 4)
    with pytest.raises(SarevalError, match="different tasks"):
        relevance_from_counts(counts, PLAYERS)
