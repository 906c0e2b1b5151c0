"""The band-mean baseline's statistics come from a named source (issue 18 item 7):
``ShapeConfig.baseline_statistics`` = the evaluated data (default), the card, or another store
subset (e.g. the clear split), recorded with the values used; checked against means read
straight from the HDF5 images and a one-coalition-at-a-time loop."""

from __future__ import annotations

import numpy as np
import pytest
from shape_testing import (
    evaluate_doc,
    get_assets,
    naive_decisions,
    naive_outputs,
    sklearn_metrics,
    store_labels,
)

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.config import ShapeConfig
from sareval.evaluator.results import to_json_value, validate
from sareval.store import Store

TASK = "single-label"


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def image_means(store_path, subset: str) -> dict[str, float]:
    """Per-band mean of the finite raw pixels of ``subset``, read from the image datasets."""
    with Store(store_path) as st:
        sub = st.subset(subset)
        out = {}
        for sensor, data in (("s1", "s1"), ("s2", sub.optical)):
            x = st.file[data][()][sub.rows].astype(np.float64)
            for i, band in enumerate(st.bands(sensor)):
                v = x[:, i]
                out[band] = float(v[np.isfinite(v)].mean())
    return out


def input_baseline(card, raw: dict[str, float]) -> np.ndarray:
    """The card's transform of raw per-band values, in the network's input space."""
    out = []
    for band in card.channels:
        t = card.transform(band)
        x = np.float32(raw[band])
        x = np.float32(np.clip(x, *t.clip)) if t.clip else x
        out.append((x - np.float32(t.mean)) / np.float32(t.std))
    return np.array(out, np.float32)


def check_values(doc: dict, coalitions, outputs, y) -> None:
    players = tuple(doc["players"])
    for coalition, out in zip(coalitions, outputs, strict=True):
        name = coalition_name(coalition, players)
        for metric, value in sklearn_metrics(TASK, y, naive_decisions(out, TASK), 6).items():
            assert doc["metrics"][metric]["V"][name] == pytest.approx(value, abs=1e-12)


def test_default_is_the_evaluated_subset_and_is_recorded(assets) -> None:
    doc = evaluate_doc(assets.onnx[TASK], assets.store, "cloudy", baseline="band-mean",
                       progress=False)  # fmt: skip
    validate(to_json_value(doc))
    card = assets.cards[TASK]
    assert doc["config"]["baseline_statistics"] == "evaluated"
    own = image_means(assets.store, "cloudy")  # the cloudy images themselves
    assert list(doc["config"]["baseline_values"]) == list(card.channels)
    for band, value in doc["config"]["baseline_values"].items():
        assert value == pytest.approx(own[band], rel=1e-9)
    plain = evaluate_doc(assets.onnx[TASK], assets.store, "cloudy", progress=False)
    assert plain["config"]["baseline_values"] is None  # input-zero: no statistic


def test_clear_split_statistics_for_a_cloudy_subset(assets) -> None:
    """Baseline from the clear subset's means while evaluating the cloudy one: every V equals
    the loop fed that baseline, and differs from the subset's own (cloud-inflated) means."""
    card = assets.cards[TASK]
    source = (str(assets.store), "clear")
    doc = evaluate_doc(assets.onnx[TASK], assets.store, "cloudy", baseline="band-mean",
                       baseline_statistics=source, batch_size=8, progress=False)  # fmt: skip
    validate(to_json_value(doc))
    clear = image_means(assets.store, "clear")
    cloudy = image_means(assets.store, "cloudy")
    rec = doc["config"]["baseline_statistics"]
    assert rec["subset"] == "clear" and rec["n_samples"] == 40
    assert rec["store"] == str(assets.store.resolve())
    for band, value in doc["config"]["baseline_values"].items():
        assert value == pytest.approx(clear[band], rel=1e-9)
    assert cloudy["B04"] > clear["B04"] + 1000  # clouds brighten the subset's own mean
    baseline = input_baseline(card, clear)
    coalitions, outputs = naive_outputs(assets.onnx[TASK], assets.store, "cloudy", card, baseline)
    check_values(doc, coalitions, outputs, store_labels(assets.store, "cloudy", TASK))
    np.testing.assert_allclose(doc["empty"]["output"], outputs[0, 0], atol=1e-5)
    own = evaluate_doc(assets.onnx[TASK], assets.store, "cloudy", baseline="band-mean",
                       progress=False)  # fmt: skip
    assert own["empty"]["output"] != doc["empty"]["output"]


def test_card_statistics_are_the_normalisation_means(assets) -> None:
    """``card``: the card's means; for z-scored channels whose mean lies inside the clip range
    that is the input-zero input, so every count equals the input-zero run's."""
    card = assets.cards[TASK]
    doc = evaluate_doc(assets.onnx[TASK], assets.store, "clear", baseline="band-mean",
                       baseline_statistics="card", progress=False)  # fmt: skip
    assert doc["config"]["baseline_statistics"] == "card"
    assert doc["config"]["baseline_values"] == {b: card.transform(b).mean for b in card.channels}
    zero = evaluate_doc(assets.onnx[TASK], assets.store, "clear", progress=False)
    assert doc["counts"] == zero["counts"] and doc["metrics"] == zero["metrics"]


WHERE = r"ShapeConfig\.game\.baseline_statistics"


def test_bad_statistics_are_refused(assets) -> None:
    with pytest.raises(SarevalError, match=rf"{WHERE}: 'train' is not"):
        ShapeConfig(baseline="band-mean", baseline_statistics="train")  # type: ignore[arg-type]
    with pytest.raises(SarevalError, match=rf"{WHERE}: 'card' applies"):
        ShapeConfig(baseline_statistics="card")
    with pytest.raises(SarevalError, match=rf"{WHERE}: expected"):
        ShapeConfig(baseline="band-mean", baseline_statistics=("a.h5",))  # type: ignore[arg-type]
    kw = {"baseline": "band-mean", "progress": False}
    with pytest.raises(SarevalError, match=r"subset 'nothing' of .* has no samples"):
        stats = (str(assets.store), "nothing")
        evaluate_doc(assets.onnx[TASK], assets.store, "clear", baseline_statistics=stats, **kw)
    with pytest.raises(SarevalError, match="unknown subset 'train'"):
        stats = (str(assets.store), "train")
        evaluate_doc(assets.onnx[TASK], assets.store, "clear", baseline_statistics=stats, **kw)
