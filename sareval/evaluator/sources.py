"""Data sources: a store subset, arrays in memory, or a torch Dataset -> one batch protocol.

Whatever the data, the evaluator sees batches of raw values per sensor (store band order,
no normalisation: the model card's preamble does that), labels and cloud cover::

    SourceBatch(positions=slice(a, b), ids=[...], rows=store rows | None,
                arrays={"s1": (b, 2, H, W), "s2": (b, C, H, W), ["dem": (b, 1, H, W)]},
                labels=(b,) class indices | (b, K) multi-hot | (b, H, W) label maps
                       (segmentation), in the source's class order,
                cloud_cover=(b,) float32, NaN = unknown,
                cloud_mask=(b, H, W) uint8 (1 cloudy, 0 clear, 255 unknown) | None)

``cloud_cover`` is that of the optical image actually read (``Source.cloud_cover_source`` says
where it comes from): a store subset gets the store's estimate only where it describes the
subset's optical source (:attr:`~sareval.store.Store.cloud_cover_source`: SEN12MS-CR's cover is
the cloudy twin's, so a subset reading the clear ``s2`` gets NaN; BigEarthNet's ``s2`` is its
only optical image, so its cover is its own); arrays and datasets report what they are given.

- :class:`StoreSubset` (``sareval.open_store(path).subset("clear")``): a reader thread over
  the HDF5 store (:class:`~sareval.evaluator.reader.BatchReader`);
- :class:`ArrayData`: numpy arrays / torch tensors per sensor with their band names;
- :class:`TorchData`: a map-style torch ``Dataset`` (items are dicts of per-sample tensors)
  or any iterable of batches (dicts of batched tensors); torchgeo's SEN12MS / BigEarthNet /
  BigEarthNetV2 are read by their conventions (:mod:`sareval.adapters`), any other dataset
  names its bands and classes. Bands and classes meet the model card by name, never position.

:func:`as_source` turns what :func:`sareval.evaluate` accepts into one of these; its errors
name the argument (``data``) and what was expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sareval.adapters import DatasetConventions, conventions_for, mask_labels
from sareval.adapters.conventions import IGBP_MULTI_HOT_THRESHOLD
from sareval.bands import BIGEARTHNET_S2_BANDS, S1_BANDS, S2_BANDS, close_band, default_bands
from sareval.card import ModelCard
from sareval.classes import NO_CLASS, igbp10_fractions, igbp10_map, multi_hot, single_label
from sareval.errors import SarevalError, StoreError
from sareval.evaluator.reader import BatchReader
from sareval.store import Store

#: keys of a batch/item dict that are not image sensors
LABEL_KEYS = ("label", "labels", "y")


@dataclass
class SourceBatch:
    """Consecutive samples ``positions`` of a source (see module docstring)."""

    positions: slice
    ids: list[str]
    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    cloud_cover: np.ndarray
    rows: np.ndarray | None = None
    cloud_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return self.positions.stop - self.positions.start

    def check(self, source: str, index: int) -> None:
        """Refuse batch ``index`` of ``source`` when its parts disagree on the number of samples
        or hold values no evaluation may count (:func:`check_images`, :func:`check_labels`,
        :func:`check_cloud_cover`); cheap (dtypes, lengths, O(B x K) label values)."""
        b, first = len(self), self.positions.start
        where = f"{source}: batch {index} (from sample {first})"
        parts: list[tuple[str, int]] = [(f"sensor {s!r}", len(a)) for s, a in self.arrays.items()]
        parts += [("labels", len(self.labels)), ("cloud_cover", len(self.cloud_cover))]
        parts += [("ids", len(self.ids))]
        if self.cloud_mask is not None:
            parts.append(("cloud_mask", len(self.cloud_mask)))
        if self.rows is not None:
            parts.append(("rows", len(self.rows)))
        if any(rows != b for _, rows in parts):
            counts = ", ".join(f"{what}: {rows}" for what, rows in parts)
            raise SarevalError(
                f"{where}: its parts hold different numbers of samples ({counts}; positions: {b})"
            )
        for s, a in self.arrays.items():
            check_images(a, f"{where}: sensor {s!r}")
        check_labels(self.labels, f"{where}: labels", first)
        check_cloud_cover(self.cloud_cover, f"{where}: cloud_cover", first)


def check_images(a: np.ndarray, what: str) -> None:
    """Refuse image values that are not real numbers (complex, strings, objects)."""
    if a.dtype.kind not in "biuf":
        raise SarevalError(f"{what}: {a.dtype} values; images must be real numbers")


def check_labels(y: np.ndarray, what: str, first: int = 0) -> None:
    """Refuse labels no metric may count: (B,) class indices that are not whole numbers,
    (B, K) multi-hot labels other than 0 / 1 (2, NaN, fractions). ``first``: the position of
    row 0 (named in the message)."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise SarevalError(f"{what}: {y.dtype} values; labels must be numbers")
    if y.ndim == 3:
        if y.dtype.kind not in "iu":
            raise SarevalError(f"{what}: {y.dtype} label maps; class values must be integers")
        return
    if y.ndim == 2:
        bad = ~((y == 0) | (y == 1))
        rule = "multi-hot labels are 0 or 1"
    elif y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        rule = "class indices are whole numbers"
    else:
        return
    if bad.any():
        at = np.argwhere(bad)[0]
        col = f", class column {int(at[1])}" if y.ndim == 2 else ""
        raise SarevalError(
            f"{what}: sample {first + int(at[0])}{col} holds {float(y[tuple(at)]):g}; {rule}"
        )


