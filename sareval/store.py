"""The store (contract 1): one HDF5 file per (dataset, split), raw values, labels, subsets.

Layout (``N`` samples, ``H x W`` pixels on the 10 m grid)::

    /                      attrs: format="sareval-store", format_version=1, dataset, split,
                                  default_task, source_root, creator, created, height, width,
                                  n_samples, content_digest, cloud_cover_method, options (JSON)
    /ids                   (N,) utf-8 str, unique patch ids
    /s1                    (N, 2, H, W) float32 dB (raw, NaN kept), attr bands=["VV","VH"]
    /s2                    (N, C, H, W) uint16 DN (raw), attr bands=[...]; float32 DN for
                           BigEarthNet (20/60 m bands resampled, unrounded: preprocess.resample)
    /s2_cloudy             optional (N, C, H, W) uint16: the cloudy optical version (zeros where
                           unavailable), attr bands; with /s2_cloudy_available (N,) bool
    /cloud_cover           (N,) float32 fraction of cloudy pixels of the sample's cloudy optical
                           version (NaN where unknown), attr method: with /s2_cloudy the cover of
                           s2_cloudy (SEN12MS-CR; the clear s2 has no estimate), else of s2 (the
                           only optical image, e.g. BigEarthNet); see Store.cloud_cover_source
    /cloud_mask            optional (N, H, W) uint8 per-pixel mask of the image /cloud_cover
                           describes (same detector): 1 cloudy, 0 clear, 255 everywhere in a
                           row whose cover is unknown (NaN); cover == mean(mask) where known
    /labels/<name>         attrs kind = "index" (N,) int64 | "multi_hot" (N, K) uint8 |
                           "fractions" (N, K) float32 | "map" (N, H, W) uint8 (segmentation:
                           a class index per pixel, attr ignore_index, default 255, marks pixels
                           never counted); class_names (JSON list); [threshold]
    /subsets/<name>        (n,) int64 sorted unique rows; attrs optical = "s2" | "s2_cloudy",
                           description
    /stats/<sensor>_sum    (N, C) float64 per-row band sums over finite pixels; and
    /stats/<sensor>_count  (N, C) int64 finite-pixel counts (band means of any subset, NaN counts)
    /stats/<sensor>_sumsq  (N, C) float64 per-row band sums of squares over finite pixels
    /row_sha256            (N, 32) uint8 digest of each row (id, sensor arrays, cloud cover)
    /geo/transform, /geo/crs   optional (N, 6) float64 affine and (N,) str CRS
    /reference_map         optional (N, 1, H, W) uint16 per-pixel CLC codes (BigEarthNet v2),
                           attr bands=["CLC"]; not a sensor (never fed to a model)

Image datasets are chunked along N (``chunk_rows`` rows a chunk); compression is the writer's
``compression`` argument (``sareval preprocess`` defaults to none, the fastest to read and write
in ``benchmarks/RESULTS.md``; lzf/gzip, which every h5py build reads, halve the size).
Sequential reads ask the kernel to load the chunks of the batches ahead (:mod:`sareval.readahead`).
:class:`Store` validates this layout once, when it opens a file (:func:`check_layout`): a missing
dataset or attribute, a length other than ``n_samples``, a subset row out of range, unsorted or
repeated is a one-line :class:`~sareval.errors.StoreError`, never a failure halfway through a run.
The content rules (unique ids and band names, labels within their classes, cloud cover in [0, 1]
or NaN, subsets) are one function, :func:`check_content`, which :func:`sareval.write_store` also
runs on its arrays before it writes anything.
A store is written to ``<out>.partial`` and renamed to ``<out>`` only when complete, so a file at
the output path is always complete; an interrupted job resumes from ``<out>.partial`` when its
configuration digest matches, else rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sareval import __version__
from sareval.atomic import check_output, partial_path
from sareval.errors import StoreError
from sareval.readahead import Readahead
from sareval.write_errors import discard_h5, discard_on_write_error, ensure_free

FORMAT = "sareval-store"
FORMAT_VERSION = 1
SENSORS = ("s1", "s2")
OPTICAL_SOURCES = ("s2", "s2_cloudy")
LABEL_KINDS = ("index", "multi_hot", "fractions", "map")
LABEL_DTYPES = {"index": np.int64, "multi_hot": np.uint8, "fractions": np.float32, "map": np.uint8}
#: the ignore index of a map label set unless it says otherwise (pixels without a class)
DEFAULT_IGNORE_INDEX = 255
#: |cloud cover - mean(cloud mask)| accepted where the cover is known (float32 rounding)
COVER_MASK_TOLERANCE = 1e-6
#: rows a check or digest of (N, H, W) data reads at once (memory stays bounded)
MAP_BLOCK_ROWS = 256
STR_DTYPE = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class LabelSpec:
    """A label set: ``kind`` in :data:`LABEL_KINDS` and class names in column order;
    ``ignore_index``: the pixel value of a ``map`` that is never counted (None: the default
    :data:`DEFAULT_IGNORE_INDEX` for maps, unused for other kinds)."""

    name: str
    kind: str
    class_names: tuple[str, ...]
    threshold: float | None = None
    ignore_index: int | None = None

    @property
    def task(self) -> str:
        if self.kind == "map":
            return "segmentation"
        return "single-label" if self.kind == "index" else "multi-label"


@dataclass(frozen=True)
class Subset:
    """Named rows of a store and which optical source they read."""

    name: str
    rows: np.ndarray
    optical: str
    description: str = ""

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Batch:
    """Consecutive samples of a subset: ``positions`` within the subset, ``rows`` in the store.

    ``arrays`` maps ``"s1"``/``"s2"`` to raw values; ``"s2"`` comes from the subset's optical
    source. ``labels`` maps label-set names to their rows. ``cloud_mask`` (b, H, W) uint8
    (:meth:`Store.cloud_mask`) only when the subset reads the optical source the mask
    describes (:attr:`Store.cloud_cover_source`), else None.
    """

    positions: slice
    rows: np.ndarray
    ids: list[str]
    arrays: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    cloud_cover: np.ndarray
    cloud_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


def row_blocks(values: Any, block_rows: int = MAP_BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, values[first : first + block_rows])`` as arrays, over axis 0 of an array
    or an h5py dataset (memory bounded by the block)."""
    for a in range(0, len(values), block_rows):
        yield a, np.asarray(values[a : a + block_rows])


