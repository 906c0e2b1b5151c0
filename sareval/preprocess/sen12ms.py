"""SEN12MS (+ SEN12MS-CR) GeoTIFF trees -> the store.

Layouts (``shared/reference/datasets.md``)::

    SEN12MS    ROOT/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif
               sensor s1 (VV, VH float32 dB), s2 (13 bands uint16, B01..B12 with B8A, B10),
               lc (4 bands; the first is IGBP 1..17)
               ROOT/IGBP_probability_labels.pkl  {s2 file name: 17 IGBP fractions}
               ROOT/{train,test}_list.{pkl,txt}  s2 file names
    SEN12MS-CR CR/<season>_<sensor>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif
               sensor s1, s2, s2_cloudy (13 bands uint16)

A patch id is ``<season>_<scene>_p<patch>`` (e.g. ``ROIs1158_spring_124_p100``). Store
content: ``s1``, ``s2`` (clear, from SEN12MS), with ``--cr-root`` also ``s2_cloudy`` (+
``s2_cloudy_available``) and the cloud cover of the cloudy version; label sets
``igbp17_fractions`` (from the pickle, or computed from ``lc``: the fraction of each IGBP class
among the pixels whose IGBP value is in 1..17; a patch with no such pixel is an error, or left
out with ``--skip-unlabelled``), ``igbp10_single``
(argmax of the 10 simplified fractions, ties to the lowest index) and ``igbp10_multi``
(simplified fraction >= threshold); ``lc10_map`` (segmentation, when every patch has its lc
file): the IGBP layer per pixel in the 10-class scheme (:func:`~sareval.classes.igbp10_map`:
the DFC2020 baseline's IGBP -> DFC table, values outside 1..17 -> 255, ignored, as the scene
labels ignore them). With ``--cr-root`` also ``/cloud_mask``: the detector's per-pixel mask of
the cloudy version (the one ``/cloud_cover`` is the mean of). Subsets: ``clear`` (all rows,
s2); with ``--cr-root`` ``cloudy`` (rows with a cloudy version, s2_cloudy), ``cloudy_clear``
(the same rows, s2: the paired comparison) and ``very_cloudy`` (cloudy rows with cover >=
threshold, or a user list; s2_cloudy).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import check_store_output
from sareval.bands import S1_BANDS, S2_BANDS
from sareval.classes import (
    IGBP10,
    IGBP17,
    igbp10_fractions,
    igbp10_map,
    igbp_fractions,
    igbp_valid,
    multi_hot,
    single_label,
)
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.cloud_cover import CloudDetector, choose_detector
from sareval.preprocess.pickles import safe_load_pickle
from sareval.preprocess.pipeline import (
    DEFAULT_COMPRESSION,
    RowBlock,
    check_utf8_paths,
    chunk_rows_for,
    compression_filter,
    config_file_entry,
    read_id_list,
    subset_rows_from_list,
    very_cloudy_subset,
    write_job,
)
from sareval.store import LabelSpec, SensorSpec, StoreWriter

log = logging.getLogger(__name__)

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
SEASON_RE = re.compile(r"^ROIs\d+_[a-z]+$")
NAME_RE = re.compile(
    r"^(?P<season>ROIs\d+_[a-z]+)_(?P<sensor>s1|s2|lc|s2_cloudy)_(?P<scene>\d+)_p(?P<patch>\d+)"
    r"(?:\.tif)?$"
)
ID_RE = re.compile(r"^(?P<season>ROIs\d+_[a-z]+)_(?P<scene>\d+)_p(?P<patch>\d+)$")
LC_BANDS = 4
N_IGBP = 17


@dataclass(frozen=True, order=True)
class PatchId:
    """One SEN12MS location: (season, scene, patch)."""

    season: str
    scene: int
    patch: int

    @classmethod
    def parse(cls, name: str) -> PatchId | None:
        """From a file name of any sensor (a leading folder is ignored) or a store id."""
        base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
        m = NAME_RE.match(base) or ID_RE.match(base)
        if m is None:
            return None
        return cls(m["season"], int(m["scene"]), int(m["patch"]))

    @property
    def id(self) -> str:
        return f"{self.season}_{self.scene}_p{self.patch}"

    def file_name(self, sensor: str) -> str:
        return f"{self.season}_{sensor}_{self.scene}_p{self.patch}.tif"

    def path(self, root: str | Path, sensor: str) -> Path:
        """The file in the SEN12MS tree (sensor s1, s2, lc)."""
        return Path(root) / self.season / f"{sensor}_{self.scene}" / self.file_name(sensor)

    def cr_path(self, cr_root: str | Path, sensor: str) -> Path:
        """The file in the SEN12MS-CR tree (sensor s1, s2, s2_cloudy)."""
        folder = Path(cr_root) / f"{self.season}_{sensor}" / f"{sensor}_{self.scene}"
        return folder / self.file_name(sensor)


# --- inputs -------------------------------------------------------------------------------------
def split_name(split_list: str | Path | None) -> str:
    """``test_list.pkl`` -> ``test``; no list -> ``all``."""
    if split_list is None:
        return "all"
    return Path(split_list).stem.removesuffix("_list")


def read_split_list(path: str | Path) -> list[PatchId]:
    """Patch ids of a split list: a pickled list of s2 file names (``.pkl``) or a text file
    with one name a line. Order kept, duplicates dropped."""
    path = Path(path)
    if path.suffix == ".pkl":
        names = safe_load_pickle(path)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InputFileError(path, "not a list of SEN12MS patch names (str)")
    else:
        names = read_id_list(path)
    if not names:
        raise InputFileError(path, "the split list is empty")
    ids: list[PatchId] = []
    for i, name in enumerate(names):
        pid = PatchId.parse(name)
        if pid is None:
            raise InputFileError(
                path,
                f"entry {i + 1} {name!r} is not a SEN12MS patch name "
                "(like ROIs1158_spring_s2_124_p100.tif)",
            )
        ids.append(pid)
    unique = list(dict.fromkeys(ids))
    if len(unique) != len(ids):
        log.warning("%s: %d duplicate entries ignored", path, len(ids) - len(unique))
    return unique


def _scan_sensor(root: Path, sensor: str, cr: bool) -> dict[PatchId, Path]:
    """Every ``<sensor>`` file of a SEN12MS (``cr=False``) or SEN12MS-CR tree."""
    found: dict[PatchId, Path] = {}
    for season_dir in sorted(root.iterdir()):
        season = season_dir.name.removesuffix(f"_{sensor}") if cr else season_dir.name
        if not SEASON_RE.match(season) or (cr and season_dir.name != f"{season}_{sensor}"):
            continue
        if not season_dir.is_dir():
            continue
        for scene_dir in season_dir.iterdir():
            if not re.fullmatch(rf"{sensor}_\d+", scene_dir.name) or not scene_dir.is_dir():
                continue
            with os.scandir(scene_dir) as entries:
                for entry in entries:
                    m = NAME_RE.match(entry.name)
                    if m and m["sensor"] == sensor and entry.name.endswith(".tif"):
                        found[PatchId(m["season"], int(m["scene"]), int(m["patch"]))] = Path(
                            entry.path
                        )
    return found


def scan_tree(root: str | Path) -> list[PatchId]:
    """All patches of a SEN12MS tree (s1 and s2 must pair up), sorted by (season, scene, patch)."""
    root = Path(root)
    s1 = _scan_sensor(root, "s1", cr=False)
    s2 = _scan_sensor(root, "s2", cr=False)
    if not s1 and not s2:
        raise InputFileError(
            root,
            "no SEN12MS patches found (expected ROOT/<season>/s2_<scene>/"
            "<season>_s2_<scene>_p<patch>.tif, e.g. ROIs1158_spring/s2_124/...)",
        )
    for have, lack, sensor in ((s1, s2, "S2"), (s2, s1, "S1")):
        orphans = sorted(set(have) - set(lack))
        if orphans:
            other = "s2" if sensor == "S2" else "s1"
            raise InputFileError(
                orphans[0].path(root, other),
                f"missing {sensor} partner of {have[orphans[0]]}"
                + (
                    f" (and {len(orphans) - 1} more patches lack {sensor})"
                    if len(orphans) > 1
                    else ""
                ),
            )
    return sorted(s2)


def load_igbp_labels(path: str | Path) -> dict[str, np.ndarray]:
    """``IGBP_probability_labels.pkl``: dict s2 file name -> 17 IGBP fractions (float64)."""
    path = Path(path)
    obj = safe_load_pickle(path)
    if not isinstance(obj, dict):
        raise InputFileError(path, f"not a dict of 17-vectors (it holds a {type(obj).__name__})")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputFileError(path, f"not a dict of 17-vectors: key {key!r} is not a file name")
        try:
            vec = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputFileError(
                path, f"not a dict of 17-vectors: {key} holds a {type(value).__name__}"
            ) from None
        if vec.shape != (N_IGBP,):
            raise InputFileError(
                path, f"not a dict of 17-vectors: {key} has shape {vec.shape}, expected (17,)"
            )
        check_fractions(path, key, vec)
        out[key] = vec
    if not out:
        raise InputFileError(path, "the label dict is empty")
    return out


FRACTION_TOLERANCE = 1e-3  # |sum of a fraction vector - 1| accepted
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_fractions(path: Path, key: str, vec: np.ndarray) -> None:
    """Refuse a label vector that is not a distribution: non-finite, negative, beyond float32
    (the store's type) or not summing to 1 within :data:`FRACTION_TOLERANCE`."""
    if not np.all(np.isfinite(vec)):
        raise InputFileError(path, f"{key}: label vector has non-finite values")
    if np.any(np.abs(vec) > FLOAT32_MAX):
        raise InputFileError(path, f"{key}: label vector has values beyond float32")
    if np.any(vec < 0):
        raise InputFileError(path, f"{key}: label vector has negative values")
    if abs(vec.sum() - 1.0) > FRACTION_TOLERANCE:
        raise InputFileError(
            path, f"{key}: label fractions sum to {vec.sum():.6g}, expected 1 (+-1e-3)"
        )


def labelled_patches(root: Path, ids: Sequence[PatchId]) -> list[PatchId]:
    """The patches whose lc file's IGBP layer has a class pixel (reads every lc file)."""
    from sareval.preprocess.tiffs import gdal_env, read_geotiff

    with gdal_env():
        return [
            p
            for p in ids
            if igbp_valid(
                read_geotiff(p.path(root, "lc"), bands=LC_BANDS, dtype=None, what="LC").data[0]
            ).size
        ]


def label_rows(fractions17: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """The three SEN12MS label sets from (k, 17) IGBP fractions."""
    f10 = igbp10_fractions(fractions17)
    return {
        "igbp17_fractions": fractions17.astype(np.float32),
        "igbp10_single": single_label(f10).astype(np.int64),
        "igbp10_multi": multi_hot(f10, threshold),
    }


def label_specs(threshold: float, maps: bool = False) -> list[LabelSpec]:
    """The label sets of a SEN12MS store (``maps``: with the ``lc10_map`` segmentation set)."""
    specs = [
        LabelSpec("igbp17_fractions", "fractions", IGBP17),
        LabelSpec("igbp10_single", "index", IGBP10),
        LabelSpec("igbp10_multi", "multi_hot", IGBP10, threshold),
    ]
    return specs + ([LabelSpec("lc10_map", "map", IGBP10)] if maps else [])


# --- validation ---------------------------------------------------------------------------------
def _missing_error(path: Path, problem: str, n_more: int, what: str) -> InputFileError:
    more = f" (and {n_more} more {what})" if n_more else ""
    return InputFileError(path, problem + more)


def validate_files(
    root: Path,
    ids: Sequence[PatchId],
    *,
    need_lc: bool,
    split_list: Path | None,
) -> None:
    """Existence of every file the job reads, before the long read (errors come fast)."""
    s1 = np.array([p.path(root, "s1").is_file() for p in ids], dtype=bool)
    s2 = np.array([p.path(root, "s2").is_file() for p in ids], dtype=bool)
    absent = np.flatnonzero(~s1 & ~s2)
    if len(absent):
        where = split_list if split_list is not None else root
        raise InputFileError(
            where,
            f"{len(absent)} of {len(ids)} listed patches are not on disk under {root}, "
            f"e.g. {ids[absent[0]].path(root, 's2')}",
        )
    for have, lack, sensor in ((s1, s2, "S2"), (s2, s1, "S1")):
        bad = np.flatnonzero(have & ~lack)
        if len(bad):
            pid = ids[bad[0]]
            other, mine = ("s2", "s1") if sensor == "S2" else ("s1", "s2")
            raise _missing_error(
                pid.path(root, other),
                f"missing {sensor} partner of {pid.path(root, mine)}",
                len(bad) - 1,
                f"patches lack {sensor}",
            )
    if need_lc:
        bad_lc = [p for p in ids if not p.path(root, "lc").is_file()]
        if bad_lc:
            raise _missing_error(
                bad_lc[0].path(root, "lc"),
                "missing lc file (needed to compute labels without a labels= file)",
                len(bad_lc) - 1,
                "patches lack lc",
            )


def cloudy_availability(cr_root: Path, ids: Sequence[PatchId], whole_tree: bool) -> np.ndarray:
    """Which ids have a SEN12MS-CR cloudy version; a cloudy file needs its CR clear s2 and s1."""
    if not cr_root.is_dir():
        raise InputFileError(cr_root, "not a directory (expected a SEN12MS-CR tree)")
    available = np.array([p.cr_path(cr_root, "s2_cloudy").is_file() for p in ids], dtype=bool)
    for sensor, name in (("s2", "clear S2"), ("s1", "S1")):
        bad = [
            p
            for p, a in zip(ids, available, strict=True)
            if a and not p.cr_path(cr_root, sensor).is_file()
        ]
        if bad:
            raise _missing_error(
                bad[0].cr_path(cr_root, sensor),
                f"missing {name} partner of the cloudy {bad[0].cr_path(cr_root, 's2_cloudy')}",
                len(bad) - 1,
                f"cloudy patches lack {name}",
            )
    if whole_tree:
        extra = set(_scan_sensor(cr_root, "s2_cloudy", cr=True)) - set(ids)
        if extra:
            log.warning(
                "%s: %d cloudy patches have no SEN12MS partner under the root; ignored",
                cr_root,
                len(extra),
            )
    if not available.any():
        raise InputFileError(
            cr_root,
            "no cloudy patch of this split is in the tree (expected "
            "<season>_s2_cloudy/s2_cloudy_<scene>/<season>_s2_cloudy_<scene>_p<patch>.tif)",
        )
    return available


# --- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sen12msReader:
    """Reads row blocks in a worker. Items: ``(PatchId, 17 fractions or None, has_cloudy)``."""

    root: str
    cr_root: str | None
    height: int
    width: int
    multi_label_threshold: float
    detector: CloudDetector | None
    maps: bool = False

    def __call__(self, items: Sequence[tuple[PatchId, np.ndarray | None, bool]]) -> RowBlock:
        from sareval.preprocess.tiffs import gdal_env, read_geotiff

        size = (self.height, self.width)
        k = len(items)
        s1 = np.empty((k, len(S1_BANDS), *size), dtype=np.float32)
        s2 = np.empty((k, len(S2_BANDS), *size), dtype=np.uint16)
        cloudy = np.zeros_like(s2) if self.cr_root else None
        fractions = np.empty((k, N_IGBP), dtype=np.float64)
        lc10 = np.empty((k, *size), dtype=np.uint8)
        transforms = np.empty((k, 6), dtype=np.float64)
        crs: list[str] = []
        with gdal_env():
            for j, (pid, frac, has_cloudy) in enumerate(items):
                s1[j] = read_geotiff(
                    pid.path(self.root, "s1"), bands=2, dtype="float32", size=size, what="S1 VV,VH"
                ).data
                t = read_geotiff(
                    pid.path(self.root, "s2"), bands=13, dtype="uint16", size=size, what="S2 L1C"
                )
                s2[j] = t.data
                transforms[j] = t.transform
                crs.append(t.crs)
                if frac is None or self.maps:
                    lc = read_geotiff(
                        pid.path(self.root, "lc"), bands=LC_BANDS, dtype=None, size=size, what="LC"
                    )
                    lc10[j] = igbp10_map(lc.data[0])
                    if frac is None:
                        frac = igbp_fractions(lc.data[0], pid.path(self.root, "lc"))
                fractions[j] = frac
                if has_cloudy and cloudy is not None:
                    cloudy[j] = read_geotiff(
                        pid.cr_path(self.cr_root, "s2_cloudy"),  # type: ignore[arg-type]
                        bands=13,
                        dtype="uint16",
                        size=size,
                        what="cloudy S2",
                    ).data
        arrays: dict[str, np.ndarray] = {"s1": s1, "s2": s2}
        cover = np.full(k, np.nan, dtype=np.float32)
        available = mask = None
        if cloudy is not None:
            arrays["s2_cloudy"] = cloudy
            available = np.array([it[2] for it in items], dtype=bool)
            if self.detector is not None:
                cover, mask = self.detector.cover_and_masks(cloudy, available)
        labels = label_rows(fractions, self.multi_label_threshold)
        if self.maps:
            labels["lc10_map"] = lc10
        return RowBlock(
            arrays=arrays,
            labels=labels,
            cloud_cover=cover,
            cloud_mask=mask,
            cloudy_available=available,
            geo_transform=transforms,
            geo_crs=crs,
        )


# --- the job ------------------------------------------------------------------------------------
def _patches_and_labels(
    root: Path, split_path: Path | None, labels: str | Path | None, skip_unlabelled: bool
) -> tuple[list[PatchId], list[np.ndarray | None], int, bool]:
    """The split's patches (files checked), their IGBP fractions from the label pickle (None:
    computed from lc), the number listed, and whether labels come from the pickle."""
    ids = read_split_list(split_path) if split_path is not None else scan_tree(root)
    label_table = load_igbp_labels(labels) if labels is not None else None
    validate_files(root, ids, need_lc=label_table is None, split_list=split_path)
    n_listed = len(ids)
    if skip_unlabelled and label_table is None:
        ids = labelled_patches(root, ids)
        if not ids:
            raise InputFileError(root, "no patch has an IGBP class pixel in its lc layer")
    if label_table is None:
        return ids, [None] * len(ids), n_listed, False
    missing = [p for p in ids if p.file_name("s2") not in label_table]
    if missing:
        raise InputFileError(
            labels,  # type: ignore[arg-type]
            f"no labels for {len(missing)} of {len(ids)} patches, e.g. "
            f"{missing[0].file_name('s2')}",
        )
    return ids, [label_table[p.file_name("s2")] for p in ids], n_listed, True


def _cloudy_versions(
    cr: Path | None,
    ids: list[PatchId],
    split_path: Path | None,
    very_cloudy_list: str | Path | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Which patches have a SEN12MS-CR cloudy version, and the very-cloudy rows of a list."""
    if very_cloudy_list is not None and cr is None:
        raise SarevalError("very_cloudy_list= needs cr_root= (the cloudy patches)")
    if cr is None:
        return np.zeros(len(ids), dtype=bool), None
    available = cloudy_availability(cr, ids, whole_tree=split_path is None)
    if very_cloudy_list is None:
        return available, None
    return available, very_cloudy_rows_from_list(very_cloudy_list, ids, available)


def preprocess_sen12ms(
    root: str | Path,
    out: str | Path,
    *,
    split_list: str | Path | None = None,
    labels: str | Path | None = None,
    cr_root: str | Path | None = None,
    very_cloudy_threshold: float = 0.9,
    very_cloudy_list: str | Path | None = None,
    multi_label_threshold: float = 0.1,
    workers: int | None = None,
    compression: str = DEFAULT_COMPRESSION,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    use_s2cloudless: bool = True,
    skip_unlabelled: bool = False,
) -> Path:
    """Convert a SEN12MS (+ SEN12MS-CR) split into a store at ``out`` (see module doc).

    Without ``labels``, a patch whose lc layer has no IGBP class pixel is an error, or with
    ``skip_unlabelled`` left out (the count is the store attribute ``unlabelled_skipped``)."""
    from sareval.preprocess.tiffs import reference_size

    check_utf8_paths(root, split_list, labels, cr_root, very_cloudy_list, out)
    out = check_store_output(out, overwrite, [root, split_list, labels, cr_root, very_cloudy_list])
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "not a directory (expected a SEN12MS tree)")
    split_path = Path(split_list) if split_list is not None else None
    ids, fractions, n_listed, from_pickle = _patches_and_labels(
        root, split_path, labels, skip_unlabelled
    )
    cr = Path(cr_root) if cr_root is not None else None
    available, very_rows = _cloudy_versions(cr, ids, split_path, very_cloudy_list)
    height, width = reference_size([p.path(root, s) for p in ids[:3] for s in ("s2", "s1")])
    maps = lc_maps_present(root, ids)
    detector = choose_detector(S2_BANDS, use_s2cloudless) if cr is not None else None
    filt = compression_filter(compression)
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(len(S2_BANDS) * height * width * 2)
    config: dict[str, Any] = {
        "dataset": "sen12ms",
        "root": str(root.resolve()),
        "cr_root": str(cr.resolve()) if cr else None,
        "split_list": config_file_entry(split_path),
        "labels": config_file_entry(labels),
        "multi_label_threshold": multi_label_threshold,
        "cloud_cover": detector.method if detector else "none",
        "compression": compression,
        "chunk_rows": chunk_rows,
        "size": [height, width],
        "skip_unlabelled": skip_unlabelled,
        "lc10_map": maps,
    }
    writer = StoreWriter(
        out,
        dataset="sen12ms",
        split=split_name(split_path),
        default_task="single-label",
        ids=[p.id for p in ids],
        height=height,
        width=width,
        sensors=[SensorSpec("s1", S1_BANDS, "float32"), SensorSpec("s2", S2_BANDS, "uint16")],
        labels=label_specs(multi_label_threshold, maps),
        config=config,
        source_root=str(root.resolve()),
        with_cloudy=cr is not None,
        with_geo=True,
        with_cloud_mask=detector is not None,
        compression=filt,
        chunk_rows=chunk_rows,
        overwrite=overwrite,
    )
    reader = Sen12msReader(
        str(root), str(cr) if cr else None, height, width, multi_label_threshold, detector, maps
    )
    items = [(p, f, bool(a)) for p, f, a in zip(ids, fractions, available, strict=True)]
    return write_job(
        writer,
        reader,
        items,
        lambda: sen12ms_subsets(
            writer, available, very_cloudy_threshold, very_rows, very_cloudy_list
        ),
        cloud_cover_method=detector.method if detector else "none",
        extra_attrs={
            "labels_source": "pickle" if from_pickle else "lc IGBP layer",
            "cloudy_source": "SEN12MS-CR s2_cloudy" if cr is not None else "none",
            "unlabelled_skipped": n_listed - len(ids),
            "segmentation_labels": "lc10_map from the lc IGBP layer"
            if maps
            else "none (not every patch has its lc file)",
        },
        workers=workers,
        chunk_rows=chunk_rows,
        progress=progress,
        desc=f"sen12ms {split_name(split_path)}",
    )


def lc_maps_present(root: Path, ids: Sequence[PatchId]) -> bool:
    """Whether every patch has its lc file (then the store gets ``lc10_map``); a tree where
    only some have one is warned about, naming the first missing file."""
    missing = [p for p in ids if not p.path(root, "lc").is_file()]
    if missing and len(missing) < len(ids):
        log.warning(
            "%s: %d of %d patches lack their lc file; no lc10_map segmentation labels",
            missing[0].path(root, "lc"),
            len(missing),
            len(ids),
        )
    return not missing


def very_cloudy_rows_from_list(
    very_cloudy_list: str | Path, ids: Sequence[PatchId], available: np.ndarray
) -> np.ndarray:
    """Rows of the patches named in a very-cloudy list (file names or ids); each must have a
    cloudy version."""

    def normalise(name: str) -> str:
        pid = PatchId.parse(name)
        return pid.id if pid else name

    cloudy = np.flatnonzero(available)
    return subset_rows_from_list(very_cloudy_list, [p.id for p in ids], cloudy, normalise)


def sen12ms_subsets(
    writer: StoreWriter,
    available: np.ndarray,
    threshold: float,
    very_rows: np.ndarray | None,
    very_cloudy_list: str | Path | None,
) -> dict[str, tuple[np.ndarray, str, str]]:
    """Subsets from the written rows: ``very_rows`` (from a list) or the cover threshold."""
    rows = np.arange(len(available), dtype=np.int64)
    subsets = {"clear": (rows, "s2", "all patches, clear optical (SEN12MS s2)")}
    if not writer.has_cloudy:
        return subsets
    cloudy = rows[available]
    subsets["cloudy"] = (
        cloudy,
        "s2_cloudy",
        "patches with a SEN12MS-CR cloudy version, read cloudy",
    )
    subsets["cloudy_clear"] = (cloudy, "s2", "the cloudy subset's patches read clear (paired)")
    very, desc = very_cloudy_subset(writer, cloudy, threshold, very_rows, very_cloudy_list)
    subsets["very_cloudy"] = (very, "s2_cloudy", desc)
    return subsets
