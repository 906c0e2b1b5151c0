"""Synthetic BigEarthNet v2.0 (reBEN) in the layout of the release (seeded).

Layout written under ``out_dir`` (read by :mod:`sareval.preprocess.bigearthnet_v2`)::

    BigEarthNet-S2/<S2 product>/<patch_id>/<patch_id>_<BAND>.tif   12 bands (no B10), uint16:
        B02 B03 B04 B08 at size px (10 m); B05 B06 B07 B8A B11 B12 at size/2; B01 B09 at size/6
    BigEarthNet-S1/<S1 product>/<s1_name>/<s1_name>_VV.tif, _VH.tif   float32 dB at size px
    Reference_Maps/<S2 product>/<patch_id>/<patch_id>_reference_map.tif   uint16 CLC codes
    metadata.parquet        patch_id, labels (list of 19-class names), split (train |
                            validation | test), country, s1_name, contains_seasonal_snow,
                            contains_cloud_or_shadow: the patches with neither flag
    metadata_for_patches_with_snow_cloud_or_shadow.parquet   the same columns: the others

Ids: ``S2{A|B}_MSIL2A_<YYYYMMDD>T<HHMMSS>_N9999_R<orbit>_T<tile>_<h>_<v>`` and
``S1{A|B}_IW_GRDH_1SDV_<YYYYMMDD>T<HHMMSS>_<tile>_<h>_<v>``. The signal (class mixtures,
acquisitions, clouds over 30-100 % (mostly) of the cloud/shadow patches, snow over 50-100 % of
the snow patches) is that of :mod:`sareval.preprocess.synth_bigearthnet`; labels are the
19-class names of the CLC classes present in the patch, the reference map their CLC codes.
Splits are drawn per patch (validation and test 25 % each), not geographically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_directory
from sareval.classes import BEN19, CLC43, CLC43_CODES, ben19_multi_hot
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

COUNTRIES = ("Austria", "Belgium", "Finland", "Ireland", "Lithuania", "Portugal", "Serbia")
METADATA = "metadata.parquet"
SNOW_CLOUD_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"


def write_metadata(path: Path, records: list[dict[str, Any]]) -> None:
    """The records as a parquet file with the release's columns (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("patch_id", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("split", pa.string()),
            ("country", pa.string()),
            ("s1_name", pa.string()),
            ("contains_seasonal_snow", pa.bool_()),
            ("contains_cloud_or_shadow", pa.bool_()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def generate_bigearthnet_v2(
    out_dir: Path,
    n_patches: int = 200,
    size: int = 120,
    seed: int = 0,
    overwrite: bool = False,
    compress: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the reBEN trees and parquet files (module docstring).

    Returns a summary: ``n_patches``, ``n_train``, ``n_validation``, ``n_test``, ``n_cloudy``,
    ``n_snow``, ``cloud_cover`` (patch id -> exact coverage) and ``paths``.
    """

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
            pid, s1_name = f"{s2_product}_{h}_{v}", f"{s1_product}_{acq.tile}_{h}_{v}"
            write_s2_bands(
                s2_root / s2_product / pid, pid, patch.optical, acq.epsg, patch.ulx, patch.uly,
                compress,
            )  # fmt: skip
            for i, pol in enumerate(("VV", "VH")):
                path = s1_root / s1_product / s1_name / f"{s1_name}_{pol}.tif"
                sar = patch.render.sar_db[i : i + 1]
                write_geotiff(path, sar, acq.epsg, patch.ulx, patch.uly, 10.0, compress)
            fine = patch.render.fine_map
            path = maps_root / s2_product / pid / f"{pid}_reference_map.tif"
            write_geotiff(path, code[fine][None], acq.epsg, patch.ulx, patch.uly, 10.0, compress)
            present = np.zeros(len(CLC43), np.uint8)
            present[np.unique(fine)] = 1
            labels = [BEN19[k] for k in np.flatnonzero(ben19_multi_hot(present))]
            record = {
                "patch_id": pid,
                "labels": labels,
                "split": str(split),
                "country": COUNTRIES[a % len(COUNTRIES)],
                "s1_name": s1_name,
                "contains_seasonal_snow": bool(kind == "snow"),
                "contains_cloud_or_shadow": bool(kind == "cloud"),
            }
            (clean if kind == "clear" else flagged).append(record)
            if kind == "cloud":
                cloud_cover[pid] = patch.cover
            bar.update()
        bar.close()
        write_metadata(tmp / METADATA, clean)
        write_metadata(tmp / SNOW_CLOUD_METADATA, flagged)

    log.info("wrote %d reBEN pairs to %s", n_patches, out_dir)
    split_names = [r["split"] for r in clean + flagged]
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
            "snow_cloud_metadata": str(out_dir / SNOW_CLOUD_METADATA),
        },
    }
