"""Synthetic BigEarthNet v2.0 (reBEN) in the layout of the release, or of torchgeo's test data
(seeded).

Layout written under ``out_dir`` (read by :mod:`sareval.preprocess.bigearthnet_v2`)::

    BigEarthNet-S2/<S2 product>/<patch_id>/<patch_id>_<BAND>.tif   12 bands (no B10), uint16:
        B02 B03 B04 B08 at size px (10 m); B05 B06 B07 B8A B11 B12 at size/2; B01 B09 at size/6
    BigEarthNet-S1/<S1 product>/<s1_name>/<s1_name>_VV.tif, _VH.tif   float32 dB at size px
    Reference_Maps/<S2 product>/<patch_id>/<patch_id>_reference_map.tif   uint16 CLC codes
    metadata.parquet        the release's columns (its metadata finalizer's order): patch_id,
                            labels (list of 19-class names), split (train | validation | test),
                            country, s1_name, s2v1_name, contains_seasonal_snow,
                            contains_cloud_or_shadow: the patches with neither flag
    metadata_for_patches_with_snow_cloud_or_shadow.parquet   the same columns: the others

Ids: ``S2{A|B}_MSIL2A_<YYYYMMDD>T<HHMMSS>_N9999_R<orbit>_T<tile>_<h>_<v>``; as in the release,
the S1 name and the v1 S2 name (``s2v1_name``) carry the patch's position on BigEarthNet v1's
grid, numbered differently: ``S1{A|B}_IW_GRDH_1SDV_<YYYYMMDD>T<HHMMSS>_<tile>_<h1>_<v1>`` and
``S2{A|B}_MSIL2A_<YYYYMMDD>T<HHMMSS>_<h1>_<v1>`` with ``h1 = (7 h + 11) mod 90``,
``v1 = (11 v + 29) mod 90`` (a bijection of the 90 x 90 grid). The S1 and S2 files of a pair
share their georeference. The signal (class mixtures, acquisitions, clouds over 30-100 %
(mostly) of the cloud/shadow patches, snow over 50-100 % of the snow patches) is that of
:mod:`sareval.preprocess.synth_bigearthnet`; labels are the 19-class names of the CLC classes
present in the patch, the reference map their CLC codes. Splits are drawn per patch
(validation and test 25 % each), not geographically.

``layout="torchgeo"`` writes the same patches as torchgeo's own BigEarthNetV2 test data is
written (its ``tests/data/bigearthnet/v2/data.py``): one ``metadata.parquet`` with the columns
patch_id, s1_name, split (``train`` | ``val`` | ``test``), labels and nothing else (no flags,
every patch in it); every S2 band int16 at size px; S1 int16 (dB rounded); the reference map
uint16; every file in ``+proj=utm +zone=32 +datum=WGS84 +units=m +no_defs`` with the upper-left
corner at (0, 0) and 10 m pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_directory
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS, S2_BANDS
from sareval.classes import BEN19, CLC43, CLC43_CODES, ben19_multi_hot
from sareval.errors import SarevalError
from sareval.preprocess.synth_bigearthnet import (
    CLOUDY_FRACTION,
    SNOW_FRACTION,
    clc_signatures,
    plan_patches,
    render_ben_patch,
    write_s2_bands,
)
from sareval.preprocess.synth_sen12ms import write_geotiff
from sareval.progress import progress_bar

log = logging.getLogger(__name__)

LAYOUTS = ("release", "torchgeo")
TORCHGEO_CRS = "+proj=utm +zone=32 +datum=WGS84 +units=m +no_defs"
COUNTRIES = ("Austria", "Belgium", "Finland", "Ireland", "Lithuania", "Portugal", "Serbia")
METADATA = "metadata.parquet"
SNOW_CLOUD_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"


def write_metadata(path: Path, records: list[dict[str, Any]]) -> None:
    """The records as a parquet file with the release's columns, or torchgeo's four when the
    records have only those (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "patch_id": pa.string(),
        "labels": pa.list_(pa.string()),
        "split": pa.string(),
        "country": pa.string(),
        "s1_name": pa.string(),
        "s2v1_name": pa.string(),
        "contains_seasonal_snow": pa.bool_(),
        "contains_cloud_or_shadow": pa.bool_(),
    }
    names = list(records[0]) if records else list(types)
    schema = pa.schema([(name, types[name]) for name in names])
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def v1_grid(h: int, v: int) -> tuple[int, int]:
    """The cell's position on the v1 grid (module doc)."""
    return (7 * h + 11) % 90, (11 * v + 29) % 90


def write_torchgeo_tif(path: Path, data: np.ndarray) -> None:
    """A (H, W) array as torchgeo's test data writes its GeoTIFFs (module doc)."""
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", height=h, width=w, count=1, dtype=data.dtype.name,
        crs=TORCHGEO_CRS, transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0),
    ) as dst:  # fmt: skip
        dst.write(data, 1)


