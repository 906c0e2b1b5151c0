"""A synthetic DFC2020 tree in the real on-disk layout (seeded).

Layout written under ``out_dir`` (:mod:`sareval.preprocess.dfc2020`)::

    ROIs0000_validation/{s1,s2,dfc,lc}_validation/ROIs0000_validation_{s1,s2,dfc,lc}_0_p<n>.tif
    ROIs0000_test/{s1,s2,dfc,lc}_0/ROIs0000_test_{s1,s2,dfc,lc}_0_p<n>.tif
        s1: VV, VH float32 dB; s2: 13 bands uint16 L1C DN; lc: 4 bands uint16 as SEN12MS's
        (IGBP 1..17 first); dfc: 1 band uint16, the DFC class 1..10 of each pixel

The content is the SEN12MS generator's (:func:`~sareval.preprocess.synth_sen12ms.
render_sen12ms_patch`): the dfc map is the rendered class map itself (IGBP class -> the 10-class
scheme, + 1), so it is learnable from the images. The first validation patch has a 4 x 4 block
of 0 (no label) in its dfc map. About ``cloud_fraction`` of the patches get clouds in their s2
(the SEN12MS-CR cloud model, coverage drawn as there), as real DFC2020 patches sometimes do.
Patch numbers: ``n_patches`` distinct draws from 0..3n per release, sorted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_directory
from sareval.classes import igbp10_map
from sareval.errors import SarevalError
from sareval.preprocess.dfc2020 import SPLITS, patch_path
from sareval.preprocess.synth_scene import add_clouds, to_uint16
from sareval.preprocess.synth_sen12ms import (
    Scene,
    cloud_coverage_draw,
    igbp_signatures,
    render_sen12ms_patch,
    write_geotiff,
)

#: a UTM zone and grid origin for the synthetic patches
EPSG, X0, Y0 = 32632, 300_000.0, 5_000_000.0


def generate_dfc2020(
    out_dir: Path,
    n_patches: int = 20,
    size: int = 256,
    seed: int = 0,
    cloud_fraction: float = 0.3,
    overwrite: bool = False,
    compress: str | None = None,
) -> dict[str, Any]:
    """Write both DFC2020 releases, ``n_patches`` patches each, under ``out_dir`` (module doc).

    Returns ``{"n_patches", "patches": {split: [n, ...]}, "cloud_cover": {s2 file name: exact
    coverage}, "paths": {"root": ...}}``.
    """
    if n_patches < 1:
        raise SarevalError(f"n_patches= {n_patches}: need at least 1")
    if size < 8:
        raise SarevalError(f"size= {size}: need at least 8 pixels")
    if not 0.0 <= cloud_fraction <= 1.0:
        raise SarevalError(f"cloud_fraction {cloud_fraction}: must be in [0, 1]")
    out_dir = Path(out_dir)
    signatures = igbp_signatures()
    numbers: dict[str, list[int]] = {}
    cover: dict[str, float] = {}
    with atomic_directory(out_dir, overwrite) as tmp:
        for season, split in enumerate(SPLITS):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2020, season]))
            scene = Scene(season, 0, EPSG, X0, Y0, np.exp(rng.normal(0.0, 0.8, 17)))
            numbers[split] = sorted(
                int(n) for n in rng.choice(3 * n_patches + 1, n_patches, replace=False)
            )
            for i, n in enumerate(numbers[split]):
                patch, optical = render_sen12ms_patch(seed, scene, n, size, signatures)
                dfc = igbp10_map(patch.lc[0]).astype(np.uint16) + 1
                if split == "validation" and i == 0:
                    dfc[:4, :4] = 0
                s2 = patch.s2
                if rng.random() < cloud_fraction:
                    cloudy, coverage = add_clouds(rng, optical, cloud_coverage_draw(rng))
                    s2 = to_uint16(cloudy)
                    cover[patch_path(tmp, split, "s2", n).name] = coverage
                x, y = X0 + (n % 40) * size * 10.0, Y0 - (n // 40) * size * 10.0
                for sensor, arr in (("s1", patch.s1), ("s2", s2), ("lc", patch.lc),
                                    ("dfc", dfc[None])):  # fmt: skip
                    write_geotiff(
                        patch_path(tmp, split, sensor, n), arr, EPSG, x, y, 10.0, compress
                    )
    return {
        "n_patches": n_patches,
        "patches": numbers,
        "cloud_cover": cover,
        "paths": {"root": str(out_dir)},
    }
