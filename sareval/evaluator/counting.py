"""Per-batch accumulation of coalition counts, on the host (numpy) or on a torch device.

A batch's model outputs have shape (n, B, K): one (B, K) block per evaluated output row set
(the non-empty coalitions, or the perceptual conditions). Optionally one *constant* row set is
prepended: the empty coalition, whose decision is the same for every sample (the model's
prediction on the all-baseline input, or the majority-class predictor). Both counters keep, for
every row set j (constant first) and every group g (cloud-cover bin, the unknown bin last):

- ``counts[g][j]``: :class:`SingleLabelCounts` / :class:`MultiLabelCounts` of
  :mod:`sareval.evaluator.metrics` (decisions by :func:`~sareval.evaluator.metrics.decide`);
- ``ties[j]``: samples whose decision lies within ``tol`` of flipping
  (:func:`~sareval.evaluator.metrics.ties`); ``nonfinite[j]``: samples with a NaN/Inf output.

:class:`HostCounter` calls the metrics module's ``add``; :class:`TorchCounter` computes the same
integer states with ``torch.bincount`` / ``index_add_`` on the outputs' device and moves them to
the host only in :meth:`result` (no synchronisation per batch). Both give identical states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sareval.evaluator.metrics import (
    Counts,
    counts_for,
    counts_from_state,
    decide,
    decision_threshold,
    nonfinite_rows,
    ties,
)

if TYPE_CHECKING:
    import torch

TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ConstantRows:
    """A row set with the same decision for every sample (the empty coalition).

    ``decision``: () int64 class (single-label) or (K,) bool (multi-label); ``tie``: whether
    that decision is a near-tie (then every sample counts as a tie).
    """

    decision: np.ndarray
    tie: bool = False


@dataclass
class CountResult:
    """Accumulated counts: ``counts[g][j]`` per group g and row set j; per-row-set totals."""

    counts: list[list[Counts]]
    ties: np.ndarray
    nonfinite: np.ndarray

    @property
    def total(self) -> list[Counts]:
        """Counts of every row set summed over groups."""
        out = [c for c in self.counts[0]]
        for group in self.counts[1:]:
            out = [a + b for a, b in zip(out, group, strict=True)]
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every integer as one flat int64 array per field (for an all-reduce)."""
        fields = {
            f"{g}/{j}/{name}": value
            for g, group in enumerate(self.counts)
            for j, c in enumerate(group)
            for name, value in c.to_state().items()
        }
        fields["ties"] = self.ties
        fields["nonfinite"] = self.nonfinite
        return fields

    def with_arrays(self, arrays: dict[str, np.ndarray]) -> CountResult:
        """A result of the same layout holding ``arrays`` (from :meth:`to_arrays`)."""
        counts = []
        for g, group in enumerate(self.counts):
            counts.append(
                [
                    counts_from_state(
                        c.task, {name: arrays[f"{g}/{j}/{name}"] for name in c.to_state()}
                    )
                    for j, c in enumerate(group)
                ]
            )
        return CountResult(counts, arrays["ties"].copy(), arrays["nonfinite"].copy())


class HostCounter:
    """Counts from numpy outputs with the metrics module's ``add`` (see module docstring)."""

    def __init__(
        self,
        task: str,
        n_classes: int,
        n_rows: int,
        *,
        output_kind: str = "logits",
        threshold: float = 0.5,
        constant: ConstantRows | None = None,
        n_groups: int = 1,
        tol: float = TIE_TOLERANCE,
    ) -> None:
        self.task, self.n_classes, self.output_kind = task, n_classes, output_kind
        self.threshold, self.constant, self.tol = threshold, constant, tol
        n_total = n_rows + (constant is not None)
        self.counts = [
            [counts_for(task, n_classes) for _ in range(n_total)] for _ in range(n_groups)
        ]
        self.ties = np.zeros(n_total, dtype=np.int64)
        self.nonfinite = np.zeros(n_total, dtype=np.int64)

    def decisions(self, outputs: np.ndarray) -> np.ndarray:
        """Decisions of every row set, the constant one first: (n_total, B) or (n_total, B, K)."""
        rows = [decide(o, self.task, self.output_kind, self.threshold) for o in outputs]
        if self.constant is not None:
            b = outputs.shape[1]
            shape = (b,) if self.task == "single-label" else (b, self.n_classes)
            rows.insert(0, np.broadcast_to(self.constant.decision, shape))
        return np.stack(rows)

    def add(
        self, outputs: np.ndarray, y_true: np.ndarray, groups: np.ndarray | None = None
    ) -> np.ndarray:
        """Count a batch: outputs (n, B, K), labels (B,) / (B, K), group index (B,) or None.

        Returns the decisions (n_total, B[, K]).
        """
        outputs = np.asarray(outputs)
        first = int(self.constant is not None)
        bad = np.stack([nonfinite_rows(o) for o in outputs])
        self.nonfinite[first:] += bad.sum(axis=1)
        decisions = self.decisions(outputs)
        for j, o in enumerate(outputs):
            self.ties[first + j] += int(
                ties(o, self.task, self.output_kind, self.threshold, self.tol).sum()
            )
        if self.constant is not None and self.constant.tie:
            self.ties[0] += outputs.shape[1]
        if len(self.counts) == 1 or groups is None:
            for j, counts in enumerate(self.counts[0]):
                counts.add(y_true, decisions[j])
            return decisions
        for g, group_counts in enumerate(self.counts):
            sel = groups == g
            if sel.any():
                for j, counts in enumerate(group_counts):
                    counts.add(y_true[sel], decisions[j][sel])
        return decisions

    def result(self) -> CountResult:
        return CountResult(self.counts, self.ties.copy(), self.nonfinite.copy())


