"""Per-batch accumulation of coalition counts, on the host (numpy) or on a torch device.

A batch's model outputs have shape (n, B, K): one (B, K) block per evaluated output row set
(the non-empty coalitions, or the perceptual conditions). Optionally one *constant* row set is
prepended: the empty coalition, whose decision is the same for every sample (the model's
prediction on the all-baseline input, or the majority-class predictor). Both counters keep, for
every row set j (constant first) and every group g (cloud-cover bin, the unknown bin last):

- ``counts[g][j]``: :class:`SingleLabelCounts` / :class:`MultiLabelCounts` of
  :mod:`sareval.evaluator.metrics` (decisions as :func:`~sareval.evaluator.metrics.decide`);
- ``ties[j]``: samples whose decision lies within ``tol`` of flipping
  (:func:`~sareval.evaluator.metrics.ties`); ``nonfinite[j]``: samples with a NaN/Inf output.

One implementation: :func:`~sareval.evaluator.increment.increment` computes a batch's integer
state for every (group, row set) with ``bincount`` over flat codes, written once against
:class:`~sareval.evaluator.increment.ArrayOps` (numpy, or torch on the outputs' device, where
states stay until :meth:`CoalitionCounter.result`: no synchronisation per batch).
``SingleLabelCounts.add`` / ``MultiLabelCounts.add`` call it too.

State layout, G groups, J row sets, K classes (flat codes into these):
single-label ``confusion`` (G, J, K, K) rows = true class; multi-label ``tp``/``fp``/``fn``
(G, J, K) and ``hist`` (G, J, K+1, K+1, K+1) over each sample's (tp_i, |pred_i|, |true_i|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.increment import ArrayOps, increment, state_sizes
from sareval.evaluator.metrics import Counts, counts_from_state, decision_threshold

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
    #: segmentation: (1,) int64 images counted (``counts`` count pixels); None otherwise
    n_images: np.ndarray | None = None

    @property
    def total(self) -> list[Counts]:
        """Counts of every row set summed over groups."""
        out: list[Any] = list(self.counts[0])
        for group in self.counts[1:]:
            out = [a + b for a, b in zip(out, group, strict=True)]
        return out

    def check_finite(self, names: Sequence[str]) -> None:
        """Raise when any row set (named ``names``) had NaN or Inf outputs."""
        bad = [(n, int(c)) for n, c in zip(names, self.nonfinite, strict=True) if c]
        if bad:
            detail = ", ".join(f"coalition {n}: {c} samples" for n, c in bad)
            raise SarevalError(f"model outputs are NaN or Inf ({detail})")

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
        if self.n_images is not None:
            fields["n_images"] = self.n_images
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
        images = arrays.get("n_images")
        return CountResult(
            counts,
            arrays["ties"].copy(),
            arrays["nonfinite"].copy(),
            None if images is None else images.copy(),
        )


class CoalitionCounter:
    """Counts of every row set (and group) of model outputs (n, B, K); see module docstring.

    ``device``: None counts numpy outputs on the host; a torch device counts torch outputs
    there. Both give identical states (one :func:`~sareval.evaluator.increment.increment`).
    """

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
        device: Any = None,
    ) -> None:
        self.task, self.k, self.tol, self.constant = task, n_classes, tol, constant
        self.cut = decision_threshold(output_kind, threshold) if task == "multi-label" else 0.0
        self.ops = ArrayOps(device)
        self.n_total = n_rows + (constant is not None)
        self.n_groups = n_groups
        sizes = state_sizes(task, n_classes)
        self.state = {f: self.ops.zeros(n_groups * self.n_total * n) for f, n in sizes.items()}
        self.ties = self.ops.zeros(self.n_total)
        self.nonfinite = self.ops.zeros(self.n_total)
        if constant is not None:
            self.constant_decision = self.ops.asarray(constant.decision)

    def decisions(self, outputs: Any) -> Any:
        """Decisions of every row set, the constant one first: (n_total, B) or (n_total, B, K)."""
        if self.task == "single-label":
            dec = outputs.argmax(-1)
            dec = dec if self.ops.torch else dec.astype(np.int64)
        else:
            wide = outputs.double() if self.ops.torch else outputs.astype(np.float64)
            dec = wide >= self.cut
        if self.constant is None:
            return dec
        shape = (1, *dec.shape[1:])
        if self.ops.torch:
            const = self.constant_decision.to(dec.dtype).expand(shape)
            return self.ops.t.cat([const, dec])
        const = np.broadcast_to(self.constant_decision.astype(dec.dtype), shape)
        return np.concatenate([const, dec])

    def _ties(self, outputs: Any) -> Any:
        wide: Any = outputs.double() if self.ops.torch else np.asarray(outputs, np.float64)
        if self.task == "multi-label":
            return (abs(wide - self.cut) <= self.tol).any(-1).sum(-1)
        if outputs.shape[-1] < 2:
            return self.ops.zeros(outputs.shape[0])
        if self.ops.torch:
            top2 = wide.topk(2, dim=-1).values
            return (top2[..., 0] - top2[..., 1] <= self.tol).sum(-1)
        top2 = np.partition(wide, wide.shape[-1] - 2, axis=-1)[..., -2:]
        return (top2[..., 1] - top2[..., 0] <= self.tol).sum(-1)

    def add(self, outputs: Any, y_true: Any, groups: Any = None) -> Any:
        """Count a batch: outputs (n, B, K), labels (B,) / (B, K), group index (B,) or None.

        Returns the decisions (n_total, B[, K]) (numpy, or torch on the counter's device).
        """
        ops = self.ops
        outputs = outputs if ops.torch else np.asarray(outputs)
        first = int(self.constant is not None)
        b = outputs.shape[1]
        finite = (outputs == outputs) & (abs(outputs) != float("inf"))
        self.nonfinite[first:] += (~finite).any(-1).sum(-1)
        self.ties[first:] += self._ties(outputs)
        if self.constant is not None and self.constant.tie:
            self.ties[0] += b
        dec = self.decisions(outputs)
        g = ops.zeros(b) if groups is None else ops.asarray(groups, "int64")
        if self.task == "single-label":
            y = ops.asarray(y_true, "int64")
        else:
            y = ops.asarray(y_true) != 0
        for name, inc in increment(ops, self.task, self.k, y, dec, g, self.n_groups).items():
            self.state[name] += inc
        return dec

    def result(self) -> CountResult:
        """The counts on the host (for torch: the one synchronisation)."""
        sizes = state_sizes(self.task, self.k)
        flat = {
            f: self.ops.to_numpy(a).reshape(self.n_groups, self.n_total, -1)
            for f, a in self.state.items()
        }
        shapes = {
            f: (self.k, self.k)
            if f == "confusion"
            else (self.k,)
            if n == self.k
            else (self.k + 1,) * 3
            for f, n in sizes.items()
        }
        counts = [
            [
                counts_from_state(self.task, {f: flat[f][g, j].reshape(shapes[f]) for f in sizes})
                for j in range(self.n_total)
            ]
            for g in range(self.n_groups)
        ]
        return CountResult(
            counts, self.ops.to_numpy(self.ties).copy(), self.ops.to_numpy(self.nonfinite).copy()
        )
