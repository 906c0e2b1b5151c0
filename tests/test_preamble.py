"""The coalition preamble: numpy reference vs a naive per-channel loop, ONNX graph, torch module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from shape_testing import get_assets, make_card, naive_inputs, player_coalitions

from sareval.bands import BIGEARTHNET_MM_S2_BANDS
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.coalitions import all_coalitions
from sareval.evaluator.preamble import (
    absent_runs,
    apply_numpy,
    build_preamble,
    coalition_module,
    compose_onnx,
    onnx_preamble,
    transform_values,
)
from sareval.store import Store


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def read_all(store_path: Path, subset: str = "clear") -> tuple[dict[str, np.ndarray], dict]:
    with Store(store_path) as st:
        sub = st.subset(subset)
        batch = st.read_batch(sub, 0, len(sub))
        bands = {s: st.bands(s) for s in ("s1", "s2")}
    return batch.arrays, bands


def run_preamble_graph(pre, raw: dict[str, np.ndarray], opset: int = 20) -> np.ndarray:
    model = onnx_preamble(
        pre,
        input_dtypes={s: raw[s].dtype for s in pre.sensors},
        image_size=raw["s1"].shape[2:],
        output_name="out",
        opset=opset,
        ir_version=8 if opset < 18 else 10,
    )
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(None, {s: raw[s] for s in pre.sensors})[0]


def naive_coalition_batch(x: np.ndarray, card: ModelCard, baseline: np.ndarray) -> np.ndarray:
    """One copy per non-empty coalition, absent channels overwritten; stacked on the batch axis."""
    owner = {b: m.name for m in card.modalities for b in m.bands}
    parts = []
    for coalition in player_coalitions(card.modality_names)[1:]:
        masked = x.copy()
        for c, band in enumerate(card.channels):
            if owner[band] not in coalition:
                masked[:, c] = baseline[c]
        parts.append(masked)
    return np.concatenate(parts)


def test_numpy_reference_equals_naive_loop(assets) -> None:
    card = assets.cards["single-label"]
    raw, bands = read_all(assets.store)
    pre = build_preamble(card, bands)
    with Store(assets.store) as st:
        x = naive_inputs(st, "clear", card)
    assert np.isfinite(x).all()  # NaN -> 0 and Inf -> clip for VV/VH
    expected = naive_coalition_batch(x, card, np.zeros(card.n_channels, np.float32))
    np.testing.assert_array_equal(apply_numpy(pre, raw), expected)
    assert pre.masks.tolist() == [
        [False] * 10 + [True] * 2,  # sar
        [True] * 10 + [False] * 2,  # opt
        [True] * 12,  # sar+opt
    ]


@pytest.mark.parametrize("opset", [11, 13, 20])
@pytest.mark.parametrize("baseline", ["input-zero", "raw-zero", "band-mean"])
def test_onnx_preamble_equals_numpy(assets, baseline: str, opset: int) -> None:
    card = assets.cards["single-label"]
    raw, bands = read_all(assets.store, "cloudy")
    means = None
    if baseline == "band-mean":
        with Store(assets.store) as st:
            rows = st.subset("cloudy").rows
            means = dict(zip(bands["s1"], st.band_mean("s1", rows), strict=True))
            means.update(zip(bands["s2"], st.band_mean("s2_cloudy", rows), strict=True))
    pre = build_preamble(card, bands, baseline=baseline, band_means=means)
    got = run_preamble_graph(pre, raw, opset)
    np.testing.assert_array_equal(got, apply_numpy(pre, raw))
    # the baseline values themselves, from the card's formula
    f32 = np.float32
    if baseline == "raw-zero":
        vv, b02 = card.transform("VV"), card.transform("B02")
        assert pre.baseline[10] == (f32(np.clip(0.0, *vv.clip)) - f32(vv.mean)) / f32(vv.std)
        assert pre.baseline[0] == (f32(0.0) - f32(b02.mean)) / f32(b02.std)
    elif baseline == "band-mean":
        b03 = card.transform("B03")
        expected = (np.float32(means["B03"]) - np.float32(b03.mean)) / np.float32(b03.std)
        assert pre.baseline[1] == pytest.approx(expected, rel=1e-6)
        assert abs(pre.baseline[1]) > 0.1
    else:
        assert not pre.baseline.any()


def test_channel_order_nan_passthrough_and_three_players(assets) -> None:
    """BigEarthNet-MM channel order (S2 bands permuted, SAR in front), a band without any
    transform (its NaN must reach the output unchanged), three players."""
    raw, bands = read_all(assets.store)
    card = make_card(
        input={"name": "input", "channels": ["VH", "VV", *BIGEARTHNET_MM_S2_BANDS]},
        modalities=[
            {"name": "sar", "bands": ["VH", "VV"]},
            {"name": "rgb", "bands": ["B04", "B03", "B02"]},
            {"name": "rest", "bands": [b for b in BIGEARTHNET_MM_S2_BANDS if b not in "B04B03B02"]},
        ],
        normalization={"VV": {"clip": [-25.0, 0.0], "mean": -11.0, "std": 4.0}},
    )
    pre = build_preamble(card, bands, baseline="raw-zero")
    assert pre.n_coalitions == 7 and pre.sensors == ("s1", "s2")
    expected = apply_numpy(pre, raw)
    got = run_preamble_graph(pre, raw)
    np.testing.assert_array_equal(got, expected)  # equal bit patterns, NaN included
    n = len(raw["s1"])
    full = expected[-n:]
    assert np.isnan(full[3, 0, 0, 0]) and np.isnan(full[1, 1, 2, 3])  # NaN VH, NaN VV kept
    assert full[4, 1, 1, 1] == np.float32(11.0 / 4.0)  # +Inf VV clipped to 0 dB
    # VH (channel 0) has no transform: raw values, NaN kept; VV (channel 1) is clipped
    np.testing.assert_array_equal(full[:, 0], raw["s1"][:, 1])
    vv = raw["s1"][:, 0]
    np.testing.assert_array_equal(
        full[:, 1], ((np.clip(vv, -25, 0) - np.float32(-11.0)) / np.float32(4.0)).astype(np.float32)
    )
    np.testing.assert_array_equal(full[:, 2], raw["s2"][:, 3].astype(np.float32))  # B04 first


def test_torch_module_equals_numpy(assets) -> None:
    card = assets.cards["multi-label"]
    raw, bands = read_all(assets.store)
    pre = build_preamble(card, bands, baseline="raw-zero")
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return x.mean(dim=(2, 3))

    module = coalition_module(pre, Probe())
    with torch.inference_mode():
        module({s: torch.from_numpy(a) for s, a in raw.items()})
        module({s: torch.from_numpy(a[:1]) for s, a in raw.items()}, torch.zeros(1, 12, dtype=bool))
    np.testing.assert_array_equal(seen[0].numpy(), apply_numpy(pre, raw))
    assert seen[1].shape == (1, 12, 8, 8)
    np.testing.assert_array_equal(seen[1][0, :, 0, 0].numpy(), pre.baseline)


def test_composed_graph_and_empty_mask(assets) -> None:
    card = assets.cards["single-label"]
    raw, bands = read_all(assets.store)
    pre = build_preamble(card, bands)
    model = onnx.load(str(assets.onnx["single-label"]))
    composed = compose_onnx(
        pre, model, input_dtypes={"s1": np.float32, "s2": np.uint16},
        image_size=(8, 8),
    )  # fmt: skip
    onnx.checker.check_model(composed)
    assert [i.name for i in composed.graph.input][:2] == ["s1", "s2"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(composed.SerializeToString(), options, ["CPUExecutionProvider"])
    bare = ort.InferenceSession(
        str(assets.onnx["single-label"]), providers=["CPUExecutionProvider"]
    )
    out = session.run(None, raw)[0]
    expected = bare.run(None, {"input": apply_numpy(pre, raw)})[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    assert out.shape == (3 * len(raw["s1"]), card.n_classes)
    empty = session.run(
        None, {"s1": raw["s1"][:1], "s2": raw["s2"][:1], "sareval_coalition_mask": pre.empty_mask()}
    )[0]
    zero = bare.run(None, {"input": np.zeros((1, 12, 8, 8), np.float32)})[0]
    np.testing.assert_allclose(empty, zero, rtol=0, atol=1e-6)


def test_bad_inputs(assets) -> None:
    card = assets.cards["single-label"]
    with pytest.raises(SarevalError, match=r"bands \['B11', 'B12'\] are missing from the data"):
        build_preamble(card, {"s1": ("VV", "VH"), "s2": BIGEARTHNET_MM_S2_BANDS[:8]})
    with pytest.raises(SarevalError, match="unknown baseline"):
        build_preamble(card, {"s1": ("VV", "VH"), "s2": BIGEARTHNET_MM_S2_BANDS}, baseline="x")
    model = onnx.load(str(assets.onnx["single-label"]))
    pre = build_preamble(card, {"s1": ("VV", "VH"), "s2": BIGEARTHNET_MM_S2_BANDS})
    kw = dict(input_dtypes={"s1": np.float32, "s2": np.uint16}, image_size=(8, 8))
    renamed = onnx.load(str(assets.onnx["single-label"]))
    renamed.graph.input[0].name = "x"
    with pytest.raises(
        SarevalError, match=r"card's inputs \(input\) are not the model's inputs \(x\)"
    ):
        compose_onnx(pre, renamed, **kw)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    with pytest.raises(SarevalError, match="fixed batch size 4"):
        compose_onnx(pre, model, **kw)


def test_transform_values_matches_card_formula() -> None:
    card = make_card()
    pre = build_preamble(card, {"s1": ("VV", "VH"), "s2": BIGEARTHNET_MM_S2_BANDS})
    raw = np.array([np.nan] * 10 + [np.inf, -np.inf], np.float32)
    got = transform_values(raw, pre)
    assert np.isnan(got[:10]).all()  # S2 bands: no nan_to_num in the card
    vv, vh = card.transform("VV"), card.transform("VH")
    assert got[10] == np.float32((np.float32(0.0) - np.float32(vv.mean)) / np.float32(vv.std))
    assert got[11] == np.float32((np.float32(-25.0) - np.float32(vh.mean)) / np.float32(vh.std))
    assert len(all_coalitions(card.modality_names)) == pre.n_coalitions + 1


def test_absent_runs_equal_a_naive_scan() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        present = rng.random(int(rng.integers(1, 14))) < 0.5
        runs = absent_runs(present.tolist())
        covered = np.ones(len(present), bool)
        for a, b in runs:
            assert a < b and not present[a:b].any()
            covered[a:b] = False
        np.testing.assert_array_equal(covered, present)  # every absent channel, once
        assert all(runs[i][1] < runs[i + 1][0] for i in range(len(runs) - 1))  # maximal runs


@pytest.mark.parametrize("bf16", [False, True])
def test_torch_rows_equal_numpy_with_a_band_mean_baseline(assets, bf16: bool) -> None:
    """The coalition rows the torch module builds (copy, then absent runs overwritten; bf16
    channels-last for a bf16 copy; paired rows) equal the numpy reference row by row, on a
    baseline that differs per channel and masks whose absent channels form several runs."""
    card = assets.cards["single-label"]
    raw, bands = read_all(assets.store, "cloudy")
    with Store(assets.store) as st:
        rows = st.subset("cloudy").rows
        means = dict(zip(bands["s1"], st.band_mean("s1", rows), strict=True))
        means.update(zip(bands["s2"], st.band_mean("s2_cloudy", rows), strict=True))
    pre = build_preamble(card, bands, baseline="band-mean", band_means=means)
    assert len(set(pre.baseline.tolist())) > 2
    seen: list[torch.Tensor] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone(memory_format=torch.preserve_format))
            return x.float().mean(dim=(2, 3))

    module = coalition_module(pre, Probe(), bf16_channels_last=bf16)
    x = apply_numpy(pre, raw)[-len(raw["s1"]) :]  # the full coalition: normalised inputs
    mask = np.array([[c % 3 != 1 for c in range(12)], [c in (0, 4, 5, 11) for c in range(12)]])
    want = np.concatenate([np.where(m[None, :, None, None], x, pre.baseline[None, :, None, None])
                           for m in mask])  # fmt: skip
    pairs = np.arange(len(x)) % 2  # sample i under mask[i % 2]
    want_paired = np.where(mask[pairs][:, :, None, None], x, pre.baseline[None, :, None, None])
    tensors = {s: torch.from_numpy(a) for s, a in raw.items()}
    with torch.inference_mode():
        module(tensors, torch.from_numpy(mask))
        module(tensors, torch.from_numpy(mask[pairs]), paired=True)
    for got, ref in zip(seen, (want, want_paired), strict=True):
        if bf16:
            assert got.dtype == torch.bfloat16
            assert got.is_contiguous(memory_format=torch.channels_last)
            ref_t = torch.from_numpy(ref.astype(np.float32)).to(torch.bfloat16)
            assert torch.equal(got, ref_t)
        else:
            np.testing.assert_array_equal(got.numpy(), ref)
