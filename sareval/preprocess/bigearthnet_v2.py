"""BigEarthNet v2.0 (reBEN, Clasen et al. 2024) as it ships -> the store.

Layout (``shared/reference/datasets.md`` section 6)::

    S2_ROOT/<S2 product>/<patch_id>/<patch_id>_<band>.tif   12 bands B01..B12 incl. B8A, no
        B10, one band each, any integer type (uint16 in the release, int16 in torchgeo's test
        data); <S2 product> = patch_id without its last two ``_`` fields
        (``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP`` for patch
        ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57``)
    S1_ROOT/<S1 product>/<s1_name>/<s1_name>_{VV,VH}.tif    dB, any real number type (float32
        in the release, int16 in torchgeo's test data), cast to float32 in the store;
        <S1 product> = s1_name without its last three fields (``S1A_IW_GRDH_1SDV_20170613T165043``
        for ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39``)
    REFERENCE_MAPS/<S2 product>/<patch_id>/<patch_id>_reference_map.tif   per-pixel CLC codes
    metadata.parquet       one row a patch. Required: patch_id, s1_name, split (train |
                           validation | test; ``val``, as torchgeo's test data writes it, is read
                           as validation), labels (list of 19-class names). Used when present:
                           contains_seasonal_snow, contains_cloud_or_shadow (bool; the snow /
                           cloud subsets), s2v1_name (the BigEarthNet v1 S2 name, for the
                           pairing check). Others (country, ...) are ignored.
    metadata_for_patches_with_snow_cloud_or_shadow.parquet   the same columns, for the patches
                           the release keeps out of metadata.parquet (``--snow-cloud-metadata``)

Verified against public code: the folder layout and file names (torchgeo ``BigEarthNetV2``
and its test data; rico-hdl's test tree), the release's columns ``patch_id``, ``labels``,
``split``, ``country``, ``s1_name``, ``s2v1_name`` and the two flags, the split values and the
second parquet's file name (the bigearthnet-pipeline's ``ben-metadata-finalizer.sql``, ConfigILM
``BENv2DataModule``); torchgeo's test data ships the four required columns only, split ``val``,
int16 S1 and S2, every band at 120 px. *Unverified*: that the release's 20/60 m bands ship at
their native grid (60/20 px, as in v1; ConfigILM interpolates bands that are not 120 px). Bands
already 120 px are taken as they are.

Metadata checks: every problem of a file (missing or mistyped columns, malformed ids, unknown
splits or labels, null flags, duplicate patch ids, one S1 patch paired twice, S1 and S2 on
different tiles, an S1 grid position other than ``s2v1_name``'s) is reported in one error
naming the file and the rows. Pairing: the S1 and S2 names carry tile and grid position, but on
two grids (the S1 names keep BigEarthNet v1's numbering: ``..._T33UUP_26_57`` pairs with
``..._33UUP_61_39``), so the names must agree on the tile, the S1 name's grid position must be
``s2v1_name``'s where that column is present, and while reading, the S1 patch's centre must lie
within half a patch of the S2 patch's (both georeferenced; another grid cell is a whole patch
away).

Store rows: metadata.parquet's rows, then those of ``--snow-cloud-metadata``, in file order,
restricted to ``--split`` when given. Ids are the patch ids. ``s2`` holds the 12 bands
(:data:`~sareval.bands.BIGEARTHNET_S2_BANDS` order) as float32 on the 10 m grid, the 20/60 m
bands resampled with the recorded ``--resampling`` method exactly as for v1
(:func:`~sareval.preprocess.bigearthnet.read_s2_bands`; default ``nearest``: the reBEN models'
ConfigILM loader upsamples with torch ``interpolate(mode="nearest")``, the same operation).
``s1``: float32 cast of the files' type (one type for all files, the one most of the first
patches have; recorded as the ``s1_source_dtype`` attribute). Labels: ``clc19_multi`` from
``labels``. ``reference_map`` (``--reference-maps``): the (1, H, W) uint16 CLC code map, and
from it the segmentation labels ``ben19_map`` (:func:`~sareval.classes.ben19_map`: the labels'
CLC -> 19 table per pixel; codes outside the 19-class nomenclature, e.g. 0 or 335, -> 255,
ignored). Cloud cover (fallback detector, no B10) is computed for the cloud/shadow rows only;
``/cloud_mask`` holds its per-pixel mask (255 where the cover is NaN). Subsets: each split
present (``train``, ``validation``, ``test``), ``clear`` (neither flag), ``cloudy``
(cloud/shadow flag; its optical is the same S2, there is no second optical source),
``very_cloudy`` (cloudy rows with cover >= threshold, or a user list), ``snow``. A flag column
absent from a metadata file given leaves out the subsets that need it; the store's
``flags_absent`` attribute names it (``sareval info`` shows it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import check_store_output
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS
from sareval.classes import BEN19, ben19_map
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.bigearthnet import (
    band_sizes,
    check_trees,
    read_s2_bands,
    very_cloudy_list_rows,
)
from sareval.preprocess.cloud_cover import CloudDetector, choose_detector
from sareval.preprocess.pipeline import (
    DEFAULT_COMPRESSION,
    RowBlock,
    check_utf8_paths,
    chunk_rows_for,
    compression_filter,
    config_file_entry,
    very_cloudy_subset,
    write_job,
)
from sareval.preprocess.resample import RESAMPLING_METHODS
from sareval.store import LabelSpec, SensorSpec, StoreWriter

SPLITS = ("train", "validation", "test")
#: split values read as another: torchgeo's test data writes ``val``
SPLIT_ALIASES = {"val": "validation"}
#: the columns every number needs
REQUIRED = ("patch_id", "s1_name", "split", "labels")
SNOW, CLOUD = "contains_seasonal_snow", "contains_cloud_or_shadow"
FLAGS = (SNOW, CLOUD)
S2V1 = "s2v1_name"
S2_ID_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{6}_N\d{4}_R\d{3}_T(\w{5})_(\d+)_(\d+)$")
S1_ID_RE = re.compile(r"^S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_(\w{5})_(\d+)_(\d+)$")
S2V1_RE = re.compile(r"^S2[AB]_MSIL2A_\d{8}T\d{5,6}_(\d+)_(\d+)$")
#: problems listed in one error before "... and N more"
MAX_LISTED = 8
_BEN19_INDEX = {name: i for i, name in enumerate(BEN19)}


@dataclass(frozen=True)
class RebenPatch:
    """One row: ids, 19-class label indices, split, flags (None: no such column) and where
    the row comes from (file and 0-based row), for errors."""

    patch_id: str
    s1_name: str
    labels: tuple[int, ...]
    split: str
    snow: bool | None
    cloudy: bool | None
    source: str = ""
    row: int = -1

    @property
    def where(self) -> str:
        return f"row {self.row} ({self.patch_id})"


@dataclass(frozen=True)
class RebenMetadata:
    """The checked rows of one metadata file, the flag columns it has and the split aliases
    it used."""

    path: Path
    patches: list[RebenPatch]
    flags: tuple[str, ...]
    aliases: tuple[str, ...]


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
def problems_error(path: str | Path, problems: Sequence[str]) -> InputFileError:
    """One error naming ``path`` and listing ``problems`` (the first :data:`MAX_LISTED`)."""
    shown = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    if more > 0:
        shown += f"; ... and {more} more"
    head = f"{len(problems)} problems: " if len(problems) > 1 else ""
    return InputFileError(path, head + shown)


def _column_kind(t: Any) -> str:
    """``string``, ``list<string>``, ``bool`` or ``other`` for a pyarrow type."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list<string>" if _column_kind(t.value_type) == "string" else "other"
    return "other"


