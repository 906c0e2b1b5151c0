"""Cloud cover: the fallback detector on synthetic clouds with known masks; s2cloudless glue."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from sareval.bands import BIGEARTHNET_S2_BANDS, S2_BANDS
from sareval.preprocess import cloud_cover
from sareval.preprocess.cloud_cover import (
    S2CLOUDLESS_SETTINGS,
    choose_detector,
    dilate,
    disk,
    disk_mean,
    fallback_masks,
)

#: reflectance x 10^4 per band (S2_BANDS order)
VEGETATION = (1200, 900, 800, 500, 900, 2200, 2800, 3000, 3200, 900, 15, 1600, 800)
CLOUD = (5200, 5000, 5000, 5100, 5200, 5300, 5300, 5300, 5300, 2500, 400, 4000, 3200)
SNOW = (6500, 6400, 6300, 6200, 6000, 5800, 5700, 5600, 5400, 1700, 60, 800, 600)
SAND = (1800, 1800, 2050, 2400, 2650, 2800, 2920, 3000, 3100, 1150, 22, 3900, 3200)


def scene(masks: dict[tuple[int, ...], np.ndarray], size: int = 64, seed: int = 0) -> np.ndarray:
    """(13, size, size) uint16 vegetation with other surfaces painted where ``masks`` are set."""
    rng = np.random.default_rng(seed)
    img = np.broadcast_to(np.array(VEGETATION, float)[:, None, None], (13, size, size)).copy()
    for spectrum, m in masks.items():
        img[:, m] = np.array(spectrum, float)[:, None]
    img *= 1 + 0.03 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def blob(size: int, cy: int, cx: int, r: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def test_fallback_finds_a_known_cloud_and_ignores_snow_and_sand() -> None:
    size = 64
    cloud = blob(size, 20, 20, 12)
    snow = blob(size, 48, 48, 10)
    sand = blob(size, 48, 12, 9)
    img = scene({CLOUD: cloud, SNOW: snow, SAND: sand}, size)
    mask = fallback_masks(img[None], S2_BANDS)[0]
    # every cloud pixel is found; nothing beyond the cloud dilated by the spatial steps
    assert mask[cloud].all()
    assert not mask[~dilate(cloud, 2 + 4)].any()
    assert not mask[snow].any() and not mask[sand].any()
    cover = cloud_cover.CloudDetector("fallback", S2_BANDS, "test").cover(img[None])[0]
    assert cloud.mean() <= cover <= dilate(cloud, 3).mean()


def test_fallback_cover_follows_known_coverage() -> None:
    size = 96
    rng = np.random.default_rng(1)
    truth, estimate = [], []
    for k in range(8):
        mask = np.zeros((size, size), bool)
        for _ in range(k * 3):
            mask |= blob(size, *rng.integers(0, size, 2), int(rng.integers(6, 20)))
        img = scene({CLOUD: mask}, size, seed=k)
        truth.append(mask.mean())
        estimate.append(fallback_masks(img[None], S2_BANDS)[0].mean())
    truth, estimate = np.array(truth), np.array(estimate)
    assert estimate[0] == 0.0
    assert np.all(estimate >= truth - 1e-9)  # the dilation only adds
    assert np.corrcoef(truth, estimate)[0, 1] > 0.98


def test_spatial_steps_match_a_naive_loop() -> None:
    rng = np.random.default_rng(2)
    a = rng.random((9, 11)).astype(np.float32)
    r = 2
    fp = disk(r)
    assert fp.sum() == 13
    padded = np.pad(a, r, mode="reflect")
    naive = np.array(
        [
            [padded[i : i + 2 * r + 1, j : j + 2 * r + 1][fp].mean() for j in range(11)]
            for i in range(9)
        ]
    )
    np.testing.assert_allclose(disk_mean(a, r), naive, rtol=1e-6)
    m = rng.random((9, 11)) > 0.9
    pm = np.pad(m, r)
    naive_d = np.array(
        [[pm[i : i + 2 * r + 1, j : j + 2 * r + 1][fp].any() for j in range(11)] for i in range(9)]
    )
    np.testing.assert_array_equal(dilate(m, r), naive_d)


def test_choose_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    ben = choose_detector(BIGEARTHNET_S2_BANDS)
    assert ben.kind == "fallback" and "B10" in ben.method
    monkeypatch.setattr(cloud_cover, "s2cloudless_available", lambda: False)
    d = choose_detector(S2_BANDS)
    assert d.kind == "fallback" and "not installed" in d.method
    monkeypatch.setattr(cloud_cover, "s2cloudless_available", lambda: True)
    assert choose_detector(S2_BANDS).kind == "s2cloudless"
    assert "threshold=0.4, average_over=4, dilation_size=2" in choose_detector(S2_BANDS).method
    assert choose_detector(S2_BANDS, use_s2cloudless=False).kind == "fallback"
    with pytest.raises(ValueError, match="B11"):
        choose_detector(("B02", "B03", "B04"))


def test_s2cloudless_receives_the_study_settings_and_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The glue: settings, band order (13 bands last axis), clipping and scaling."""
    seen: dict[str, object] = {}

    class FakeDetector:
        def __init__(self, **kwargs: object) -> None:
            seen["settings"] = kwargs

        def get_cloud_masks(self, data: np.ndarray) -> np.ndarray:
            seen["data"] = data
            return (data[..., S2_BANDS.index("B02")] > 0.4).astype(np.uint8)

    module = types.ModuleType("s2cloudless")
    module.S2PixelCloudDetector = FakeDetector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "s2cloudless", module)
    monkeypatch.setattr(cloud_cover, "_DETECTOR", None)
    rng = np.random.default_rng(3)
    # store order reversed, to check that the bands are put in S2_BANDS order
    bands = tuple(reversed(S2_BANDS))
    s2 = rng.integers(0, 14000, size=(2, 13, 8, 8)).astype(np.uint16)
    det = cloud_cover.CloudDetector("s2cloudless", bands)
    cover = det.cover(s2)
    assert seen["settings"] == S2CLOUDLESS_SETTINGS
    data = seen["data"]
    assert data.shape == (2, 8, 8, 13) and data.dtype == np.float32  # type: ignore[union-attr]
    expected = np.clip(s2[:, ::-1].astype(np.float32), 0, 10000) / 10000
    np.testing.assert_allclose(data, np.moveaxis(expected, 1, -1))
    b02 = expected[:, S2_BANDS.index("B02")]
    np.testing.assert_allclose(cover, (b02 > 0.4).mean(axis=(1, 2)))
