"""BigEarthNet v1.0 (S2) + BigEarthNet-S1 v1.0 trees -> the store.

Layout (``shared/reference/datasets.md``)::

    S2_ROOT/<s2 name>/<s2 name>_<band>.tif   band B01..B12 without B10, one band each, uint16:
                                             B02,B03,B04,B08 10 m (120x120); B05,B06,B07,B8A,
                                             B11,B12 20 m (60x60); B01,B09 60 m (20x20)
    S2_ROOT/<s2 name>/<s2 name>_labels_metadata.json   {"labels": [CLC names], ...}
    S1_ROOT/<s1 name>/<s1 name>_{VV,VH}.tif  float32 dB, 120x120
    S1_ROOT/<s1 name>/<s1 name>_labels_metadata.json   {..., "corresponding_s2_patch": name}
    train.csv / val.csv / test.csv           "S2 name,S1 name" a line, no header (CRLF possible)
    patches_with_cloud_and_shadow.csv, patches_with_seasonal_snow.csv   S2 names, one a line

Store rows: the split's patches, then those of ``--cloudy-list``, then those of
``--snow-list`` (a list's S1 partner comes from its second column when present, else from the
S1 JSON whose ``corresponding_s2_patch`` names it). Ids are the S2 names. ``s2`` holds the 12
bands (:data:`~sareval.bands.BIGEARTHNET_S2_BANDS` order) on the 10 m grid as float32 DN (10 m
bands exact), the 20/60 m bands resampled with the recorded ``--resampling`` method and kept
unrounded and unclipped (:mod:`sareval.preprocess.resample` says why). Labels:
``clc43_multi`` from the S2 JSON, ``clc19_multi`` via :func:`sareval.classes.ben19_multi_hot`.
Cloud cover is computed for the cloudy-list rows only (NaN elsewhere), with the fallback detector
(s2cloudless's all-band model needs B10); ``/cloud_mask`` holds its per-pixel mask (255 where
the cover is NaN). Subsets: ``clear`` (split rows), ``cloudy`` (cloud/
shadow list rows; their S2 is itself cloudy, so optical ``s2``), ``very_cloudy`` (cloudy rows
with cover >= threshold, or a user list), ``snow`` (snow list rows).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import check_store_output
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS, S2_RESOLUTION_M
from sareval.classes import BEN19, CLC43, ben19_multi_hot
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.cloud_cover import CloudDetector, choose_detector
from sareval.preprocess.pipeline import (
    DEFAULT_COMPRESSION,
    RowBlock,
    check_utf8_paths,
    chunk_rows_for,
    compression_filter,
    config_file_entry,
    read_text_input,
    subset_rows_from_list,
    very_cloudy_subset,
    write_job,
)
from sareval.preprocess.resample import RESAMPLING_METHODS, upsample_float32
from sareval.store import LabelSpec, SensorSpec, StoreWriter

log = logging.getLogger(__name__)

S2_NAME_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{5,6}_\d+_\d+$")
S1_NAME_RE = re.compile(r"^S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_\w+_\d+_\d+$")
GROUPS = ("split", "cloudy", "snow")
_CLC_INDEX = {name: i for i, name in enumerate(CLC43)}
_CLC_FOLDED = {" ".join(name.casefold().split()): i for i, name in enumerate(CLC43)}


@dataclass(frozen=True)
class BenPatch:
    """One row: the S2 and S1 patch names and the group it comes from (split/cloudy/snow)."""

    s2: str
    s1: str
    group: str


def s2_band_path(s2_root: str | Path, name: str, band: str) -> Path:
    return Path(s2_root) / name / f"{name}_{band}.tif"


def s1_band_path(s1_root: str | Path, name: str, band: str) -> Path:
    return Path(s1_root) / name / f"{name}_{band}.tif"


def json_path(root: str | Path, name: str) -> Path:
    return Path(root) / name / f"{name}_labels_metadata.json"


# --- inputs -------------------------------------------------------------------------------------
def read_name_csv(path: str | Path) -> list[tuple[str, str | None]]:
    """``S2 name[,S1 name]`` a line; CRLF, blank lines and a header line are tolerated."""
    path = Path(path)
    text = read_text_input(path, "a text CSV of patch names")
    rows: list[tuple[str, str | None]] = []
    for i, line in enumerate(text.splitlines()):
        cols = [c.strip() for c in line.split(",")]
        if not cols[0]:
            continue
        if not S2_NAME_RE.match(cols[0]):
            if i == 0 and not rows:  # a header line
                continue
            raise InputFileError(
                path,
                f"line {i + 1}: {cols[0]!r} is not a BigEarthNet S2 patch name "
                "(like S2A_MSIL2A_20170613T101031_0_45)",
            )
        s1 = cols[1] if len(cols) > 1 and cols[1] else None
        if s1 is not None and not S1_NAME_RE.match(s1):
            raise InputFileError(path, f"line {i + 1}: {s1!r} is not a BigEarthNet-S1 patch name")
        rows.append((cols[0], s1))
    if not rows:
        raise InputFileError(path, "no patch names in the file")
    return rows


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputFileError(path, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputFileError(path, "not a JSON object")
    return obj


def s1_partners(s1_root: Path, wanted: set[str]) -> dict[str, str]:
    """S2 name -> S1 name for the ``wanted`` S2 names, from the S1 JSONs'
    ``corresponding_s2_patch`` (scans the S1 tree once)."""
    found: dict[str, str] = {}
    with os.scandir(s1_root) as entries:
        for entry in entries:
            if not entry.is_dir() or not S1_NAME_RE.match(entry.name):
                continue
            path = json_path(s1_root, entry.name)
            if not path.is_file():
                continue
            s2 = read_json(path).get("corresponding_s2_patch")
            if isinstance(s2, str) and s2 in wanted:
                found[s2] = entry.name
                if len(found) == len(wanted):
                    break
    return found


def clc43_multi_hot(path: Path) -> np.ndarray:
    """The S2 JSON's ``labels`` (CLC names) as a (43,) uint8 multi-hot vector."""
    obj = read_json(path)
    names = obj.get("labels")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputFileError(path, "no 'labels' list of CLC class names")
    out = np.zeros(len(CLC43), dtype=np.uint8)
    for name in names:
        k = _CLC_INDEX.get(name, _CLC_FOLDED.get(" ".join(name.casefold().split())))
        if k is None:
            raise InputFileError(path, f"unknown CLC label {name!r}")
        out[k] = 1
    return out


