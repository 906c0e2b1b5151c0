"""Segmentation relevance maps: per-pixel Shapley values, their means, and the maps file.

For every labelled pixel x of every image and every coalition S (the empty one: the
all-baseline input's output) two per-pixel games:

- ``true_probability``: v_S(x) = p_S(y_x | x), the softmax probability (or the model's own
  probability for ``output: probabilities``) of the pixel's true class;
- ``correct``: v_S(x) = 1[argmax_k out_S(x) = y_x].

phi_i(x) is the Shapley value of player i in v(x) (Z = 1), so sum_i phi_i(x) = v_M(x) -
v_empty(x) at every pixel (efficiency; :func:`pixel_relevance`). Ignored pixels get NaN.
Means (:class:`PixelRelevanceMeans`) average phi_i over the labelled pixels of each true class,
of each pixel state (clear / cloudy / unknown) and over all; they are the results section
``pixel_relevance``::

    {"true_probability": {"all": {player: mean}, "by_class": {class: {player: mean}},
                          "by_pixels": {"clear": {player: mean}, ...},
                          "n_pixels": {"all": n, "by_class": {..}, "by_pixels": {..}}},
     "correct": {...}}

The maps file (``save_predictions`` of a segmentation model, :class:`SegmentationMapsWriter`),
n images at the decision resolution h x w, J coalitions (empty first), M players::

    /ids (n,) str, /rows (n,) int64, /positions (n,) int64, /cloud_cover (n,) float32
    /labels      (n, h, w) uint16   true classes in model order (the card's ignore_index kept)
    /cloud_mask  (n, h, w) uint8    1 cloudy, 0 clear, 255 unknown
    /decisions   (J, n, h, w) uint16 the decisions that were counted
    /relevance/true_probability, /relevance/correct   (n, M, h, w) float32 (per_sample only)
    attrs: format=MAPS_FORMAT, coalitions, players, class_names, task="segmentation", ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sareval.errors import InputFileError
from sareval.evaluator.coalitions import check_players, ordered_coalitions
from sareval.evaluator.pixels import PIXEL_STATES, UNKNOWN_MASK
from sareval.evaluator.predictions import PredictionsWriter
from sareval.evaluator.shapley import shapley_array
from sareval.store import STR_DTYPE
from sareval.write_errors import discard_on_write_error, ensure_free

MAPS_FORMAT = "sareval-segmentation-maps"
QUANTITIES: tuple[str, ...] = ("true_probability", "correct")


def softmax(out: np.ndarray, axis: int) -> np.ndarray:
    wide = out.astype(np.float64)
    e = np.exp(wide - wide.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]


def pixel_values(
    outputs: np.ndarray, decisions: np.ndarray, labels: np.ndarray, output_kind: str
) -> dict[str, np.ndarray]:
    """Per-pixel games (J, B, h, w) float64 of every row set: ``outputs`` (J, B, K, h, w)
    (NaN rows: the majority-class predictor, whose probability is its 0/1 decision),
    ``decisions`` (J, B, h, w), ``labels`` (B, h, w) in [0, K) (clipped: ignored pixels are
    masked by the caller)."""
    k = outputs.shape[2]
    y = np.clip(labels.astype(np.int64), 0, k - 1)
    prob = outputs.astype(np.float64) if output_kind == "probabilities" else softmax(outputs, 2)
    true_p = np.take_along_axis(prob, y[None, :, None], axis=2)[:, :, 0]
    correct = (decisions == y[None]).astype(np.float64)
    true_p = np.where(np.isnan(true_p), correct, true_p)
    return {"true_probability": true_p, "correct": correct}


def pixel_relevance(
    values: np.ndarray, row_coalitions: Sequence[frozenset[str]], players: Sequence[str]
) -> np.ndarray:
    """Shapley values (B, M, h, w) of per-pixel games ``values`` (J, B, h, w) whose rows are
    ``row_coalitions`` (every coalition of ``players``, any order)."""
    players = check_players(players)
    position = {c: j for j, c in enumerate(row_coalitions)}
    ordered = values[[position[c] for c in ordered_coalitions(players)]]  # (2^M, B, h, w)
    phi = shapley_array(np.moveaxis(ordered, 0, -1), players)  # (B, h, w, M)
    return np.moveaxis(phi, -1, 1)


class PixelRelevanceMeans:
    """Sums of per-pixel Shapley values per (quantity, player) over all labelled pixels, each
    true class and each pixel state; :meth:`section` is the ``pixel_relevance`` record."""

    def __init__(self, players: Sequence[str], class_names: Sequence[str]) -> None:
        self.players, self.class_names = tuple(players), tuple(class_names)
        m, k = len(players), len(class_names)
        self.by_class = {q: np.zeros((k, m)) for q in QUANTITIES}
        self.by_state = {q: np.zeros((len(PIXEL_STATES), m)) for q in QUANTITIES}
        self.n_class = np.zeros(k, np.int64)
        self.n_state = np.zeros(len(PIXEL_STATES), np.int64)

    def add(self, relevance: dict[str, np.ndarray], labels: np.ndarray, valid: np.ndarray,
            states: np.ndarray) -> None:  # fmt: skip
        """``relevance[q]`` (B, M, h, w), labels / valid / pixel states (B, h, w)."""
        k = len(self.class_names)
        y = labels[valid].astype(np.int64)
        s = states[valid].astype(np.int64)
        self.n_class += np.bincount(y, minlength=k)
        self.n_state += np.bincount(s, minlength=len(PIXEL_STATES))
        for q, phi in relevance.items():
            per_pixel = np.moveaxis(phi, 1, -1)[valid]  # (P, M)
            for i in range(per_pixel.shape[1]):
                self.by_class[q][:, i] += np.bincount(y, per_pixel[:, i], minlength=k)
                self.by_state[q][:, i] += np.bincount(s, per_pixel[:, i], minlength=3)

    def merge(self, other: PixelRelevanceMeans) -> None:
        for q in QUANTITIES:
            self.by_class[q] += other.by_class[q]
            self.by_state[q] += other.by_state[q]
        self.n_class += other.n_class
        self.n_state += other.n_state

    def section(self) -> dict[str, Any]:
        def means(sums: np.ndarray, n: np.ndarray) -> list[dict[str, float | None]]:
            return [
                {p: (float(row[i] / c) if c else None) for i, p in enumerate(self.players)}
                for row, c in zip(sums, n, strict=True)
            ]

        out: dict[str, Any] = {}
        total = int(self.n_class.sum())
        for q in QUANTITIES:
            overall = self.by_class[q].sum(axis=0)
            out[q] = {
                "all": {
                    p: (float(overall[i] / total) if total else None)
                    for i, p in enumerate(self.players)
                },
                "by_class": dict(
                    zip(self.class_names, means(self.by_class[q], self.n_class), strict=True)
                ),
                "by_pixels": dict(
                    zip(PIXEL_STATES, means(self.by_state[q], self.n_state), strict=True)
                ),
                "n_pixels": {
                    "all": total,
                    "by_class": dict(zip(self.class_names, self.n_class.tolist(), strict=True)),
                    "by_pixels": dict(zip(PIXEL_STATES, self.n_state.tolist(), strict=True)),
                },
            }
        return out


class SegmentationMapsWriter(PredictionsWriter):
    """Streams label maps, decisions and relevance maps (module docstring) into an HDF5 file;
    written to a temporary name and renamed by :meth:`finish` like every predictions file."""

    @discard_on_write_error
    def __init__(
        self,
        out: str | Path,
        *,
        n: int,
        first_position: int,
        coalitions: list[str],
        players: Sequence[str],
        size: tuple[int, int],
        relevance: bool,
        attrs: dict[str, Any],
        overwrite: bool = False,
        inputs: Sequence[str | Path] = (),
    ) -> None:
        self._open_output(out, overwrite, inputs, first_position)
        j, m, (h, w) = len(coalitions), len(players), size
        per_image = h * w * (2 + 1 + 2 * j + (8 * m if relevance else 0)) + 100
        ensure_free(self.tmp, n * per_image)
        f = self.file = h5py.File(self.tmp, "w")
        f.attrs["format"] = MAPS_FORMAT
        f.attrs["coalitions"] = json.dumps(coalitions)
        f.attrs["players"] = json.dumps(list(players))
        f.attrs["task"] = "segmentation"
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        f.create_dataset("ids", shape=(n,), dtype=STR_DTYPE)
        f.create_dataset("rows", shape=(n,), dtype=np.int64)
        f.create_dataset("positions", shape=(n,), dtype=np.int64)
        f.create_dataset("cloud_cover", shape=(n,), dtype=np.float32)
        self.shape = (n, j, m)
        self.relevance = relevance
        self.created = False

    def _create(self, h: int, w: int) -> None:
        """The map datasets, at the decision resolution (known from the first batch)."""
        (n, j, m), f, one = self.shape, self.file, (1, h, w)
        f.create_dataset("labels", shape=(n, h, w), dtype=np.uint16, chunks=one)
        f.create_dataset("cloud_mask", shape=(n, h, w), dtype=np.uint8, chunks=one)
        f.create_dataset("decisions", shape=(j, n, h, w), dtype=np.uint16, chunks=(j, 1, h, w))
        if self.relevance:
            for q in QUANTITIES:
                f.create_dataset(
                    f"relevance/{q}", shape=(n, m, h, w), dtype=np.float32, chunks=(1, m, h, w)
                )
        self.created = True

    @discard_on_write_error
    def write_maps(
        self,
        positions: slice,
        rows: np.ndarray,
        ids: list[str],
        cloud_cover: np.ndarray,
        labels: np.ndarray,
        cloud_mask: np.ndarray | None,
        decisions: np.ndarray,
        relevance: dict[str, np.ndarray] | None,
    ) -> None:
        """One batch at the decision resolution (see the module docstring for shapes)."""
        if not self.created:
            self._create(*labels.shape[-2:])
        sl = slice(positions.start - self.first, positions.stop - self.first)
        ensure_free(self.tmp, labels.nbytes * 2 + decisions.nbytes + 96 * len(ids))
        ids_ds, rows_ds, positions_ds, cover_ds, labels_ds, mask_ds, dec_ds = (
            self.file[name]
            for name in ("ids", "rows", "positions", "cloud_cover", "labels", "cloud_mask",
                         "decisions")
        )  # fmt: skip
        ids_ds[sl] = np.asarray(ids, dtype=object)
        rows_ds[sl] = rows
        positions_ds[sl] = np.arange(positions.start, positions.stop)
        cover_ds[sl] = cloud_cover
        labels_ds[sl] = labels
        mask_ds[sl] = UNKNOWN_MASK if cloud_mask is None else cloud_mask
        dec_ds[:, sl] = decisions
        for q, phi in (relevance or {}).items():
            ds = self.file[f"relevance/{q}"]
            ds[sl] = phi.astype(np.float32)


def read_maps(path: str | Path) -> dict[str, Any]:
    """A maps file's arrays and attributes (the report's reader); one-line errors naming it."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != MAPS_FORMAT:
                raise InputFileError(path, f"not a sareval segmentation maps file ({MAPS_FORMAT})")
            out: dict[str, Any] = {
                key: json.loads(f.attrs[key]) for key in ("coalitions", "players", "class_names")
            }
            for name in ("ids", "labels", "cloud_mask", "decisions"):
                out[name] = f[name][()]
            out["ids"] = [i.decode() if isinstance(i, bytes) else str(i) for i in out["ids"]]
            out["relevance"] = {q: f[f"relevance/{q}"][()] for q in QUANTITIES
                                if f"relevance/{q}" in f}  # fmt: skip
            out["ignore_index"] = f.attrs.get("ignore_index")
            return out
    except OSError as e:
        raise InputFileError(path, f"is not a readable HDF5 file ({e})") from None