def contiguous_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted rows into ``(start, stop)`` runs of consecutive integers."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(rows)]))
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def read_rows(ds: h5py.Dataset, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Read sorted ``rows`` of ``ds`` along axis 0 with one slice per consecutive run."""
    if out is None:
        out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    at = 0
    for start, stop in contiguous_runs(rows):
        n = stop - start
        ds.read_direct(out, np.s_[start:stop], np.s_[at : at + n])
        at += n
    return out


def _json_names(node: h5py.HLObject, attr: str) -> list[str]:
    """A JSON list of strings stored in attribute ``attr`` of ``node``."""
    raw = node.attrs.get(attr)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        names = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        names = None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{node.name}: attribute {attr!r} is not a JSON list of names")
    return names


def _dataset(
    f: h5py.File, name: str, shape: tuple[int | None, ...], kinds: str = "biuf"
) -> h5py.Dataset:
    """``f[name]``, a dataset of ``shape`` (None: any length on that axis) whose dtype kind is
    one of ``kinds`` (numpy's letters; ``"O"`` for strings)."""
    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"/{name} is missing")
    if ds.dtype.kind not in kinds:
        raise ValueError(
            f"/{name} holds {ds.dtype}, not {'strings' if kinds == 'OS' else 'numbers'}"
        )
    if len(ds.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(ds.shape, shape, strict=True)
    ):
        want_text = "x".join("*" if w is None else str(w) for w in shape)
        raise ValueError(f"/{name} has shape {ds.shape}, expected {want_text}")
    return ds


#: file suffixes of a store (any HDF5 file is tried as one, whatever its suffix)
STORE_SUFFIXES = (".h5", ".hdf5", ".hdf")


def is_store_path(path: str | Path) -> bool:
    """Whether ``path`` should be opened as a store: a store suffix, or an HDF5 signature."""
    path = Path(path)
    return path.suffix.lower() in STORE_SUFFIXES or bool(h5py.is_hdf5(path))


def content_digest_of(f: h5py.File) -> str:
    """sha256 over ``/row_sha256`` (every row's images, id and cloud cover), every label set
    (name, then its C-order bytes), every subset (name, rows) and, where present,
    ``b"cloud_mask"`` + its bytes: the store's content digest (written by
    :meth:`StoreWriter.finish`, checked when a store is opened; :meth:`Store.verify_rows`
    re-hashes the rows themselves). (N, H, W) data is read :data:`MAP_BLOCK_ROWS` rows at a time."""
    h = hashlib.sha256(f["row_sha256"][()].tobytes())
    for name in sorted(f["labels"]):
        h.update(name.encode())
        for _, block in row_blocks(f["labels"][name]):  # the bytes of the whole, in order
            h.update(np.ascontiguousarray(block).tobytes())
    grp = f["subsets"]
    for name in sorted(grp):
        h.update(name.encode())
        h.update(grp[name][()].tobytes())
    if "cloud_mask" in f:
        h.update(b"cloud_mask")
        for _, block in row_blocks(f["cloud_mask"]):
            h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def row_digest(row_id: Any, arrays: Sequence[np.ndarray], cover: float) -> bytes:
    """sha256 of one row as ``/row_sha256`` holds it: id, each image (sorted by name), cover."""
    h = hashlib.sha256(row_id if isinstance(row_id, bytes) else str(row_id).encode())
    for a in arrays:
        h.update(a.tobytes())
    h.update(np.float32(cover).tobytes())
    return h.digest()


def check_layout(f: h5py.File) -> None:
    """Validate the layout of a store (module doc) once, at open: every dataset and attribute
    the readers use, with consistent lengths, then its content (:func:`check_content`: ids,
    band names, labels, cloud cover, subsets). Any problem is a one-line :class:`StoreError`."""
    path = Path(f.filename)
    try:
        for key in ("height", "width", "n_samples"):
            if key not in f.attrs:
                raise ValueError(f"attribute {key!r} is missing")
        n = int(f.attrs["n_samples"])
        ids = _dataset(f, "ids", (n,), kinds="OS")
        h, w = int(f.attrs["height"]), int(f.attrs["width"])
        if h < 1 or w < 1:
            raise ValueError(f"height x width {h}x{w} is not positive")
        if not isinstance(json.loads(f.attrs.get("options", "{}")), dict):
            raise ValueError("attribute 'options' is not a JSON object")
        cover = _dataset(f, "cloud_cover", (n,), kinds="f")
        sensors = [s for s in (*SENSORS, "s2_cloudy") if s in f]
        if not any(s in f for s in SENSORS):
            raise ValueError("no image data (/s1 or /s2)")
        for s in sensors:
            ds = _dataset(f, s, (n, None, h, w), kinds="uif")
            if len(_json_names(ds, "bands")) != ds.shape[1]:
                raise ValueError(f"/{s}: {ds.shape[1]} channels but attribute 'bands' differs")
            for key in ("sum", "count", "sumsq"):
                _dataset(f, f"stats/{s}_{key}", (n, ds.shape[1]))
        if "s2_cloudy" in f:
            _dataset(f, "s2_cloudy_available", (n,))
        if not isinstance(f.get("labels"), h5py.Group) or not len(f["labels"]):
            raise ValueError("/labels is missing or empty")
        labels: dict[str, tuple[Any, ...]] = {}
        for name, ds in f["labels"].items():
            kind = ds.attrs.get("kind")
            if kind not in LABEL_KINDS:
                raise ValueError(f"/labels/{name}: kind {kind!r} is not one of {LABEL_KINDS}")
            names = _json_names(ds, "class_names")
            shape = {"index": (n,), "map": (n, h, w)}.get(kind, (n, None))
            values = _dataset(f, f"labels/{name}", shape, "f" if kind == "fractions" else "biu")
            if kind == "map":  # checked block by block (module doc: MAP_BLOCK_ROWS)
                ignore = int(ds.attrs.get("ignore_index", DEFAULT_IGNORE_INDEX))
                labels[name] = (str(kind), values, names, ignore)
            else:
                labels[name] = (str(kind), values[()], names)
        mask = _dataset(f, "cloud_mask", (n, h, w), kinds="u") if "cloud_mask" in f else None
        if not isinstance(f.get("subsets"), h5py.Group):
            raise ValueError("/subsets is missing")
        subsets = {
            name: (_dataset(f, f"subsets/{name}", (None,), kinds="biuf")[()],
                   ds.attrs.get("optical"))
            for name, ds in f["subsets"].items()
        }  # fmt: skip
        bands = {
            k: _json_names(v, "bands")
            for k, v in f.items()
            if isinstance(v, h5py.Dataset) and "bands" in v.attrs
        }
        check_content(
            n, ids.asstr()[()], bands, labels, cover[()], subsets, images=list(f), cloud_mask=mask
        )
    except json.JSONDecodeError:
        raise StoreError(path, "malformed store: attribute 'options' is not JSON") from None
    except (KeyError, TypeError, ValueError, OSError) as e:
        problem = str(e).strip("'\"") if not isinstance(e, KeyError) else f"missing {e}"
        raise StoreError(path, f"malformed store: {problem}") from None


def check_content(
    n: int,
    ids: Sequence[Any] | np.ndarray,
    bands: Mapping[str, Sequence[str]],
    labels: Mapping[str, tuple[Any, ...]],
    cloud_cover: np.ndarray,
    subsets: Mapping[str, tuple[np.ndarray, Any]],
    *,
    images: Sequence[str],
    cloud_mask: Any = None,
) -> None:
    """The content rules of a store, on plain arrays: what :class:`Store` checks when it opens
    a file (:func:`check_layout`) and what :func:`sareval.write_store` checks before it writes.

    ``ids`` (N,) unique; ``bands``: image dataset -> band names, unique within a dataset and
    across datasets (``s2_cloudy`` repeats ``s2``'s); ``labels``: name -> (kind, values, class
    names[, ignore index]): index labels integers in 0..K-1, multi-hot (N, K) of 0 / 1,
    fractions in [0, 1], maps (N, H, W) integers in 0..K-1 or the ignore index (default 255);
    ``cloud_cover`` (N,) in [0, 1] or NaN (unknown); ``cloud_mask`` (optional, (N, H, W)
    integers): 0 / 1 in a row of known cover with ``|cover - mean(mask)| <=``
    :data:`COVER_MASK_TOLERANCE`, 255 everywhere in a row of unknown cover; ``subsets``: name ->
    (rows, optical source): sorted unique integer rows in 0..N-1, the optical source one of
    ``images`` (or ``s2`` in a store without optical images). A problem raises ``ValueError``
    whose message names the store's dataset (``/subsets/clear``, ``/labels/igbp``, ...).
    """
    unique, counts = np.unique(np.asarray(ids, dtype=object).astype(str), return_counts=True)
    if len(unique) < len(ids):
        twice = unique[counts > 1]
        raise ValueError(f"/ids repeats {str(twice[0])!r} ({len(twice)} id(s) repeated)")
    owner: dict[str, str] = {}
    for name, names in bands.items():
        for band in names:
            if band in owner and (owner[band] == name or name != "s2_cloudy"):
                where = f"twice in /{name}" if owner[band] == name else (
                    f"in both /{owner[band]} and /{name}")  # fmt: skip
                raise ValueError(f"band name {band!r} is {where}")
            if name != "s2_cloudy":
                owner[band] = name
    for name, (kind, values, class_names, *rest) in labels.items():
        if kind == "map":
            ignore = int(rest[0]) if rest and rest[0] is not None else DEFAULT_IGNORE_INDEX
            _check_map(f"/labels/{name}", values, class_names, ignore, n)
        else:
            _check_labels(f"/labels/{name}", kind, np.asarray(values), class_names)
    cover = np.asarray(cloud_cover, dtype=np.float64)
    outside = np.flatnonzero(~np.isnan(cover) & ((cover < 0) | (cover > 1)))
    if len(outside):
        i = int(outside[0])
        raise ValueError(
            f"/cloud_cover holds {cover[i]:g} (row {i}); cloud cover is a fraction in [0, 1], "
            "NaN where unknown"
        )
    if cloud_mask is not None:
        _check_cloud_mask(cloud_mask, cover, n)
    for name, (rows, optical) in subsets.items():
        rows = np.asarray(rows)
        if rows.ndim != 1:
            raise ValueError(f"/subsets/{name} has shape {rows.shape}, expected *")
        if rows.size and rows.dtype.kind not in "iu":
            raise ValueError(f"/subsets/{name} holds {rows.dtype} rows, not integers")
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"/subsets/{name} has rows outside 0..{n - 1}")
        if np.any(np.diff(rows) <= 0):
            raise ValueError(f"/subsets/{name} rows are not sorted and unique")
        # a store without optical images (e.g. SAR + DEM) names "s2" and reads none
        if optical not in OPTICAL_SOURCES or (optical not in images and optical != "s2"):
            raise ValueError(f"/subsets/{name}: optical source {optical!r} is not in the store")


