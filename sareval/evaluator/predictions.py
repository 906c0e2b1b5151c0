"""Per-sample, per-coalition model outputs (`save_predictions` FILE.h5), written as they come.

Layout (``n`` evaluated samples, ``J`` coalitions in results order, the empty one first)::

    /ids         (n,) utf-8 str       patch ids
    /rows        (n,) int64           store rows
    /positions   (n,) int64           positions within the subset
    /labels      (n,) int64 | (n, K) uint8   true labels in the model's class order
    /cloud_cover (n,) float32         cloud cover of the optical image read (NaN: unknown)
    /outputs     (J, D n, K) float32  model outputs (logits / probabilities as the card says);
                                      the empty coalition's single output repeated for every
                                      sample (NaN for the majority-class predictor)
    /decisions   (J, D n) int64 | (J, D n, K) uint8   the decisions that were counted
    /per_sample/<quantity> (n, M) float32, /detector/<name> (n,), /correct (n,) bool
                 with ``ShapeConfig.reporting.per_sample`` (:mod:`sareval.evaluator.in_pass`)
    attrs: format=PREDICTIONS_FORMAT, coalitions (JSON), players, class_names, task,
           model_sha256, store_content_digest, subset, baseline, empty[, draws]

``D`` (attribute ``draws``, absent = 1) is the number of rows per sample: 1, except under
marginal imputation (``absence="marginal"``: D donor draws per sample), where row ``d n + i``
of ``/outputs`` and ``/decisions`` is draw d of sample i (every draw counted as a sample; a
comparison resamples samples with all their draws: :attr:`Predictions.clusters`). The
per-sample datasets (ids, rows, positions, labels, cloud_cover) keep one row per sample.

Written (:class:`PredictionsWriter`) to a temporary name and renamed when the run completes
(nothing on Ctrl-C or error; a full disk removes the temporary file and raises
:class:`~sareval.write_errors.OutputWriteError`); read and checked by :func:`read_predictions`
(the one reader: comparisons and the report's detection figures use it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sareval.atomic import (
    check_not_input,
    check_output,
    deliver,
    discard_temp,
    is_stream,
    temp_for,
)
from sareval.choices import TASKS
from sareval.errors import InputFileError
from sareval.evaluator.coalitions import EMPTY_NAME, SEPARATOR
from sareval.store import STR_DTYPE
from sareval.write_errors import discard_h5, discard_on_write_error, ensure_free

#: the ``format`` attribute that marks a predictions file
PREDICTIONS_FORMAT = "sareval-predictions"
#: the datasets every predictions file holds (and :func:`read_predictions` checks)
REQUIRED_DATASETS = ("ids", "labels", "outputs", "decisions")


class PredictionsWriter:
    """Streams outputs into an HDF5 file (see module docstring); :meth:`finish` renames it."""

    @discard_on_write_error
    def __init__(
        self,
        out: str | Path,
        *,
        n: int,
        first_position: int,
        coalitions: list[str],
        n_classes: int,
        task: str,
        attrs: dict[str, Any],
        overwrite: bool = False,
        inputs: Sequence[str | Path] = (),
        draws: int = 1,
    ) -> None:
        self._open_output(out, overwrite, inputs, first_position)
        j, k = len(coalitions), n_classes
        single = task == "single-label"
        self.n, self.draws = n, draws
        rows = draws * n  # outputs and decisions: row d n + i = draw d of sample i
        ensure_free(self.tmp, rows * (j * k * 4 + (j + 1) * (8 if single else k)) + n * 80)
        f = self.file = h5py.File(self.tmp, "w")
        f.attrs["format"] = PREDICTIONS_FORMAT
        f.attrs["coalitions"] = json.dumps(coalitions)
        f.attrs["task"] = task
        if draws != 1:  # files without draws stay as they were
            f.attrs["draws"] = draws
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        chunk = max(1, min(rows, 1024))
        f.create_dataset("ids", shape=(n,), dtype=STR_DTYPE)
        f.create_dataset("rows", shape=(n,), dtype=np.int64)
        f.create_dataset("positions", shape=(n,), dtype=np.int64)
        f.create_dataset("cloud_cover", shape=(n,), dtype=np.float32)
        f.create_dataset(
            "labels", shape=(n,) if single else (n, k), dtype=np.int64 if single else np.uint8
        )
        f.create_dataset("outputs", shape=(j, rows, k), dtype=np.float32, chunks=(j, chunk, k))
        f.create_dataset(
            "decisions",
            shape=(j, rows) if single else (j, rows, k),
            dtype=np.int64 if single else np.uint8,
            chunks=(j, chunk) if single else (j, chunk, k),
        )

    def _open_output(self, out: str | Path, overwrite: bool, inputs: Sequence[str | Path],
                     first_position: int) -> None:  # fmt: skip
        """The vetted output path and its temporary file (every predictions-like writer)."""
        check_not_input("save_predictions", Path(out), inputs)  # the model, the store
        self.out = check_output(out, overwrite)
        if not is_stream(self.out):  # a device or FIFO: its bytes are copied in at the end
            self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_for(self.out, self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp"))
        self.first = first_position

    @discard_on_write_error
    def write(
        self,
        positions: slice,
        rows: np.ndarray,
        ids: list[str],
        labels: np.ndarray,
        outputs: np.ndarray,
        decisions: np.ndarray,
        cloud_cover: np.ndarray | None = None,
    ) -> None:
        """One batch: ``outputs`` (J, D B, K) and ``decisions`` (J, D B[, K]) in coalition
        order (row d B + b: draw d of sample b), ``cloud_cover`` (B,) (None: unknown, NaN)."""
        ensure_free(self.tmp, outputs.nbytes + decisions.nbytes + labels.nbytes + 96 * len(ids))
        sl = slice(positions.start - self.first, positions.stop - self.first)
        b = sl.stop - sl.start
        if outputs.shape[1] != self.draws * b or decisions.shape[1] != self.draws * b:
            raise ValueError(
                f"save_predictions: a batch of {b} samples with {self.draws} draws each has "
                f"{outputs.shape[1]} output and {decisions.shape[1]} decision rows"
            )
        # each dataset is held in a local while written (a failure: see discard_h5)
        ids_ds, rows_ds, positions_ds, labels_ds, outputs_ds, decisions_ds, cover_ds = (
            self.file[name]
            for name in ("ids", "rows", "positions", "labels", "outputs", "decisions",
                         "cloud_cover")
        )  # fmt: skip
        ids_ds[sl] = np.asarray(ids, dtype=object)
        rows_ds[sl] = rows
        positions_ds[sl] = np.arange(positions.start, positions.stop)
        labels_ds[sl] = labels
        for d in range(self.draws):  # the batch's draw d -> rows d n + sl of the file
            rows_d = slice(d * self.n + sl.start, d * self.n + sl.stop)
            outputs_ds[:, rows_d] = outputs[:, d * b : (d + 1) * b]
            decisions_ds[:, rows_d] = decisions[:, d * b : (d + 1) * b]
        cover_ds[sl] = np.nan if cloud_cover is None else cloud_cover

    @discard_on_write_error
    def write_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Whole-run arrays (n, ...) by dataset name (e.g. ``per_sample/prob_true``)."""
        ensure_free(self.tmp, sum(np.asarray(v).nbytes for v in arrays.values()))
        for name, value in arrays.items():
            ds = self.file.create_dataset(name, data=value)  # a local: see discard_h5
            ds.flush()

    @discard_on_write_error
    def finish(self) -> Path:
        """Close the file and rename it to the output path."""
        self.file.flush()  # a full disk fails here, where it is handled, not inside close()
        self.file.close()
        deliver(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        """Close and delete the temporary file (the output is untouched)."""
        self.discard()

    def discard(self, error: BaseException | None = None) -> None:
        """Close and delete the temporary file, whatever its state (``error``: the failure)."""
        if hasattr(self, "tmp"):
            discard_h5(getattr(self, "file", None), self.tmp, error)
            discard_temp(self.tmp)


@dataclass(frozen=True)
class Predictions:
    """A predictions file, read and checked by :func:`read_predictions`."""

    path: Path
    ids: np.ndarray
    labels: np.ndarray
    #: coalition name -> decisions (N,) or (N, K), in the file's coalition order
    decisions: dict[str, np.ndarray]
    players: tuple[str, ...]
    task: str
    #: the model's classes in output order
    class_names: tuple[str, ...]
    #: the root attributes, JSON values decoded (``subset``, ``baseline``, ``coalitions``, ...)
    attrs: dict[str, Any]
    #: ``/detector/<name>`` scores (N,) float64 (empty: the run had no ``per_sample``)
    detectors: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``/correct`` (N,) bool: the full coalition's decision is right (None: not written)
    correct: np.ndarray | None = None
    #: rows per sample D (marginal imputation's donor draws; 1 otherwise): ``decisions`` hold
    #: D N rows, row d N + i = draw d of sample i
    draws: int = 1

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def row_labels(self) -> np.ndarray:
        """The label of every decision row: ``labels`` repeated D times, (D N,) or (D N, K)."""
        return np.concatenate([self.labels] * self.draws)

    @property
    def clusters(self) -> np.ndarray | None:
        """The sample of every decision row, (D N,) = ``tile(arange(N), D)`` (None for D = 1):
        the ``clusters`` of :func:`~sareval.evaluator.bootstrap.bootstrap_values`."""
        if self.draws == 1:
            return None
        return np.tile(np.arange(len(self.ids)), self.draws)

    @property
    def subset(self) -> str:
        """The evaluated store subset's name (``?`` where the file does not say)."""
        return str(self.attrs.get("subset", "?"))

    def predictions(self) -> dict[frozenset[str], np.ndarray]:
        """Coalition (a frozenset of players) -> decisions, the input of the analysis."""
        return {
            frozenset() if name == EMPTY_NAME else frozenset(name.split(SEPARATOR)): d
            for name, d in self.decisions.items()
        }


def _attr(value: Any) -> Any:
    """An HDF5 attribute as written: bytes decoded, JSON lists and objects parsed."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def is_predictions_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file marked as a predictions file (False for another HDF5
    file, e.g. a store); :class:`InputFileError` for a file that is not readable HDF5."""
    try:
        with h5py.File(path, "r") as f:
            return bool(_attr(f.attrs.get("format")) == PREDICTIONS_FORMAT)
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise InputFileError(path, f"not a readable predictions file ({e})") from None


def read_predictions(path: str | Path) -> Predictions:
    """A predictions file (layout: module docstring), checked: every dataset of
    :data:`REQUIRED_DATASETS` present with consistent shapes, finite outputs (the empty
    coalition's may be NaN only for the majority-class predictor), labels and decisions in
    range, detector scores finite and one per sample; otherwise :class:`InputFileError` naming
    the file and the dataset."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if attrs.get("format") != PREDICTIONS_FORMAT:
                raise InputFileError(path, "not a sareval predictions file (save_predictions)")
            missing = [
                name for name in REQUIRED_DATASETS if not isinstance(f.get(name), h5py.Dataset)
            ]
            if missing:
                raise InputFileError(
                    path, f"no dataset /{missing[0]} (a predictions file holds "
                    f"{', '.join('/' + n for n in REQUIRED_DATASETS)})"
                )  # fmt: skip
            names = attrs.get("coalitions")
            if not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
                raise InputFileError(path, "attribute coalitions is not a list of names")
            draws = attrs.get("draws", 1)
            if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
                raise InputFileError(path, f"attribute draws is {draws!r}, not an integer >= 1")
            draws = int(draws)
            ids = np.asarray(f["ids"][()].astype(str))
            labels = np.asarray(f["labels"][()])
            decisions_all = np.asarray(f["decisions"][()])
            _check_outputs(path, f["outputs"], len(names), draws * len(ids), attrs)
            group = f.get("detector")
            detectors = (
                {k: np.asarray(d[()], np.float64) for k, d in group.items()}
                if isinstance(group, h5py.Group)
                else {}
            )
            correct = np.asarray(f["correct"][()], bool) if "correct" in f else None
    except InputFileError:  # a ValueError too: the checks above already name the problem
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise InputFileError(path, f"not a readable predictions file ({e})") from None
    _check_layout(path, names, ids, labels, decisions_all, attrs, draws)
    _check_detectors(path, detectors, correct, len(ids))
    full = names[-1].split(SEPARATOR)
    players = tuple(names[1 : 1 + len(full)])
    if names[0] != EMPTY_NAME or sorted(players) != sorted(full):
        raise InputFileError(path, f"unexpected coalition order {names}")
    decisions = dict(zip(names, decisions_all, strict=True))
    task, classes = str(attrs["task"]), tuple(attrs["class_names"])
    return Predictions(
        path, ids, labels, decisions, players, task, classes, attrs, detectors, correct, draws
    )


def _check_outputs(
    path: Path, outputs: h5py.Dataset, j: int, n: int, attrs: dict[str, Any]
) -> None:
    """``/outputs`` (J, n, K) float (n: rows, D per sample), finite per coalition (read one
    coalition at a time)."""
    k = len(attrs.get("class_names") or [])
    if outputs.shape != (j, n, k) or outputs.dtype.kind != "f":
        raise InputFileError(
            path, f"/outputs has shape {outputs.shape} and dtype {outputs.dtype}, expected "
            f"float ({j}, {n}, {k}) for {j} coalitions, {n} rows (samples x draws) and {k} "
            "classes"
        )  # fmt: skip
    names = list(attrs["coalitions"])
    for i in range(j):
        if i == 0 and attrs.get("empty") == "majority":
            continue  # the majority-class predictor has no output (NaN)
        bad = int(np.count_nonzero(~np.isfinite(outputs[i])))
        if bad:
            raise InputFileError(
                path, f"/outputs of coalition {names[i]} hold {bad} NaN or infinite values; "
                "the decisions of such outputs cannot be compared"
            )  # fmt: skip


def _check_layout(
    path: Path,
    names: list[str],
    ids: np.ndarray,
    labels: np.ndarray,
    decisions: np.ndarray,
    attrs: dict[str, Any],
    draws: int = 1,
) -> None:
    """Shapes, dtypes and value ranges of ``/ids``, ``/labels`` and ``/decisions`` (D = ``draws``
    rows per sample)."""
    task, classes = attrs.get("task"), attrs.get("class_names")
    if task not in TASKS:
        raise InputFileError(path, f"attribute task is {task!r}, not single- or multi-label")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise InputFileError(path, "attribute class_names is not a list of class names")
    if ids.ndim != 1:
        raise InputFileError(path, f"/ids has shape {ids.shape}, expected one id per sample")
    n, k, single = len(ids), len(classes), task == "single-label"
    want = (n,) if single else (n, k)
    rows = (len(names), draws * n, *want[1:])
    for name, a, shape in (("labels", labels, want), ("decisions", decisions, rows)):
        if a.shape != shape or a.dtype.kind not in "biu":
            raise InputFileError(
                path, f"/{name} has shape {a.shape} and dtype {a.dtype}, expected integer {shape}"
            )  # fmt: skip
        hi = k - 1 if single else 1
        if a.size and (a.min() < 0 or a.max() > hi):
            raise InputFileError(path, f"/{name} holds values outside 0..{hi}")


def _check_detectors(
    path: Path, detectors: dict[str, np.ndarray], correct: np.ndarray | None, n: int
) -> None:
    """``/detector/<name>`` scores and ``/correct``: one finite score per sample."""
    if correct is not None and correct.shape != (n,):
        raise InputFileError(path, f"/correct has shape {correct.shape}, expected ({n},)")
    if detectors and correct is None:
        raise InputFileError(path, "detector scores without /correct")
    if any(d.shape != (n,) for d in detectors.values()):
        raise InputFileError(path, "detector scores and /correct differ in shape")
    if any(not np.isfinite(d).all() for d in detectors.values()):
        raise InputFileError(path, "detector scores hold NaN or infinity")