EXPECTED_KIND = {
    "patch_id": "string",
    "s1_name": "string",
    "split": "string",
    "labels": "list<string>",
    SNOW: "bool",
    CLOUD: "bool",
    S2V1: "string",
}


def read_metadata(path: str | Path) -> RebenMetadata:
    """The rows of a reBEN metadata parquet (module doc), checked; every problem found is
    listed in one :class:`InputFileError` naming ``path``."""
    import pyarrow.parquet as pq  # only here: the GPU image lacks pyarrow

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    problems: list[str] = []
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        usable = []
        for name, kind in EXPECTED_KIND.items():
            if name not in schema.names:
                if name in REQUIRED:
                    problems.append(f"no column {name!r}")
                continue
            got = schema.field(name).type
            if _column_kind(got) != kind:
                problems.append(f"column {name!r} is {got}, expected {kind}")
            else:
                usable.append(name)
        missing = [i for i, x in enumerate(problems) if x.startswith("no column")]
        if missing:  # say what the file has, once
            problems[missing[-1]] += f" (columns: {', '.join(schema.names) or 'none'})"
        table = pf.read(columns=usable).to_pydict()
        n_rows = pf.metadata.num_rows
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputFileError(path, f"not a readable Parquet file ({first})") from None
    if n_rows == 0:
        problems.append("no rows")
    rows, aliases = _check_rows(table, n_rows, problems)
    if problems:
        raise problems_error(path, problems)
    patches = [
        RebenPatch(pid, s1, labels, split, snow, cloudy, str(path), i)
        for i, (pid, s1, labels, split, snow, cloudy) in enumerate(rows)
    ]
    flags = tuple(f for f in FLAGS if f in table)
    return RebenMetadata(path, patches, flags, tuple(sorted(aliases)))


