"""Cloud mixing: the study's "clear" vs "cloudy" training data from one store.

Every sample that has a cloudy optical version (``/s2_cloudy_available``) is loaded cloudy with
probability ``p`` each time it is drawn, else clear; samples without one are always clear::

    cloudy_i(epoch) = available_i and u_i(seed, epoch) < p,   u ~ U[0, 1)

``p = 0`` is the study's "clear" setup, ``p = 0.8`` its "cloudy" one. The draws of an epoch come
from a generator seeded with ``(seed, epoch)`` (:meth:`CloudMixingDataset.set_epoch`), so they do
not depend on the number of DataLoader workers, on batch order or on whether a run was resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.errors import SarevalError, StoreError
from sareval.store import LazyStore, Store, collatable

#: Source of the optical input of a sample, as returned in ``item["cloudy"]``.
CLEAR, CLOUDY = False, True


def cloudy_draws(available: np.ndarray, p: float, seed: int, epoch: int) -> np.ndarray:
    """Boolean (N,): which samples read their cloudy optical version in ``epoch``."""
    if not 0.0 <= p <= 1.0:
        raise SarevalError(f"cloudy_prob= {p} must lie in [0, 1]")
    u = np.random.default_rng([seed, epoch, 0xC10D]).random(len(available))
    return np.asarray(available, bool) & (u < p)


class CloudMixingDataset(LazyStore):
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
            self.available = store.cloudy_available(self.rows)
            if self.cloudy_prob > 0 and not self.available.any():
                raise StoreError(
                    self.path,
                    f"cloudy_prob= {self.cloudy_prob} needs cloudy optical data, but no sample "
                    "of the store has one (preprocess with the SEN12MS-CR tree as cr_root=)",
                )
            self.cache: dict[str, np.ndarray] | None = None
            if in_memory:
                names = ["s1", "s2"] + (["s2_cloudy"] if self.available.any() else [])
                self.cache = {n: store.read_source(n, self.rows) for n in names}
                self.cache["label"] = store.labels(label_set, self.rows)
        self.epoch = 0
        self.cloudy = cloudy_draws(self.available, self.cloudy_prob, self.seed, 0)

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
        st = self.store()
        order = np.argsort(idx, kind="stable")
        rows = self.rows[idx[order]]  # sorted (subset rows are sorted) for run-wise reads
        s1 = np.empty((len(idx), *st.sample_shape("s1")), st.dtype_of("s1"))
        s1[order] = st.read_source("s1", rows)
        s2 = np.empty(
            (len(idx), *st.sample_shape("s2")), collatable(np.zeros(0, st.dtype_of("s2"))).dtype
        )
        cl = cloudy[order]
        if (~cl).any():
            s2[order[~cl]] = st.read_source("s2", rows[~cl])
        if cl.any():
            s2[order[cl]] = st.read_source("s2_cloudy", rows[cl])
        first = st.labels(self.label_set, rows[:1])
        label = np.empty((len(idx), *first.shape[1:]), first.dtype)
        label[order] = st.labels(self.label_set, rows)
        return s1, s2, label
