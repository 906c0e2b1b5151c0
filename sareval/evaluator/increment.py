"""The one counting kernel: a batch's integer state of every (group, row set) by ``bincount``.

:func:`increment` is written once against :class:`ArrayOps` (numpy, or torch on the outputs'
device); :class:`~sareval.evaluator.counting.CoalitionCounter` (every coalition of a batch) and
``SingleLabelCounts.add`` / ``MultiLabelCounts.add`` of :mod:`sareval.evaluator.metrics` (one
row set) both call it. State layout: :mod:`sareval.evaluator.counting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ArrayOps:
    """The few array operations counting needs, for numpy or for torch on a device."""

    def __init__(self, device: Any = None) -> None:
        self.torch = device is not None
        if self.torch:
            import torch

            self.t = torch
            self.device = torch.device(device)

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        if self.torch:
            t = a if isinstance(a, self.t.Tensor) else self.t.as_tensor(np.asarray(a))
            t = t.to(self.device)
            return t if dtype is None else t.to(getattr(self.t, dtype))
        return np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)

    def bincount(self, codes: Any, length: int) -> Any:
        codes = codes.reshape(-1)
        if self.torch:
            return self.t.bincount(codes, minlength=length)
        return np.bincount(codes, minlength=length).astype(np.int64)

    def zeros(self, n: int) -> Any:
        if self.torch:
            return self.t.zeros(n, dtype=self.t.int64, device=self.device)
        return np.zeros(n, dtype=np.int64)

    def arange(self, n: int) -> Any:
        if self.torch:
            return self.t.arange(n, device=self.device)
        return np.arange(n)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.cpu().numpy() if self.torch else np.asarray(a)


NUMPY = ArrayOps()


def state_sizes(task: str, k: int) -> dict[str, int]:
    """Integers per (group, row set) of each state field."""
    if task == "single-label":
        return {"confusion": k * k}
    return {"tp": k, "fp": k, "fn": k, "hist": (k + 1) ** 3}


def increment(
    ops: ArrayOps, task: str, k: int, y: Any, dec: Any, g: Any, n_groups: int
) -> dict[str, Any]:
    """Flat (G * J * size) int64 counts of one batch: labels ``y`` (B,) / (B, K) bool,
    decisions ``dec`` (J, B) / (J, B, K) bool, group index ``g`` (B,) in [0, n_groups)."""
    j_n, b = dec.shape[0], dec.shape[1]
    cell = g[None, :] * j_n + ops.arange(j_n)[:, None]  # (J, B): the (group, row set) cell
    if task == "single-label":
        codes = (cell * k + y[None, :]) * k + dec
        return {"confusion": ops.bincount(codes, n_groups * j_n * k * k)}
    y3 = y[None].expand(j_n, b, k) if ops.torch else np.broadcast_to(y[None], dec.shape)
    tp = y3 & dec
    per_class = cell[..., None] * k + ops.arange(k)[None, None, :]  # (J, B, K)
    size = n_groups * j_n * k
    k1 = k + 1
    triple = (tp.sum(-1) * k1 + dec.sum(-1)) * k1 + y3.sum(-1)
    return {
        "tp": ops.bincount(per_class[tp], size),
        "fp": ops.bincount(per_class[dec & ~y3], size),
        "fn": ops.bincount(per_class[y3 & ~dec], size),
        "hist": ops.bincount(cell * k1**3 + triple, n_groups * j_n * k1**3),
    }