_Row = tuple[str, str, tuple[int, ...], str, bool | None, bool | None]


def _check_rows(
    table: dict[str, list[Any]], n_rows: int, problems: list[str]
) -> tuple[list[_Row], set[str]]:
    """Each row's values (the usable columns of ``table``), appending what is wrong to
    ``problems``; also the split aliases used."""
    col = {name: table.get(name, [None] * n_rows) for name in EXPECTED_KIND}
    rows: list[_Row] = []
    aliases: set[str] = set()
    first_row: dict[str, int] = {}
    first_s1: dict[str, int] = {}
    for i in range(n_rows):
        pid, s1, split = col["patch_id"][i], col["s1_name"][i], col["split"][i]
        where = f"row {i} ({pid})" if isinstance(pid, str) else f"row {i}"
        m2 = S2_ID_RE.match(pid) if isinstance(pid, str) else None
        m1 = S1_ID_RE.match(s1) if isinstance(s1, str) else None
        if "patch_id" in table and m2 is None:
            problems.append(
                f"row {i}: patch_id {pid!r} is not a reBEN S2 patch id "
                "(like S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57)"
            )
        if "s1_name" in table and m1 is None:
            problems.append(f"{where}: s1_name {s1!r} is not a Sentinel-1 patch name")
        if m2 is not None and pid in first_row:
            problems.append(f"patch_id {pid} is listed twice (rows {first_row[pid]} and {i})")
        elif m2 is not None:
            first_row[pid] = i
        if m1 is not None and s1 in first_s1:
            j = first_s1[s1]
            problems.append(
                f"S1 patch {s1} is paired with two S2 patches: row {j} "
                f"({col['patch_id'][j]}) and {where}"
            )
        elif m1 is not None:
            first_s1[s1] = i
        if m1 is not None and m2 is not None and m1.group(1) != m2.group(1):
            problems.append(
                f"{where}: s1_name {s1} is on tile {m1.group(1)}, patch_id on tile "
                f"{m2.group(1)} (not a pair)"
            )
        v1 = col[S2V1][i]
        m_v1 = S2V1_RE.match(v1) if isinstance(v1, str) else None
        if S2V1 in table and v1 is not None and m_v1 is None:
            problems.append(f"{where}: s2v1_name {v1!r} is not a BigEarthNet v1 S2 patch name")
        if m1 is not None and m_v1 is not None and m1.groups()[1:] != m_v1.groups():
            problems.append(
                f"{where}: s1_name {s1} is at grid position {m1.group(2)}_{m1.group(3)}, "
                f"s2v1_name {v1} at {m_v1.group(1)}_{m_v1.group(2)} (S1 from another grid cell)"
            )
        if "split" in table and split in SPLIT_ALIASES:
            aliases.add(split)
            split = SPLIT_ALIASES[split]
        if "split" in table and split not in SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        labels = col["labels"][i]
        indices: tuple[int, ...] = ()
        if "labels" in table:
            if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
                problems.append(f"{where}: labels is not a list of class names")
            else:
                unknown = [n for n in labels if n not in _BEN19_INDEX]
                if unknown:
                    problems.append(
                        f"{where}: unknown label {unknown[0]!r} (not a BigEarthNet 19-class name)"
                    )
                indices = tuple(sorted({_BEN19_INDEX[n] for n in labels if n in _BEN19_INDEX}))
        flags: list[bool | None] = []
        for name in FLAGS:
            value = col[name][i]
            if name in table and not isinstance(value, bool):
                problems.append(f"{where}: {name} is null (must be true or false)")
            flags.append(value if isinstance(value, bool) else None)
        rows.append((pid, s1, indices, split, flags[0], flags[1]))
    return rows, aliases


