"""Synthetic BigEarthNet v1.0 (S2) + BigEarthNet-S1 v1.0 trees in the real layout (seeded).

Layout written under ``out_dir`` (see ``shared/reference/datasets.md``)::

    BigEarthNet-v1.0/<s2>/<s2>_<BAND>.tif       12 bands (no B10), uint16, one file each:
        B02 B03 B04 B08 at size px (10 m); B05 B06 B07 B8A B11 B12 at size/2 (20 m);
        B01 B09 at size/6 (60 m); all share the upper-left corner
    BigEarthNet-v1.0/<s2>/<s2>_labels_metadata.json
        {"labels": [CLC43 names], "coordinates": {ulx, uly, lrx, lry}, "projection": WKT,
         "tile_source": ..., "acquisition_date": "YYYY-MM-DD HH:MM:SS"}
    BigEarthNet-S1-v1.0/<s1>/<s1>_VV.tif, <s1>_VH.tif   float32 dB at size px
    BigEarthNet-S1-v1.0/<s1>/<s1>_labels_metadata.json
        {"labels", "coordinates": {ulx, uly, lrx, lly}  (sic: lly),
         "projection", "corresponding_s2_patch", "scene_source", "acquisition_time"}
    train.csv, val.csv, test.csv    "S2_name,S1_name" per line, no header (test.csv: CRLF)
    patches_with_cloud_and_shadow.csv, patches_with_seasonal_snow.csv   one S2 name a line

Names: S2 ``S2{A|B}_MSIL2A_<YYYYMMDD>T<HHMMSS>_<h>_<v>`` (acquisitions before 10:00 are written
without the hour's leading zero, e.g. ``S2B_MSIL2A_20170924T93020_69_24``, as in the real data);
S1 ``S1{A|B}_IW_GRDH_1SDV_<YYYYMMDD>T<HHMMSS>_<tile>_<h>_<v>`` with its own acquisition time.
The cloud/shadow and snow patches are on disk (with S1 partners), in no split and disjoint;
cloudy ones have clouds and shadows over 30-100 % (mostly), snowy ones seasonal snow over
50-100 % of the optical patch while their SAR is unchanged. Optical values are L2A-like
(path radiance removed). Signal model: :mod:`sareval.preprocess.synth_scene`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_directory
from sareval.bands import BIGEARTHNET_S2_BANDS, S2_BANDS, S2_RESOLUTION_M
from sareval.classes import CLC43
from sareval.errors import SarevalError
from sareval.preprocess.synth_scene import (
    BIGEARTHNET_SIGNAL,
    ClassSignatures,
    PatchRender,
    add_clouds,
    add_snow,
    block_average,
    draw_composition,
    mix_signatures,
    render_patch,
    to_uint16,
)
from sareval.preprocess.synth_sen12ms import write_geotiff
from sareval.progress import progress_bar

log = logging.getLogger(__name__)

#: CLC43 class -> surface mixture (CLC43 order)
CLC_MIXTURES: tuple[dict[str, float], ...] = (
    {"urban": 1.0},  # Continuous urban fabric
    {"urban": 0.6, "grass": 0.4},  # Discontinuous urban fabric
    {"urban": 0.8, "barren": 0.2},  # Industrial or commercial units
    {"urban": 0.5, "grass": 0.5},  # Road and rail networks
    {"urban": 0.6, "water": 0.4},  # Port areas
    {"urban": 0.4, "grass": 0.6},  # Airports
    {"barren": 0.8, "urban": 0.2},  # Mineral extraction sites
    {"barren": 0.6, "urban": 0.4},  # Dump sites
    {"barren": 0.7, "urban": 0.3},  # Construction sites
    {"grass": 0.5, "broadleaf": 0.3, "urban": 0.2},  # Green urban areas
    {"grass": 0.8, "urban": 0.2},  # Sport and leisure facilities
    {"crop": 1.0},  # Non-irrigated arable land
    {"crop": 0.8, "wetland": 0.2},  # Permanently irrigated land
    {"crop": 0.5, "wetland": 0.5},  # Rice fields
    {"crop": 0.5, "barren": 0.3, "shrub": 0.2},  # Vineyards
    {"broadleaf": 0.4, "crop": 0.4, "grass": 0.2},  # Fruit trees and berry plantations
    {"shrub": 0.5, "barren": 0.3, "broadleaf": 0.2},  # Olive groves
    {"grass": 1.0},  # Pastures
    {"crop": 0.7, "broadleaf": 0.3},  # Annual crops associated with permanent crops
    {"crop": 0.5, "grass": 0.3, "broadleaf": 0.2},  # Complex cultivation patterns
    {"crop": 0.4, "grass": 0.2, "broadleaf": 0.2, "shrub": 0.2},  # Agriculture + natural veg.
    {"savanna": 0.6, "broadleaf": 0.2, "grass": 0.2},  # Agro-forestry areas
    {"broadleaf": 1.0},  # Broad-leaved forest
    {"needleleaf": 1.0},  # Coniferous forest
    {"broadleaf": 0.5, "needleleaf": 0.5},  # Mixed forest
    {"grass": 0.7, "shrub": 0.3},  # Natural grassland
    {"shrub": 0.6, "wetland": 0.2, "grass": 0.2},  # Moors and heathland
    {"shrub": 0.8, "barren": 0.2},  # Sclerophyllous vegetation
    {"shrub": 0.5, "broadleaf": 0.3, "needleleaf": 0.2},  # Transitional woodland/shrub
    {"sand": 1.0},  # Beaches, dunes, sands
    {"barren": 1.0},  # Bare rock
    {"barren": 0.6, "grass": 0.4},  # Sparsely vegetated areas
    {"barren": 0.4, "needleleaf": 0.3, "water": 0.3},  # Burnt areas
    {"wetland": 1.0},  # Inland marshes
    {"wetland": 0.6, "shrub": 0.2, "needleleaf": 0.2},  # Peatbogs
    {"wetland": 0.6, "sand": 0.2, "water": 0.2},  # Salt marshes
    {"sand": 0.5, "water": 0.5},  # Salines
    {"water": 0.5, "sand": 0.3, "wetland": 0.2},  # Intertidal flats
    {"water": 0.8, "grass": 0.2},  # Water courses
    {"water": 1.0},  # Water bodies
    {"water": 0.9, "wetland": 0.1},  # Coastal lagoons
    {"water": 0.9, "sand": 0.1},  # Estuaries
    {"water": 1.0},  # Sea and ocean
)
#: frequency of each CLC43 class as the dominant class (only classes of the 19-class scheme)
CLC_DOMINANT_WEIGHTS = np.array(
    [
        0.010,
        0.040,
        0.015,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0.140,
        0.010,
        0.004,
        0.010,
        0.010,
        0.015,
        0.080,
        0.005,
        0.070,
        0.070,
        0.010,
        0.080,
        0.120,
        0.100,
        0.020,
        0.020,
        0.020,
        0.060,
        0.004,
        0,
        0.005,
        0,
        0.010,
        0.015,
        0.004,
        0.002,
        0,
        0.005,
        0.030,
        0.005,
        0.003,
        0.060,
    ]
)
#: frequency of each CLC43 class as a minor class (includes the 11 unmapped classes)
CLC_MINOR_WEIGHTS = CLC_DOMINANT_WEIGHTS + np.where(CLC_DOMINANT_WEIGHTS == 0, 0.006, 0.004)

#: MGRS tiles and their UTM EPSG codes
TILES: tuple[tuple[str, int], ...] = (
    ("29SND", 32629),
    ("32TMT", 32632),
    ("33UUP", 32633),
    ("34VER", 32634),
    ("35VLH", 32635),
    ("31UFS", 32631),
    ("29TNE", 32629),
    ("33TWN", 32633),
    ("34TDT", 32634),
    ("35ULA", 32635),
    ("32UMU", 32632),
    ("34UDG", 32634),
)

CLOUDY_FRACTION = 0.06
SNOW_FRACTION = 0.08
PATCHES_PER_TILE = 40


def clc_signatures() -> ClassSignatures:
    """Signatures of the 43 CLC classes (CLC43 order)."""
    return mix_signatures(CLC43, CLC_MIXTURES)


@dataclass
class Acquisition:
    """One S2 tile acquisition and its S1 partner acquisition."""

    index: int
    tile: str
    epsg: int
    ulx: float
    uly: float
    s2_sat: str
    s2_time: dt.datetime
    orbit: int
    s1_sat: str
    s1_time: dt.datetime
    class_boost: np.ndarray

    @property
    def s2_prefix(self) -> str:
        """``S2A_MSIL2A_20170924T93020``: the hour without its leading zero (real quirk)."""
        t = self.s2_time
        return f"S2{self.s2_sat}_MSIL2A_{t:%Y%m%d}T{t.hour}{t:%M%S}"

    @property
    def s1_prefix(self) -> str:
        return f"S1{self.s1_sat}_IW_GRDH_1SDV_{self.s1_time:%Y%m%dT%H%M%S}"

    def tile_source(self) -> str:
        t = self.s2_time
        later = t + dt.timedelta(seconds=int(self.orbit) * 7 % 600)
        return (
            f"S2{self.s2_sat}_MSIL1C_{t:%Y%m%dT%H%M%S}_N0205_R{self.orbit:03d}_T{self.tile}"
            f"_{later:%Y%m%dT%H%M%S}"
        )

    def scene_source(self) -> str:
        t = self.s1_time
        end = t + dt.timedelta(seconds=25)
        absolute = 10000 + 7 * self.orbit + t.timetuple().tm_yday
        return (
            f"{self.s1_prefix}_{end:%Y%m%dT%H%M%S}_{absolute:06d}_{absolute * 13 % 0xFFFFF:05X}"
            f"_{(absolute * 31) % 0xFFFF:04X}"
        )


def plan_acquisitions(rng: np.random.Generator, n_patches: int) -> list[Acquisition]:
    """Tile acquisitions; the first is before 10:00 so its names lack the hour's zero."""
    n = int(np.clip(round(n_patches / PATCHES_PER_TILE), 2, 60))
    start = dt.datetime(2017, 6, 1)
    days = rng.choice(365, n, replace=False)  # distinct dates: distinct names
    out = []
    for i in range(n):
        tile, epsg = TILES[int(rng.integers(len(TILES)))]
        day = start + dt.timedelta(days=int(days[i]))
        hour = 9 if i == 0 else int(rng.integers(9, 12))
        s2_time = day.replace(hour=hour, minute=int(rng.integers(60)), second=int(rng.integers(60)))
        s1_day = day + dt.timedelta(days=int(rng.integers(-3, 4)))
        s1_time = s1_day.replace(
            hour=int(rng.choice([5, 16, 17])),
            minute=int(rng.integers(60)),
            second=int(rng.integers(60)),
        )
        out.append(
            Acquisition(
                index=i,
                tile=tile,
                epsg=epsg,
                ulx=float(rng.integers(3, 7) * 100_000 - 40),
                uly=float(rng.integers(42, 70) * 100_000 + 40),
                s2_sat=str(rng.choice(["A", "B"])),
                s2_time=s2_time,
                orbit=int(rng.integers(1, 144)),
                s1_sat=str(rng.choice(["A", "B"])),
                s1_time=s1_time,
                class_boost=np.exp(rng.normal(0.0, 0.8, 43)),
            )
        )
    return out