def generate_bigearthnet_v2(
    out_dir: Path,
    n_patches: int = 200,
    size: int = 120,
    seed: int = 0,
    overwrite: bool = False,
    compress: str | None = None,
    progress: bool = False,
    layout: str = "release",
) -> dict[str, Any]:
    """Write the reBEN trees and parquet files (module docstring); ``layout``: ``release`` or
    ``torchgeo``.

    Returns a summary: ``n_patches``, ``n_train``, ``n_validation``, ``n_test``, ``n_cloudy``,
    ``n_snow``, ``cloud_cover`` (patch id -> exact coverage) and ``paths``
    (``snow_cloud_metadata`` None in the torchgeo layout).
    """
    if layout not in LAYOUTS:
        raise SarevalError(f"layout {layout!r}: one of {', '.join(LAYOUTS)}")
    torchgeo = layout == "torchgeo"
    out_dir = Path(out_dir)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2024]))
    acquisitions, cells = plan_patches(rng, n_patches, size)
    n_cloud = max(1, round(CLOUDY_FRACTION * n_patches))
    n_snow = max(1, round(SNOW_FRACTION * n_patches))
    n_val = n_test = max(1, round(0.25 * n_patches))
    kinds = np.array(
        ["cloud"] * n_cloud + ["snow"] * n_snow + ["clear"] * (n_patches - n_cloud - n_snow)
    )[rng.permutation(n_patches)]
    splits = np.array(
        ["validation"] * n_val + ["test"] * n_test + ["train"] * (n_patches - n_val - n_test)
    )[rng.permutation(n_patches)]
    signatures = clc_signatures()
    code = np.asarray(CLC43_CODES, dtype=np.uint16)

    clean: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    cloud_cover: dict[str, float] = {}
    with atomic_directory(out_dir, overwrite) as tmp:
        s2_root, s1_root = tmp / "BigEarthNet-S2", tmp / "BigEarthNet-S1"
        maps_root = tmp / "Reference_Maps"
        bar = progress_bar(
            total=n_patches, desc="synth bigearthnet-v2", unit="pair", disable=not progress
        )
        for (a, h, v), kind, split in zip(cells, kinds, splits, strict=True):
            acq = acquisitions[a]
            patch = render_ben_patch(seed, acq, a, h, v, str(kind), size, signatures)
            t2, t1 = acq.s2_time, acq.s1_time
            s2_product = (
                f"S2{acq.s2_sat}_MSIL2A_{t2:%Y%m%dT%H%M%S}_N9999_R{acq.orbit:03d}_T{acq.tile}"
            )
            s1_product = f"S1{acq.s1_sat}_IW_GRDH_1SDV_{t1:%Y%m%dT%H%M%S}"
            h1, v1 = v1_grid(h, v)
            pid, s1_name = f"{s2_product}_{h}_{v}", f"{s1_product}_{acq.tile}_{h1}_{v1}"
            s2v1_name = f"S2{acq.s2_sat}_MSIL2A_{t2:%Y%m%dT%H%M%S}_{h1}_{v1}"
            fine = patch.render.fine_map
            s2_folder = s2_root / s2_product / pid
            s1_paths = [s1_root / s1_product / s1_name / f"{s1_name}_{p}.tif" for p in S1_BANDS]
            map_path = maps_root / s2_product / pid / f"{pid}_reference_map.tif"
            if torchgeo:
                for band in BIGEARTHNET_S2_BANDS:
                    dn = np.clip(np.rint(patch.optical[S2_BANDS.index(band)]), 0, 32767)
                    write_torchgeo_tif(s2_folder / f"{pid}_{band}.tif", dn.astype(np.int16))
                for i, path in enumerate(s1_paths):
                    write_torchgeo_tif(path, np.rint(patch.render.sar_db[i]).astype(np.int16))
                write_torchgeo_tif(map_path, code[fine])
            else:
                write_s2_bands(
                    s2_folder, pid, patch.optical, acq.epsg, patch.ulx, patch.uly, compress
                )
                for i, path in enumerate(s1_paths):
                    sar = patch.render.sar_db[i : i + 1]
                    write_geotiff(path, sar, acq.epsg, patch.ulx, patch.uly, 10.0, compress)
                write_geotiff(
                    map_path, code[fine][None], acq.epsg, patch.ulx, patch.uly, 10.0, compress
                )
            present = np.zeros(len(CLC43), np.uint8)
            present[np.unique(fine)] = 1
            labels = [BEN19[k] for k in np.flatnonzero(ben19_multi_hot(present))]
            record: dict[str, Any]
            if torchgeo:  # torchgeo's four columns, its split names, every patch in one file
                record = {
                    "patch_id": pid,
                    "s1_name": s1_name,
                    "split": "val" if split == "validation" else str(split),
                    "labels": labels,
                }
            else:
                record = {
                    "patch_id": pid,
                    "labels": labels,
                    "split": str(split),
                    "country": COUNTRIES[a % len(COUNTRIES)],
                    "s1_name": s1_name,
                    "s2v1_name": s2v1_name,
                    "contains_seasonal_snow": bool(kind == "snow"),
                    "contains_cloud_or_shadow": bool(kind == "cloud"),
                }
            (clean if kind == "clear" or torchgeo else flagged).append(record)
            if kind == "cloud":
                cloud_cover[pid] = patch.cover
            bar.update()
        bar.close()
        write_metadata(tmp / METADATA, clean)
        if not torchgeo:
            write_metadata(tmp / SNOW_CLOUD_METADATA, flagged)

    log.info("wrote %d reBEN pairs to %s", n_patches, out_dir)
    split_names = [str(s) for s in splits]
    return {
        "n_patches": n_patches,
        **{f"n_{s}": split_names.count(s) for s in ("train", "validation", "test")},
        "n_cloudy": n_cloud,
        "n_snow": n_snow,
        "cloud_cover": cloud_cover,
        "paths": {
            "root": str(out_dir),
            "s2_root": str(out_dir / "BigEarthNet-S2"),
            "s1_root": str(out_dir / "BigEarthNet-S1"),
            "reference_maps": str(out_dir / "Reference_Maps"),
            "metadata": str(out_dir / METADATA),
            "snow_cloud_metadata": None if torchgeo else str(out_dir / SNOW_CLOUD_METADATA),
        },
    }