def collect_patches(
    metadata: Path, snow_cloud: Path | None, split: str | None
) -> tuple[list[RebenPatch], tuple[str, ...], tuple[str, ...], list[str]]:
    """Rows in store order, the flag columns every file has, the split aliases used and a note
    per flag column absent. A patch id or S1 patch in both files is an error naming both."""
    first = read_metadata(metadata)
    files = [first] if snow_cloud is None else [first, read_metadata(snow_cloud)]
    if len(files) == 2:
        ids = {p.patch_id: p for p in first.patches}
        s1s = {p.s1_name: p for p in first.patches}
        problems = []
        for p in files[1].patches:
            if p.patch_id in ids:
                problems.append(f"{p.where} is also {ids[p.patch_id].where} of {metadata}")
            if p.s1_name in s1s:
                q = s1s[p.s1_name]
                problems.append(
                    f"S1 patch {p.s1_name} is paired with two S2 patches: {p.where} and "
                    f"{q.where} of {metadata}"
                )
        if problems:
            raise problems_error(files[1].path, problems)
    flags = tuple(f for f in FLAGS if all(f in m.flags for m in files))
    notes = []
    for f in FLAGS:
        lacking = [m.path.name for m in files if f not in m.flags]
        if lacking:
            notes.append(f"{f} (not in {', '.join(lacking)})")
    patches = [p for m in files for p in m.patches if split is None or p.split == split]
    if not patches:
        raise InputFileError(metadata, f"no patches of split {split!r}")
    aliases = tuple(sorted({a for m in files for a in m.aliases}))
    return patches, flags, aliases, notes


