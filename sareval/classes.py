"""Class nomenclatures of SEN12MS (IGBP 17 -> simplified 10) and BigEarthNet (CLC 43 -> 19).

Mappings are index lists: simplified class ``j`` <- fine classes ``SIMPLE[j]`` (0-based fine
indices; IGBP class ``k`` is fine index ``k - 1``). Sources: the SEN12MS classification toolbox
and the BigEarthNet-MM nomenclature (see ``shared/reference/datasets.md``).

Per-pixel maps (segmentation labels, 255 = no class) use the same tables: IGBP code 0..17 ->
10-class index by the DFC2020 baseline's ``DFC2020_CLASSES`` ``[0, 1, 1, 1, 1, 1, 2, 2, 3, 3,
4, 5, 6, 7, 6, 8, 9, 10]`` minus 1 (lukasliebel/dfc2020_baseline ``code/datasets.py``; equal
to :data:`IGBP10_FROM_IGBP17`), codes outside 1..17 -> 255 (:func:`igbp10_map`); CLC code ->
BigEarthNet-19 index through :data:`CLC43_CODES` and :data:`BEN19_FROM_CLC43`, codes outside
the 19-class nomenclature -> 255 (:func:`ben19_map`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sareval.errors import InputFileError

IGBP17: tuple[str, ...] = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests", "Deciduous Broadleaf Forests", "Mixed Forests",
    "Closed Shrublands", "Open Shrublands", "Woody Savannas", "Savannas", "Grasslands",
    "Permanent Wetlands", "Croplands", "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice", "Barren", "Water Bodies",
)  # fmt: skip
IGBP10: tuple[str, ...] = (
    "Forest", "Shrubland", "Savanna", "Grassland", "Wetland", "Cropland", "Urban",
    "Snow/Ice", "Barren", "Water",
)  # fmt: skip
#: simplified index -> IGBP classes (1-based) whose fractions are summed
IGBP10_FROM_IGBP17: tuple[tuple[int, ...], ...] = (
    (1, 2, 3, 4, 5),
    (6, 7),
    (8, 9),
    (10,),
    (11,),
    (12, 14),
    (13,),
    (15,),
    (16,),
    (17,),
)

CLC43: tuple[str, ...] = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports",
    "Mineral extraction sites", "Dump sites", "Construction sites", "Green urban areas",
    "Sport and leisure facilities", "Non-irrigated arable land", "Permanently irrigated land",
    "Rice fields", "Vineyards", "Fruit trees and berry plantations", "Olive groves", "Pastures",
    "Annual crops associated with permanent crops", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland", "Moors and heathland", "Sclerophyllous vegetation",
    "Transitional woodland/shrub", "Beaches, dunes, sands", "Bare rock",
    "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes",
    "Salines", "Intertidal flats", "Water courses", "Water bodies", "Coastal lagoons",
    "Estuaries", "Sea and ocean",
)  # fmt: skip
#: CORINE Land Cover level-3 code of each CLC43 class (CLC43 order; the standard CLC
#: nomenclature without 335 Glaciers); reBEN's reference maps hold such codes per pixel
CLC43_CODES: tuple[int, ...] = (
    111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142, 211, 212, 213, 221, 222, 223, 231,
    241, 242, 243, 244, 311, 312, 313, 321, 322, 323, 324, 331, 332, 333, 334, 411, 412, 421,
    422, 423, 511, 512, 521, 522, 523,
)  # fmt: skip
BEN19: tuple[str, ...] = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops",
    "Pastures", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation", "Transitional woodland, shrub",
    "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
)  # fmt: skip
#: 19-class index -> CLC43 indices (0-based); eleven CLC43 classes map to none
BEN19_FROM_CLC43: tuple[tuple[int, ...], ...] = (
    (0, 1),
    (2,),
    (11, 12, 13),
    (14, 15, 16, 18),
    (17,),
    (19,),
    (20,),
    (21,),
    (22,),
    (23,),
    (24,),
    (25, 31),
    (26, 27),
    (28,),
    (29,),
    (33, 34),
    (35, 36),
    (38, 39),
    (40, 41, 42),
)


def igbp_valid(igbp: np.ndarray) -> np.ndarray:
    """The values of an IGBP layer that are classes (1..17), flattened to int64."""
    v = np.asarray(igbp).ravel().astype(np.int64)
    return v[(v >= 1) & (v <= len(IGBP17))]


def igbp_fractions(igbp: np.ndarray, path: str | Path = "(lc layer)") -> np.ndarray:
    """(H, W) IGBP layer -> (17,) fraction of each class among pixels valued 1..17 (float64).

    A layer without such a pixel has no label: InputFileError naming ``path``."""
    valid = igbp_valid(igbp)
    if valid.size == 0:
        raise InputFileError(
            path,
            "no pixel of the IGBP layer is a class (1..17): the patch has no label "
            "(--skip-unlabelled leaves such patches out)",
        )
    return np.bincount(valid, minlength=len(IGBP17) + 1)[1:] / valid.size


def igbp10_fractions(igbp17: np.ndarray) -> np.ndarray:
    """(..., 17) IGBP fractions -> (..., 10) simplified fractions (sums of member classes)."""
    igbp17 = np.asarray(igbp17, dtype=np.float64)
    return np.stack([igbp17[..., [k - 1 for k in ks]].sum(-1) for ks in IGBP10_FROM_IGBP17], -1)


def single_label(fractions: np.ndarray) -> np.ndarray:
    """Argmax class index (ties to the lowest index, as ``np.argmax``)."""
    return np.argmax(fractions, axis=-1)


def multi_hot(fractions: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Classes whose fraction is >= ``threshold`` (SEN12MS toolbox default 0.1), as uint8."""
    return (np.asarray(fractions) >= threshold).astype(np.uint8)


