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

Storage (:func:`upsample_float32`): the resampled bands are kept as float32 DN, neither rounded
nor clipped. The published BigEarthNet-MM pipeline z-scores the 20/60 m bands and then resizes
them in float, so bicubic overshoot below 0 (and above the input range) reaches the network;
rounding to uint16 and clipping to 0, as the store did before, moved such pixels by up to 74 DN
(0.5 DN everywhere else). The resampling weights of every output pixel sum to 1, so resizing
commutes with the per-band z-score: ``(resize(x) - mean) / std == resize((x - mean) / std)``.
The card's normalisation of a float32 store value therefore gives the published network input
to float32 rounding (about 1e-3 DN here). float32 holds every uint16 DN exactly, so the 10 m
bands stored in the same float32 array are the GeoTIFF values bit for bit. Chosen over int32 or
int16 (which would still round by up to 0.5 DN) at the cost of twice the size of uint16; the
evaluator's preamble casts any stored dtype to float32 before the card's normalisation.
"""

from __future__ import annotations

import numpy as np

CUBIC_COEFF_A = -0.75
RESAMPLING_METHODS: dict[str, str] = {
    "cubic-tf1": (
        "TF1 legacy bicubic = ONNX Resize mode=cubic, coordinate_transformation_mode=asymmetric, "
        "cubic_coeff_a=-0.75, exclude_outside=0; float32, not rounded or clipped"
    ),
    "nearest": (
        "ONNX Resize mode=nearest, coordinate_transformation_mode=asymmetric, floor "
        "(= torch interpolate mode=nearest); float32"
    ),
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


def upsample_float32(
    band: np.ndarray, height: int, width: int, method: str = "cubic-tf1"
) -> np.ndarray:
    """:func:`upsample` as float32 (no rounding, no clipping: see module doc); a band already
    at the size is only cast (exact for integer DN up to 2**24)."""
    if band.shape == (height, width):
        return band.astype(np.float32)
    return upsample(band, height, width, method).astype(np.float32)
