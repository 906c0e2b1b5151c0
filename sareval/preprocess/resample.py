"""Bring BigEarthNet's 20 m and 60 m bands to the 10 m grid (120 x 120).

Methods (``--resampling``; the name and description are recorded in the store):

- ``cubic-tf1`` (default): what the published BigEarthNet-MM models were trained with, TF1's
  legacy ``tf.image.resize_bicubic`` (``align_corners=False``, no half-pixel centres), which is
  ONNX ``Resize`` with ``mode="cubic"``, ``coordinate_transformation_mode="asymmetric"``,
  ``cubic_coeff_a=-0.75``, ``exclude_outside=0``. Output pixel ``x`` samples the source at
  ``u = x * n_in / n_out``; with ``u0 = floor(u)``, ``t = u - u0`` it is
  ``sum_k W(t - k) * src[clamp(u0 + k, 0, n_in - 1)]`` for ``k = -1..2`` and the Keys kernel
  ``W(s) = (a+2)|s|^3 - (a+3)|s|^2 + 1`` (``|s| <= 1``), ``a|s|^3 - 5a|s|^2 + 8a|s| - 4a``
  (``1 < |s| < 2``), ``a = -0.75``; separable (rows, then columns).
- ``nearest``: ONNX ``Resize`` ``mode="nearest"``, asymmetric, ``nearest_mode="floor"``: each
  10 m pixel takes the value of the coarse pixel that contains it (values unchanged).

The store keeps S2 as uint16 DN, so resampled values are rounded to the nearest integer
(``np.rint``, ties to even) and clipped to [0, 65535]: at most 0.5 DN from the float result.
"""

from __future__ import annotations

import numpy as np

CUBIC_COEFF_A = -0.75
RESAMPLING_METHODS: dict[str, str] = {
    "cubic-tf1": (
        "TF1 legacy bicubic = ONNX Resize mode=cubic, coordinate_transformation_mode=asymmetric, "
        "cubic_coeff_a=-0.75, exclude_outside=0; rounded to uint16"
    ),
    "nearest": "ONNX Resize mode=nearest, coordinate_transformation_mode=asymmetric, floor",
}


def keys_cubic(s: np.ndarray, a: float = CUBIC_COEFF_A) -> np.ndarray:
    """The Keys cubic convolution kernel ``W(s)`` with coefficient ``a``."""
    s = np.abs(s)
    near = ((a + 2) * s - (a + 3)) * s * s + 1
    far = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return np.where(s <= 1, near, np.where(s < 2, far, 0.0))


def resample_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """(n_out, n_in) float64 matrix ``M`` with ``out = M @ src`` along one axis."""
    if method not in RESAMPLING_METHODS:
        raise ValueError(f"unknown resampling {method!r}; known: {', '.join(RESAMPLING_METHODS)}")
    u = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    u0 = np.floor(u)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    if method == "nearest":
        m[rows, np.clip(u0.astype(np.int64), 0, n_in - 1)] = 1.0
        return m
    t = u - u0
    for k in (-1, 0, 1, 2):
        cols = np.clip(u0.astype(np.int64) + k, 0, n_in - 1)
        np.add.at(m, (rows, cols), keys_cubic(t - k))
    return m


def upsample(band: np.ndarray, height: int, width: int, method: str = "cubic-tf1") -> np.ndarray:
    """Resample a (h, w) band to (height, width); float64 result (see module doc)."""
    h, w = band.shape
    rows = resample_matrix(h, height, method)
    cols = resample_matrix(w, width, method)
    return rows @ band.astype(np.float64) @ cols.T


def to_uint16(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer (ties to even) and clip to the uint16 range."""
    return np.clip(np.rint(values), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def upsample_uint16(
    band: np.ndarray, height: int, width: int, method: str = "cubic-tf1"
) -> np.ndarray:
    """:func:`upsample` then :func:`to_uint16`; a band already at the size is returned as is."""
    if band.shape == (height, width):
        return band.astype(np.uint16, copy=False)
    return to_uint16(upsample(band, height, width, method))