def ben19_multi_hot(clc43: np.ndarray) -> np.ndarray:
    """(..., 43) multi-hot CLC labels -> (..., 19) multi-hot BigEarthNet-19 labels."""
    clc43 = np.asarray(clc43)
    return np.stack([clc43[..., list(ks)].max(-1) for ks in BEN19_FROM_CLC43], -1).astype(np.uint8)


#: the pixel value of a map that has no class (never counted)
NO_CLASS = 255


def _lookup(table: dict[int, int], values: np.ndarray) -> np.ndarray:
    """``values`` mapped through ``table`` (other values -> :data:`NO_CLASS`), as uint8."""
    v = np.asarray(values).astype(np.int64)
    lut = np.full(max(table) + 1, NO_CLASS, dtype=np.uint8)
    for code, index in table.items():
        lut[code] = index
    inside = (v >= 0) & (v < len(lut))
    return np.where(inside, lut[np.where(inside, v, 0)], NO_CLASS).astype(np.uint8)


#: IGBP code (1..17) -> 10-class index
IGBP10_OF_IGBP = {k: j for j, ks in enumerate(IGBP10_FROM_IGBP17) for k in ks}
#: CORINE level-3 code -> BigEarthNet-19 index (codes of the eleven unmapped classes absent)
BEN19_OF_CLC_CODE = {CLC43_CODES[i]: j for j, ks in enumerate(BEN19_FROM_CLC43) for i in ks}


def igbp10_map(igbp: np.ndarray) -> np.ndarray:
    """(..., H, W) IGBP codes -> uint8 10-class indices; codes outside 1..17 -> 255."""
    return _lookup(IGBP10_OF_IGBP, igbp)


def ben19_map(clc_codes: np.ndarray) -> np.ndarray:
    """(..., H, W) CORINE codes -> uint8 BigEarthNet-19 indices; other codes -> 255."""
    return _lookup(BEN19_OF_CLC_CODE, clc_codes)