def check_cloud_cover(c: np.ndarray, what: str, first: int = 0) -> None:
    """Refuse cloud cover outside [0, 1] (NaN: unknown, allowed)."""
    c = np.asarray(c)
    if c.dtype.kind not in "biuf":
        raise SarevalError(f"{what}: {c.dtype} values; cloud cover is a fraction in [0, 1]")
    c = c.astype(np.float64)
    outside = np.flatnonzero(~np.isnan(c) & ((c < 0) | (c > 1)))
    if len(outside):
        i = int(outside[0])
        raise SarevalError(
            f"{what}: sample {first + i} holds {c[i]:g}; cloud cover is a fraction in [0, 1] "
            "(NaN: unknown)"
        )


@dataclass(frozen=True)
class Labels:
    """A source's labels: ``kind`` ``index`` (N,), ``multi_hot`` (N, K) or ``map`` (N, H, W),
    class names in column / index order (None: the model card's order), the name recorded in
    results, and (maps) the value of a pixel without a class (None: the card's)."""

    kind: str
    class_names: tuple[str, ...] | None
    name: str = "labels"
    ignore_index: int | None = None

    @property
    def task(self) -> str:
        return {"index": "single-label", "multi_hot": "multi-label", "map": "segmentation"}[
            self.kind
        ]


#: what each task's labels are, in the words of an error message
LABEL_SHAPES = {
    "single-label": "(N,) class indices",
    "multi-label": "(N, K) multi-hot labels",
    "segmentation": "(N, H, W) label maps",
}


def check_task(labels: Labels, card: ModelCard, source: str) -> None:
    """Refuse labels of another task than the card's (scene labels for a segmentation model,
    label maps for a classifier), naming ``source``."""
    if labels.task != card.task:
        raise SarevalError(
            f"{source}: holds {LABEL_SHAPES[labels.task]} ({labels.task}), but the model card's "
            f"task is {card.task} (needs {LABEL_SHAPES[card.task]})"
        )


class Source(Protocol):
    """What the evaluator reads (implemented by the three classes of this module)."""

    description: str

    @property
    def bands(self) -> dict[str, tuple[str, ...]]: ...  # sensor -> band names, input order

    @property
    def image_size(self) -> tuple[int, int]: ...

    def __len__(self) -> int: ...

    def labels_for(self, card: ModelCard) -> Labels: ...

    def sample_spec(self, sensor: str) -> tuple[tuple[int, ...], np.dtype]: ...

    def all_labels(self, labels: Labels) -> np.ndarray: ...

    def band_means(self, sensors: Sequence[str]) -> dict[str, float]: ...

    def batches(
        self,
        start: int,
        stop: int,
        batch_size: int,
        *,
        sensors: Sequence[str],
        labels: Labels,
        queue_size: int = 2,
        pinned: bool = False,
    ) -> contextlib.AbstractContextManager[Iterable[SourceBatch]]: ...

    def provenance(self) -> dict[str, Any]: ...

    @property
    def cloud_cover_source(self) -> str: ...  # see :data:`CLOUD_COVER_SOURCES`


#: ``cloud_cover_source`` values: the store's estimate for the optical dataset read (its name),
#: ``given`` (passed with arrays / a dataset), ``none`` (no estimate for the images read)
CLOUD_COVER_SOURCES = ("s2", "s2_cloudy", "given", "none")


def label_converter(labels: Labels, card: ModelCard, source: str) -> Any:
    """``f(y) -> y`` in the card's class order (index (B,) or bool (B, K)); raises on a mismatch."""
    names = labels.class_names or card.class_names
    if sorted(names) != sorted(card.class_names):
        extra = sorted(set(names) - set(card.class_names))
        missing = sorted(set(card.class_names) - set(names))
        near = [(e, close_band(e, missing)) for e in extra]
        hint = "; ".join(f"data {e!r} ~ card {m!r}?" for e, m in near if m is not None)
        raise SarevalError(
            f"{source}: the label classes do not match the model card's "
            f"(only in the data: {extra or 'none'}; only in the card: {missing or 'none'})"
            + (f"; likely the same class: {hint}" if hint else "")
        )
    if labels.kind == "map":
        return map_converter(labels, card, names, source)
    if labels.kind == "index":
        lut = np.array([card.class_names.index(c) for c in names], dtype=np.int64)

        def to_model_index(y: np.ndarray) -> np.ndarray:
            y = np.asarray(y)
            if y.size and (y.min() < 0 or y.max() >= len(lut)):
                raise SarevalError(f"{source}: labels hold class indices outside [0, {len(lut)})")
            return lut[y.astype(np.int64)]

        return to_model_index
    cols = np.array([list(names).index(c) for c in card.class_names], dtype=np.int64)

    def to_model_multi_hot(y: np.ndarray) -> np.ndarray:
        return np.asarray(y)[:, cols] != 0

    return to_model_multi_hot


def map_converter(labels: Labels, card: ModelCard, names: Sequence[str], source: str) -> Any:
    """``f(y)`` for label maps: class values to the card's order, the source's ignore value
    (``labels.ignore_index``, default the card's) to the card's ``ignore_index``; any other
    value is a one-line error naming ``source`` and the value."""
    ignore_in = card.ignore_index if labels.ignore_index is None else labels.ignore_index
    ignore_out = card.ignore_index
    lut = np.full(65536, -1, np.int64)
    lut[: len(names)] = [card.class_names.index(c) for c in names]
    if ignore_in is not None:
        if ignore_in < len(names):
            raise SarevalError(
                f"{source}: ignore index {ignore_in} is class {names[ignore_in]!r} of the data"
            )
        lut[ignore_in] = ignore_out if ignore_out is not None else -2

    def to_model_map(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= len(lut)):
            bad = int(y.min() if y.min() < 0 else y.max())
            raise SarevalError(f"{source}: label maps hold value {bad}, not a class index")
        out = lut[y.astype(np.int64)]
        if (out < 0).any():
            bad = int(y[out < 0].flat[0])
            if lut[bad] == -2:
                raise SarevalError(
                    f"{source}: label maps hold the ignore value {bad}, but the model card has "
                    "no ignore_index"
                )
            allowed = f"0..{len(names) - 1}" + (f" or {ignore_in}" if ignore_in is not None else "")
            raise SarevalError(
                f"{source}: label maps hold value {bad}, outside the {len(names)} classes "
                f"({allowed})"
            )
        return out

    return to_model_map


