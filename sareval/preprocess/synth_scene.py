"""The signal model shared by the synthetic SEN12MS(-CR) and BigEarthNet generators.

Every constant that sets how much each modality says about the land cover lives in this module:
the surface table :data:`SURFACES` and :class:`SignalParams` (:data:`SIGNAL`).

Surfaces and fine classes
    A *surface* (water, broadleaf forest, grass, urban, ...) has a 13-band Sentinel-2 L1C
    top-of-atmosphere signature (reflectance x 10^4, bands B01..B12 with B8A and B10) and a
    Sentinel-1 backscatter (VV, VH, dB). A *fine class* (IGBP17 / CLC43) is a linear mixture of
    surfaces (reflectance and linear SAR power mix), plus a small fixed per-class perturbation
    (seeded by :data:`CLASS_PERTURBATION_SEED`, independent of the dataset seed), so classes of
    one group differ a little. SAR means are grouped (water / urban / forest / woody low
    vegetation / herbaceous / wetland / barren+snow): optical separates all classes, SAR
    separates the groups but a per-patch offset blurs classes within a group.

A patch (:func:`render_patch`)
    - class map: a dominant fine class plus 0-2 minor classes as smooth blobs with exact pixel
      counts (:func:`class_map`);
    - optical: ``DN = s_c * g_patch * g_band * (1 + j_{c,band}) * illum(x) * (1 + t_c n(x)) + e``
      with the class spectrum ``s_c``, per-patch gains, per-patch per-class jitter, smooth
      illumination, per-pixel texture and sensor noise; 20 m / 60 m bands block-averaged on the
      10 m grid as in SEN12MS;
    - SAR: ``sigma0 = 10^((m_c + o_patch + o_{c,patch} + tau_c f(x)) / 10) * G`` with the class
      mean ``m_c`` (dB), per-patch and per-patch-class offsets, smooth texture ``f`` and
      ``G ~ Gamma(L, 1/L)`` speckle (L looks); written in dB.
Clouds (:func:`add_clouds`)
    Smooth fractal field thresholded at the quantile that gives the requested coverage (fraction
    of pixels with opacity >= 0.5, exact); opacity ramps over a band (thin, blended edges);
    thick cloud DN ~ 4000-9000 with texture and a cirrus (B10) bump; a displaced, darkened
    shadow. Ground information is destroyed in proportion to opacity; SAR never changes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sareval.bands import S2_BANDS

#: Seed of the fixed per-class perturbations (part of the model, not of a dataset).
CLASS_PERTURBATION_SEED = 20240611

#: surface -> (13-band L1C TOA reflectance x 10^4 in S2_BANDS order, (VV, VH) dB)
SURFACES: dict[str, tuple[tuple[float, ...], tuple[float, float]]] = {
    #             B01   B02   B03   B04   B05   B06   B07   B08   B8A   B09  B10   B11   B12
    "water":     ((1400, 1150, 950, 700, 560, 470, 430, 390, 360, 130, 12, 160, 110),
                  (-20.0, -27.0)),
    "broadleaf": ((1300, 1000, 880, 560, 980, 2300, 2900, 3100, 3300, 950, 15, 1650, 800),
                  (-6.6, -12.0)),
    "needleleaf": ((1250, 940, 760, 500, 760, 1550, 1850, 1950, 2100, 640, 14, 1050, 520),
                   (-8.3, -14.3)),
    "shrub":     ((1350, 1050, 1050, 1100, 1450, 1800, 1950, 2050, 2200, 800, 18, 2650, 1950),
                  (-9.8, -16.0)),
    "savanna":   ((1450, 1250, 1350, 1500, 1850, 2250, 2450, 2600, 2750, 900, 17, 3250, 2500),
                  (-10.4, -16.8)),
    "grass":     ((1350, 1100, 1100, 900, 1420, 2350, 2750, 2850, 3050, 860, 16, 2350, 1400),
                  (-12.0, -19.4)),
    "crop":      ((1330, 1060, 1150, 780, 1500, 2900, 3500, 3750, 3950, 1050, 16, 2150, 1150),
                  (-10.6, -17.4)),
    "wetland":   ((1380, 1120, 1020, 720, 900, 1350, 1550, 1650, 1700, 520, 13, 900, 450),
                  (-8.8, -18.0)),
    "urban":     ((1650, 1500, 1450, 1500, 1650, 1780, 1870, 1960, 2010, 720, 20, 2250, 1950),
                  (-3.0, -10.0)),
    "snow":      ((6500, 6400, 6300, 6200, 6000, 5800, 5700, 5600, 5400, 1700, 60, 800, 600),
                  (-13.5, -21.5)),
    "barren":    ((1500, 1420, 1580, 1850, 2080, 2270, 2420, 2520, 2660, 1000, 20, 3550, 3050),
                  (-14.5, -22.5)),
    "sand":      ((1800, 1800, 2050, 2400, 2650, 2800, 2920, 3000, 3100, 1150, 22, 3900, 3200),
                  (-16.5, -24.5)),
}  # fmt: skip

#: Per-pixel texture strength of each surface (relative std of the optical texture, and the
#: std in dB of the smooth SAR texture).
SURFACE_TEXTURE: dict[str, tuple[float, float]] = {
    "water": (0.02, 0.6), "broadleaf": (0.06, 1.0), "needleleaf": (0.06, 1.0),
    "shrub": (0.07, 1.0), "savanna": (0.07, 1.0), "grass": (0.05, 0.8), "crop": (0.08, 1.0),
    "wetland": (0.06, 1.2), "urban": (0.15, 2.5), "snow": (0.03, 0.8), "barren": (0.06, 0.8),
    "sand": (0.04, 0.6),
}  # fmt: skip

#: Path radiance subtracted from L1C to give L2A-like surface reflectance (BigEarthNet).
L2A_PATH_RADIANCE: tuple[float, ...] = (
    1000, 750, 500, 300, 220, 160, 130, 110, 100, 60, 0, 30, 15,
)  # fmt: skip

#: Thick-cloud L1C signature (x 10^4); scaled by a brightness texture of ~0.8-1.6.
CLOUD_SPECTRUM: tuple[float, ...] = (
    5600, 5300, 5100, 5050, 5200, 5350, 5450, 5400, 5450, 1900, 1800, 3900, 2700,
)  # fmt: skip
#: Snow overlay signature (BigEarthNet seasonal snow): bright visible, dark SWIR.
SNOW_SPECTRUM: tuple[float, ...] = SURFACES["snow"][0]

BAND_FACTOR: tuple[int, ...] = tuple(
    {"B01": 6, "B09": 6, "B10": 6}.get(
        b, 2 if b in ("B05", "B06", "B07", "B8A", "B11", "B12") else 1
    )
    for b in S2_BANDS
)


@dataclass(frozen=True)
class SignalParams:
    """Noise and variability constants: the knobs of how learnable each modality is."""

    opt_patch_gain: float = 0.05  # std of the per-patch brightness gain
    opt_band_gain: float = 0.02  # std of the per-patch per-band gain
    opt_class_jitter: float = 0.03  # std of the per-patch per-class per-band jitter
    opt_illumination: float = 0.06  # std of the smooth illumination field
    opt_noise_dn: float = 40.0  # sensor noise std in DN
    sar_patch_offset_db: float = 0.8  # std of the per-patch SAR offset (both polarisations)
    sar_pol_offset_db: float = 0.4  # std of the per-patch VV/VH independent offset
    sar_class_offset_db: float = 0.5  # std of the per-patch per-class SAR offset
    sar_looks: float = 4.0  # equivalent number of looks of the gamma speckle
    cloud_edge: float = 0.7  # opacity ramp width (field std units): thin, blended edges
    cloud_brightness: float = 0.22  # std of the thick-cloud brightness texture
    shadow_darkening: float = 0.55  # ground darkening under a full cloud shadow


#: SEN12MS(-CR): worldwide scenes, strong per-patch SAR variation (SAR ~50-60 % single-label).
SIGNAL = SignalParams()
#: BigEarthNet: one continent, one season window per tile; steadier SAR, so that multi-label
#: SAR-only models reach a useful (still clearly lower than optical) F1.
BIGEARTHNET_SIGNAL = replace(
    SIGNAL, sar_patch_offset_db=0.4, sar_pol_offset_db=0.2, sar_class_offset_db=0.25
)


@dataclass(frozen=True)
class ClassSignatures:
    """Per fine class: spectra (K, 13) L1C DN, SAR (K, 2) dB, textures (K,) opt and SAR."""

    names: tuple[str, ...]
    spectra: np.ndarray
    sar_db: np.ndarray
    opt_texture: np.ndarray
    sar_texture_db: np.ndarray


def mix_signatures(
    names: Sequence[str], mixtures: Sequence[Mapping[str, float]], perturbation: float = 0.04
) -> ClassSignatures:
    """Fine class signatures as linear mixtures of :data:`SURFACES` plus a fixed perturbation.

    Reflectance and linear SAR power mix with the given weights (normalised); each class then
    gets a fixed multiplicative spectral perturbation (std ``perturbation``) and a SAR shift
    (std 0.3 dB) from :data:`CLASS_PERTURBATION_SEED`.
    """
    rng = np.random.default_rng(CLASS_PERTURBATION_SEED + len(names))
    spectra, sar, opt_tex, sar_tex = [], [], [], []
    for mixture in mixtures:
        w = np.array(list(mixture.values()), dtype=np.float64)
        w /= w.sum()
        s = np.array([SURFACES[k][0] for k in mixture], dtype=np.float64)
        p = 10 ** (np.array([SURFACES[k][1] for k in mixture], dtype=np.float64) / 10)
        t = np.array([SURFACE_TEXTURE[k] for k in mixture], dtype=np.float64)
        spectra.append(w @ s)
        sar.append(10 * np.log10(w @ p))
        opt_tex.append(w @ t[:, 0])
        sar_tex.append(w @ t[:, 1])
    spectra_a = np.array(spectra) * (1 + perturbation * rng.standard_normal((len(names), 13)))
    spectra_a[:, S2_BANDS.index("B10")] = np.array(spectra)[:, S2_BANDS.index("B10")]
    sar_a = np.array(sar) + 0.3 * rng.standard_normal((len(names), 2))
    return ClassSignatures(
        names=tuple(names),
        spectra=spectra_a.astype(np.float32),
        sar_db=sar_a.astype(np.float32),
        opt_texture=np.array(opt_tex, dtype=np.float32),
        sar_texture_db=np.array(sar_tex, dtype=np.float32),
    )


# ---------------------------------------------------------------- smooth random fields


@functools.lru_cache(maxsize=128)
def _interpolation_weights(size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Left knot index (size,) and smoothstep weight of the right knot, for ``cells + 1`` knots
    spread across ``size`` pixels."""
    pos = (np.arange(size) + 0.5) / size * cells
    i0 = np.minimum(np.floor(pos).astype(np.intp), cells - 1)
    t = (pos - i0).astype(np.float32)
    return i0, t * t * (3 - 2 * t)


