"""DFC2020 (IEEE GRSS Data Fusion Contest 2020) validation / test releases -> the store.

Layout (``ROOT`` holds one folder per release; patches are SEN12MS-style, 256 px)::

    ROOT/ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p<n>.tif   VV, VH float32 dB
    ROOT/ROIs0000_validation/s2_validation/ROIs0000_validation_s2_0_p<n>.tif   13 bands uint16
    ROOT/ROIs0000_validation/dfc_validation/ROIs0000_validation_dfc_0_p<n>.tif 1 band: DFC class
    ROOT/ROIs0000_validation/lc_validation/ROIs0000_validation_lc_0_p<n>.tif   SEN12MS-style
                                                                               MODIS lc (not read)
    ROOT/ROIs0000_test/{s1,s2,dfc,lc}_0/ROIs0000_test_{s1,s2,dfc,lc}_0_p<n>.tif  the same, test

Verified against public code: lukasliebel/dfc2020_baseline ``code/datasets.py`` (class
``DFC2020``) lists ``ROOT/ROIs0000_validation/s2_validation/*.tif`` (validation) and
``ROOT/ROIs0000_test/s2_0/*.tif`` (test) and derives the partners by replacing ``s2_`` with
``s1_`` / ``dfc_`` in the path (folder and file name alike); a public class-frequency script
reads ``ROIs0000_validation/dfc_validation/ROIs0000_validation_dfc_0_<p>.tif``. *Inferred*, not
seen in code: the test file names (``ROIs0000_test_s2_0_p<n>.tif``, by the same replacement
rule) and the ``lc_*`` folders' content. DFC labels (band 1 of the dfc file): the 10-class
scheme 1 Forest, 2 Shrubland, 3 Savanna, 4 Grassland, 5 Wetlands, 6 Croplands, 7 Urban/Built-up,
8 Snow/Ice, 9 Barren, 10 Water (1-based; the baseline's ``load_lc(igbp=False)`` subtracts 1 and
sets 0 -> 255, ignored; Savanna is class 3, which the baseline's ``no_savanna`` option drops:
not done here, the store keeps all 10 classes, :data:`~sareval.classes.IGBP10` order).

Store: dataset ``dfc2020``, split ``validation`` | ``test``; rows sorted by patch number; ids
``ROIs0000_<split>_p<n>``; ``s1``, ``s2`` as for SEN12MS; ``lc10_map`` (the DFC class - 1 per
pixel, 0 -> 255; any other value is an error naming the file); no scene labels; ``/cloud_cover``
and ``/cloud_mask`` of every row's s2 (the only optical image; the SEN12MS detector choice,
:func:`~sareval.preprocess.cloud_cover.choose_detector`); subset ``all`` (every row, s2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import check_store_output
from sareval.bands import S1_BANDS, S2_BANDS
from sareval.classes import IGBP10, NO_CLASS
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.cloud_cover import CloudDetector, choose_detector
from sareval.preprocess.pipeline import (
    DEFAULT_COMPRESSION,
    RowBlock,
    check_utf8_paths,
    chunk_rows_for,
    compression_filter,
    write_job,
)
from sareval.store import LabelSpec, SensorSpec, StoreWriter

SPLITS = ("validation", "test")
#: the folder suffix of each release (``s2_validation``, ``s2_0``)
FOLDER_SUFFIX = {"validation": "validation", "test": "0"}
SENSORS = ("s1", "s2", "dfc")
NAME_RE = re.compile(
    r"^ROIs0000_(?P<split>validation|test)_(?P<sensor>s1|s2|dfc|lc)_0_p(?P<n>\d+)\.tif$"
)


def release_dir(root: str | Path, split: str) -> Path:
    return Path(root) / f"ROIs0000_{split}"


def patch_path(root: str | Path, split: str, sensor: str, n: int) -> Path:
    """The file of patch ``n`` of a release (sensor s1, s2, dfc, lc)."""
    folder = release_dir(root, split) / f"{sensor}_{FOLDER_SUFFIX[split]}"
    return folder / f"ROIs0000_{split}_{sensor}_0_p{n}.tif"


def patch_id(split: str, n: int) -> str:
    return f"ROIs0000_{split}_p{n}"


def scan_release(root: Path, split: str) -> list[int]:
    """Patch numbers of a release (from its s2 folder), sorted; every s2 file needs its s1 and
    dfc partners."""
    s2_dir = patch_path(root, split, "s2", 0).parent
    if not s2_dir.is_dir():
        raise InputFileError(
            s2_dir,
            f"not found (expected the DFC2020 {split} release: ROOT/ROIs0000_{split}/"
            f"s2_{FOLDER_SUFFIX[split]}/ROIs0000_{split}_s2_0_p<n>.tif)",
        )
    numbers = []
    for path in s2_dir.iterdir():
        m = NAME_RE.match(path.name)
        if m and m["split"] == split and m["sensor"] == "s2":
            numbers.append(int(m["n"]))
    if not numbers:
        raise InputFileError(s2_dir, f"no ROIs0000_{split}_s2_0_p<n>.tif file")
    numbers.sort()
    for sensor in ("s1", "dfc"):
        missing = [n for n in numbers if not patch_path(root, split, sensor, n).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputFileError(
                patch_path(root, split, sensor, missing[0]),
                f"missing {sensor} partner of {patch_path(root, split, 's2', missing[0]).name}"
                + more,
            )
    return numbers


def dfc_map(dfc: np.ndarray, path: str | Path) -> np.ndarray:
    """(H, W) DFC classes -> uint8 0-based 10-class indices: 1..10 -> 0..9, 0 -> 255 (no
    label); any other value is an :class:`InputFileError` naming ``path``."""
    v = np.asarray(dfc).astype(np.int64)
    bad = (v != 0) & ((v < 1) | (v > len(IGBP10)))
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise InputFileError(
            path,
            f"value {int(v[r, c])} at pixel {r},{c} is not a DFC2020 class "
            f"(1..{len(IGBP10)}, 0 = no label)",
        )
    return np.where(v == 0, NO_CLASS, v - 1).astype(np.uint8)


@dataclass(frozen=True)
class Dfc2020Reader:
    """Reads row blocks in a worker. Items: patch numbers."""

    root: str
    split: str
    height: int
    width: int
    detector: CloudDetector

    def __call__(self, items: list[int]) -> RowBlock:
        from sareval.preprocess.tiffs import gdal_env, read_geotiff

        size = (self.height, self.width)
        k = len(items)
        s1 = np.empty((k, len(S1_BANDS), *size), dtype=np.float32)
        s2 = np.empty((k, len(S2_BANDS), *size), dtype=np.uint16)
        maps = np.empty((k, *size), dtype=np.uint8)
        transforms = np.empty((k, 6), dtype=np.float64)
        crs: list[str] = []
        with gdal_env():
            for j, n in enumerate(items):
                path = patch_path(self.root, self.split, "s1", n)
                s1[j] = read_geotiff(path, bands=2, dtype="float32", size=size, what="S1").data
                path = patch_path(self.root, self.split, "s2", n)
                t = read_geotiff(path, bands=13, dtype="uint16", size=size, what="S2")
                s2[j], transforms[j] = t.data, t.transform
                crs.append(t.crs)
                path = patch_path(self.root, self.split, "dfc", n)
                dfc = read_geotiff(path, bands=1, dtype=None, size=size, what="DFC labels")
                maps[j] = dfc_map(dfc.data[0], path)
        cover, mask = self.detector.cover_and_masks(s2, np.ones(k, dtype=bool))
        return RowBlock(
            arrays={"s1": s1, "s2": s2},
            labels={"lc10_map": maps},
            cloud_cover=cover,
            cloud_mask=mask,
            geo_transform=transforms,
            geo_crs=crs,
        )


def preprocess_dfc2020(
    root: str | Path,
    out: str | Path,
    *,
    split: str = "validation",
    workers: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    use_s2cloudless: bool = True,
) -> Path:
    """Convert the DFC2020 ``split`` release under ``root`` into a store (module doc)."""
    from sareval.preprocess.tiffs import reference_size

    if split not in SPLITS:
        raise SarevalError(f"split {split!r}: DFC2020 has {', '.join(SPLITS)}")
    check_utf8_paths(root, out)
    out = check_store_output(out, overwrite, [root])
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "not a directory (expected the DFC2020 root)")
    numbers = scan_release(root, split)
    height, width = reference_size(
        [patch_path(root, split, s, n) for n in numbers[:3] for s in ("s2", "s1")]
    )
    detector = choose_detector(S2_BANDS, use_s2cloudless)
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(len(S2_BANDS) * height * width * 2)
    config: dict[str, Any] = {
        "dataset": "dfc2020",
        "root": str(root.resolve()),
        "split": split,
        "compression": compression,
        "chunk_rows": chunk_rows,
        "size": [height, width],
        "cloud_cover": detector.method,
    }
    writer = StoreWriter(
        out,
        dataset="dfc2020",
        split=split,
        default_task="segmentation",
        ids=[patch_id(split, n) for n in numbers],
        height=height,
        width=width,
        sensors=[SensorSpec("s1", S1_BANDS, "float32"), SensorSpec("s2", S2_BANDS, "uint16")],
        labels=[LabelSpec("lc10_map", "map", IGBP10)],
        config=config,
        source_root=str(root.resolve()),
        with_geo=True,
        with_cloud_mask=True,
        compression=compression_filter(compression),
        chunk_rows=chunk_rows,
        overwrite=overwrite,
    )
    rows = np.arange(len(numbers), dtype=np.int64)
    return write_job(
        writer,
        Dfc2020Reader(str(root), split, height, width, detector),
        numbers,
        lambda: {"all": (rows, "s2", f"all DFC2020 {split} patches")},
        cloud_cover_method=detector.method,
        extra_attrs={
            "labels_source": f"dfc_{FOLDER_SUFFIX[split]} (DFC class - 1; 0 -> 255)",
            "segmentation_labels": "lc10_map from the DFC2020 labels",
        },
        workers=workers,
        chunk_rows=chunk_rows,
        progress=progress,
        desc=f"dfc2020 {split}",
    )
