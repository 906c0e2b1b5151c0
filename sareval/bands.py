"""Band and modality registry: Sentinel-1 and Sentinel-2 band names and their modality.

Band names are the contract between the store (which holds bands by name) and the model card
(which says which named band goes to which input channel).

- Sentinel-1 (modality ``sar``): ``VV``, ``VH`` (sigma0, dB, float32).
- Sentinel-2 (modality ``opt``): ``B01`` .. ``B12`` with ``B8A`` after ``B08`` and ``B10``
  (cirrus), 13 bands (L1C/L2A DN, uint16). BigEarthNet ships 12 (no ``B10``).

Central wavelengths (µm, for wavelength-conditioned models, :func:`central_wavelengths`): S2 from
ESA's Sentinel-2 band table (nominal, rounded to the nm); S1 ``VV``/``VH`` get DOFA's placeholder
3.75 (C-band, 5.405 GHz, is ~5.55 cm = 55,500 µm, far off the optical scale; DOFA v1, whose
weights torchgeo ships, feeds ``[3.75, 3.75]``, DOFA v2 ``[5.405, 5.405]``: torchgeo issue
#3931 / PR #3942). Both polarisations share it, so such a model cannot tell VV from VH.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from sareval.errors import SarevalError

S1_BANDS: tuple[str, ...] = ("VV", "VH")
S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
BIGEARTHNET_S2_BANDS: tuple[str, ...] = tuple(b for b in S2_BANDS if b != "B10")

#: The 10 S2 "land" bands of the SEN12MS classification toolbox, in its channel order.
SEN12MS_S2_LAND_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)  # fmt: skip
#: The 10 S2 bands of the BigEarthNet-MM models, in their channel order.
BIGEARTHNET_MM_S2_BANDS: tuple[str, ...] = (
    "B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12",
)  # fmt: skip

#: Ground sampling distance in metres of each S2 band.
S2_RESOLUTION_M: dict[str, int] = {
    **dict.fromkeys(("B02", "B03", "B04", "B08"), 10),
    **dict.fromkeys(("B05", "B06", "B07", "B8A", "B11", "B12"), 20),
    **dict.fromkeys(("B01", "B09", "B10"), 60),
}

#: Central wavelength in micrometres of each S2 band (ESA's nominal band centres).
S2_WAVELENGTH_UM: dict[str, float] = {
    "B01": 0.443, "B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705, "B06": 0.740,
    "B07": 0.783, "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B10": 1.375, "B11": 1.610,
    "B12": 2.190,
}  # fmt: skip
#: DOFA v1's wavelength placeholder for Sentinel-1 channels (not a physical wavelength).
S1_WAVELENGTH_UM: dict[str, float] = {"VV": 3.75, "VH": 3.75}
BAND_WAVELENGTH_UM: dict[str, float] = {**S1_WAVELENGTH_UM, **S2_WAVELENGTH_UM}

#: Store dataset holding each sensor's raw values.
SENSOR_OF_MODALITY: dict[str, str] = {"sar": "s1", "opt": "s2"}

RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")


def modality_of_band(band: str) -> str:
    """``"sar"`` for a Sentinel-1 band, ``"opt"`` for a Sentinel-2 band; ValueError otherwise."""
    if band in S1_BANDS:
        return "sar"
    if band in S2_BANDS:
        return "opt"
    raise ValueError(f"unknown band {band!r}; known: {', '.join(S1_BANDS + S2_BANDS)}")


def sensor_of_band(band: str) -> str:
    """Store dataset (``"s1"`` or ``"s2"``) that holds ``band``."""
    return SENSOR_OF_MODALITY[modality_of_band(band)]


def default_bands(sensor: str, channels: int) -> tuple[str, ...] | None:
    """Band names of a standard sensor array: s1 (VV, VH), s2 with 13 or 12 (no B10) bands."""
    if sensor == "s1" and channels == len(S1_BANDS):
        return S1_BANDS
    if sensor == "s2" and channels == len(S2_BANDS):
        return S2_BANDS
    if sensor == "s2" and channels == len(BIGEARTHNET_S2_BANDS):
        return BIGEARTHNET_S2_BANDS
    return None


def close_band(name: str, choices: Sequence[str]) -> str | None:
    """The band of ``choices`` that ``name`` most likely means (same letters in another case,
    else the closest by :func:`difflib.get_close_matches`), or None."""
    same = [c for c in choices if c.lower() == name.lower()]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def central_wavelengths(bands: Sequence[str]) -> tuple[float, ...]:
    """Central wavelength (µm) of each of ``bands`` (:data:`BAND_WAVELENGTH_UM`), in order."""
    unknown = [b for b in bands if b not in BAND_WAVELENGTH_UM]
    if unknown:
        raise SarevalError(
            f"bands= {unknown} have no central wavelength; known: {', '.join(BAND_WAVELENGTH_UM)}"
        )
    return tuple(BAND_WAVELENGTH_UM[b] for b in bands)
