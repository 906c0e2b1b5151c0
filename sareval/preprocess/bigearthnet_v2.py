"""BigEarthNet v2.0 (reBEN, Clasen et al. 2024) as it ships -> the store.

Layout (``shared/reference/datasets.md`` section 6)::

    S2_ROOT/<S2 product>/<patch_id>/<patch_id>_<band>.tif   12 bands B01..B12 incl. B8A, no
        B10, one band each, integer DN; <S2 product> = patch_id without its last two ``_``
        fields (``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP`` for patch
        ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57``)
    S1_ROOT/<S1 product>/<s1_name>/<s1_name>_{VV,VH}.tif    float32 dB; <S1 product> = s1_name
        without its last three fields (``S1A_IW_GRDH_1SDV_20170613T165043`` for
        ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39``)
    REFERENCE_MAPS/<S2 product>/<patch_id>/<patch_id>_reference_map.tif   per-pixel CLC codes
    metadata.parquet       one row a patch: patch_id, labels (list of 19-class names), split
                           (train | validation | test), country, s1_name,
                           contains_seasonal_snow, contains_cloud_or_shadow (bool)
    metadata_for_patches_with_snow_cloud_or_shadow.parquet   the same columns, for the patches
                           the release keeps out of metadata.parquet (``--snow-cloud-metadata``)

Verified against public code: the folder layout and file names (torchgeo ``BigEarthNetV2``
and its fake data; rico-hdl's test tree), the columns ``patch_id``, ``labels``, ``split``,
``s1_name`` (torchgeo), the split values and the second parquet's file name (ConfigILM
``BENv2DataModule``, reben-training-scripts ``utils.py``), ``country`` and the two flags (third-
party scripts reading the release). *Unverified*: the flags' and columns' presence in the second
parquet (read here with the same required columns), the GeoTIFF dtypes (S2: any integer type is
accepted; S1: float32 required), and that the 20/60 m bands ship at their native grid (60/20 px,
as in v1; ConfigILM interpolates bands that are not 120 px). Bands already 120 px are taken as
they are.

Store rows: metadata.parquet's rows, then those of ``--snow-cloud-metadata``, in file order,
restricted to ``--split`` when given. Ids are the patch ids. ``s2`` holds the 12 bands
(:data:`~sareval.bands.BIGEARTHNET_S2_BANDS` order) as float32 on the 10 m grid, the 20/60 m
bands resampled with the recorded ``--resampling`` method exactly as for v1
(:func:`~sareval.preprocess.bigearthnet.read_s2_bands`; default ``nearest``: the reBEN models'
ConfigILM loader upsamples with torch ``interpolate(mode="nearest")``, the same operation).
Labels: ``clc19_multi`` from ``labels``. ``reference_map`` (``--reference-maps``): the (1, H, W)
uint16 CLC code map. Cloud cover (fallback detector, no B10) is computed for the cloud/shadow
rows only. Subsets: each split present (``train``, ``validation``, ``test``), ``clear`` (neither
flag), ``cloudy`` (cloud/shadow flag; its optical is the same S2, there is no second optical
source), ``very_cloudy`` (cloudy rows with cover >= threshold, or a user list), ``snow``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import check_output
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS
from sareval.classes import BEN19
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.bigearthnet import (
    band_sizes,
    check_trees,
    read_s1_bands,
    read_s2_bands,
    very_cloudy_list_rows,
)
from sareval.preprocess.cloud_cover import CloudDetector, choose_detector
from sareval.preprocess.pipeline import (
    DEFAULT_COMPRESSION,
    RowBlock,
    chunk_rows_for,
    compression_filter,
    config_file_entry,
    very_cloudy_subset,
    write_job,
)
from sareval.preprocess.resample import RESAMPLING_METHODS
from sareval.store import LabelSpec, SensorSpec, StoreWriter

SPLITS = ("train", "validation", "test")
COLUMNS = (
    "patch_id",
    "labels",
    "split",
    "country",
    "s1_name",
    "contains_seasonal_snow",
    "contains_cloud_or_shadow",
)
S2_ID_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_N\d{4}_R\d{3}_T\w{5}_\d+_\d+$")
S1_ID_RE = re.compile(r"^S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_\w+_\d+_\d+$")
_BEN19_INDEX = {name: i for i, name in enumerate(BEN19)}


@dataclass(frozen=True)
class RebenPatch:
    """One row: ids, 19-class label indices, split and flags."""

    patch_id: str
    s1_name: str
    labels: tuple[int, ...]
    split: str
    snow: bool
    cloudy: bool


def s2_folder(s2_root: str | Path, patch_id: str) -> Path:
    return Path(s2_root) / "_".join(patch_id.split("_")[:-2]) / patch_id


def s2_band_path(s2_root: str | Path, patch_id: str, band: str) -> Path:
    return s2_folder(s2_root, patch_id) / f"{patch_id}_{band}.tif"


def s1_band_path(s1_root: str | Path, s1_name: str, band: str) -> Path:
    product = "_".join(s1_name.split("_")[:-3])
    return Path(s1_root) / product / s1_name / f"{s1_name}_{band}.tif"


def reference_map_path(maps_root: str | Path, patch_id: str) -> Path:
    return s2_folder(maps_root, patch_id) / f"{patch_id}_reference_map.tif"


# --- metadata -----------------------------------------------------------------------------------
def read_metadata(path: str | Path) -> list[RebenPatch]:
    """The rows of a reBEN metadata parquet (module doc), checked; any problem is a one-line
    :class:`InputFileError` naming ``path``."""
    import pyarrow.parquet as pq  # only here: the GPU image lacks pyarrow

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            have = ", ".join(sorted(names))
            raise InputFileError(path, f"no column {missing[0]!r} (columns: {have})")
        table = pf.read(columns=list(COLUMNS)).to_pydict()
    except InputFileError:
        raise
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputFileError(path, f"not a readable Parquet file ({first})") from None
    rows = []
    for i, pid in enumerate(table["patch_id"]):
        where = f"row {i} ({pid})"
        s1 = table["s1_name"][i]
        if not isinstance(pid, str) or not S2_ID_RE.match(pid):
            raise InputFileError(
                path,
                f"row {i}: patch_id {pid!r} is not a reBEN S2 patch id "
                "(like S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57)",
            )
        if not isinstance(s1, str) or not S1_ID_RE.match(s1):
            raise InputFileError(path, f"{where}: s1_name {s1!r} is not a Sentinel-1 patch name")
        split = table["split"][i]
        if split not in SPLITS:
            raise InputFileError(path, f"{where}: split {split!r} is not one of {SPLITS}")
        labels = table["labels"][i]
        if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
            raise InputFileError(path, f"{where}: labels is not a list of class names")
        unknown = [n for n in labels if n not in _BEN19_INDEX]
        if unknown:
            raise InputFileError(
                path, f"{where}: unknown label {unknown[0]!r} (not a BigEarthNet 19-class name)"
            )
        flags = [table[c][i] for c in ("contains_seasonal_snow", "contains_cloud_or_shadow")]
        if not all(isinstance(f, bool) for f in flags):
            raise InputFileError(path, f"{where}: the snow/cloud flags must be true or false")
        indices = tuple(sorted({_BEN19_INDEX[n] for n in labels}))
        rows.append(RebenPatch(pid, s1, indices, split, flags[0], flags[1]))
    if not rows:
        raise InputFileError(path, "no rows")
    return rows


def collect_patches(
    metadata: Path, snow_cloud: Path | None, split: str | None
) -> tuple[list[RebenPatch], dict[str, Path]]:
    """Rows in store order and the file each patch id comes from (duplicates are errors)."""
    sources = [metadata] if snow_cloud is None else [metadata, snow_cloud]
    patches: list[RebenPatch] = []
    origin: dict[str, Path] = {}
    for path in sources:
        for p in read_metadata(path):
            if p.patch_id in origin:
                where = "twice" if origin[p.patch_id] == path else f"also in {origin[p.patch_id]}"
                raise InputFileError(path, f"patch {p.patch_id} is listed {where}")
            origin[p.patch_id] = path
            if split is None or p.split == split:
                patches.append(p)
    if not patches:
        raise InputFileError(metadata, f"no patches of split {split!r}")
    return patches, origin


def validate_files(
    s2_root: Path,
    s1_root: Path,
    maps_root: Path | None,
    patches: Sequence[RebenPatch],
    origin: dict[str, Path],
) -> None:
    """Existence of every file the job reads, before the long read."""
    for p in patches:
        if not s2_folder(s2_root, p.patch_id).is_dir():
            raise InputFileError(
                origin[p.patch_id],
                f"patch {p.patch_id} is not on disk (no {s2_folder(s2_root, p.patch_id)})",
            )
        for band in BIGEARTHNET_S2_BANDS:
            f = s2_band_path(s2_root, p.patch_id, band)
            if not f.is_file():
                raise InputFileError(f, f"missing S2 band {band}")
        for band in S1_BANDS:
            f = s1_band_path(s1_root, p.s1_name, band)
            if not f.is_file():
                raise InputFileError(f, f"missing S1 band {band} of {p.patch_id}'s S1 partner")
        if maps_root is not None and not reference_map_path(maps_root, p.patch_id).is_file():
            raise InputFileError(reference_map_path(maps_root, p.patch_id), "missing reference map")


# --- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RebenReader:
    """Reads row blocks in a worker. Items: :class:`RebenPatch`."""

    s2_root: str
    s1_root: str
    maps_root: str | None
    sizes: dict[int, tuple[int, int]]  # resolution (m) -> (h, w); 10 m is the output grid
    resampling: str
    detector: CloudDetector

    def __call__(self, items: Sequence[RebenPatch]) -> RowBlock:
        from sareval.preprocess.tiffs import gdal_env, read_geotiff

        h, w = self.sizes[10]
        k = len(items)
        s1 = np.empty((k, len(S1_BANDS), h, w), dtype=np.float32)
        s2 = np.empty((k, len(BIGEARTHNET_S2_BANDS), h, w), dtype=np.float32)
        maps = np.empty((k, 1, h, w), dtype=np.uint16)
        clc19 = np.zeros((k, len(BEN19)), dtype=np.uint8)
        transforms = np.empty((k, 6), dtype=np.float64)
        crs: list[str] = []
        with gdal_env():
            for j, p in enumerate(items):
                paths = {b: s2_band_path(self.s2_root, p.patch_id, b) for b in BIGEARTHNET_S2_BANDS}
                transforms[j], tile_crs = read_s2_bands(
                    paths, self.sizes, self.resampling, s2[j], dtype=None
                )
                crs.append(tile_crs)
                s1_paths = {b: s1_band_path(self.s1_root, p.s1_name, b) for b in S1_BANDS}
                read_s1_bands(s1_paths, (h, w), s1[j])
                clc19[j, list(p.labels)] = 1
                if self.maps_root is not None:
                    path = reference_map_path(self.maps_root, p.patch_id)
                    data = read_geotiff(path, bands=1, dtype=None, size=(h, w), what="CLC codes")
                    if data.data.min() < 0 or data.data.max() > np.iinfo(np.uint16).max:
                        raise InputFileError(path, "values outside 0..65535 (not CLC codes)")
                    maps[j] = data.data
        cover = np.full(k, np.nan, dtype=np.float32)
        cloudy = np.array([p.cloudy for p in items], dtype=bool)
        if cloudy.any():
            cover[cloudy] = self.detector.cover(s2[cloudy])
        arrays: dict[str, np.ndarray] = {"s1": s1, "s2": s2}
        if self.maps_root is not None:
            arrays["reference_map"] = maps
        return RowBlock(
            arrays=arrays,
            labels={"clc19_multi": clc19},
            cloud_cover=cover,
            geo_transform=transforms,
            geo_crs=crs,
        )


# --- the job ------------------------------------------------------------------------------------
def preprocess_bigearthnet_v2(
    s2_root: str | Path,
    s1_root: str | Path,
    metadata: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    snow_cloud_metadata: str | Path | None = None,
    reference_maps: str | Path | None = None,
    very_cloudy_threshold: float = 0.9,
    very_cloudy_list: str | Path | None = None,
    resampling: str = "nearest",
    workers: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert reBEN (a split or every patch) into a store (see module doc)."""
    out = check_output(out, overwrite)
    s2_root, s1_root, metadata = Path(s2_root), Path(s1_root), Path(metadata)
    maps_root = Path(reference_maps) if reference_maps is not None else None
    trees = {"BigEarthNet-S2": s2_root, "BigEarthNet-S1": s1_root, "Reference_Maps": maps_root}
    check_trees(trees, resampling)
    if split is not None and split not in SPLITS:
        raise SarevalError(f"unknown split {split!r}; reBEN has {', '.join(SPLITS)}")
    snow_cloud = Path(snow_cloud_metadata) if snow_cloud_metadata is not None else None
    patches, origin = collect_patches(metadata, snow_cloud, split)
    validate_files(s2_root, s1_root, maps_root, patches, origin)
    ids = [p.patch_id for p in patches]
    very_rows = very_cloudy_list_rows(very_cloudy_list, ids, [p.cloudy for p in patches])
    sizes = band_sizes(lambda n, b: s2_band_path(s2_root, n, b), ids)
    height, width = sizes[10]
    detector = choose_detector(BIGEARTHNET_S2_BANDS)
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(len(BIGEARTHNET_S2_BANDS) * height * width * 4)
    config: dict[str, Any] = {
        "dataset": "bigearthnet-v2",
        "s2_root": str(s2_root.resolve()),
        "s1_root": str(s1_root.resolve()),
        "reference_maps": str(maps_root.resolve()) if maps_root is not None else None,
        "metadata": config_file_entry(metadata),
        "snow_cloud_metadata": config_file_entry(snow_cloud),
        "split": split,
        "resampling": resampling,
        "cloud_cover": detector.method,
        "compression": compression,
        "chunk_rows": chunk_rows,
        "sizes": {str(k): list(v) for k, v in sizes.items()},
    }
    sensors = [
        SensorSpec("s1", S1_BANDS, "float32"),
        SensorSpec("s2", BIGEARTHNET_S2_BANDS, "float32"),
    ]
    if maps_root is not None:
        sensors.append(SensorSpec("reference_map", ("CLC",), "uint16"))
    writer = StoreWriter(
        out,
        dataset="bigearthnet-v2",
        split=split or "all",
        default_task="multi-label",
        ids=ids,
        height=height,
        width=width,
        sensors=sensors,
        labels=[LabelSpec("clc19_multi", "multi_hot", BEN19)],
        config=config,
        source_root=str(s2_root.resolve()),
        with_geo=True,
        compression=compression_filter(compression),
        chunk_rows=chunk_rows,
        overwrite=overwrite,
    )
    reader = RebenReader(
        str(s2_root),
        str(s1_root),
        None if maps_root is None else str(maps_root),
        sizes,
        resampling,
        detector,
    )
    return write_job(
        writer,
        reader,
        patches,
        lambda: reben_subsets(writer, patches, very_cloudy_threshold, very_rows, very_cloudy_list),
        cloud_cover_method=detector.method,
        extra_attrs={
            "resampling": resampling,
            "resampling_description": RESAMPLING_METHODS[resampling],
            "labels_source": f"{metadata.name} labels column",
        },
        workers=workers,
        chunk_rows=chunk_rows,
        progress=progress,
        desc=f"bigearthnet-v2 {split or 'all'}",
    )


