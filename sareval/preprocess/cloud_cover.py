"""Cloud cover of an optical patch: the fraction of its pixels flagged cloudy.

Two detectors; the store records which one ran (``/cloud_cover`` attr ``method``):

- ``s2cloudless`` (used when the package is importable and all 13 S2 bands are present), with
  the settings of the cloud-effects study (Gawlikowski et al. 2022)::

      S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=True)
      on clip(DN, 0, 10000) / 10000 of B01..B12 (13 bands, B8A after B08, B10 included)

- ``fallback`` (otherwise; always for BigEarthNet, which lacks B10 that s2cloudless's all-band
  model needs), a spectral test in the spirit of Fmask with s2cloudless's spatial steps. On
  reflectance ``r = clip(DN, 0, 10000) / 10000``, with ``vis = mean(B02, B03, B04)``::

      cloud-like = vis > 0.2                                   (bright)
                   and sum_b |r_b - vis| / vis < 0.7, b in B02,B03,B04   (white: flat spectrum)
                   and B02 - 0.5 * B04 - 0.08 > 0              (haze-optimised transform: bluish)
                   and (B03 - B11) / (B03 + B11) < 0.4          (NDSI guard: not snow/ice)

  then, like s2cloudless, the cloud-like indicator is averaged over a disk of radius 4
  (reflected borders), thresholded at 0.4, and the mask dilated by a disk of radius 2.

Cover = mean of the final mask over the patch's pixels.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sareval.bands import S2_BANDS

S2CLOUDLESS_SETTINGS = {"threshold": 0.4, "average_over": 4, "dilation_size": 2, "all_bands": True}
FALLBACK_BANDS = ("B02", "B03", "B04", "B11")
AVERAGE_RADIUS = 4
DILATION_RADIUS = 2
MASK_THRESHOLD = 0.4


def s2cloudless_available() -> bool:
    """Whether the optional ``s2cloudless`` package is importable."""
    return importlib.util.find_spec("s2cloudless") is not None


def reflectance(dn: np.ndarray) -> np.ndarray:
    """``clip(DN, 0, 10000) / 10000`` as float32."""
    return (np.clip(dn.astype(np.float32), 0, 10000) / 10000).astype(np.float32)


def disk(radius: int) -> np.ndarray:
    """Boolean disk footprint ``x^2 + y^2 <= radius^2`` (as ``skimage.morphology.disk``)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def disk_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean of (..., H, W) ``values`` over a disk around each pixel; borders reflected
    (``cv2.BORDER_REFLECT_101``, as s2cloudless's ``filter2D``)."""
    fp = disk(radius)
    pad = [(0, 0)] * (values.ndim - 2) + [(radius, radius)] * 2
    p = np.pad(values.astype(np.float32), pad, mode="reflect")
    h, w = values.shape[-2:]
    total = np.zeros(values.shape, dtype=np.float32)
    for dy, dx in zip(*np.nonzero(fp), strict=True):
        total += p[..., dy : dy + h, dx : dx + w]
    return total / fp.sum()


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (..., H, W) ``mask`` by a disk; outside the patch counts as clear."""
    fp = disk(radius)
    pad = [(0, 0)] * (mask.ndim - 2) + [(radius, radius)] * 2
    p = np.pad(mask.astype(bool), pad, mode="constant")
    h, w = mask.shape[-2:]
    out = np.zeros(mask.shape, dtype=bool)
    for dy, dx in zip(*np.nonzero(fp), strict=True):
        out |= p[..., dy : dy + h, dx : dx + w]
    return out


def cloud_like(
    blue: np.ndarray, green: np.ndarray, red: np.ndarray, swir: np.ndarray
) -> np.ndarray:
    """The fallback's per-pixel spectral test on reflectances (see module doc)."""
    vis = (blue + green + red) / 3
    safe_vis = np.maximum(vis, 1e-6)
    whiteness = (np.abs(blue - vis) + np.abs(green - vis) + np.abs(red - vis)) / safe_vis
    hot = blue - 0.5 * red - 0.08
    ndsi = (green - swir) / np.maximum(green + swir, 1e-6)
    return (vis > 0.2) & (whiteness < 0.7) & (hot > 0) & (ndsi < 0.4)


def fallback_masks(s2: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """(n, C, H, W) DN -> (n, H, W) bool cloud masks with the fallback detector."""
    r = {b: reflectance(s2[:, list(bands).index(b)]) for b in FALLBACK_BANDS}
    like = cloud_like(r["B02"], r["B03"], r["B04"], r["B11"])
    smooth = disk_mean(like.astype(np.float32), AVERAGE_RADIUS)
    return dilate(smooth >= MASK_THRESHOLD, DILATION_RADIUS)


_DETECTOR = None


def s2cloudless_masks(s2: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """(n, 13, H, W) DN in :data:`~sareval.bands.S2_BANDS` order -> (n, H, W) bool masks."""
    global _DETECTOR
    if _DETECTOR is None:  # loading the model is slow: once per process
        from s2cloudless import S2PixelCloudDetector

        _DETECTOR = S2PixelCloudDetector(**S2CLOUDLESS_SETTINGS)
    order = [list(bands).index(b) for b in S2_BANDS]
    data = np.moveaxis(reflectance(s2[:, order]), 1, -1)  # (n, H, W, 13)
    return np.asarray(_DETECTOR.get_cloud_masks(data)).astype(bool)


@dataclass(frozen=True)
class CloudDetector:
    """Which detector runs (``"s2cloudless"`` / ``"fallback"``) on S2 patches with ``bands``."""

    kind: str
    bands: tuple[str, ...]
    reason: str = ""

    @property
    def method(self) -> str:
        """The description recorded in the store."""
        if self.kind == "s2cloudless":
            settings = ", ".join(f"{k}={v}" for k, v in S2CLOUDLESS_SETTINGS.items())
            return (
                f"s2cloudless S2PixelCloudDetector({settings}) on clip(DN,0,10000)/10000 "
                "of 13 bands; cover = fraction of cloudy pixels"
            )
        return (
            "sareval fallback v1: bright (mean B02-B04 > 0.2), white (Fmask whiteness < 0.7), "
            "HOT > 0, NDSI < 0.4 on clip(DN,0,10000)/10000; disk(4) mean >= 0.4; dilated by "
            f"disk(2); cover = fraction of cloudy pixels ({self.reason})"
        )

    def masks(self, s2: np.ndarray) -> np.ndarray:
        """(n, C, H, W) DN -> (n, H, W) bool cloud masks."""
        if self.kind == "s2cloudless":
            return s2cloudless_masks(s2, self.bands)
        return fallback_masks(s2, self.bands)

    def cover(self, s2: np.ndarray) -> np.ndarray:
        """(n, C, H, W) DN -> (n,) float32 cloud cover fractions."""
        return self.cover_and_masks(s2, np.ones(len(s2), bool))[0]

    def cover_and_masks(self, s2: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cover (n,) float32 and the store's ``/cloud_mask`` (n, H, W) uint8 of the
        ``rows`` (bool (n,)) of (n, C, H, W) DN; other rows: cover NaN, mask 255.
        Cover = mean of the mask (float64, then float32)."""
        n, h, w = len(s2), s2.shape[-2], s2.shape[-1]
        cover = np.full(n, np.nan, dtype=np.float32)
        mask = np.full((n, h, w), 255, dtype=np.uint8)
        if rows.any():
            m = self.masks(s2[rows])
            cover[rows] = m.mean(axis=(1, 2)).astype(np.float32)
            mask[rows] = m
        return cover, mask


def choose_detector(bands: Sequence[str], use_s2cloudless: bool = True) -> CloudDetector:
    """s2cloudless when importable and all 13 S2 bands are present, else the fallback."""
    bands = tuple(bands)
    missing = [b for b in FALLBACK_BANDS if b not in bands]
    if missing:
        raise ValueError(f"cloud cover needs bands {', '.join(missing)}")
    if not set(S2_BANDS) <= set(bands):
        absent = ", ".join(b for b in S2_BANDS if b not in bands)
        return CloudDetector("fallback", bands, f"s2cloudless needs all 13 bands; no {absent}")
    if not use_s2cloudless:
        return CloudDetector("fallback", bands, "s2cloudless disabled")
    if not s2cloudless_available():
        return CloudDetector("fallback", bands, "s2cloudless not installed")
    return CloudDetector("s2cloudless", bands)