def season_illumination(month: int) -> float:
    """Sun elevation factor by month (northern hemisphere): 0.8 in December, 1.05 in June."""
    return float(0.925 + 0.125 * np.cos((month - 6) / 12 * 2 * np.pi))


def _projection_wkt(epsg: int) -> str:
    from rasterio.crs import CRS

    return CRS.from_epsg(epsg).to_wkt()


def plan_patches(
    rng: np.random.Generator, n_patches: int, size: int
) -> tuple[list[Acquisition], list[tuple[int, int, int]]]:
    """Check ``n_patches`` / ``size``, plan the acquisitions and give each patch a distinct
    (acquisition, h, v) cell of its tile's 90 x 90 grid."""
    if n_patches < 5:
        raise SarevalError(f"n_patches= {n_patches}: need at least 5 (3 splits + 2 lists)")
    if size < 12 or size % 6:
        raise SarevalError(f"size= {size}: must be a multiple of 6 (60 m bands), at least 12")
    acquisitions = plan_acquisitions(rng, n_patches)
    tile_of = rng.permutation(np.arange(n_patches) % len(acquisitions))
    cells: list[tuple[int, int, int]] = []  # (acquisition, h, v)
    for a in range(len(acquisitions)):
        members = np.flatnonzero(tile_of == a)
        grid = rng.choice(90 * 90, members.size, replace=False)
        cells += [(a, int(g % 90), int(g // 90)) for g in grid]
    return acquisitions, cells


@dataclass
class BenPatchRender:
    """A rendered patch: signal, optical after clouds/snow, their cover, upper-left corner."""

    render: PatchRender
    optical: np.ndarray
    cover: float
    ulx: int
    uly: int


def render_ben_patch(
    seed: int,
    acq: Acquisition,
    a: int,
    h: int,
    v: int,
    kind: str,
    size: int,
    signatures: ClassSignatures,
) -> BenPatchRender:
    """Patch (h, v) of acquisition ``a``, seeded by (seed, a, h, v); ``kind`` "cloud" adds
    clouds and shadows over 30-100 % (mostly), "snow" seasonal snow over 50-100 %."""
    prng = np.random.default_rng(np.random.SeedSequence([seed, a, h, v]))
    weights = CLC_DOMINANT_WEIGHTS * acq.class_boost
    minor = CLC_MINOR_WEIGHTS * np.sqrt(acq.class_boost)
    classes, fractions = draw_composition(prng, weights, minor)
    render = render_patch(
        prng,
        signatures,
        classes,
        fractions,
        size,
        season_illumination(acq.s2_time.month),
        level="L2A",
        params=BIGEARTHNET_SIGNAL,
    )
    optical, cover = render.optical, float("nan")
    if kind == "cloud":
        cov = float(prng.uniform(0.3, 1.0) if prng.random() < 0.85 else prng.uniform(0.05, 0.3))
        optical, cover = add_clouds(prng, optical, cov)
    elif kind == "snow":
        cover = float(prng.uniform(0.5, 1.0))
        optical = add_snow(prng, optical, cover)
    ulx, uly = int(acq.ulx) + h * size * 10, int(acq.uly) - v * size * 10
    return BenPatchRender(render, optical, cover, ulx, uly)


def write_s2_bands(
    folder: Path,
    name: str,
    optical: np.ndarray,
    epsg: int,
    ulx: int,
    uly: int,
    compress: str | None,
) -> None:
    """``folder/<name>_<band>.tif`` for the 12 BigEarthNet bands (no B10) at their native grid
    (20 m bands block-averaged by 2, 60 m by 6), uint16."""
    for band in BIGEARTHNET_S2_BANDS:
        res = S2_RESOLUTION_M[band]
        data = optical[S2_BANDS.index(band)]
        data = block_average(data, res // 10) if res > 10 else data
        path = folder / f"{name}_{band}.tif"
        write_geotiff(path, to_uint16(data)[None], epsg, ulx, uly, res, compress)


def write_ben_pair(
    s2_root: Path,
    s1_root: Path,
    s2_name: str,
    s1_name: str,
    patch: Any,
    acq: Any,
    wkt: str,
    size: int,
    compress: str | None,
) -> None:
    """One S2 folder (12 band GeoTIFFs + labels_metadata.json) and its S1 partner folder."""
    ulx, uly = patch.ulx, patch.uly
    lrx, lry = ulx + size * 10, uly - size * 10
    labels = [CLC43[c] for c in sorted(set(patch.render.fine_map.ravel().tolist()))]
    folder = s2_root / s2_name
    write_s2_bands(folder, s2_name, patch.optical, acq.epsg, ulx, uly, compress)
    s2_meta = {
        "labels": labels,
        "coordinates": {"ulx": ulx, "uly": uly, "lrx": lrx, "lry": lry},
        "projection": wkt,
        "tile_source": acq.tile_source(),
        "acquisition_date": f"{acq.s2_time:%Y-%m-%d %H:%M:%S}",
    }
    (folder / f"{s2_name}_labels_metadata.json").write_text(json.dumps(s2_meta))
    folder = s1_root / s1_name
    for i, pol in enumerate(("VV", "VH")):
        path = folder / f"{s1_name}_{pol}.tif"
        sar = patch.render.sar_db[i : i + 1]
        write_geotiff(path, sar, acq.epsg, ulx, uly, 10.0, compress)
    s1_meta = {
        "labels": labels,
        "coordinates": {"ulx": ulx, "uly": uly, "lrx": lrx, "lly": lry},
        "projection": wkt,
        "corresponding_s2_patch": s2_name,
        "scene_source": acq.scene_source(),
        "acquisition_time": f"{acq.s1_time:%Y-%m-%dT%H:%M:%S}",
    }
    (folder / f"{s1_name}_labels_metadata.json").write_text(json.dumps(s1_meta))


def generate_bigearthnet(
    out_dir: Path,
    n_patches: int = 200,
    size: int = 120,
    seed: int = 0,
    overwrite: bool = False,
    compress: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the BigEarthNet S2 and S1 trees, split CSVs and lists (module docstring).

    Returns a summary: ``n_patches``, ``n_train``, ``n_val``, ``n_test``, ``n_cloudy``,
    ``n_snow``, ``cloud_cover`` (S2 name -> exact coverage), ``snow_cover`` and ``paths``.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7777]))
    acquisitions, cells = plan_patches(rng, n_patches, size)
    n_cloud = max(1, round(CLOUDY_FRACTION * n_patches))
    n_snow = max(1, round(SNOW_FRACTION * n_patches))
    m = n_patches - n_cloud - n_snow
    n_val = max(1, round(0.24 * m))
    n_test = max(1, round(0.24 * m))
    status = np.array(
        ["cloud"] * n_cloud
        + ["snow"] * n_snow
        + ["val"] * n_val
        + ["test"] * n_test
        + ["train"] * (m - n_val - n_test)
    )[rng.permutation(n_patches)]
    signatures = clc_signatures()
    wkt = {acq.epsg: _projection_wkt(acq.epsg) for acq in acquisitions}

    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    lists: dict[str, list[str]] = {"cloud": [], "snow": []}
    cloud_cover: dict[str, float] = {}
    snow_cover: dict[str, float] = {}
    with atomic_directory(out_dir, overwrite) as tmp:
        s2_root, s1_root = tmp / "BigEarthNet-v1.0", tmp / "BigEarthNet-S1-v1.0"
        bar = progress_bar(
            total=n_patches, desc="synth bigearthnet", unit="pair", disable=not progress
        )
        for (a, h, v), kind in zip(cells, status, strict=True):
            acq = acquisitions[a]
            patch = render_ben_patch(seed, acq, a, h, v, str(kind), size, signatures)
            s2_name = f"{acq.s2_prefix}_{h}_{v}"
            s1_name = f"{acq.s1_prefix}_{acq.tile}_{h}_{v}"
            if kind == "cloud":
                cloud_cover[s2_name] = patch.cover
                lists["cloud"].append(s2_name)
            elif kind == "snow":
                snow_cover[s2_name] = patch.cover
                lists["snow"].append(s2_name)
            else:
                rows[str(kind)].append((s2_name, s1_name))

            write_ben_pair(
                s2_root, s1_root, s2_name, s1_name, patch, acq, wkt[acq.epsg], size, compress
            )
            bar.update()
        bar.close()

        for split, pairs in rows.items():
            newline = "\r\n" if split == "test" else "\n"
            text = "".join(f"{s2},{s1}{newline}" for s2, s1 in pairs)
            (tmp / f"{split}.csv").write_bytes(text.encode())
        for kind, file in (
            ("cloud", "patches_with_cloud_and_shadow.csv"),
            ("snow", "patches_with_seasonal_snow.csv"),
        ):
            (tmp / file).write_text("".join(n + "\n" for n in lists[kind]))

    log.info("wrote %d BigEarthNet pairs to %s", n_patches, out_dir)
    return {
        "n_patches": n_patches,
        "n_train": len(rows["train"]),
        "n_val": len(rows["val"]),
        "n_test": len(rows["test"]),
        "n_cloudy": len(lists["cloud"]),
        "n_snow": len(lists["snow"]),
        "cloud_cover": cloud_cover,
        "snow_cover": snow_cover,
        "paths": {
            "root": str(out_dir),
            "s2_root": str(out_dir / "BigEarthNet-v1.0"),
            "s1_root": str(out_dir / "BigEarthNet-S1-v1.0"),
            **{f"{s}_csv": str(out_dir / f"{s}.csv") for s in ("train", "val", "test")},
            "cloudy_list": str(out_dir / "patches_with_cloud_and_shadow.csv"),
            "snow_list": str(out_dir / "patches_with_seasonal_snow.csv"),
        },
    }