def collect_patches(
    s1_root: Path,
    split_csv: Path,
    cloudy_list: Path | None,
    snow_list: Path | None,
) -> list[BenPatch]:
    """Rows in store order; S1 partners of list entries without one come from the S1 JSONs."""
    groups: list[tuple[str, Path, list[tuple[str, str | None]]]] = [
        ("split", split_csv, read_name_csv(split_csv))
    ]
    for group, path in (("cloudy", cloudy_list), ("snow", snow_list)):
        if path is not None:
            groups.append((group, path, read_name_csv(path)))
    seen: dict[str, Path] = {}
    for _, path, rows in groups:
        for s2, _ in rows:
            if s2 in seen:
                problem = "is listed twice" if seen[s2] == path else f"is also listed in {seen[s2]}"
                raise InputFileError(path, f"patch {s2} {problem}")
            seen[s2] = path
    wanted = {s2 for _, _, rows in groups for s2, s1 in rows if s1 is None}
    partners = s1_partners(s1_root, wanted) if wanted else {}
    patches: list[BenPatch] = []
    for group, path, rows in groups:
        lacking = [s2 for s2, s1 in rows if s1 is None and s2 not in partners]
        if lacking:
            raise InputFileError(
                path,
                f"{len(lacking)} patches have no S1 partner (no S1 JSON under {s1_root} names "
                f"them in corresponding_s2_patch), e.g. {lacking[0]}",
            )
        patches += [BenPatch(s2, s1 or partners[s2], group) for s2, s1 in rows]
    return patches