class TorchCounter:
    """The same counts as :class:`HostCounter`, accumulated on the outputs' torch device."""

    def __init__(
        self,
        task: str,
        n_classes: int,
        n_rows: int,
        *,
        device: Any = "cpu",
        output_kind: str = "logits",
        threshold: float = 0.5,
        constant: ConstantRows | None = None,
        n_groups: int = 1,
        tol: float = TIE_TOLERANCE,
    ) -> None:
        import torch

        self.task, self.k, self.tol = task, n_classes, tol
        self.cut = decision_threshold(output_kind, threshold) if task == "multi-label" else 0.0
        self.constant = constant
        self.n_total = n_rows + (constant is not None)
        self.n_groups = n_groups
        self.device = torch.device(device)
        kw = {"dtype": torch.int64, "device": self.device}
        k, n, g = self.k, self.n_total, n_groups
        if task == "single-label":
            self.confusion = torch.zeros(g * n * k * k, **kw)
        else:
            self.tp = torch.zeros(n, g, k, **kw)
            self.fp = torch.zeros(n, g, k, **kw)
            self.fn = torch.zeros(n, g, k, **kw)
            self.hist = torch.zeros(g * n * (k + 1) ** 3, **kw)
        self.ties = torch.zeros(n, **kw)
        self.nonfinite = torch.zeros(n, **kw)
        if constant is not None:
            self.constant_decision = torch.as_tensor(
                np.asarray(constant.decision), device=self.device
            )

    def decisions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Decisions of every row set, the constant one first (as :meth:`HostCounter.decisions`)."""
        import torch

        if self.task == "single-label":
            dec = outputs.argmax(dim=-1)
        else:
            dec = outputs.double() >= self.cut
        if self.constant is None:
            return dec
        shape = (1, *dec.shape[1:])
        return torch.cat([self.constant_decision.to(dec.dtype).expand(shape), dec])

    def add(
        self, outputs: torch.Tensor, y_true: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Count a batch (tensors on the counter's device); returns the decisions."""
        import torch

        first = int(self.constant is not None)
        n, b = self.n_total, outputs.shape[1]
        self.nonfinite[first:] += (~torch.isfinite(outputs)).any(dim=-1).sum(dim=-1)
        wide = outputs.double()
        if self.task == "single-label":
            if outputs.shape[-1] >= 2:
                top2 = wide.topk(2, dim=-1).values
                self.ties[first:] += (top2[..., 0] - top2[..., 1] <= self.tol).sum(dim=-1)
        else:
            self.ties[first:] += ((wide - self.cut).abs() <= self.tol).any(dim=-1).sum(dim=-1)
        if self.constant is not None and self.constant.tie:
            self.ties[0] += b
        dec = self.decisions(outputs)
        g = (
            torch.zeros(b, dtype=torch.int64, device=self.device)
            if groups is None
            else groups.to(self.device, torch.int64)
        )
        j = torch.arange(n, device=self.device)[:, None]  # (n, 1)
        k = self.k
        if self.task == "single-label":
            y = y_true.to(self.device, torch.int64)[None]
            codes = ((g[None] * n + j) * k + y) * k + dec
            self.confusion += torch.bincount(codes.reshape(-1), minlength=self.confusion.numel())
            return dec
        y = y_true.to(self.device).bool()[None].expand(n, b, k)
        tp = y & dec
        self.tp.index_add_(1, g, tp.long())
        self.fp.index_add_(1, g, (dec & ~y).long())
        self.fn.index_add_(1, g, (y & ~dec).long())
        k1 = k + 1
        triple = (tp.sum(-1) * k1 + dec.sum(-1)) * k1 + y.sum(-1)
        codes = (g[None] * n + j) * k1**3 + triple
        self.hist += torch.bincount(codes.reshape(-1), minlength=self.hist.numel())
        return dec

    def result(self) -> CountResult:
        """Move the counts to the host (one synchronisation)."""
        n, g, k = self.n_total, self.n_groups, self.k
        counts: list[list[Counts]] = []
        if self.task == "single-label":
            conf = self.confusion.cpu().numpy().reshape(g, n, k, k)
            for gi in range(g):
                counts.append(
                    [counts_from_state(self.task, {"confusion": conf[gi, j]}) for j in range(n)]
                )
        else:
            tp, fp, fn = (a.cpu().numpy() for a in (self.tp, self.fp, self.fn))
            hist = self.hist.cpu().numpy().reshape(g, n, k + 1, k + 1, k + 1)
            for gi in range(g):
                counts.append(
                    [
                        counts_from_state(
                            self.task,
                            {
                                "tp": tp[j, gi],
                                "fp": fp[j, gi],
                                "fn": fn[j, gi],
                                "hist": hist[gi, j],
                            },
                        )
                        for j in range(n)
                    ]
                )
        return CountResult(counts, self.ties.cpu().numpy(), self.nonfinite.cpu().numpy())