def smooth_field(
    rng: np.random.Generator,
    size: int,
    cells: Sequence[int] = (3, 6, 12),
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """A (size, size) float32 smooth random field, zero mean and unit std (sum of octaves).

    Octave ``i`` has ``cells[i]`` cells across and weight ``weights[i]`` (default ``0.5^i``).
    Each octave is white noise on a ``(c + 1)^2`` knot grid interpolated separably to the
    patch with smoothstep weights (vectorised gathers; no BLAS, whose threads would spin).
    """
    field = np.zeros((size, size), dtype=np.float32)
    if weights is None:
        weights = [0.5**i for i in range(len(cells))]
    for c, w in zip(cells, weights, strict=True):
        c = max(1, min(c, size))
        i0, t = _interpolation_weights(size, c)
        g = rng.standard_normal((c + 1, c + 1), dtype=np.float32)
        rows = g[i0] * (1 - t)[:, None] + g[i0 + 1] * t[:, None]  # (size, c + 1)
        field += w * (rows[:, i0] * (1 - t) + rows[:, i0 + 1] * t)
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def class_map(rng: np.random.Generator, size: int, fractions: Sequence[float]) -> np.ndarray:
    """(size, size) uint8 map of local class indices with exact pixel counts.

    Index 0 fills the background; each further index ``i`` takes the ``round(f_i * n)`` pixels
    with the highest values of its own smooth field among the pixels still unassigned, so minor
    classes are smooth blobs.
    """
    n = size * size
    out = np.zeros(n, dtype=np.uint8)
    free = np.arange(n)
    for i, f in enumerate(fractions[1:], start=1):
        k = min(round(f * n), free.size)
        if k <= 0:
            continue
        values = smooth_field(rng, size, (2, 4, 8), (1.0, 0.6, 0.3)).ravel()[free]
        top = np.argpartition(values, free.size - k)[free.size - k :]
        out[free[top]] = i
        free = np.delete(free, top)
    return out.reshape(size, size)


def block_average(band: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (the size must be divisible by ``factor``)."""
    h, w = band.shape[-2:]
    return band.reshape(*band.shape[:-2], h // factor, factor, w // factor, factor).mean((-3, -1))


def _coarsen_bands(image: np.ndarray) -> None:
    """In place: 20 m and 60 m bands of a (13, H, W) image made blocky, as resampled in SEN12MS."""
    size = image.shape[-1]
    for b, factor in enumerate(BAND_FACTOR):
        if factor > 1 and size % factor == 0 and image.shape[-2] % factor == 0:
            coarse = block_average(image[b], factor)
            image[b] = np.repeat(np.repeat(coarse, factor, 0), factor, 1)


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class PatchRender:
    """One rendered patch: class map (fine class index), optical float (13,H,W), SAR dB (2,H,W)."""

    fine_map: np.ndarray
    optical: np.ndarray
    sar_db: np.ndarray


def render_patch(
    rng: np.random.Generator,
    signatures: ClassSignatures,
    classes: Sequence[int],
    fractions: Sequence[float],
    size: int,
    illumination: float = 1.0,
    level: str = "L1C",
    params: SignalParams = SIGNAL,
) -> PatchRender:
    """Render a patch of fine ``classes`` (first = background) covering ``fractions``.

    ``illumination`` scales the whole optical signal (season / sun elevation); ``level`` "L2A"
    subtracts :data:`L2A_PATH_RADIANCE` from the class spectra (surface reflectance).
    """
    p = params
    cls = np.asarray(classes, dtype=np.int64)
    k = cls.size
    local = class_map(rng, size, fractions)
    fine_map = cls[local]

    spectra = signatures.spectra[cls].astype(np.float32)
    if level == "L2A":
        spectra = np.maximum(spectra - np.asarray(L2A_PATH_RADIANCE, np.float32), 10.0)
    gain: Any = illumination * (1 + p.opt_patch_gain * rng.standard_normal(dtype=np.float32))
    gain = gain * (1 + p.opt_band_gain * rng.standard_normal(13, dtype=np.float32))
    spectra = spectra * gain * (1 + p.opt_class_jitter * rng.standard_normal((k, 13), np.float32))
    illum = 1 + p.opt_illumination * smooth_field(rng, size, (2, 4), (1.0, 0.5))
    texture = signatures.opt_texture[cls][local] * rng.standard_normal((size, size), np.float32)
    optical = spectra.T[:, local] * (illum * (1 + texture))[None]
    optical += p.opt_noise_dn * rng.standard_normal(optical.shape, dtype=np.float32)
    _coarsen_bands(optical)

    offset: Any = p.sar_patch_offset_db * rng.standard_normal(dtype=np.float32)
    offset = offset + p.sar_pol_offset_db * rng.standard_normal(2, dtype=np.float32)
    mean_db = (
        signatures.sar_db[cls]
        + offset
        + p.sar_class_offset_db * rng.standard_normal((k, 2), np.float32)
    )
    tex_db = signatures.sar_texture_db[cls][local] * smooth_field(rng, size, (8, 16, 32))
    power = 10 ** ((mean_db.T[:, local] + tex_db[None]) / 10)
    power *= rng.gamma(p.sar_looks, 1 / p.sar_looks, size=power.shape).astype(np.float32)
    sar_db = (10 * np.log10(np.maximum(power, 1e-6))).astype(np.float32)
    return PatchRender(fine_map=fine_map, optical=optical, sar_db=sar_db)


def to_uint16(optical: np.ndarray) -> np.ndarray:
    """Round and clip float DN to uint16."""
    return np.clip(np.rint(optical), 0, 65535).astype(np.uint16)


def opacity_field(
    rng: np.random.Generator,
    size: int,
    coverage: float,
    edge: float,
    cells: Sequence[int] = (2, 4, 8, 16),
    weights: Sequence[float] = (1.0, 0.6, 0.35, 0.2),
) -> np.ndarray:
    """(size, size) opacity in [0, 1]; exactly ``round(coverage * n)`` pixels have opacity >= 0.5.

    ``alpha = clip(0.5 + (f - t) / edge, 0, 1)`` for a smooth field ``f`` and the threshold ``t``
    at the matching quantile.
    """
    f = smooth_field(rng, size, cells, weights)
    n = f.size
    k = round(float(np.clip(coverage, 0, 1)) * n)
    order = np.argsort(f, axis=None)
    flat = f.ravel()[order]
    t = (
        flat[-1] + 1e-3
        if k == 0
        else (flat[0] if k == n else 0.5 * (flat[n - k] + flat[n - k - 1]))
    )
    alpha = np.clip(0.5 + (f - t) / edge, 0.0, 1.0).astype(np.float32).ravel()
    cloudy = np.zeros(n, dtype=bool)
    cloudy[order[n - k :]] = True  # exactly k pixels (ties broken by the sort order)
    alpha = np.where(cloudy, np.maximum(alpha, 0.5), np.minimum(alpha, np.float32(0.499)))
    return alpha.reshape(f.shape).astype(np.float32)


def add_clouds(
    rng: np.random.Generator,
    clear: np.ndarray,
    coverage: float,
    bands: Sequence[str] = S2_BANDS,
    shadow: bool = True,
    params: SignalParams = SIGNAL,
) -> tuple[np.ndarray, float]:
    """Cloudy version of a (C, H, W) optical image; returns (float image, exact coverage).

    ``cloudy = ground * (1 - alpha) + cloud * alpha`` with ``ground`` the clear image darkened by
    a displaced shadow, ``cloud = CLOUD_SPECTRUM * b(x)`` and ``b`` a brightness texture.
    Coverage = fraction of pixels with ``alpha >= 0.5``.
    """
    size = clear.shape[-1]
    alpha = opacity_field(rng, size, coverage, params.cloud_edge)
    idx = [S2_BANDS.index(b) for b in bands]
    spectrum = np.asarray(CLOUD_SPECTRUM, np.float32)[idx]
    bright = 1.15 + params.cloud_brightness * smooth_field(rng, size, (4, 8, 16, 32))
    bright = np.clip(bright * (0.85 + 0.15 * alpha), 0.7, 1.7)
    ground = clear
    if shadow:
        shift = rng.integers(size // 12, size // 5 + 2, size=2) * rng.choice([-1, 1], size=2)
        shade = np.roll(alpha, tuple(int(s) for s in shift), axis=(0, 1)) * (1 - alpha)
        ground = clear * (1 - params.shadow_darkening * shade)[None]
    cloudy = ground * (1 - alpha)[None] + spectrum[:, None, None] * (bright * alpha)[None]
    cloudy += params.opt_noise_dn * rng.standard_normal(cloudy.shape, dtype=np.float32)
    return cloudy.astype(np.float32), float((alpha >= 0.5).mean())


def add_snow(
    rng: np.random.Generator,
    clear: np.ndarray,
    coverage: float,
    bands: Sequence[str] = S2_BANDS,
    params: SignalParams = SIGNAL,
) -> np.ndarray:
    """Seasonal snow over a (C, H, W) optical image (bright visible, dark SWIR); SAR unchanged."""
    size = clear.shape[-1]
    alpha = opacity_field(rng, size, coverage, params.cloud_edge, (2, 4, 8), (1.0, 0.5, 0.25))
    idx = [S2_BANDS.index(b) for b in bands]
    spectrum = np.asarray(SNOW_SPECTRUM, np.float32)[idx]
    bright = 1 + 0.05 * smooth_field(rng, size, (8, 16))
    return clear * (1 - alpha)[None] + spectrum[:, None, None] * (bright * alpha)[None]


def draw_composition(
    rng: np.random.Generator,
    dominant_weights: np.ndarray,
    minor_weights: np.ndarray,
    max_minor: float = 0.45,
    min_minor: float = 0.05,
    n_minor_probs: Sequence[float] = (0.3, 0.45, 0.25),
) -> tuple[list[int], list[float]]:
    """Fine classes of a patch (dominant first) and their area fractions.

    The dominant class covers > 50 % (``1 - sum(minor) > 0.5``); 0-2 distinct minor classes each
    cover ``[min_minor, max_minor)`` with their sum below 0.5.
    """
    dom = int(rng.choice(dominant_weights.size, p=dominant_weights / dominant_weights.sum()))
    n_minor = int(rng.choice(len(n_minor_probs), p=np.asarray(n_minor_probs)))
    w = minor_weights.astype(np.float64).copy()
    w[dom] = 0
    classes: list[int] = [dom]
    fractions: list[float] = []
    for _ in range(n_minor):
        if w.sum() <= 0:
            break
        c = int(rng.choice(w.size, p=w / w.sum()))
        w[c] = 0
        room = 0.49 - sum(fractions)
        if room <= min_minor:
            break
        classes.append(c)
        fractions.append(float(rng.uniform(min_minor, min(max_minor, room))))
    return classes, [1.0 - sum(fractions), *fractions]