def _band_means_of(
    arrays: Mapping[str, np.ndarray], bands: Mapping[str, Sequence[str]], sensors: Sequence[str]
) -> dict[str, float]:
    """Per-band mean of finite pixels (float64 sums), keyed by band name."""
    out: dict[str, float] = {}
    for s in sensors:
        a = arrays[s]
        x = a.astype(np.float64)
        finite = np.isfinite(x)
        total = np.where(finite, x, 0).sum(axis=(0, 2, 3))
        count = finite.sum(axis=(0, 2, 3))
        out.update(zip(bands[s], (float(v) for v in total / np.maximum(count, 1)), strict=True))
    return out


# --- store -------------------------------------------------------------------------------------
class StoreSubset:
    """A named subset of a store (opened by :func:`sareval.open_store`)."""

    def __init__(self, store: Any, name: str) -> None:
        self.store = store
        self.subset = store.subset(name)
        self.description = f"{store.path} (subset {name!r})"
        if len(self.subset) == 0:
            raise StoreError(store.path, f"subset {name!r} is empty")

    @property
    def bands(self) -> dict[str, tuple[str, ...]]:
        return {s: self.store.bands(s) for s in self.store.sensors}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.store.image_size  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.subset)

    @property
    def cloud_cover_source(self) -> str:
        """The subset's optical dataset where the store's cover is its own, else ``none``."""
        own = self.subset.optical == self.store.cloud_cover_source
        return str(self.subset.optical) if own else "none"

    def labels_for(self, card: ModelCard) -> Labels:
        spec = self.store.find_labels(card.task, card.class_names)
        kind = spec.kind if spec.kind in ("index", "map") else "multi_hot"
        return Labels(kind, spec.class_names, spec.name, spec.ignore_index)

    def sample_spec(self, sensor: str) -> tuple[tuple[int, ...], np.dtype]:
        return self.store.image_spec(self.subset, sensor)  # type: ignore[no-any-return]

    def all_labels(self, labels: Labels) -> np.ndarray:
        return self.store.labels(labels.name, self.subset.rows)  # type: ignore[no-any-return]

    def band_means(self, sensors: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in sensors:
            means = self.store.band_mean(self.store.source_of(self.subset, s), self.subset.rows)
            out.update(zip(self.store.bands(s), (float(m) for m in means), strict=True))
        return out

    @contextlib.contextmanager
    def batches(
        self,
        start: int,
        stop: int,
        batch_size: int,
        *,
        sensors: Sequence[str],
        labels: Labels,
        queue_size: int = 2,
        pinned: bool = False,
    ) -> Iterator[Iterable[SourceBatch]]:
        reader = BatchReader(
            self.store,
            self.subset,
            start,
            stop,
            batch_size,
            sensors=sensors,
            label_sets=[labels.name],
            queue_size=queue_size,
            pinned=pinned,
        )
        own = self.cloud_cover_source != "none"
        with reader:
            yield (
                SourceBatch(
                    b.positions,
                    b.ids,
                    b.arrays,
                    b.labels[labels.name],
                    b.cloud_cover if own else np.full(len(b.rows), np.nan, np.float32),
                    b.rows,
                    b.cloud_mask if own else None,
                )
                for b, _ in reader
            )

    def provenance(self) -> dict[str, Any]:
        st, sub = self.store, self.subset
        return {
            "store": {
                "path": str(Path(st.path).resolve()),
                "content_digest": st.content_digest,
                "dataset": st.dataset,
                "split": st.split,
            },
            "subset": {"name": sub.name, "optical": sub.optical, "size": len(sub)},
        }


# --- arrays ------------------------------------------------------------------------------------
def _to_numpy(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except Exception:
            raise SarevalError(
                f"{what}: expected an array or tensor, got {type(value).__name__}"
            ) from None
    return value


class ArrayData:
    """Samples in memory: ``arrays`` sensor -> (N, C, H, W) numpy array or torch tensor.

    ``bands``: sensor -> C band names (default for ``s1`` with 2 channels: VV, VH; ``s2`` with
    13: B01..B12 incl. B8A and B10, with 12: without B10); any other sensor (a DEM, an index)
    must name its bands. ``labels``: (N,) class indices or (N, K) multi-hot in the order of
    ``class_names`` (default: the model card's), or (N, H, W) label maps for a segmentation
    model (``ignore_index``: the value of a pixel without a class; default the card's).
    ``cloud_cover`` (N,) in [0, 1], NaN unknown; ``cloud_mask`` (N, H, W): 1 cloudy pixel,
    0 clear, 255 unknown (segmentation: metrics split by pixel state).
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        labels: Any,
        *,
        bands: Mapping[str, Sequence[str]] | None = None,
        class_names: Sequence[str] | None = None,
        cloud_cover: Any = None,
        ids: Sequence[str] | None = None,
        description: str = "(arrays)",
        ignore_index: int | None = None,
        cloud_mask: Any = None,
    ) -> None:
        self.arrays, self.labels, self.band_arg = arrays, labels, bands
        self.ignore_index = ignore_index
        self.class_names, self.cloud_cover, self.ids = class_names, cloud_cover, ids
        self.description = description
        if not isinstance(self.arrays, Mapping) or not self.arrays:
            raise SarevalError("data: expected a mapping sensor name -> (N, C, H, W) array")
        arrays = {str(k): _to_numpy(v, f"data[{k!r}]") for k, v in self.arrays.items()}
        n = None
        for k, a in arrays.items():
            if a.ndim != 4:
                raise SarevalError(f"data[{k!r}]: expected shape (N, C, H, W), got {a.shape}")
            refuse_channels_last(k, a.shape, (self.band_arg or {}).get(k))
            check_images(a, f"data[{k!r}] (sensor {k!r})")
            if n is None:
                n, hw = len(a), a.shape[2:]
            elif len(a) != n or a.shape[2:] != hw:
                raise SarevalError(
                    f"data[{k!r}]: shape {a.shape} does not match the other sensors' "
                    f"(N={n}, H x W={hw[0]}x{hw[1]})"
                )
        assert n is not None
        if n == 0:
            raise SarevalError("data: no samples (N = 0)")
        found: dict[str, tuple[str, ...]] = {}
        given = dict(self.band_arg or {})
        for k, a in arrays.items():
            names = given.pop(k, None)
            names = tuple(names) if names is not None else default_bands(k, a.shape[1])
            if names is None:
                raise SarevalError(
                    f"bands: give the band names of data[{k!r}] ({a.shape[1]} channels), "
                    f"e.g. bands={{{k!r}: [...]}}"
                )
            if len(names) != a.shape[1]:
                raise SarevalError(
                    f"bands[{k!r}]: {len(names)} names for {a.shape[1]} channels of data[{k!r}]"
                )
            found[k] = names
        if given:
            raise SarevalError(f"bands: no data for sensor(s) {', '.join(sorted(given))}")
        self._arrays, self._bands = arrays, found
        y = _to_numpy(self.labels, "labels")
        if y.ndim not in (1, 2, 3) or len(y) != n or (y.ndim == 3 and y.shape[1:] != hw):
            raise SarevalError(
                f"labels: expected (N,) class indices or (N, K) multi-hot or (N, H, W) label maps "
                f"with N = {n}, H x W = {hw[0]}x{hw[1]}, got shape {y.shape}"
            )
        if y.ndim == 1 and y.dtype.kind not in "iu":
            raise SarevalError(f"labels: class indices must be integers, got {y.dtype}")
        check_labels(y, "labels")
        self._labels = y
        if self.cloud_cover is None:
            self._cloud = np.full(n, np.nan, np.float32)
        else:
            c = _to_numpy(self.cloud_cover, "cloud_cover")
            if c.shape != (n,):
                raise SarevalError(f"cloud_cover: expected shape ({n},), got {c.shape}")
            check_cloud_cover(c, "cloud_cover")
            self._cloud = c.astype(np.float32)
        self._cloud_mask = None
        if cloud_mask is not None:
            m = _to_numpy(cloud_mask, "cloud_mask")
            if m.shape != (n, *hw) or m.dtype.kind not in "biu":
                raise SarevalError(
                    f"cloud_mask: expected (N, H, W) = ({n}, {hw[0]}, {hw[1]}) integers "
                    f"(1 cloudy, 0 clear, 255 unknown), got {m.dtype} of shape {m.shape}"
                )
            self._cloud_mask = m.astype(np.uint8)
        if self.ids is not None and len(self.ids) != n:
            raise SarevalError(f"ids: expected {n} ids, got {len(self.ids)}")

    @property
    def bands(self) -> dict[str, tuple[str, ...]]:
        return self._bands

    @property
    def image_size(self) -> tuple[int, int]:
        a = next(iter(self._arrays.values()))
        return int(a.shape[2]), int(a.shape[3])

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def cloud_cover_source(self) -> str:
        return "none" if self.cloud_cover is None else "given"

    def labels_for(self, card: ModelCard) -> Labels:
        kind = ("index", "multi_hot", "map")[self._labels.ndim - 1]
        check_task(Labels(kind, None), card, f"labels (shape {self._labels.shape})")
        if kind == "multi_hot":
            k = len(self.class_names) if self.class_names else card.n_classes
            if self._labels.shape[1] != k:
                raise SarevalError(f"labels: {self._labels.shape[1]} columns for {k} classes")
        names = None if self.class_names is None else tuple(self.class_names)
        return Labels(kind, names, ignore_index=self.ignore_index)

    def sample_spec(self, sensor: str) -> tuple[tuple[int, ...], np.dtype]:
        a = self._arrays[sensor]
        return tuple(a.shape[1:]), a.dtype

    def sensor_array(self, sensor: str) -> np.ndarray:
        """The whole (N, C, H, W) numpy array of ``sensor`` as given (not copied)."""
        return self._arrays[sensor]

    def all_labels(self, labels: Labels) -> np.ndarray:
        return self._labels

    def band_means(self, sensors: Sequence[str]) -> dict[str, float]:
        return _band_means_of(self._arrays, self._bands, sensors)

    @contextlib.contextmanager
    def batches(
        self,
        start: int,
        stop: int,
        batch_size: int,
        *,
        sensors: Sequence[str],
        labels: Labels,
        queue_size: int = 2,
        pinned: bool = False,
    ) -> Iterator[Iterable[SourceBatch]]:
        def gen() -> Iterator[SourceBatch]:
            for a in range(start, stop, batch_size):
                b = min(a + batch_size, stop)
                ids = list(self.ids[a:b]) if self.ids is not None else [str(i) for i in range(a, b)]
                yield SourceBatch(
                    slice(a, b),
                    ids,
                    {s: self._arrays[s][a:b] for s in sensors},
                    self._labels[a:b],
                    self._cloud[a:b],
                    cloud_mask=None if self._cloud_mask is None else self._cloud_mask[a:b],
                )

        yield gen()

    def digest(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self._arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self._arrays[k]).tobytes())
        h.update(np.ascontiguousarray(self._labels).tobytes())
        return h.hexdigest()

    def provenance(self) -> dict[str, Any]:
        return {
            "store": {
                "path": self.description,
                "content_digest": self.digest(),
                "dataset": "arrays",
                "split": "",
            },
            "subset": {"name": "all", "optical": "s2", "size": len(self)},
        }


# --- torch datasets ----------------------------------------------------------------------------
def split_by_band(
    image: np.ndarray, bands: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """A stacked (B, C, H, W) image -> sensors by band name: S1 bands -> ``s1``, S2 bands ->
    ``s2``, any other band -> a sensor named after it in lower case (e.g. ``DEM`` -> ``dem``)."""
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(bands):
        sensor = "s1" if b in S1_BANDS else "s2" if b in S2_BANDS else b.lower()
        groups.setdefault(sensor, []).append(i)
    arrays = {s: image[:, idx] for s, idx in groups.items()}
    names = {s: tuple(bands[i] for i in idx) for s, idx in groups.items()}
    return arrays, names


def layout_problem(shape: Sequence[int], channels: int, what: str) -> str:
    """Why a batched array of ``shape`` is not (B, C, H, W) with C = ``channels`` (one line),
    naming a channels-last (B, H, W, C) layout when it looks like one."""
    if len(shape) == 4 and shape[-1] == channels and shape[1] != channels:
        return (
            f"{what}: shape {tuple(shape)} looks channels-last (N, H, W, C); expected "
            f"(N, C, H, W) with C = {channels}: permute it (np.moveaxis(x, -1, 1))"
        )
    return f"{what}: shape {tuple(shape)}, expected (N, {channels}, H, W)"


def refuse_channels_last(sensor: str, shape: Sequence[int], names: Sequence[str] | None) -> None:
    """Raise when a (N, C, H, W) array of ``sensor`` looks channels-last: its last axis, not its
    second, has the channel count (the band names given, else the sensor's standard counts;
    without either, a square H x W in axes 1-2)."""
    if len(shape) != 4:
        return
    if names is not None:
        counts: tuple[int, ...] = (len(names),)
    else:
        counts = {"s1": (len(S1_BANDS),), "s2": (len(S2_BANDS), len(BIGEARTHNET_S2_BANDS))}.get(
            sensor, ()
        )
    last = shape[3] in counts and shape[1] not in counts
    if last or (not counts and shape[1] == shape[2] != shape[3]):
        raise SarevalError(layout_problem(shape, shape[3], f"data[{sensor!r}]"))


class TorchData:
    """A torch ``Dataset`` of per-sample dicts, or an iterable of batched dicts.

    A dataset whose conventions sareval knows (:func:`sareval.adapters.conventions_for`:
    torchgeo's ``SEN12MS``, ``BigEarthNet``, ``BigEarthNetV2``) needs no mapping: its item keys,
    band names in channel order (torchgeo's BigEarthNet S1 is VH, VV), label kind and class
    names in label order come from the adapter, and bands and classes are matched to the model
    card by name; arguments that contradict the adapter are refused. Any other dataset names
    what its items hold: ``keys`` (sensor -> item key; default ``s1``/``s2`` or
    ``image_s1``/``image_s2``, whichever the first item has) with ``bands`` (sensor -> band
    names in channel order), or ``image="image"`` with ``bands`` the stacked image's band names
    (split by band name, :func:`split_by_band`); ``class_names``: the labels' classes in label
    order ((N,) index or (N, K) multi-hot). ``label_key`` (default: the first of
    ``label``/``labels``/``y`` present), optional ``cloud_cover_key`` and ``id_key``. A
    map-style dataset (``__len__`` + ``__getitem__``) can be sharded and bootstrapped; a plain
    iterable of batches is read once, in order.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        keys: Mapping[str, str] | None = None,
        image: str | None = None,
        bands: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        label_key: str | None = None,
        cloud_cover_key: str | None = None,
        id_key: str | None = None,
        class_names: Sequence[str] | None = None,
        description: str | None = None,
        ignore_index: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.ignore_index = ignore_index
        self.sized = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
        if not self.sized and not isinstance(dataset, Iterable):
            raise SarevalError(
                f"data: expected a torch Dataset or an iterable of batches, got "
                f"{type(dataset).__name__}"
            )
        self.conventions = conventions_for(dataset)
        listed = bands is not None and not isinstance(bands, (str, Mapping))
        if image is not None and not listed and self.conventions is None:
            raise SarevalError("bands: with image=..., give the image's band names as a list")
        self.keys, self.image, self.band_arg = keys, image, bands
        self.label_key, self.cloud_cover_key, self.id_key = label_key, cloud_cover_key, id_key
        self.class_names = class_names
        self.description = description or f"({type(dataset).__name__})"
        if self.conventions is not None:
            self._adopt(self.conventions)
        self._mask_want = "index"  # what an igbp_mask label becomes (set by labels_for)
        self._found_keys: dict[str, str] = {}  # sensor -> item key (keys or the default)
        self._altered_used: dict[str, str] = {}  # card band -> how the dataset altered it
        first = self._first()
        arrays, y, _, _ = self._parse(first, batched=not self.sized)
        self._bands = self._band_names(arrays)
        self._spec = {s: (tuple(a.shape[1:]), a.dtype) for s, a in arrays.items()}
        self._check_size()
        self._label_ndim = y.ndim
        if self.class_names is None:
            per = "(K,) multi-hot" if y.ndim == 2 else "a class index"
            raise SarevalError(
                f"class_names: the dataset's labels ({per} per sample) need their class names in "
                "label order: TorchData(ds, class_names=[...])"
            )
        self._n = len(dataset) if self.sized else None
        self._labels_cache: np.ndarray | None = None

    def _adopt(self, conv: DatasetConventions) -> None:
        """Take keys, bands, label key and class names from the adapter; refuse arguments that
        say otherwise."""
        name = f"{conv.source} ({', '.join(f'{k}={v!r}' for k, v in conv.attributes.items())})"
        said = self._images_given()
        if said is not None and said != conv.images:
            have = "; ".join(f"{k}: {', '.join(v)}" for k, v in conv.images.items())
            raise SarevalError(
                f"bands: {name} yields {have}, not what keys/image/bands say; leave them out "
                "(sareval maps the bands by name)"
            )
        if self.class_names is not None and tuple(self.class_names) != conv.class_names:
            raise SarevalError(
                f"class_names: {name} has its own class order ({', '.join(conv.class_names[:3])}, "
                "...); leave class_names out (sareval maps the classes by name)"
            )
        if self.label_key is not None and self.label_key != conv.label_key:
            raise SarevalError(
                f"label_key: {name} has its labels in {conv.label_key!r}; leave label_key out"
            )
        self.keys, self.image = None, None
        self.band_arg = None
        self.label_key = conv.label_key
        self.class_names = conv.class_names

    def _images_given(self) -> dict[str, tuple[str, ...]] | None:
        """item key -> band names as the arguments say (None: they say nothing)."""
        if isinstance(self.band_arg, str) or (self.image is not None and self.band_arg is None):
            return {self.image or "image": (str(self.band_arg),)}  # never a known layout
        if self.image is not None:
            assert self.band_arg is not None and not isinstance(self.band_arg, Mapping)
            return {self.image: tuple(self.band_arg)}
        if self.band_arg is None and self.keys is None:
            return None
        given = dict(self.band_arg) if isinstance(self.band_arg, Mapping) else {}
        keys = dict(self.keys or {s: s for s in given})
        return {keys.get(s, s): tuple(v) for s, v in given.items()}

    def _check_size(self) -> None:
        conv = self.conventions
        if conv is None or conv.image_size is None or self.image_size == conv.image_size:
            return
        h, w = self.image_size
        raise SarevalError(
            f"data: {conv.source} items are {h}x{w}, but its conventions say "
            f"{conv.image_size[0]}x{conv.image_size[1]} (another torchgeo version?)"
        )

    def _first(self) -> Any:
        if self.sized:
            if len(self.dataset) == 0:
                raise SarevalError("data: the dataset is empty")
            return self.dataset[0]
        for item in self.dataset:
            return item
        raise SarevalError("data: the iterable yields no batches")

    def _sensor_keys(self, item: Mapping[str, Any]) -> dict[str, str]:
        if self.keys is not None:
            missing = [k for k in self.keys.values() if k not in item]
            if missing:
                raise SarevalError(
                    f"keys: {', '.join(repr(k) for k in missing)} not in the dataset's items "
                    f"(they have {', '.join(map(repr, item))})"
                )
            return dict(self.keys)
        for candidate in ({"s1": "s1", "s2": "s2"}, {"s1": "image_s1", "s2": "image_s2"}):
            found = {s: k for s, k in candidate.items() if k in item}
            if found:
                return found
        raise SarevalError(
            "keys: no s1/s2 or image_s1/image_s2 in the dataset's items (they have "
            f"{', '.join(map(repr, item))}); pass keys={{'s1': ..., 's2': ...}} or image=..., "
            "bands=..."
        )

    def _parse(
        self, item: Any, *, batched: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, list[str] | None]:
        if not isinstance(item, Mapping):
            raise SarevalError(f"data: items must be dicts of tensors, got {type(item).__name__}")

        def get(key: str, what: str = "key") -> np.ndarray:
            if key not in item:
                raise SarevalError(
                    f"{what}: {key!r} not in the dataset's items "
                    f"(they have {', '.join(map(repr, item))})"
                )
            a = _to_numpy(item[key], f"data item[{key!r}]")
            return a if batched else a[None]

        def stacked(key: str, names: Sequence[str]) -> dict[str, np.ndarray]:
            img = get(key, "image" if self.conventions is None else "data")
            if img.ndim != 4 or img.shape[1] != len(names):
                what = f"the dataset's {key!r}"
                raise SarevalError(f"bands: {layout_problem(img.shape, len(names), what)}")
            return split_by_band(img, list(names))[0]

        if self.conventions is not None:
            arrays = {}
            for key, names in self.conventions.images.items():
                arrays.update(stacked(key, names))
        elif self.image is not None:
            assert self.band_arg is not None and not isinstance(self.band_arg, (str, Mapping))
            arrays = stacked(self.image, list(self.band_arg))
        else:
            self._found_keys = self._sensor_keys(item)
            arrays = {s: get(k) for s, k in self._found_keys.items()}
        label_key = self.label_key or next((k for k in LABEL_KEYS if k in item), None)
        if label_key is None or label_key not in item:
            raise SarevalError(
                f"label_key: no label ({label_key or ' / '.join(LABEL_KEYS)}) in the dataset's "
                f"items (they have {', '.join(map(repr, item))})"
            )
        y = get(label_key)
        cloud = get(self.cloud_cover_key).astype(np.float32) if self.cloud_cover_key else None
        ids = None
        if self.id_key is not None:
            raw = item[self.id_key]
            ids = [str(v) for v in raw] if batched else [str(raw)]
        return arrays, y, cloud, ids

    def _band_names(self, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[str, ...]]:
        if self.conventions is not None:
            out: dict[str, tuple[str, ...]] = {}
            for names in self.conventions.images.values():
                out.update(split_by_band(np.zeros((0, len(names), 1, 1)), list(names))[1])
            return out
        if self.image is not None:
            assert self.band_arg is not None and not isinstance(self.band_arg, (str, Mapping))
            return split_by_band(np.zeros((0, len(self.band_arg), 1, 1)), list(self.band_arg))[1]
        given = dict(self.band_arg or {}) if isinstance(self.band_arg, Mapping) else {}
        keys = self._found_keys
        out = {}
        for s, a in arrays.items():
            key = keys.get(s, s)
            if s not in given:
                raise SarevalError(
                    f"bands: give the band names of the dataset's {key!r} ({a.shape[1]} "
                    f"channels) in channel order: TorchData(ds, bands={{{s!r}: [...]}}) "
                    "(or image=..., bands=[...] for a stacked image)"
                )
            names = tuple(given[s])
            if a.ndim != 4 or len(names) != a.shape[1]:
                what = f"the dataset's {key!r}"
                problem = layout_problem(a.shape, len(names), what)
                raise SarevalError(f"bands[{s!r}]: {len(names)} names, but {problem}")
            out[s] = names
        return out

    @property
    def bands(self) -> dict[str, tuple[str, ...]]:
        return self._bands

    @property
    def image_size(self) -> tuple[int, int]:
        shape = next(iter(self._spec.values()))[0]
        return int(shape[1]), int(shape[2])

    @property
    def cloud_cover_source(self) -> str:
        return "none" if self.cloud_cover_key is None else "given"

    def __len__(self) -> int:
        if self._n is None:
            raise SarevalError(
                "data: this iterable has no length; shards, torchrun, bootstrap, the majority "
                "empty coalition and saved predictions need a map-style Dataset"
            )
        return self._n

    def labels_for(self, card: ModelCard) -> Labels:
        self._check_card_bands(card)
        if card.is_segmentation:
            return self._map_labels()
        want = "index" if card.task == "single-label" else "multi_hot"
        conv = self.conventions
        if conv is not None and conv.label_kind == "igbp_mask":
            self._mask_want = want
            return Labels(want, conv.class_names)
        kind = "index" if self._label_ndim == 1 else "multi_hot"
        if kind != want:
            raise SarevalError(
                f"label_key: the model is {card.task}; the dataset's labels have "
                f"{self._label_ndim - (0 if self.sized else 1)} dimension(s) per sample"
            )
        return Labels(kind, None if self.class_names is None else tuple(self.class_names))

    def _map_labels(self) -> Labels:
        """Segmentation labels: torchgeo SEN12MS's IGBP ``mask`` as the 10-class map (codes
        outside 1..17: no class, 255), or a dataset's own (H, W) label maps."""
        conv = self.conventions
        if conv is not None:
            if conv.map_key is None:
                raise SarevalError(
                    f"data: {conv.source} has no per-pixel labels for a segmentation model"
                )
            self._mask_want = "map"
            self.label_key = conv.map_key
            return Labels("map", conv.class_names, ignore_index=NO_CLASS)
        if self._label_ndim != (2 if self.sized else 3):
            raise SarevalError(
                "label_key: the model is segmentation; the dataset's labels must be (H, W) "
                f"label maps, not {self._label_ndim - (0 if self.sized else 1)}-D per sample"
            )
        names = None if self.class_names is None else tuple(self.class_names)
        return Labels("map", names, ignore_index=self.ignore_index)

    def _check_card_bands(self, card: ModelCard) -> None:
        """A card band missing from the data is refused naming the likely typo; bands a known
        dataset read altered (resampled, rounded) give a warning."""
        have = [b for names in self._bands.values() for b in names]
        for band in card.channels:
            if band in have:
                continue
            near = close_band(band, have)
            if near is not None:
                raise SarevalError(
                    f"bands: the dataset's band {near!r} is not a band name the model card "
                    f"knows; did you mean {band}?"
                )
        conv = self.conventions
        altered = {
            b: conv.altered[b] for b in card.channels if conv and b in conv.altered and b in have
        }
        self._altered_used = altered
        if conv is not None and altered:
            reasons = "; ".join(
                f"{', '.join(b for b in altered if altered[b] == r)}: {r}"
                for r in dict.fromkeys(altered.values())
            )
            warnings.warn(
                f"data: {conv.source} does not give the files' values of the bands this model "
                f"uses ({reasons}); results can differ from a store made by sareval preprocess",
                stacklevel=3,
            )

    def sample_spec(self, sensor: str) -> tuple[tuple[int, ...], np.dtype]:
        return self._spec[sensor]

    def _labels(self, y: np.ndarray, at: int) -> np.ndarray:
        """The labels of a batch as the source gives them (an IGBP mask -> scene labels)."""
        conv = self.conventions
        if conv is not None and self._mask_want == "map":  # a known dataset's per-pixel map
            m = np.asarray(y)
            m = m[:, 0] if m.ndim == 4 else m
            if conv.map_kind == "igbp":
                return igbp10_map(m)
            k = len(conv.class_names)
            return np.where((m >= 0) & (m < k), m, NO_CLASS).astype(np.uint8)
        if conv is None or conv.label_kind != "igbp_mask":
            return y
        f10 = igbp10_fractions(
            mask_labels(y, f"data: {conv.label_key!r} of the batch from sample {at}")
        )
        if self._mask_want == "index":
            return single_label(f10)
        return multi_hot(f10, IGBP_MULTI_HOT_THRESHOLD)

    def _iter(
        self, start: int, stop: int, batch_size: int, sensors: Sequence[str]
    ) -> Iterator[SourceBatch]:
        if not self.sized:
            at = 0
            for item in self.dataset:
                arrays, y, cloud, ids = self._parse(item, batched=True)
                b = len(y)
                yield self._batch(at, b, arrays, y, cloud, ids, sensors)
                at += b
            return
        for a in range(start, stop, batch_size):
            items = [
                self._parse(self.dataset[i], batched=False)
                for i in range(a, min(a + batch_size, stop))
            ]
            arrays = {s: np.concatenate([it[0][s] for it in items]) for s in sensors}
            y = np.concatenate([it[1] for it in items])
            cloud = None if items[0][2] is None else np.concatenate([it[2] for it in items])  # type: ignore[misc]
            ids = None if items[0][3] is None else [i for it in items for i in it[3]]  # type: ignore[union-attr]
            yield self._batch(a, len(items), arrays, y, cloud, ids, sensors)

    def _batch(
        self,
        at: int,
        b: int,
        arrays: Mapping[str, np.ndarray],
        y: np.ndarray,
        cloud: np.ndarray | None,
        ids: list[str] | None,
        sensors: Sequence[str],
    ) -> SourceBatch:
        for s in sensors:
            if s not in arrays or arrays[s].shape[1:] != self._spec[s][0]:
                got = "missing" if s not in arrays else str(arrays[s].shape[1:])
                raise SarevalError(
                    f"data: sample {at}: sensor {s!r} is {got}, expected {self._spec[s][0]}"
                )
        return SourceBatch(
            slice(at, at + b),
            ids or [str(i) for i in range(at, at + b)],
            {s: np.ascontiguousarray(arrays[s]) for s in sensors},
            self._labels(y, at),
            np.full(b, np.nan, np.float32) if cloud is None else cloud,
        )

    @contextlib.contextmanager
    def batches(
        self,
        start: int,
        stop: int,
        batch_size: int,
        *,
        sensors: Sequence[str],
        labels: Labels,
        queue_size: int = 2,
        pinned: bool = False,
    ) -> Iterator[Iterable[SourceBatch]]:
        yield self._iter(start, stop, batch_size, sensors)

    def all_labels(self, labels: Labels) -> np.ndarray:
        if self._labels_cache is None:
            n = len(self)
            self._labels_cache = np.concatenate(
                [self._labels(self._parse(self.dataset[i], batched=False)[1], i) for i in range(n)]
            )
        return self._labels_cache

    def band_means(self, sensors: Sequence[str]) -> dict[str, float]:
        total: dict[str, np.ndarray] = {}
        count: dict[str, np.ndarray] = {}
        for batch in self._iter(0, len(self) if self.sized else 0, 64, sensors):
            for s in sensors:
                x = batch.arrays[s].astype(np.float64)
                fin = np.isfinite(x)
                total[s] = total.get(s, 0) + np.where(fin, x, 0).sum(axis=(0, 2, 3))
                count[s] = count.get(s, 0) + fin.sum(axis=(0, 2, 3))
        out: dict[str, float] = {}
        for s in sensors:
            out.update(
                zip(
                    self._bands[s],
                    (float(v) for v in total[s] / np.maximum(count[s], 1)),
                    strict=True,
                )
            )
        return out

    def provenance(self) -> dict[str, Any]:
        conv = self.conventions
        return {
            "store": {
                "path": self.description,
                "content_digest": "",
                "dataset": type(self.dataset).__name__,
                "split": str(getattr(self.dataset, "split", "")),
            },
            "subset": {"name": "all", "optical": "s2", "size": self._n or 0},
            "adapter": None
            if conv is None
            else {**conv.to_record(), "altered_bands_used": dict(self._altered_used)},
        }


# --- what evaluate() accepts ---------------------------------------------------------------------
def as_source(data: Any, **kwargs: Any) -> Any:
    """``data`` as a :class:`Source`: a source as is; ``(path, subset)`` or a store subset;
    a dict ``{sensor: array, ..., "label": y}`` (extra keys ``bands``, ``class_names``,
    ``cloud_cover``, ``ids`` may be passed as keyword arguments); a torch Dataset / iterable."""
    if isinstance(data, (StoreSubset, ArrayData, TorchData)):
        if kwargs:
            raise SarevalError(
                f"data: {', '.join(kwargs)} apply to arrays or datasets given "
                "directly, not to a prepared source"
            )
        return data
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], (str, Path)):
        if not isinstance(data[1], str):
            raise SarevalError("data: expected (store path, subset name)")
        return StoreSubset(Store(data[0]), data[1])
    if isinstance(data, (str, Path)):
        raise SarevalError(
            f"data: {str(data)!r} is a path; name the subset too: (path, 'clear') or "
            "sareval.open_store(path).subset('clear')"
        )
    if isinstance(data, Mapping):
        d = dict(data)
        label_key = next((k for k in LABEL_KEYS if k in d), None)
        if label_key is None:
            raise SarevalError(f"data: the dict has no labels (one of {', '.join(LABEL_KEYS)})")
        y = d.pop(label_key)
        for key in ("bands", "class_names", "cloud_cover", "ids"):
            if key in d:
                kwargs.setdefault(key, d.pop(key))
        return ArrayData(d, y, **kwargs)
    if hasattr(data, "__getitem__") or isinstance(data, Iterable):
        return TorchData(data, **kwargs)
    raise SarevalError(
        f"data: expected a store subset, (path, subset), a dict of arrays or a torch Dataset, "
        f"got {type(data).__name__}"
    )