def reben_subsets(
    writer: StoreWriter,
    patches: Sequence[Any],
    very_cloudy_threshold: float,
    very_rows: np.ndarray | None,
    very_cloudy_list: str | Path | None,
) -> dict[str, tuple[np.ndarray, str, str]]:
    """The split subsets (train / validation / test), ``clear`` (neither flag), ``cloudy``
    (cloud/shadow flag, the same S2), ``very_cloudy`` and ``snow``."""
    rows = np.arange(len(patches), dtype=np.int64)
    snow = np.array([p.snow for p in patches], dtype=bool)
    cloudy = np.array([p.cloudy for p in patches], dtype=bool)
    of_split = np.array([p.split for p in patches])
    subsets = {str(s): (rows[of_split == s], "s2", f"the {s} split") for s in SPLITS}
    subsets = {s: sub for s, sub in subsets.items() if len(sub[0])}
    subsets["clear"] = (rows[~snow & ~cloudy], "s2", "patches with neither flag")
    subsets["cloudy"] = (rows[cloudy], "s2", "contains_cloud_or_shadow (the same S2)")
    very, desc = very_cloudy_subset(
        writer, rows[cloudy], very_cloudy_threshold, very_rows, very_cloudy_list
    )
    subsets["very_cloudy"] = (very, "s2", desc)
    subsets["snow"] = (rows[snow], "s2", "contains_seasonal_snow")
    return subsets
