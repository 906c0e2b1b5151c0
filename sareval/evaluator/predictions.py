"""``--save-predictions FILE.h5``: per-sample, per-coalition model outputs, written as they come.

Layout (``n`` evaluated samples, ``J`` coalitions in results order, the empty one first)::

    /ids         (n,) utf-8 str       patch ids
    /rows        (n,) int64           store rows
    /positions   (n,) int64           positions within the subset
    /labels      (n,) int64 | (n, K) uint8   true labels in the model's class order
    /cloud_cover (n,) float32         cloud cover of the optical image read (NaN: unknown)
    /outputs     (J, n, K) float32    model outputs (logits / probabilities as the card says);
                                      the empty coalition's single output repeated for every
                                      sample (NaN for the majority-class predictor)
    /decisions   (J, n) int64 | (J, n, K) uint8   the decisions that were counted
    /per_sample/<quantity> (n, M) float32, /detector/<name> (n,), /correct (n,) bool
                 with ``ShapeConfig.per_sample`` (:mod:`sareval.analysis.in_pass`)
    attrs: format="sareval-predictions", coalitions (JSON), players, class_names, task,
           model_sha256, store_content_digest, subset, baseline, empty

Written to a temporary name and renamed when the run completes (nothing on Ctrl-C or error; a
full disk removes the temporary file and raises :class:`~sareval.write_errors.OutputWriteError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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
from sareval.store import STR_DTYPE
from sareval.write_errors import discard_h5, discard_on_write_error, ensure_free


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
    ) -> None:
        check_not_input("save_predictions", Path(out), inputs)  # the model, the store
        self.out = check_output(out, overwrite)
        if not is_stream(self.out):  # a device or FIFO: its bytes are copied in at the end
            self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_for(self.out, self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp"))
        self.first = first_position
        j, k = len(coalitions), n_classes
        single = task == "single-label"
        ensure_free(self.tmp, n * (j * k * 4 + (j + 1) * (8 if single else k) + 80))
        f = self.file = h5py.File(self.tmp, "w")
        f.attrs["format"] = "sareval-predictions"
        f.attrs["coalitions"] = json.dumps(coalitions)
        f.attrs["task"] = task
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        chunk = max(1, min(n, 1024))
        f.create_dataset("ids", shape=(n,), dtype=STR_DTYPE)
        f.create_dataset("rows", shape=(n,), dtype=np.int64)
        f.create_dataset("positions", shape=(n,), dtype=np.int64)
        f.create_dataset("cloud_cover", shape=(n,), dtype=np.float32)
        f.create_dataset(
            "labels", shape=(n,) if single else (n, k), dtype=np.int64 if single else np.uint8
        )
        f.create_dataset("outputs", shape=(j, n, k), dtype=np.float32, chunks=(j, chunk, k))
        f.create_dataset(
            "decisions",
            shape=(j, n) if single else (j, n, k),
            dtype=np.int64 if single else np.uint8,
            chunks=(j, chunk) if single else (j, chunk, k),
        )

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
        """One batch: ``outputs`` (J, B, K) and ``decisions`` (J, B[, K]) in coalition order,
        ``cloud_cover`` (B,) (None: unknown, NaN)."""
        ensure_free(self.tmp, outputs.nbytes + decisions.nbytes + labels.nbytes + 96 * len(ids))
        sl = slice(positions.start - self.first, positions.stop - self.first)
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
        outputs_ds[:, sl] = outputs
        decisions_ds[:, sl] = decisions
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
