"""Cloud mixing: the study's "clear" vs "cloudy" training data from one store.

Every sample that has a cloudy optical version (``/s2_cloudy_available``) is loaded cloudy with
probability ``p`` each time it is drawn, else clear; samples without one are always clear::

    cloudy_i(epoch) = available_i and u_i(seed, epoch) < p,   u ~ U[0, 1)

``p = 0`` is the study's "clear" setup, ``p = 0.8`` its "cloudy" one. The draws of an epoch come
from a generator seeded with ``(seed, epoch)`` (:meth:`CloudMixingDataset.set_epoch`), so they do
not depend on the number of DataLoader workers, on batch order or on whether a run was resumed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.errors import SarevalError, StoreError
from sareval.store import Store, collatable, read_rows

#: Source of the optical input of a sample, as returned in ``item["cloudy"]``.
CLEAR, CLOUDY = False, True


def cloudy_draws(available: np.ndarray, p: float, seed: int, epoch: int) -> np.ndarray:
    """Boolean (N,): which samples read their cloudy optical version in ``epoch``."""
    if not 0.0 <= p <= 1.0:
        raise SarevalError(f"--cloudy-prob {p} must lie in [0, 1]")
    u = np.random.default_rng([seed, epoch, 0xC10D]).random(len(available))
    return np.asarray(available, bool) & (u < p)


class CloudMixingDataset:
    """Map-style dataset over ``subset`` rows of a store with clear/cloudy optical mixing.

    Item ``i``: ``{"s1": float32 (2,H,W) raw dB, "s2": int32 (a float32 store: float32) (C,H,W)
    raw DN (clear or cloudy), "label": the label row, "row": store row, "cloudy": bool}``.
    ``__getitems__`` reads a whole batch with one slice per run of consecutive rows (what
    DataLoader calls when present).
    ``in_memory=True`` reads every array once (small stores: no HDF5 reads per step). The HDF5
    file is opened lazily in each process, so DataLoader workers are safe.
    """

    def __init__(
        self,
        path: str | Path,
        label_set: str,
        cloudy_prob: float,
        *,
        seed: int = 0,
        subset: str = "clear",
        in_memory: bool = False,
    ) -> None:
        self.path = Path(path)
        self.label_set = label_set
        self.cloudy_prob = float(cloudy_prob)
        self.seed = int(seed)
        with Store(self.path) as store:
            sub = store.subset(subset)
            if sub.optical != "s2":
                raise StoreError(
                    self.path, f"subset {subset!r} reads {sub.optical}; training needs clear rows"
                )
            store.label_set(label_set)
            self.rows = sub.rows
            if store.has_cloudy:
                self.available = read_rows(store.file["s2_cloudy_available"], self.rows)
            else:
                self.available = np.zeros(len(self.rows), bool)
            if self.cloudy_prob > 0 and not self.available.any():
                raise StoreError(
                    self.path,
                    f"--cloudy-prob {self.cloudy_prob} needs cloudy optical data, but no sample "
                    "of the store has one (preprocess with --cr-root)",
                )
            self.cache: dict[str, np.ndarray] | None = None
            if in_memory:
                names = ["s1", "s2"] + (["s2_cloudy"] if self.available.any() else [])
                self.cache = {n: read_rows(store.file[n], self.rows) for n in names}
                self.cache["label"] = store.labels(label_set, self.rows)
        self.epoch = 0
        self.cloudy = cloudy_draws(self.available, self.cloudy_prob, self.seed, 0)
        self._store: Store | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Draw which samples are cloudy in ``epoch`` (call before iterating the epoch)."""
        self.epoch = int(epoch)
        self.cloudy = cloudy_draws(self.available, self.cloudy_prob, self.seed, self.epoch)

    @property
    def cloudy_fraction(self) -> float:
        """Fraction of samples read cloudy in the current epoch."""
        return float(self.cloudy.mean()) if len(self) else 0.0

    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store(self.path)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # h5py handles do not pickle; workers reopen the file
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range [0, {len(self)})")
        cloudy = self.cloudy[idx]
        s1, s2, label = self._read(idx, cloudy)
        return [
            {
                "s1": s1[j],
                "s2": s2[j],
                "label": label[j],
                "row": int(self.rows[i]),
                "cloudy": bool(cloudy[j]),
            }
            for j, i in enumerate(idx)
        ]

    def _read(
        self, idx: np.ndarray, cloudy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw s1, optical (clear or cloudy per sample, int32 or float32) and labels of ``idx``."""
        if self.cache is not None:
            c = self.cache
            s2 = collatable(c["s2"][idx])
            if cloudy.any():
                s2[cloudy] = c["s2_cloudy"][idx[cloudy]]
            return c["s1"][idx], s2, c["label"][idx]
        f = self.store().file
        order = np.argsort(idx, kind="stable")
        rows = self.rows[idx[order]]  # sorted (subset rows are sorted) for run-wise reads
        s1 = np.empty((len(idx), *f["s1"].shape[1:]), f["s1"].dtype)
        s2 = np.empty((len(idx), *f["s2"].shape[1:]), collatable(f["s2"][:0]).dtype)
        s1[order] = read_rows(f["s1"], rows)
        c = cloudy[order]
        if (~c).any():
            s2[order[~c]] = read_rows(f["s2"], rows[~c])
        if c.any():
            s2[order[c]] = read_rows(f["s2_cloudy"], rows[c])
        label = np.empty(
            (len(idx), *f["labels"][self.label_set].shape[1:]), f["labels"][self.label_set].dtype
        )
        label[order] = read_rows(f["labels"][self.label_set], rows)
        return s1, s2, label