def validate_files(
    s2_root: Path, s1_root: Path, patches: Sequence[BenPatch], lists: dict[str, Path]
) -> None:
    """Existence of every file the job reads, before the long read."""
    absent = [p for p in patches if not (s2_root / p.s2).is_dir()]
    if absent:
        path = lists[absent[0].group]
        n_group = sum(p.group == absent[0].group for p in absent)
        raise InputFileError(
            path,
            f"{n_group} listed patches are not on disk under {s2_root}, e.g. {absent[0].s2}",
        )
    for p in patches:
        for band in BIGEARTHNET_S2_BANDS:
            if not s2_band_path(s2_root, p.s2, band).is_file():
                raise InputFileError(s2_band_path(s2_root, p.s2, band), f"missing S2 band {band}")
        if not json_path(s2_root, p.s2).is_file():
            raise InputFileError(json_path(s2_root, p.s2), "missing S2 labels JSON")
        if not (s1_root / p.s1).is_dir():
            raise InputFileError(s1_root / p.s1, f"missing S1 partner of S2 patch {p.s2}")
        for band in S1_BANDS:
            if not s1_band_path(s1_root, p.s1, band).is_file():
                raise InputFileError(
                    s1_band_path(s1_root, p.s1, band), f"missing S1 band {band} of {p.s1}"
                )


# --- reading ------------------------------------------------------------------------------------
def read_s2_bands(
    paths: Mapping[str, Path],
    sizes: Mapping[int, tuple[int, int]],
    resampling: str,
    out: np.ndarray,
    dtype: str | None = "uint16",
) -> tuple[tuple[float, ...], str]:
    """Read the single-band GeoTIFFs ``paths`` (band -> file, in ``out``'s channel order) into
    ``out`` (C, H, W) float32 on the 10 m grid ``sizes[10]``: each band must have its
    resolution's size ``sizes[res]`` and is resampled with ``resampling``
    (:func:`~sareval.preprocess.resample.upsample_float32`; bands already at the 10 m size are
    taken as they are). ``dtype``: the GeoTIFF dtype required (None: any integer type).
    Returns B02's affine transform and CRS. Shared by the BigEarthNet v1 and v2 readers."""
    from sareval.preprocess.tiffs import read_geotiff

    h, w = sizes[10]
    transform: tuple[float, ...] = ()
    crs = ""
    for c, (band, path) in enumerate(paths.items()):
        res = S2_RESOLUTION_M[band]
        t = read_geotiff(path, bands=1, dtype=dtype, size=sizes[res], what=f"S2 {band} at {res} m")
        out[c] = upsample_float32(t.data[0], h, w, resampling)
        if band == "B02":
            transform, crs = t.transform, t.crs
    return transform, crs


def read_s1_bands(paths: Mapping[str, Path], size: tuple[int, int], out: np.ndarray) -> None:
    """Read the float32 dB GeoTIFFs ``paths`` (band -> file) of ``size`` into ``out``."""
    from sareval.preprocess.tiffs import read_geotiff

    for c, (band, path) in enumerate(paths.items()):
        out[c] = read_geotiff(path, bands=1, dtype="float32", size=size, what=f"S1 {band}").data[0]


