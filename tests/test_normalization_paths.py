""":func:`~sareval.normalization.normalise_torch` against :func:`normalise_numpy`, bit for bit,
on each of its copy paths: sensors in input order (identity), each sensor in one contiguous run
of the card's order (slice copies), and sensors interleaved (concatenate, then reorder); NaN
replaced, values clipped, raw uint16 and float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sareval.card import ModelCard
from sareval.normalization import (
    channel_map,
    normalise_numpy,
    normalise_torch,
    torch_constants,
    torch_flags,
)

DATA_BANDS = {"s1": ["VV", "VH"], "s2": ["B01", "B02", "B03", "B04"]}
TRANSFORMS = {
    "VV": {"mean": -12.0, "std": 5.0, "nan": -30.0, "clip": [-25.0, 0.0]},
    "VH": {"mean": -19.0, "std": 6.0, "nan": 0.0},
    "B02": {"mean": 900.0, "std": 400.0, "clip": [0.0, 3000.0]},
    "B03": {"mean": 1000.0, "std": 450.0},
    "B04": {"mean": 1100.0, "std": 500.0},
}


@pytest.mark.parametrize(
    ("channels", "path"),
    [
        (["VV", "VH", "B02", "B03", "B04"], "identity"),
        (["B04", "B02", "B03", "VH", "VV"], "slices"),  # each sensor in one run, reordered
        (["B02", "VV", "B03", "VH"], "interleaved"),
    ],
)
def test_every_copy_path_equals_numpy_bit_for_bit(channels: list[str], path: str) -> None:
    sar = [b for b in channels if b in DATA_BANDS["s1"]]
    opt = [b for b in channels if b in DATA_BANDS["s2"]]
    card = ModelCard.custom(
        {"sar": sar, "opt": opt}, task="single-label", class_names=["a", "b"], input_size=8,
        normalization={b: TRANSFORMS[b] for b in channels}, channels=channels,
    )  # fmt: skip
    cm = channel_map(card, DATA_BANDS)
    _, runs = torch_flags(cm)
    assert {"identity": runs == ((0, 2), (2, 5)), "slices": runs == ((3, 5), (0, 3)),
            "interleaved": runs is None}[path]  # fmt: skip
    rng = np.random.default_rng(0)
    s1 = rng.normal(-15, 8, (3, 2, 8, 8)).astype(np.float32)
    s1[0, 0, :2] = np.nan
    s1[1, 1, 3] = np.nan
    raw = {"s1": s1, "s2": rng.integers(0, 4000, (3, 4, 8, 8)).astype(np.uint16)}
    want = normalise_numpy(cm, raw)
    k = {n: torch.from_numpy(v) for n, v in torch_constants(cm).items()}
    got = normalise_torch({s: torch.from_numpy(a) for s, a in raw.items()}, cm.sensors, k,
                          torch_flags(cm)).numpy()  # fmt: skip
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN where numpy keeps NaN
    assert not np.isnan(got).any()  # both NaN bands are replaced here