def validate_files(
    s2_root: Path,
    s1_root: Path,
    maps_root: Path | None,
    patches: Sequence[RebenPatch],
) -> None:
    """Existence of every file the job reads, before the long read."""
    for p in patches:
        if not s2_folder(s2_root, p.patch_id).is_dir():
            raise InputFileError(
                p.source,
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


def s1_source_dtype(paths: Sequence[Path]) -> str:
    """The GeoTIFF data type most of ``paths`` (S1 bands) have (headers only; ties: the first
    path's); a complex (or other non-real) type is refused naming the first such file."""
    import rasterio
    from rasterio.errors import RasterioError

    types = []
    for path in paths:
        try:
            with rasterio.open(path) as src:
                types.append(str(src.dtypes[0]))
        except (RasterioError, OSError) as e:
            first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise InputFileError(path, f"not a readable GeoTIFF ({first})") from None
    for path, t in zip(paths, types, strict=True):
        if t.startswith("complex") or np.dtype(t).kind not in "uif":
            raise InputFileError(
                path, f"dtype {t}: S1 must be a real number type (int16, uint16, float32, ...)"
            )
    return max(types, key=lambda t: (types.count(t), -types.index(t)))


# --- reading ------------------------------------------------------------------------------------
def _centre(transform: Sequence[float], h: int, w: int) -> tuple[float, float]:
    a, b, c, d, e, f = transform[:6]
    return c + a * w / 2 + b * h / 2, f + d * w / 2 + e * h / 2


def check_colocated(
    p: RebenPatch,
    s2: tuple[Sequence[float], str],
    s1: tuple[Sequence[float], str],
    size: tuple[int, int],
) -> None:
    """The S1 patch's centre lies within half a patch of the S2 patch's (transform, CRS each;
    skipped unless both carry a CRS); else an error naming ``p``'s row and file."""
    (t2, crs2), (t1, crs1) = s2, s1
    if not crs1 or not crs2:
        return
    h, w = size
    x2, y2 = _centre(t2, h, w)
    x1, y1 = _centre(t1, h, w)
    if crs1 != crs2:
        from rasterio.warp import transform as warp

        try:
            xs, ys = warp(crs1, crs2, [x1], [y1])
        except Exception:  # an unknown CRS: nothing to compare
            return
        x1, y1 = xs[0], ys[0]
    extent = min(abs(t2[0]) * w, abs(t2[4]) * h)
    distance = math.hypot(x1 - x2, y1 - y2)
    if not distance < extent / 2:
        raise InputFileError(
            p.source,
            f"{p.where}: its S1 patch {p.s1_name} lies {distance:.0f} m from the S2 patch "
            f"(centre to centre; a patch is {extent:.0f} m wide): S1 from another grid cell",
        )


@dataclass(frozen=True)
class RebenReader:
    """Reads row blocks in a worker. Items: :class:`RebenPatch`."""

    s2_root: str
    s1_root: str
    maps_root: str | None
    sizes: dict[int, tuple[int, int]]  # resolution (m) -> (h, w); 10 m is the output grid
    resampling: str
    detector: CloudDetector
    s1_dtype: str = "float32"  # the S1 GeoTIFFs' type, cast to float32

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
                for c, band in enumerate(S1_BANDS):
                    path = s1_band_path(self.s1_root, p.s1_name, band)
                    t = read_geotiff(
                        path, bands=1, dtype=self.s1_dtype, size=(h, w), what=f"S1 {band}"
                    )
                    s1[j, c] = t.data[0]  # the cast to float32
                    if c == 0:
                        check_colocated(p, (transforms[j], tile_crs), (t.transform, t.crs), (h, w))
                clc19[j, list(p.labels)] = 1
                if self.maps_root is not None:
                    path = reference_map_path(self.maps_root, p.patch_id)
                    data = read_geotiff(path, bands=1, dtype=None, size=(h, w), what="CLC codes")
                    if data.data.min() < 0 or data.data.max() > np.iinfo(np.uint16).max:
                        raise InputFileError(path, "values outside 0..65535 (not CLC codes)")
                    maps[j] = data.data
        cloudy = np.array([p.cloudy is True for p in items], dtype=bool)
        cover, mask = self.detector.cover_and_masks(s2, cloudy)
        arrays: dict[str, np.ndarray] = {"s1": s1, "s2": s2}
        labels = {"clc19_multi": clc19}
        if self.maps_root is not None:
            arrays["reference_map"] = maps
            labels["ben19_map"] = ben19_map(maps[:, 0])
        return RowBlock(
            arrays=arrays,
            labels=labels,
            cloud_cover=cover,
            cloud_mask=mask,
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
    check_utf8_paths(
        s2_root, s1_root, metadata, snow_cloud_metadata, reference_maps, very_cloudy_list, out
    )
    out = check_store_output(
        out, overwrite, [s2_root, s1_root, metadata, snow_cloud_metadata, reference_maps,
                         very_cloudy_list]
    )  # fmt: skip
    s2_root, s1_root, metadata = Path(s2_root), Path(s1_root), Path(metadata)
    maps_root = Path(reference_maps) if reference_maps is not None else None
    trees = {"BigEarthNet-S2": s2_root, "BigEarthNet-S1": s1_root, "Reference_Maps": maps_root}
    check_trees(trees, resampling)
    if split is not None and split not in SPLITS:
        raise SarevalError(f"split {split!r}: reBEN has {', '.join(SPLITS)}")
    snow_cloud = Path(snow_cloud_metadata) if snow_cloud_metadata is not None else None
    patches, flags, aliases, absent = collect_patches(metadata, snow_cloud, split)
    if very_cloudy_list is not None and CLOUD not in flags:
        raise SarevalError(
            f"very_cloudy_list: needs the column {CLOUD} (which patches are cloudy); "
            f"absent: {'; '.join(a for a in absent if a.startswith(CLOUD))}"
        )
    validate_files(s2_root, s1_root, maps_root, patches)
    ids = [p.patch_id for p in patches]
    very_rows = very_cloudy_list_rows(very_cloudy_list, ids, [p.cloudy is True for p in patches])
    sizes = band_sizes(lambda n, b: s2_band_path(s2_root, n, b), ids)
    s1_dtype = s1_source_dtype(
        [s1_band_path(s1_root, p.s1_name, b) for p in patches[:3] for b in S1_BANDS]
    )
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
        "cloud_mask": True,  # a .partial written before /cloud_mask existed is rebuilt
        "s1_source_dtype": s1_dtype,
        "flags": list(flags),
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
        labels=[LabelSpec("clc19_multi", "multi_hot", BEN19)]
        + ([LabelSpec("ben19_map", "map", BEN19)] if maps_root is not None else []),
        config=config,
        source_root=str(s2_root.resolve()),
        with_geo=True,
        with_cloud_mask=True,
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
        s1_dtype,
    )
    exact = np.dtype(s1_dtype).kind in "ui" and np.dtype(s1_dtype).itemsize <= 2
    extra_attrs = {
        "resampling": resampling,
        "resampling_description": RESAMPLING_METHODS[resampling],
        "labels_source": f"{metadata.name} labels column",
        "s1_source_dtype": s1_dtype,
        "s1_cast": f"{s1_dtype} -> float32 ({'exact' if exact else 'rounded to nearest'})"
        if s1_dtype != "float32"
        else "none (float32 as stored)",
    }
    if absent:
        extra_attrs["flags_absent"] = (
            f"{'; '.join(absent)}: no {', '.join(flag_subsets(flags, written=False))} subsets"
        )
    if aliases:
        extra_attrs["split_aliases"] = ", ".join(
            f"{a!r} read as {SPLIT_ALIASES[a]!r}" for a in aliases
        )
    return write_job(
        writer,
        reader,
        patches,
        lambda: reben_subsets(
            writer, patches, flags, very_cloudy_threshold, very_rows, very_cloudy_list
        ),
        cloud_cover_method=detector.method,
        extra_attrs=extra_attrs,
        workers=workers,
        chunk_rows=chunk_rows,
        progress=progress,
        desc=f"bigearthnet-v2 {split or 'all'}",
    )


def flag_subsets(flags: Sequence[str], written: bool = True) -> list[str]:
    """The flag subsets written with the flag columns ``flags`` (``written`` False: those
    left out)."""
    needs = {"clear": FLAGS, "cloudy": (CLOUD,), "very_cloudy": (CLOUD,), "snow": (SNOW,)}
    return [s for s, need in needs.items() if all(f in flags for f in need) == written]


def reben_subsets(
    writer: StoreWriter,
    patches: Sequence[RebenPatch],
    flags: Sequence[str],
    very_cloudy_threshold: float,
    very_rows: np.ndarray | None,
    very_cloudy_list: str | Path | None,
) -> dict[str, tuple[np.ndarray, str, str]]:
    """The split subsets (train / validation / test) and those of the flag columns present:
    ``clear`` (neither flag), ``cloudy`` (cloud/shadow flag, the same S2), ``very_cloudy`` and
    ``snow``."""
    rows = np.arange(len(patches), dtype=np.int64)
    snow = np.array([p.snow is True for p in patches], dtype=bool)
    cloudy = np.array([p.cloudy is True for p in patches], dtype=bool)
    of_split = np.array([p.split for p in patches])
    subsets = {str(s): (rows[of_split == s], "s2", f"the {s} split") for s in SPLITS}
    subsets = {s: sub for s, sub in subsets.items() if len(sub[0])}
    written = flag_subsets(flags)
    if "clear" in written:
        subsets["clear"] = (rows[~snow & ~cloudy], "s2", "patches with neither flag")
    if "cloudy" in written:
        subsets["cloudy"] = (rows[cloudy], "s2", f"{CLOUD} (the same S2)")
        very, desc = very_cloudy_subset(
            writer, rows[cloudy], very_cloudy_threshold, very_rows, very_cloudy_list
        )
        subsets["very_cloudy"] = (very, "s2", desc)
    if "snow" in written:
        subsets["snow"] = (rows[snow], "s2", SNOW)
    return subsets