def _check_map(where: str, y: Any, class_names: Sequence[str], ignore: int, n: int) -> None:
    """A map label set: (N, H, W) integers, each < K or == ``ignore`` (read in row blocks)."""
    k = len(class_names)
    if len(set(class_names)) < k:
        raise ValueError(f"{where}: class names repeat")
    if len(y.shape) != 3 or y.shape[0] != n:
        raise ValueError(f"{where} has shape {y.shape}: a map needs ({n}, H, W)")
    if np.dtype(y.dtype).kind not in "biu":
        raise ValueError(f"{where} holds {y.dtype}, not integer class indices")
    if not 0 <= ignore <= 255 or ignore < k:
        raise ValueError(f"{where}: ignore_index {ignore} is a class index or outside 0..255")
    for a, block in row_blocks(y):
        bad = ((block < 0) | (block >= k)) & (block != ignore)
        if bad.any():
            i, r, c = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"{where} holds {int(block[i, r, c])} (row {a + i}, pixel {r},{c}); map values "
                f"are class indices 0..{k - 1} or the ignore index {ignore}"
            )


def _check_cloud_mask(mask: Any, cover: np.ndarray, n: int) -> None:
    """``/cloud_mask`` against ``/cloud_cover`` (see :func:`check_content`), in row blocks."""
    if len(mask.shape) != 3 or mask.shape[0] != n:
        raise ValueError(f"/cloud_mask has shape {mask.shape}, expected ({n}, H, W)")
    for a, block in row_blocks(mask):
        known = ~np.isnan(cover[a : a + len(block)])
        for j in np.flatnonzero(~known):
            if np.any(block[j] != 255):
                raise ValueError(
                    f"/cloud_mask row {a + j}: the cover is unknown (NaN), so the mask must be "
                    "255 everywhere"
                )
        for j in np.flatnonzero(known):
            row = block[j]
            if np.any((row != 0) & (row != 1)):
                raise ValueError(f"/cloud_mask row {a + j} holds values other than 0 / 1")
            mean, c = float(row.mean()), float(cover[a + j])
            if abs(mean - c) > COVER_MASK_TOLERANCE:
                raise ValueError(
                    f"/cloud_mask row {a + j}: mean {mean:.6g} differs from /cloud_cover {c:.6g}"
                )