@dataclass(frozen=True)
class BigEarthNetReader:
    """Reads row blocks in a worker. Items: :class:`BenPatch`."""

    s2_root: str
    s1_root: str
    sizes: dict[int, tuple[int, int]]  # resolution (m) -> (h, w); 10 m is the output grid
    resampling: str
    detector: CloudDetector

    def __call__(self, items: Sequence[BenPatch]) -> RowBlock:
        from sareval.preprocess.tiffs import gdal_env

        h, w = self.sizes[10]
        k = len(items)
        s1 = np.empty((k, len(S1_BANDS), h, w), dtype=np.float32)
        s2 = np.empty((k, len(BIGEARTHNET_S2_BANDS), h, w), dtype=np.float32)
        clc = np.empty((k, len(CLC43)), dtype=np.uint8)
        transforms = np.empty((k, 6), dtype=np.float64)
        crs: list[str] = []
        with gdal_env():
            for j, p in enumerate(items):
                paths = {b: s2_band_path(self.s2_root, p.s2, b) for b in BIGEARTHNET_S2_BANDS}
                transforms[j], tile_crs = read_s2_bands(paths, self.sizes, self.resampling, s2[j])
                crs.append(tile_crs)
                s1_paths = {b: s1_band_path(self.s1_root, p.s1, b) for b in S1_BANDS}
                read_s1_bands(s1_paths, (h, w), s1[j])
                clc[j] = clc43_multi_hot(json_path(self.s2_root, p.s2))
        cloudy = np.array([p.group == "cloudy" for p in items], dtype=bool)
        cover, mask = self.detector.cover_and_masks(s2, cloudy)
        return RowBlock(
            arrays={"s1": s1, "s2": s2},
            labels={"clc43_multi": clc, "clc19_multi": ben19_multi_hot(clc)},
            cloud_cover=cover,
            cloud_mask=mask,
            geo_transform=transforms,
            geo_crs=crs,
        )


def band_sizes(
    path_of: Callable[[str, str], Path], names: Sequence[str]
) -> dict[int, tuple[int, int]]:
    """(h, w) of each resolution's bands: the size most of the first patches' bands of that
    resolution have (headers only), so a single wrong-sized band file is the one reported
    (``path_of(patch, band)``: the band's file)."""
    from sareval.preprocess.tiffs import reference_size

    return {
        res: reference_size(
            [
                path_of(name, b)
                for name in names[:3]
                for b in BIGEARTHNET_S2_BANDS
                if S2_RESOLUTION_M[b] == res
            ]
        )
        for res in (10, 20, 60)
    }


def check_trees(trees: Mapping[str, Path | None], resampling: str) -> None:
    """Each given tree (name -> folder) is a directory; ``resampling`` is a known method."""
    for what, root in trees.items():
        if root is not None and not root.is_dir():
            raise InputFileError(root, f"not a directory (expected the {what} tree)")
    if resampling not in RESAMPLING_METHODS:
        known = ", ".join(RESAMPLING_METHODS)
        raise SarevalError(f"unknown resampling {resampling!r}; known: {known}")


# --- the job ------------------------------------------------------------------------------------
def very_cloudy_list_rows(
    very_cloudy_list: str | Path | None, ids: Sequence[str], cloudy: Sequence[bool]
) -> np.ndarray | None:
    """Rows of the cloudy patches (``cloudy`` per row) named in ``very_cloudy_list`` (None
    without a list)."""
    if very_cloudy_list is None:
        return None
    return subset_rows_from_list(very_cloudy_list, ids, np.flatnonzero(cloudy), lambda n: n)


