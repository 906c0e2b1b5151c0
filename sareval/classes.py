"""Class nomenclatures of SEN12MS (IGBP 17 -> simplified 10) and BigEarthNet (CLC 43 -> 19).

Mappings are index lists: simplified class ``j`` <- fine classes ``SIMPLE[j]`` (0-based fine
indices; IGBP class ``k`` is fine index ``k - 1``). Sources: the SEN12MS classification toolbox
and the BigEarthNet-MM nomenclature (see ``shared/reference/datasets.md``).
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