def _check_labels(where: str, kind: str, y: np.ndarray, class_names: Sequence[str]) -> None:
    """One label set's values against its kind and class names (see :func:`check_content`)."""
    k = len(class_names)
    if len(set(class_names)) < k:
        raise ValueError(f"{where}: class names repeat")
    if kind == "index":
        if y.dtype.kind not in "biu":
            raise ValueError(f"{where} holds {y.dtype}, not integer class indices")
        if y.size and (y.min() < 0 or y.max() >= k):
            index = int(y.min()) if y.min() < 0 else int(y.max())
            raise ValueError(f"{where} holds class index {index}, outside 0..{k - 1} ({k} classes)")
        return
    if y.ndim != 2 or y.shape[1] != k:
        raise ValueError(f"{where} has shape {y.shape}: {k} class names need (N, {k})")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{where} holds {y.dtype}, not numbers")
    if kind == "multi_hot":
        bad = ~((y == 0) | (y == 1))
        what = "multi-hot labels are 0 or 1"
    else:
        bad = ~((y >= 0) & (y <= 1))
        what = "fractions are in [0, 1]"
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{where} holds {float(y[i, j]):g} (row {i}, column {j}); {what}")


class Store:
    """A complete store opened read-only. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with contextlib.suppress(ImportError):  # registers the Blosc2 filters of lz4/zstd stores
            import hdf5plugin  # noqa: F401
        if self.path.is_dir():
            raise StoreError(self.path, "is a folder, not a store file")
        if not self.path.is_file():
            if partial_path(self.path).exists():
                raise StoreError(
                    self.path,
                    "not found; an incomplete .partial file is beside it "
                    "(re-run preprocess to finish it)",
                )
            raise StoreError(self.path, "file not found")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError:
            raise StoreError(self.path, "not an HDF5 file (or truncated)") from None
        attrs = self.file.attrs
        if attrs.get("format") != FORMAT:
            self.close()
            raise StoreError(self.path, f"not a sareval store (no format={FORMAT!r} attribute)")
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            self.close()
            raise StoreError(
                self.path,
                f"store format version {version} is not supported "
                f"(expected {FORMAT_VERSION}); re-run preprocess",
            )
        if "content_digest" not in attrs:
            self.close()
            raise StoreError(self.path, "incomplete store (no content digest)")
        try:
            check_layout(self.file)
            if content_digest_of(self.file) != str(attrs["content_digest"]):
                raise StoreError(
                    self.path,
                    "content does not match its content digest (labels, subsets or row "
                    "hashes were changed after the store was written); re-run preprocess",
                )
        except StoreError:
            self.close()
            raise
        self.readahead = Readahead(self.path)

    # --- metadata ---------------------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "readahead", None) is not None:
            self.readahead.close()
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None

    @property
    def attrs(self) -> Mapping[str, Any]:
        attrs: Mapping[str, Any] = self.file.attrs
        return attrs

    @property
    def dataset(self) -> str:
        return str(self.attrs["dataset"])

    @property
    def split(self) -> str:
        return str(self.attrs["split"])

    @property
    def content_digest(self) -> str:
        return str(self.attrs["content_digest"])

    @property
    def n_samples(self) -> int:
        return int(self.file["ids"].shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.attrs["height"]), int(self.attrs["width"])

    @property
    def has_cloudy(self) -> bool:
        return "s2_cloudy" in self.file

    @property
    def image_datasets(self) -> tuple[str, ...]:
        """Every image dataset: ``s1``, ``s2``, the cloudy optical source ``s2_cloudy`` where
        the store has one, then the extra sensors (e.g. ``dem``)."""
        cloudy = ("s2_cloudy",) if self.has_cloudy else ()
        base = tuple(s for s in self.sensors if s in SENSORS)
        return base + cloudy + tuple(s for s in self.sensors if s not in SENSORS)

    @property
    def options(self) -> dict[str, Any]:
        """The options the store was written with (``compression``, ``chunk_rows``, ...)."""
        return dict(json.loads(self.attrs.get("options", "{}")))

    def attribute(self, key: str) -> str | None:
        """A root attribute as text (``created``, ``creator``, ``source_root``,
        ``default_task``, ``cloud_cover_method``, ...); None where the store does not record it."""
        value = self.attrs.get(key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def bands(self, sensor: str) -> tuple[str, ...]:
        """Band names of ``sensor`` (``"s1"`` / ``"s2"``) in stored channel order."""
        if sensor not in self.file:
            raise StoreError(self.path, f"no {sensor!r} data")
        return tuple(json.loads(self.file[sensor].attrs["bands"]))

    @property
    def sensors(self) -> tuple[str, ...]:
        """Image datasets (``s1``, ``s2`` and any extra, e.g. ``dem``) in input order; the
        alternative optical sources (``s2_cloudy``) are read through a subset, not listed."""
        named = [
            k for k, v in self.file.items() if isinstance(v, h5py.Dataset) and "bands" in v.attrs
        ]
        extra = sorted(k for k in named if k not in SENSORS and k not in OPTICAL_SOURCES)
        return tuple(s for s in SENSORS if s in named) + tuple(extra)

    @property
    def all_bands(self) -> dict[str, str]:
        """Every stored band name -> the sensor dataset holding it."""
        return {b: s for s in self.sensors for b in self.bands(s)}

    def source_of(self, sub: Subset, sensor: str) -> str:
        """The dataset a subset reads for ``sensor`` (``s2`` comes from its optical source)."""
        return sub.optical if sensor == "s2" else sensor

    def image_spec(self, sub: Subset, sensor: str) -> tuple[tuple[int, ...], np.dtype]:
        """Per-sample shape (C, H, W) and dtype of ``sensor`` as ``sub`` reads it."""
        ds = self.file[self.source_of(sub, sensor)]
        return tuple(ds.shape[1:]), ds.dtype

    def sample_shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape (C, H, W) of an image dataset (a sensor or an optical source)."""
        return tuple(self.file[name].shape[1:])

    def dtype_of(self, name: str) -> np.dtype:
        """Stored dtype of an image dataset."""
        return self.file[name].dtype  # type: ignore[no-any-return]

    def verify_rows(self, batch_rows: int = 64) -> int:
        """Re-hash every row (images, id, cloud cover) against ``/row_sha256``; raise
        :class:`StoreError` naming the first row that differs (a tampered copy), else return the
        rows checked. Reads the whole store."""
        f = self.file
        names = sorted(
            k for k, v in f.items() if isinstance(v, h5py.Dataset) and "bands" in v.attrs
        )
        n = self.n_samples
        for a in range(0, n, batch_rows):
            rows = np.arange(a, min(a + batch_rows, n))
            ids = read_rows(f["ids"], rows)
            data = {name: read_rows(f[name], rows) for name in names}
            cover = read_rows(f["cloud_cover"], rows)
            stored = read_rows(f["row_sha256"], rows)
            for j, i in enumerate(ids):
                if (
                    row_digest(i, [data[name][j] for name in names], cover[j])
                    != stored[j].tobytes()
                ):
                    rid = i.decode() if isinstance(i, bytes) else str(i)
                    raise StoreError(
                        self.path,
                        f"row {int(rows[j])} ({rid}) does not match its row hash: the "
                        "images or cloud cover were changed after the store was written",
                    )
        return n

    def read_source(self, name: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sorted ``rows`` of an image dataset (a sensor or an optical source such as
        ``s2_cloudy``), one slice per run of consecutive rows."""
        if name not in self.sensors and name not in OPTICAL_SOURCES:
            raise StoreError(self.path, f"no image dataset {name!r}")
        return read_rows(self.file[name], rows, out)

    def read_unordered(self, sub: Subset, sensor: str, rows: np.ndarray) -> np.ndarray:
        """``sensor`` of ``rows`` in the order given (read sorted, then put back in order)."""
        order = np.argsort(rows)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return self.read_source(self.source_of(sub, sensor), rows[order])[inverse]

    def cloudy_available(self, rows: np.ndarray) -> np.ndarray:
        """(n,) bool: which ``rows`` have a cloudy optical version (all False without one)."""
        if not self.has_cloudy:
            return np.zeros(len(rows), bool)
        return read_rows(self.file["s2_cloudy_available"], rows)

    @property
    def label_sets(self) -> dict[str, LabelSpec]:
        out = {}
        for name, ds in self.file["labels"].items():
            thr = ds.attrs.get("threshold")
            kind = str(ds.attrs["kind"])
            out[name] = LabelSpec(
                name,
                kind,
                tuple(json.loads(ds.attrs["class_names"])),
                None if thr is None else float(thr),
                int(ds.attrs.get("ignore_index", DEFAULT_IGNORE_INDEX)) if kind == "map" else None,
            )
        return out

    def label_set(self, name: str) -> LabelSpec:
        sets = self.label_sets
        if name not in sets:
            raise StoreError(self.path, f"no label set {name!r}; known: {', '.join(sets)}")
        return sets[name]

    def find_labels(self, task: str, class_names: Sequence[str]) -> LabelSpec:
        """The label set for ``task`` (single-label, multi-label, segmentation) whose classes
        are exactly ``class_names`` (any order)."""
        kind = {"single-label": "index", "segmentation": "map"}.get(task, "multi_hot")
        for spec in self.label_sets.values():
            if spec.kind == kind and set(spec.class_names) == set(class_names):
                return spec
        have = ", ".join(
            f"{s.name} ({s.task}, {len(s.class_names)} classes)"
            for s in self.label_sets.values()
            if s.kind != "fractions"
        )
        raise StoreError(
            self.path,
            f"no {task} labels with the model's {len(class_names)} classes; the store has: {have}",
        )

    def labels(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        ds = self.file["labels"][name]
        return ds[()] if rows is None else read_rows(ds, rows)

    @property
    def subsets(self) -> dict[str, Subset]:
        return {
            name: Subset(
                name, ds[()], str(ds.attrs["optical"]), str(ds.attrs.get("description", ""))
            )
            for name, ds in self.file["subsets"].items()
        }

    def subset(self, name: str) -> Subset:
        if name not in self.file["subsets"]:
            raise StoreError(
                self.path, f"unknown subset {name!r}; known: {', '.join(self.file['subsets'])}"
            )
        ds = self.file["subsets"][name]
        return Subset(name, ds[()], str(ds.attrs["optical"]), str(ds.attrs.get("description", "")))

    def ids(self, rows: np.ndarray | None = None) -> list[str]:
        ds = self.file["ids"]
        raw = ds[()] if rows is None else read_rows(ds, rows)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in raw]

    def cloud_cover(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``/cloud_cover`` of ``rows``: the cover of :attr:`cloud_cover_source`'s images."""
        ds = self.file["cloud_cover"]
        return ds[()] if rows is None else read_rows(ds, rows)

    @property
    def has_cloud_mask(self) -> bool:
        return "cloud_mask" in self.file

    def cloud_mask(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """``/cloud_mask`` (n, H, W) uint8 of sorted ``rows`` (all by default): the per-pixel
        mask of :attr:`cloud_cover_source`'s images (1 cloudy, 0 clear, 255 unknown); None
        where the store has none."""
        if not self.has_cloud_mask:
            return None
        ds = self.file["cloud_mask"]
        return np.asarray(ds[()] if rows is None else read_rows(ds, rows))

    @property
    def cloud_cover_source(self) -> str:
        """The optical dataset whose cover ``/cloud_cover`` estimates: ``s2_cloudy`` where the
        store has a cloudy version (SEN12MS-CR: the estimate is the cloudy twin's), else ``s2``."""
        return "s2_cloudy" if self.has_cloudy else "s2"

    def band_mean(self, sensor: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-band mean of ``sensor`` over finite pixels of ``rows`` (all rows by default).

        For ``s2_cloudy`` pass the rows that have a cloudy version."""
        s = self.file["stats"][f"{sensor}_sum"]
        c = self.file["stats"][f"{sensor}_count"]
        total = (s[()] if rows is None else read_rows(s, rows)).sum(0)
        count = (c[()] if rows is None else read_rows(c, rows)).sum(0)
        mean: np.ndarray = total / np.maximum(count, 1)
        return mean

    def band_std(self, sensor: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-band population standard deviation of ``sensor`` over finite pixels of ``rows``."""
        stats = self.file["stats"]

        def total(key: str) -> np.ndarray:
            ds = stats[f"{sensor}_{key}"]
            summed: np.ndarray = (ds[()] if rows is None else read_rows(ds, rows)).sum(0)
            return summed

        n = np.maximum(total("count"), 1)
        mean = total("sum") / n
        std: np.ndarray = np.sqrt(np.maximum(total("sumsq") / n - mean**2, 0.0))
        return std

    def finite_counts(self, sensor: str, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, C) int: finite pixels per row and band of an image dataset (the stored stats),
        of sorted ``rows`` (all rows by default)."""
        ds = self.file["stats"][f"{sensor}_count"]
        return np.asarray(ds[()] if rows is None else read_rows(ds, rows))

    def nonfinite_count(self, sensor: str) -> int:
        """Number of non-finite (NaN/Inf) values of ``sensor`` (from the stored stats)."""
        count = self.finite_counts(sensor)
        h, w = self.image_size
        return int(count.size * h * w - count.sum())

    def nonfinite_rows(self, sensor: str) -> int:
        """Number of rows of ``sensor`` with a non-finite (NaN/Inf) value in some band."""
        h, w = self.image_size
        return int((self.finite_counts(sensor) < h * w).any(axis=1).sum())

    # --- reading ----------------------------------------------------------------------------
    def iter_batches(
        self,
        subset: str | Subset,
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
        sensors: Sequence[str] = SENSORS,
        label_sets: Sequence[str] = (),
        readahead: int = 2,
        buffers: Sequence[Mapping[str, np.ndarray]] | None = None,
    ) -> Iterator[Batch]:
        """Batches of ``subset`` positions ``[start, stop)``, in order, ``batch_size`` at most.

        Memory is O(batch_size); ``"s2"`` is read from the subset's optical source. The kernel
        is asked to load the rows ``readahead`` batches ahead in the background (0: no hints).
        ``buffers``: preallocated arrays per sensor, batch i read into ``buffers[i % len]``
        (the evaluator's reader thread, :class:`~sareval.evaluator.reader.BatchReader`, keeps a
        ring of them); without, every batch gets new arrays.
        """
        sub = self.subset(subset) if isinstance(subset, str) else subset
        stop = len(sub) if stop is None else min(stop, len(sub))
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for i, a in enumerate(range(start, stop, batch_size)):
            self.prefetch_ahead(sub, a, start, stop, batch_size, readahead, sensors=sensors)
            b = min(a + batch_size, stop)
            out = None if not buffers else buffers[i % len(buffers)]
            yield self.read_batch(sub, a, b, sensors=sensors, label_sets=label_sets, out=out)

    def prefetch(
        self, sub: Subset, start: int, stop: int, *, sensors: Sequence[str] = SENSORS
    ) -> int:
        """Hint the kernel to read positions ``[start, stop)`` of ``sub`` in the background
        (:mod:`sareval.readahead`); returns the bytes hinted."""
        rows = sub.rows[start:stop]
        return sum(
            self.readahead.advise(self.file[sub.optical if s == "s2" else s], rows) for s in sensors
        )

    def prefetch_ahead(
        self,
        sub: Subset,
        at: int,
        first: int,
        stop: int,
        batch_size: int,
        batches: int,
        *,
        sensors: Sequence[str] = SENSORS,
    ) -> None:
        """Before reading the batch at position ``at`` of a sequential pass that started at
        ``first``: hint the batch ``batches`` ahead (at the first batch: it and all up to there)."""
        if batches < 1:
            return
        lo = at if at == first else at + batches * batch_size
        hi = min(at + (batches + 1) * batch_size, stop)
        if lo < hi:
            self.prefetch(sub, lo, hi, sensors=sensors)

    def read_batch(
        self,
        sub: Subset,
        start: int,
        stop: int,
        *,
        sensors: Sequence[str] = SENSORS,
        label_sets: Sequence[str] = (),
        out: Mapping[str, np.ndarray] | None = None,
    ) -> Batch:
        """Positions ``[start, stop)`` of ``sub``; ``out`` may hold preallocated arrays. The
        batch's ``cloud_mask`` is read where the store has one and ``sub`` reads its source."""
        rows = sub.rows[start:stop]
        arrays = {}
        for sensor in sensors:
            name = self.source_of(sub, sensor)
            buf = None if out is None else out[sensor][: len(rows)]
            arrays[sensor] = read_rows(self.file[name], rows, buf)
        return Batch(
            positions=slice(start, stop),
            rows=rows,
            ids=self.ids(rows),
            arrays=arrays,
            labels={n: self.labels(n, rows) for n in label_sets},
            cloud_cover=self.cloud_cover(rows),
            cloud_mask=self.cloud_mask(rows) if sub.optical == self.cloud_cover_source else None,
        )


def collatable(a: np.ndarray) -> np.ndarray:
    """``a`` as a dtype torch collates: unsigned integers (torch has no uint16) -> int32."""
    return a.astype(np.int32) if a.dtype.kind == "u" else a


class LazyStore:
    """A store path opened on first use in each process (DataLoader workers, forked or
    spawned): :meth:`store` reopens after a fork, and pickling drops the h5py handle."""

    path: Path
    _store: Store | None = None
    _pid: int = -1

    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store(self.path)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # h5py handles do not pickle; workers reopen the file
        return state


class StoreDataset(LazyStore):
    """Map-style dataset over a subset (works with ``torch.utils.data.DataLoader``).

    Item ``i``: ``{"s1": float32 (2,H,W), "s2": (C,H,W) uint16->int32 (float32 stays), "label":
    ..., "row": int}``. The HDF5 file is opened lazily in each process (:class:`LazyStore`).
    """

    def __init__(self, path: str | Path, subset: str, label_set: str) -> None:
        self.path = Path(path)
        with Store(self.path) as store:
            self.sub = store.subset(subset)
            store.label_set(label_set)
        self.label_set = label_set

    def __len__(self) -> int:
        return len(self.sub)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        b = self.store().read_batch(self.sub, i, i + 1, label_sets=(self.label_set,))
        return {
            "s1": b.arrays["s1"][0],
            "s2": collatable(b.arrays["s2"][0]),
            "label": b.labels[self.label_set][0],
            "row": int(b.rows[0]),
        }


# --- writing -----------------------------------------------------------------------------------
def row_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row band sums, sums of squares (float64) and finite-pixel counts (int64) of a
    (k, C, H, W) array, as stored under ``/stats``. Small unsigned integer images use exact
    integer sums (equal to the float64 sums, which are exact for them too, but faster)."""
    hw = a.shape[2] * a.shape[3]
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2 and hw <= 1 << 21:
        total = a.sum(axis=(2, 3), dtype=np.uint64).astype(np.float64)
        sq = np.square(a, dtype=np.uint32)
        total_sq = sq.sum(axis=(2, 3), dtype=np.uint64).astype(np.float64)
        return total, total_sq, np.full(a.shape[:2], hw, dtype=np.int64)
    finite = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
    clean = np.where(finite, a, 0).astype(np.float64)
    return (
        clean.sum(axis=(2, 3)),
        np.square(clean).sum(axis=(2, 3)),
        finite.sum(axis=(2, 3)).astype(np.int64),
    )


@dataclass(frozen=True)
class SensorSpec:
    """An image dataset to write: band names and dtype."""

    name: str
    bands: tuple[str, ...]
    dtype: str


class StoreWriter:
    """Writes a store row block by row block into ``<out>.partial``; :meth:`finish` renames it.

    ``config`` (any JSON-able dict: inputs, options, the ordered id list's digest) decides
    whether an existing ``.partial`` is resumed (same config) or rebuilt (otherwise). Rows are
    written in order; ``rows_written`` tells where to resume. A full disk or an unwritable
    folder removes the ``.partial`` and raises :class:`~sareval.write_errors.OutputWriteError`.
    """

    @discard_on_write_error
    def __init__(
        self,
        out: str | Path,
        *,
        dataset: str,
        split: str,
        default_task: str,
        ids: Sequence[str],
        height: int,
        width: int,
        sensors: Sequence[SensorSpec],
        labels: Sequence[LabelSpec],
        config: Mapping[str, Any],
        source_root: str = "",
        with_cloudy: bool = False,
        with_geo: bool = False,
        with_cloud_mask: bool = False,
        compression: str | None = "lzf",
        chunk_rows: int = 4,
        overwrite: bool = False,
    ) -> None:
        self.out = check_output(out, overwrite, streams=False)
        self.partial = partial_path(self.out)
        self.n = len(ids)
        config_json = json.dumps({"config": dict(config), "ids": list(ids)}, sort_keys=True)
        self.config_digest = hashlib.sha256(config_json.encode()).hexdigest()
        if self.partial.exists():
            try:
                with h5py.File(self.partial, "r") as f:
                    resumable = f.attrs.get("config_digest") == self.config_digest
            except OSError:  # truncated by a kill: rebuild
                resumable = False
            if not resumable:
                self.partial.unlink()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists():
            self.file = h5py.File(self.partial, "r+")
            self.rows_written = int(self.file.attrs["rows_written"])
            return
        self.rows_written = 0
        if not compression:  # the size is known: refuse now rather than when the disk is full
            row_bytes = sum(len(s.bands) * np.dtype(s.dtype).itemsize for s in sensors)
            if with_cloudy:
                row_bytes += sum(
                    len(s.bands) * np.dtype(s.dtype).itemsize for s in sensors if s.name == "s2"
                )
            row_bytes += sum(lab.kind == "map" for lab in labels) + int(with_cloud_mask)  # uint8
            ensure_free(self.partial, self.n * row_bytes * height * width)
        f = self.file = h5py.File(self.partial, "w")
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "dataset": dataset,
                "split": split,
                "default_task": default_task,
                "source_root": source_root,
                "creator": f"sareval {__version__}",
                "height": height,
                "width": width,
                "n_samples": self.n,
                "options": json.dumps(dict(config), sort_keys=True),
                "config_digest": self.config_digest,
                "rows_written": 0,
                "cloud_cover_method": "none",
            }
        )
        f.create_dataset("ids", data=np.asarray(list(ids), dtype=object), dtype=STR_DTYPE)
        self._create_datasets(
            sensors, labels, height, width, with_cloudy=with_cloudy, with_geo=with_geo,
            with_cloud_mask=with_cloud_mask, compression=compression, chunk_rows=chunk_rows,
        )  # fmt: skip
        f.flush()

    def _create_datasets(
        self,
        sensors: Sequence[SensorSpec],
        labels: Sequence[LabelSpec],
        height: int,
        width: int,
        *,
        with_cloudy: bool,
        with_geo: bool,
        with_cloud_mask: bool,
        compression: str | None,
        chunk_rows: int,
    ) -> None:
        """The layout's datasets (module docstring), empty, for ``self.n`` rows."""
        f = self.file
        kw: dict[str, Any] = {"compression": compression} if compression else {}
        names = [s.name for s in sensors] + (["s2_cloudy"] if with_cloudy else [])
        specs = {s.name: s for s in sensors}
        for name in names:
            spec = specs["s2" if name == "s2_cloudy" else name]
            c = len(spec.bands)
            ds = f.create_dataset(
                name,
                shape=(self.n, c, height, width),
                dtype=spec.dtype,
                chunks=(min(chunk_rows, max(self.n, 1)), c, height, width),
                **kw,
            )
            ds.attrs["bands"] = json.dumps(list(spec.bands))
            f.create_dataset(f"stats/{name}_sum", shape=(self.n, c), dtype=np.float64)
            f.create_dataset(f"stats/{name}_count", shape=(self.n, c), dtype=np.int64)
            f.create_dataset(f"stats/{name}_sumsq", shape=(self.n, c), dtype=np.float64)
        if with_cloudy:
            f.create_dataset("s2_cloudy_available", shape=(self.n,), dtype=bool)
        cc = f.create_dataset("cloud_cover", shape=(self.n,), dtype=np.float32, fillvalue=np.nan)
        cc.attrs["method"] = "none"
        f.create_dataset("row_sha256", shape=(self.n, 32), dtype=np.uint8)
        pixels: dict[str, Any] = {  # (N, H, W) datasets: chunked like the images
            "shape": (self.n, height, width),
            "chunks": (min(chunk_rows, max(self.n, 1)), height, width),
            **kw,
        }
        if with_cloud_mask:
            f.create_dataset("cloud_mask", dtype=np.uint8, fillvalue=255, **pixels)
        for lab in labels:
            if lab.kind not in LABEL_KINDS:
                raise ValueError(f"label kind {lab.kind!r}")
            k = len(lab.class_names)
            dtype = LABEL_DTYPES[lab.kind]
            if lab.kind == "map":
                ignore = DEFAULT_IGNORE_INDEX if lab.ignore_index is None else lab.ignore_index
                ds = f.create_dataset(f"labels/{lab.name}", dtype=dtype, fillvalue=ignore, **pixels)
                ds.attrs["ignore_index"] = ignore
            else:
                shape = (self.n,) if lab.kind == "index" else (self.n, k)
                ds = f.create_dataset(f"labels/{lab.name}", shape=shape, dtype=dtype)
            ds.attrs["kind"] = lab.kind
            ds.attrs["class_names"] = json.dumps(list(lab.class_names))
            if lab.threshold is not None:
                ds.attrs["threshold"] = lab.threshold
        if with_geo:
            f.create_dataset("geo/transform", shape=(self.n, 6), dtype=np.float64)
            f.create_dataset("geo/crs", shape=(self.n,), dtype=STR_DTYPE)

    @discard_on_write_error
    def write_rows(
        self,
        start: int,
        arrays: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray],
        cloud_cover: np.ndarray | None = None,
        cloudy_available: np.ndarray | None = None,
        geo_transform: np.ndarray | None = None,
        geo_crs: Sequence[str] | None = None,
        stats: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
        cloud_mask: np.ndarray | None = None,
    ) -> None:
        """Write rows ``[start, start + k)``; must continue exactly at :attr:`rows_written`.

        ``arrays`` maps each sensor (and ``s2_cloudy`` if the store has it) to (k, C, H, W).
        ``stats`` optionally gives :func:`row_stats` of some arrays, computed elsewhere (e.g. in
        reader processes); the others are computed here. ``cloud_mask`` (k, H, W) uint8 for a
        store created ``with_cloud_mask``.
        """
        if start != self.rows_written:
            raise ValueError(
                f"rows must be written in order: got {start}, expected {self.rows_written}"
            )
        f = self.file
        ensure_free(self.partial, sum(a.nbytes for a in arrays.values()))
        k = len(next(iter(arrays.values())))
        sl = np.s_[start : start + k]
        ids = f["ids"][sl]
        digests = [hashlib.sha256(i if isinstance(i, bytes) else str(i).encode()) for i in ids]
        # the datasets are held here until the write ends (a failure: see discard_h5)
        datasets = {name: f[name] for name in arrays}

        def put(name: str, value: Any) -> None:
            if name not in datasets:
                datasets[name] = f[name]
            datasets[name][sl] = value

        for name in sorted(arrays):
            ds = datasets[name]
            a = np.ascontiguousarray(arrays[name], dtype=ds.dtype)
            if a.shape[1:] != ds.shape[1:] or len(a) != k:
                raise ValueError(f"{name}: shape {a.shape} does not fit {ds.shape}")
            put(name, a)
            total, total_sq, count = (
                stats[name] if stats is not None and name in stats else row_stats(a)
            )
            put(f"stats/{name}_sum", total)
            put(f"stats/{name}_sumsq", total_sq)
            put(f"stats/{name}_count", count)
            for j in range(k):
                digests[j].update(a[j].tobytes())
        for name, value in labels.items():
            put(f"labels/{name}", value)
        if cloud_cover is not None:
            put("cloud_cover", cloud_cover)
        if cloud_mask is not None:
            put("cloud_mask", cloud_mask)
        cover = np.full(k, np.nan, np.float32) if cloud_cover is None else cloud_cover
        for j in range(k):  # as row_digest: id, images (sorted by name), cloud cover
            digests[j].update(np.float32(cover[j]).tobytes())
        if cloudy_available is not None:
            put("s2_cloudy_available", cloudy_available)
        if geo_transform is not None:
            put("geo/transform", geo_transform)
        if geo_crs is not None:
            put("geo/crs", np.asarray(list(geo_crs), dtype=object))
        put("row_sha256", np.stack([np.frombuffer(d.digest(), np.uint8) for d in digests]))
        self.rows_written = start + k
        f.attrs["rows_written"] = self.rows_written
        f.flush()

    @property
    def has_cloudy(self) -> bool:
        """Whether the store being written has a cloudy optical version."""
        return "s2_cloudy" in self.file

    def written_cloud_cover(self) -> np.ndarray:
        """The ``/cloud_cover`` written so far (N,)."""
        return np.asarray(self.file["cloud_cover"][()])

    @discard_on_write_error
    def finish(
        self,
        subsets: Mapping[str, tuple[np.ndarray, str, str]],
        cloud_cover_method: str = "none",
        extra_attrs: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write ``subsets`` (name -> (rows, optical source, description)), the content digest,
        and rename ``<out>.partial`` to ``<out>``. Returns the output path."""
        if self.rows_written != self.n:
            raise ValueError(f"finish() after {self.rows_written} of {self.n} rows")
        f = self.file
        ensure_free(self.partial, 0)
        if "subsets" in f:
            del f["subsets"]
        grp = f.create_group("subsets")
        for name, (rows, optical, description) in subsets.items():
            rows = np.unique(np.asarray(rows, dtype=np.int64))
            if optical not in OPTICAL_SOURCES or (optical not in f and optical != "s2"):
                raise ValueError(f"subset {name}: optical source {optical!r} not in store")
            ds = grp.create_dataset(name, data=rows)
            ds.attrs["optical"] = optical
            ds.attrs["description"] = description
        f["cloud_cover"].attrs["method"] = cloud_cover_method
        f.attrs["cloud_cover_method"] = cloud_cover_method
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key, value in (extra_attrs or {}).items():
            f.attrs[key] = value
        f.attrs["content_digest"] = content_digest_of(f)
        f.flush()  # a full disk fails here, where it is handled, not inside close()
        f.close()
        os.replace(self.partial, self.out)
        return self.out

    @discard_on_write_error
    def verify_written(self, tail_rows: int | None = 256, sample_rows: int = 256) -> int:
        """Re-hash rows of a resumed ``.partial`` against their ``row_sha256`` and rewind
        :attr:`rows_written` to the first row that no longer matches (e.g. a chunk lost when
        the writer was killed). Checked: the last ``tail_rows`` rows (written last, so the ones
        a kill can damage) and ``sample_rows`` rows drawn evenly from the rest (a torn index
        node would hit many rows); ``tail_rows=None`` checks every row. Returns the rows kept.

        Valid for writers that pass every image dataset and ``cloud_cover`` to each
        :meth:`write_rows` call (as ``sareval preprocess`` does)."""
        f = self.file
        n = self.rows_written
        names = sorted(
            k for k, v in f.items() if isinstance(v, h5py.Dataset) and "bands" in v.attrs
        )
        if tail_rows is None or n <= tail_rows + sample_rows:
            check = np.arange(n)
        else:
            head = np.unique(np.linspace(0, n - tail_rows - 1, sample_rows).astype(np.int64))
            check = np.concatenate([head, np.arange(n - tail_rows, n)])
        good = n
        try:
            for k in range(0, len(check), 16):
                rows = check[k : k + 16]
                ids = read_rows(f["ids"], rows)
                data = {name: read_rows(f[name], rows) for name in names}
                cover = read_rows(f["cloud_cover"], rows)
                stored = read_rows(f["row_sha256"], rows)
                for j, i in enumerate(ids):
                    digest = row_digest(i, [data[name][j] for name in names], cover[j])
                    if digest != stored[j].tobytes():
                        good = int(rows[j])
                        raise StopIteration
        except StopIteration:
            pass
        except (OSError, KeyError):  # unreadable: rebuild from the start
            good = 0
        if good != self.rows_written:
            self.rows_written = good
            f.attrs["rows_written"] = good
            f.flush()
        return good

    def abort(self) -> None:
        """Close the file and keep ``<out>.partial`` for a later resume."""
        if self.file:
            self.file.close()

    def discard(self, error: BaseException | None = None) -> None:
        """Close the file, whatever its state (``error``: the failure), delete ``.partial``."""
        discard_h5(getattr(self, "file", None), partial_path(self.out), error)
        self.rows_written = 0
