"""Synthetic SEN12MS and SEN12MS-CR trees in the real on-disk layout (seeded).

Layout written under ``out_dir`` (see ``shared/reference/datasets.md``)::

    sen12ms/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif
        sensor s1: 2 bands VV, VH float32 dB (exactly one patch has a few NaN pixels)
        sensor s2: 13 bands B01..B12 (B8A after B08, B10 included) uint16 L1C DN
        sensor lc: 4 bands uint16: IGBP class 1..17, LCCS-LC, LCCS-LU, LCCS-SH
    sen12ms/IGBP_probability_labels.pkl   dict s2 file name -> float64 (17,) IGBP fractions
    sen12ms/train_list.pkl, test_list.pkl pickled lists of s2 file names (protocol 2)
    sen12ms/train_list.txt, test_list.txt the same, one name a line
    sen12mscr/<season>_s1/s1_<scene>/<season>_s1_<scene>_p<patch>.tif        = SEN12MS s1
    sen12mscr/<season>_s2/s2_<scene>/<season>_s2_<scene>_p<patch>.tif        = SEN12MS s2
    sen12mscr/<season>_s2_cloudy/s2_cloudy_<scene>/<season>_s2_cloudy_<scene>_p<patch>.tif

Seasons ``ROIs1158_spring``, ``ROIs1868_summer``, ``ROIs1970_fall``, ``ROIs2017_winter``. Scenes
(about 8 patches each) are spread over the seasons; each has its own UTM CRS and a 10 m grid on
which its patches tile. The test split is a set of whole held-out scenes (~20-30 % of patches);
SEN12MS-CR covers whole scenes (~``cr_fraction`` of patches, train and test scenes). Cloud
coverage of the cloudy patches: half uniform in [0.9, 1], half uniform in [0, 0.9).

Every patch is drawn from its own random stream ``SeedSequence([seed, season, scene, patch])``
(clouds from a separate stream), so its content does not depend on the other patches.
The signal model is :mod:`sareval.preprocess.synth_scene`.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_directory
from sareval.classes import IGBP17, igbp10_fractions
from sareval.errors import SarevalError
from sareval.preprocess.synth_scene import (
    ClassSignatures,
    add_clouds,
    draw_composition,
    mix_signatures,
    render_patch,
    to_uint16,
)
from sareval.progress import progress_bar

log = logging.getLogger(__name__)

SEASONS: tuple[str, ...] = (
    "ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter",
)  # fmt: skip
#: optical illumination (sun elevation) per season
SEASON_ILLUMINATION: tuple[float, ...] = (1.0, 1.05, 0.95, 0.85)
#: multiplier of the snow/ice class weight per season
SEASON_SNOW: tuple[float, ...] = (0.6, 0.2, 0.6, 3.0)

#: IGBP class (1-based order of IGBP17) -> surface mixture
IGBP_MIXTURES: tuple[dict[str, float], ...] = (
    {"needleleaf": 1.0},  # 1 Evergreen Needleleaf Forests
    {"broadleaf": 1.0},  # 2 Evergreen Broadleaf Forests
    {"needleleaf": 0.8, "grass": 0.2},  # 3 Deciduous Needleleaf Forests
    {"broadleaf": 0.85, "grass": 0.15},  # 4 Deciduous Broadleaf Forests
    {"broadleaf": 0.5, "needleleaf": 0.5},  # 5 Mixed Forests
    {"shrub": 1.0},  # 6 Closed Shrublands
    {"shrub": 0.6, "barren": 0.4},  # 7 Open Shrublands
    {"savanna": 0.6, "broadleaf": 0.4},  # 8 Woody Savannas
    {"savanna": 1.0},  # 9 Savannas
    {"grass": 1.0},  # 10 Grasslands
    {"wetland": 1.0},  # 11 Permanent Wetlands
    {"crop": 1.0},  # 12 Croplands
    {"urban": 1.0},  # 13 Urban and Built-Up Lands
    {"crop": 0.5, "grass": 0.25, "broadleaf": 0.25},  # 14 Cropland/Natural Vegetation Mosaics
    {"snow": 1.0},  # 15 Permanent Snow and Ice
    {"barren": 1.0},  # 16 Barren
    {"water": 1.0},  # 17 Water Bodies
)
#: frequency of each IGBP class as the dominant class of a patch (10-class totals: Forest .22,
#: Shrubland .10, Savanna .15, Grassland .14, Wetland .04, Cropland .14, Urban .07,
#: Snow/Ice .03, Barren .05, Water .06)
IGBP_DOMINANT_WEIGHTS = np.array(
    [0.05, 0.05, 0.02, 0.05, 0.05, 0.03, 0.07, 0.08, 0.07, 0.14, 0.04, 0.10, 0.07, 0.04,
     0.03, 0.05, 0.06]
)  # fmt: skip
#: frequency of each IGBP class as a minor class (flatter)
IGBP_MINOR_WEIGHTS = 0.5 * IGBP_DOMINANT_WEIGHTS + 0.5 / 17
#: IGBP class -> (LCCS land cover, LCCS land use, LCCS surface hydrology) codes
LCCS_CODES: tuple[tuple[int, int, int], ...] = (
    (11, 10, 10), (12, 10, 10), (13, 10, 10), (14, 10, 10), (15, 10, 10), (41, 40, 40),
    (43, 40, 40), (21, 20, 20), (22, 20, 20), (31, 30, 30), (31, 30, 50), (31, 36, 30),
    (1, 9, 1), (31, 25, 30), (2, 2, 2), (1, 1, 1), (3, 3, 3),
)  # fmt: skip

PATCHES_PER_SCENE = 8
TEST_FRACTION = 0.25
MAX_SCENE_ID = 149


def igbp_signatures() -> ClassSignatures:
    """Signatures of the 17 IGBP classes (index k = IGBP class k + 1)."""
    return mix_signatures(IGBP17, IGBP_MIXTURES)


@dataclass
class Scene:
    """One region of interest: a season folder, a scene id, its CRS, grid origin and patches."""

    season: int
    scene: int
    epsg: int
    x0: float
    y0: float
    class_boost: np.ndarray
    patches: list[int] = field(default_factory=list)
    test: bool = False
    cr: bool = False

    def file_name(self, sensor: str, patch: int) -> str:
        return f"{SEASONS[self.season]}_{sensor}_{self.scene}_p{patch}.tif"

    def sen12ms_path(self, root: Path, sensor: str, patch: int) -> Path:
        season = SEASONS[self.season]
        return root / season / f"{sensor}_{self.scene}" / self.file_name(sensor, patch)

    def cr_path(self, root: Path, sensor: str, patch: int) -> Path:
        season = SEASONS[self.season]
        folder = root / f"{season}_{sensor}" / f"{sensor}_{self.scene}"
        return folder / self.file_name(sensor, patch)


def plan_scenes(rng: np.random.Generator, n_patches: int, cr_fraction: float) -> list[Scene]:
    """Scenes, their patches, the held-out test scenes and the SEN12MS-CR scenes."""
    n_scenes = int(np.clip(round(n_patches / PATCHES_PER_SCENE), 4, 4 * MAX_SCENE_ID))
    seasons = rng.permutation(np.arange(n_scenes) % 4)
    counts = np.ones(n_scenes, dtype=int) + rng.multinomial(
        n_patches - n_scenes, rng.dirichlet(np.full(n_scenes, 4.0))
    )
    scenes: list[Scene] = []
    for s in range(4):
        members = np.flatnonzero(seasons == s)
        ids = np.sort(rng.choice(np.arange(1, MAX_SCENE_ID + 1), members.size, replace=False))
        for i, scene_id in zip(members, ids, strict=True):
            zone = int(rng.integers(1, 61))
            south = rng.random() < 0.3
            n = int(counts[i])
            patches = rng.choice(np.arange(1, max(1000, 3 * n)), n, replace=False)
            scenes.append(
                Scene(
                    season=s,
                    scene=int(scene_id),
                    epsg=(32700 if south else 32600) + zone,
                    x0=float(rng.integers(2, 6) * 100_000),
                    y0=float(rng.integers(10, 80) * 100_000),
                    class_boost=np.exp(rng.normal(0.0, 0.8, 17)),
                    patches=sorted(int(p) for p in patches),
                )
            )
    scenes.sort(key=lambda sc: (sc.season, sc.scene))

    sizes = np.array([len(sc.patches) for sc in scenes])
    test = _pick_scenes(rng, sizes, TEST_FRACTION * n_patches, [], np.arange(len(scenes)))
    for t in test:
        scenes[t].test = True
    if cr_fraction >= 1:
        for sc in scenes:
            sc.cr = True
    elif cr_fraction > 0:
        is_test = np.array([sc.test for sc in scenes])
        first = [
            int(rng.choice(np.flatnonzero(is_test))),
            int(rng.choice(np.flatnonzero(~is_test))),
        ]
        for j in _pick_scenes(rng, sizes, cr_fraction * n_patches, first, np.arange(len(scenes))):
            scenes[j].cr = True
    return scenes


def _pick_scenes(
    rng: np.random.Generator, sizes: np.ndarray, target: float, first: list[int],
    candidates: np.ndarray,
) -> list[int]:  # fmt: skip
    """Scenes (``first`` included) whose patch total is near ``target``: a greedy pass in random
    order that skips scenes overshooting ``target`` by more than half a mean scene."""
    slack = 0.5 * sizes.mean()
    chosen, total = list(first), int(sizes[first].sum())
    for i in rng.permutation(candidates):
        if total >= target - slack:
            break
        if i not in chosen and total + sizes[i] <= target + slack:
            chosen.append(int(i))
            total += int(sizes[i])
    if not chosen:
        chosen.append(int(candidates[np.argmin(sizes[candidates])]))
    return chosen


def _patch_rng(seed: int, scene: Scene, patch: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, scene.season, scene.scene, patch, stream])
    )


@dataclass(frozen=True)
class Sen12msPatch:
    """Arrays of one SEN12MS patch as written to disk."""

    s1: np.ndarray  # (2, H, W) float32 dB
    s2: np.ndarray  # (13, H, W) uint16
    lc: np.ndarray  # (4, H, W) uint16
    fractions: np.ndarray  # (17,) float64 IGBP fractions


def render_sen12ms_patch(
    seed: int, scene: Scene, patch: int, size: int, signatures: ClassSignatures
) -> tuple[Sen12msPatch, np.ndarray]:
    """One patch and its float optical image (for the cloudy version)."""
    rng = _patch_rng(seed, scene, patch, 0)
    weights = IGBP_DOMINANT_WEIGHTS * scene.class_boost
    weights[14] *= SEASON_SNOW[scene.season]
    minor = IGBP_MINOR_WEIGHTS * np.sqrt(scene.class_boost)
    classes, fractions = draw_composition(rng, weights, minor)
    render = render_patch(
        rng, signatures, classes, fractions, size, SEASON_ILLUMINATION[scene.season]
    )
    igbp = render.fine_map.astype(np.uint16) + 1
    lccs = np.asarray(LCCS_CODES, dtype=np.uint16)[render.fine_map]
    lc = np.concatenate([igbp[None], np.moveaxis(lccs, -1, 0)], axis=0)
    frac = np.bincount(render.fine_map.ravel(), minlength=17).astype(np.float64)
    frac /= frac.sum()
    out = Sen12msPatch(s1=render.sar_db, s2=to_uint16(render.optical), lc=lc, fractions=frac)
    return out, render.optical


def cloud_coverage_draw(rng: np.random.Generator) -> float:
    """Coverage of a cloudy patch: with probability 1/2 uniform in [0.9, 1], else in [0, 0.9)."""
    return float(rng.uniform(0.9, 1.0) if rng.random() < 0.5 else rng.uniform(0.0, 0.9))


def write_geotiff(
    path: Path, array: np.ndarray, epsg: int, x0: float, y0: float, res: float,
    compress: str | None = None,
) -> None:  # fmt: skip
    """Write a (C, H, W) array as a GeoTIFF with ``EPSG:epsg`` and upper-left corner (x0, y0)."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": CRS.from_epsg(epsg),
        "transform": Affine(res, 0.0, x0, 0.0, -res, y0),
    }
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def generate_sen12ms(
    out_dir: Path,
    n_patches: int = 200,
    size: int = 256,
    seed: int = 0,
    cr_fraction: float = 0.7,
    overwrite: bool = False,
    compress: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``out_dir/sen12ms/`` and ``out_dir/sen12mscr/`` (layout in the module docstring).

    Returns a summary: ``n_patches``, ``n_train``, ``n_test``, ``n_cloudy``, ``n_scenes``,
    ``nan_patch`` (s1 file name), ``cloud_cover`` (s2 file name -> exact coverage of its cloudy
    version), ``class_counts`` (10-class single-label counts) and ``paths``.
    """
    if n_patches < 4:
        raise SarevalError(f"n_patches= {n_patches}: need at least 4 (train and test scenes)")
    if size < 8:
        raise SarevalError(f"size= {size}: need at least 8 pixels")
    if not 0.0 <= cr_fraction <= 1.0:
        raise SarevalError(f"cr_fraction {cr_fraction}: must be in [0, 1]")
    out_dir = Path(out_dir)
    layout_rng = np.random.default_rng(np.random.SeedSequence([seed, 9999]))
    scenes = plan_scenes(layout_rng, n_patches, cr_fraction)
    train = [(sc, p) for sc in scenes if not sc.test for p in sc.patches]
    nan_scene, nan_patch = train[int(layout_rng.integers(len(train)))]
    signatures = igbp_signatures()

    labels: dict[str, np.ndarray] = {}
    cover: dict[str, float] = {}
    class_counts = np.zeros(10, dtype=int)
    with atomic_directory(out_dir, overwrite) as tmp:
        ms, cr = tmp / "sen12ms", tmp / "sen12mscr"
        ms.mkdir()
        if cr_fraction > 0:
            cr.mkdir()
        bar = progress_bar(
            total=n_patches, desc="synth sen12ms", unit="patch", disable=not progress
        )
        for sc in scenes:
            for p in sc.patches:
                patch, optical = render_sen12ms_patch(seed, sc, p, size, signatures)
                if sc is nan_scene and p == nan_patch:
                    nan_rng = _patch_rng(seed, sc, p, 2)
                    flat = nan_rng.choice(size * size, int(nan_rng.integers(3, 9)), replace=False)
                    patch.s1[:, flat // size, flat % size] = np.nan
                x = sc.x0 + (p % 40) * size * 10.0
                y = sc.y0 - (p // 40) * size * 10.0
                for sensor, arr in (("s1", patch.s1), ("s2", patch.s2), ("lc", patch.lc)):
                    write_geotiff(
                        sc.sen12ms_path(ms, sensor, p), arr, sc.epsg, x, y, 10.0, compress
                    )
                name = sc.file_name("s2", p)
                labels[name] = patch.fractions
                class_counts[int(np.argmax(igbp10_fractions(patch.fractions)))] += 1
                if sc.cr:
                    for sensor in ("s1", "s2"):
                        dst = sc.cr_path(cr, sensor, p)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(sc.sen12ms_path(ms, sensor, p), dst)
                    cloud_rng = _patch_rng(seed, sc, p, 1)
                    cloudy, cover[name] = add_clouds(
                        cloud_rng, optical, cloud_coverage_draw(cloud_rng)
                    )
                    path = sc.cr_path(cr, "s2_cloudy", p)
                    write_geotiff(path, to_uint16(cloudy), sc.epsg, x, y, 10.0, compress)
                bar.update()
        bar.close()

        train_names = [sc.file_name("s2", p) for sc in scenes if not sc.test for p in sc.patches]
        test_names = [sc.file_name("s2", p) for sc in scenes if sc.test for p in sc.patches]
        with open(ms / "IGBP_probability_labels.pkl", "wb") as f:
            pickle.dump(labels, f, protocol=2)
        for split, names in (("train", train_names), ("test", test_names)):
            with open(ms / f"{split}_list.pkl", "wb") as f:
                pickle.dump(names, f, protocol=2)
            (ms / f"{split}_list.txt").write_text("".join(n + "\n" for n in names))

    log.info("wrote %d SEN12MS patches (%d cloudy) to %s", n_patches, len(cover), out_dir)
    return {
        "n_patches": n_patches,
        "n_train": len(train_names),
        "n_test": len(test_names),
        "n_cloudy": len(cover),
        "n_scenes": len(scenes),
        "nan_patch": nan_scene.file_name("s1", nan_patch),
        "cloud_cover": cover,
        "class_counts": class_counts.tolist(),
        "paths": {
            "root": str(out_dir),
            "sen12ms": str(out_dir / "sen12ms"),
            "sen12mscr": str(out_dir / "sen12mscr"),
            "labels": str(out_dir / "sen12ms" / "IGBP_probability_labels.pkl"),
            "train_list": str(out_dir / "sen12ms" / "train_list.pkl"),
            "test_list": str(out_dir / "sen12ms" / "test_list.pkl"),
        },
    }