def preprocess_bigearthnet(
    s2_root: str | Path,
    s1_root: str | Path,
    split_csv: str | Path,
    out: str | Path,
    *,
    cloudy_list: str | Path | None = None,
    snow_list: str | Path | None = None,
    very_cloudy_threshold: float = 0.9,
    very_cloudy_list: str | Path | None = None,
    resampling: str = "cubic-tf1",
    workers: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert a BigEarthNet-MM split (+ cloudy/snow lists) into a store (see module doc)."""
    check_utf8_paths(s2_root, s1_root, split_csv, cloudy_list, snow_list, very_cloudy_list, out)
    out = check_store_output(
        out, overwrite, [s2_root, s1_root, split_csv, cloudy_list, snow_list, very_cloudy_list]
    )
    s2_root, s1_root, split_csv = Path(s2_root), Path(s1_root), Path(split_csv)
    check_trees({"BigEarthNet-v1.0 (S2)": s2_root, "BigEarthNet-S1-v1.0": s1_root}, resampling)
    cloudy_path = Path(cloudy_list) if cloudy_list is not None else None
    snow_path = Path(snow_list) if snow_list is not None else None
    if very_cloudy_list is not None and cloudy_path is None:
        raise SarevalError("very_cloudy_list= needs cloudy_list= (the cloudy patches)")
    patches = collect_patches(s1_root, split_csv, cloudy_path, snow_path)
    lists = {"split": split_csv, "cloudy": cloudy_path, "snow": snow_path}
    validate_files(s2_root, s1_root, patches, lists)  # type: ignore[arg-type]
    very_rows = very_cloudy_list_rows(
        very_cloudy_list, [p.s2 for p in patches], [p.group == "cloudy" for p in patches]
    )
    sizes = band_sizes(lambda n, b: s2_band_path(s2_root, n, b), [p.s2 for p in patches])
    height, width = sizes[10]
    detector = choose_detector(BIGEARTHNET_S2_BANDS)
    filt = compression_filter(compression)
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(len(BIGEARTHNET_S2_BANDS) * height * width * 4)
    config: dict[str, Any] = {
        "dataset": "bigearthnet",
        "s2_root": str(s2_root.resolve()),
        "s1_root": str(s1_root.resolve()),
        "split_csv": config_file_entry(split_csv),
        "cloudy_list": config_file_entry(cloudy_path),
        "snow_list": config_file_entry(snow_path),
        "resampling": resampling,
        "cloud_cover": detector.method,
        "compression": compression,
        "chunk_rows": chunk_rows,
        "sizes": {str(k): list(v) for k, v in sizes.items()},
        "cloud_mask": True,  # a .partial written before /cloud_mask existed is rebuilt
    }
    writer = StoreWriter(
        out,
        dataset="bigearthnet",
        split=split_csv.stem,
        default_task="multi-label",
        ids=[p.s2 for p in patches],
        height=height,
        width=width,
        sensors=[
            SensorSpec("s1", S1_BANDS, "float32"),
            SensorSpec("s2", BIGEARTHNET_S2_BANDS, "float32"),
        ],
        labels=[
            LabelSpec("clc43_multi", "multi_hot", CLC43),
            LabelSpec("clc19_multi", "multi_hot", BEN19),
        ],
        config=config,
        source_root=str(s2_root.resolve()),
        with_geo=True,
        with_cloud_mask=True,
        compression=filt,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
    )
    reader = BigEarthNetReader(str(s2_root), str(s1_root), sizes, resampling, detector)
    return write_job(
        writer,
        reader,
        patches,
        lambda: bigearthnet_subsets(
            writer,
            patches,
            very_cloudy_threshold,
            very_rows,
            very_cloudy_list,
            cloudy_path,
            snow_path,
        ),
        cloud_cover_method=detector.method,
        extra_attrs={
            "resampling": resampling,
            "resampling_description": RESAMPLING_METHODS[resampling],
            "labels_source": "S2 labels_metadata.json",
        },
        workers=workers,
        chunk_rows=chunk_rows,
        progress=progress,
        desc=f"bigearthnet {split_csv.stem}",
    )


def bigearthnet_subsets(
    writer: StoreWriter,
    patches: Sequence[BenPatch],
    threshold: float,
    very_rows: np.ndarray | None,
    very_cloudy_list: str | Path | None,
    cloudy_list: Path | None,
    snow_list: Path | None,
) -> dict[str, tuple[np.ndarray, str, str]]:
    group = np.array([p.group for p in patches])
    rows = np.arange(len(patches), dtype=np.int64)
    subsets = {"clear": (rows[group == "split"], "s2", "the split's patches (clear optical)")}
    if cloudy_list is not None:
        cloudy = rows[group == "cloudy"]
        subsets["cloudy"] = (cloudy, "s2", f"patches of {cloudy_list.name} (cloudy S2)")
        very, desc = very_cloudy_subset(writer, cloudy, threshold, very_rows, very_cloudy_list)
        subsets["very_cloudy"] = (very, "s2", desc)
    if snow_list is not None:
        subsets["snow"] = (rows[group == "snow"], "s2", f"patches of {snow_list.name}")
    return subsets
