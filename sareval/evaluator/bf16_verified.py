"""``precision="bf16-verified"``: the network in bf16, every decision as in fp32.

:class:`VerifiedBf16` runs two coalition modules of the same preamble: ``fast`` (a bf16,
channels-last, traced and frozen copy of the network: AMX / AVX-512 BF16 through oneDNN on
CPU, tensor cores on GPU) and ``exact`` (the fp32 network). Per execution of rows r (one row
per (coalition, sample))::

    margin(r) = top1(o_r) - top2(o_r)              single-label (classes on axis 1)
              = min_k |o_rk - cut|                 multi-label (cut = logit(threshold) for
                                                   logits, threshold for probabilities)
              = min_pixels top1 - top2             segmentation (rows, K, H', W')
    calibration: until CALIBRATION_ROWS rows were seen, run both; with e = bf16 - fp32,
                 err = max over rows (and pixels) of max_k e_k - min_k e_k  (argmax kinds)
                     = max |e|                                          (multi-label),
                 bound = SAFETY * max(err, 1e-5); those executions return the fp32 outputs
    then:        rows with margin < bound (or NaN) are re-run in fp32 and their outputs
                 replace the bf16 ones; an audit re-runs a seeded share AUDIT_SHARE of the
                 other rows (at least one per execution) in fp32: if any audited decision
                 differs, the whole execution is re-run in fp32, and so is everything after it
                 (``fallback`` recorded; the run goes on, its counts those of fp32)

Why this is the right error: if bf16 picks class j where fp32 picks i, then
``margin_bf16 <= o_bf16[j] - o_bf16[i] <= (o_fp32[j] - o_fp32[i]) + e_j - e_i <= e_j - e_i``,
so a row whose bf16 margin is at least the largest error spread across its classes keeps its
fp32 decision (multi-label: ``|o - cut| >= |e|`` keeps the side of the cut). SAFETY = 2: the
calibration maximum is taken over >= 64 rows x K outputs, near 3.5 standard deviations of a
roughly Gaussian bf16 error; twice that is 7 standard deviations (a tail of ~1e-12 per value),
and the audit checks on the run itself that it held. (Measured on the benchmark's ResNet18:
the spread was 0.16-0.22 on three batches, the first the largest.)

Only decisions are exact: outputs of rows not re-run carry the bf16 error, so score-based
outputs (mAP, per-sample values, predictions files) are refused under this precision
(:func:`~sareval.evaluator.config.check_precision`). :attr:`VerifiedBf16.record` is what ran
(rows, re-runs, audits, the bound), for the run's provenance. On a CPU without native bf16
(no ``avx512_bf16`` / ``amx_bf16``) the backend warns and runs fp32 (:func:`native_bf16`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sareval.evaluator.metrics import decision_threshold

SAFETY = 2.0
AUDIT_SHARE = 0.02
AUDIT_SEED = 0
CALIBRATION_ROWS = 64
MIN_BOUND = 1e-5  # the counter's tie tolerance: closer rows are ties either way


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` computes bf16 natively: CUDA with bf16 support; a CPU with
    oneDNN and the ``avx512_bf16`` or ``amx_bf16`` flag in ``/proc/cpuinfo``."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def margins(out: torch.Tensor, task: str, cut: float) -> torch.Tensor:
    """(rows,) decision margins of outputs (rows, K) or (rows, K, H', W'), in float64 (module
    docstring); +inf for a single class."""
    wide = out.double()
    if task == "multi-label":
        return (wide - cut).abs().flatten(1).amin(1)
    if wide.shape[1] < 2:
        return torch.full((wide.shape[0],), float("inf"), dtype=wide.dtype, device=wide.device)
    top2 = wide.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    return gap.flatten(1).amin(1) if gap.dim() > 1 else gap


def decisions(out: torch.Tensor, task: str, cut: float) -> torch.Tensor:
    """Decisions per row, flattened: argmax over axis 1, or ``out >= cut`` (multi-label)."""
    if task == "multi-label":
        return (out.double() >= cut).flatten(1)
    dec = out.argmax(1)
    return dec.flatten(1) if dec.dim() > 1 else dec[:, None]


class VerifiedBf16:
    """The bf16-verified execution (module docstring): ``__call__(raw, mask)`` -> outputs
    (n * B, K...) float32 with every decision equal to the fp32 network's.

    ``fast`` / ``exact``: coalition modules ``(raw, mask) -> (n * B, K...)`` (bf16 / fp32);
    ``masks``: the default (n_coal, C) coalition mask. ``perturb``: a test hook applied to the
    bf16 outputs after calibration (a widened bf16 error must be caught by the audit)."""

    def __init__(
        self,
        fast: Callable[..., torch.Tensor],
        exact: Callable[..., torch.Tensor],
        masks: torch.Tensor,
        *,
        task: str,
        output_kind: str = "logits",
        threshold: float = 0.5,
    ) -> None:
        self.fast, self.exact, self.masks = fast, exact, masks
        self.task = task
        self.cut = decision_threshold(output_kind, threshold) if task == "multi-label" else 0.0
        self.generator = np.random.default_rng(AUDIT_SEED)
        self.perturb: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.bound: float | None = None
        self.err = 0.0
        self.calibrated_rows = 0
        self.record: dict[str, Any] = {
            "precision": "bf16-verified",
            "rows_total": 0,
            "rows_calibration": 0,
            "rows_rerun": 0,
            "rows_audited": 0,
            "bound": None,
            "bf16_max_error": None,
            "safety_factor": SAFETY,
            "audit_share": AUDIT_SHARE,
            "audit_seed": AUDIT_SEED,
            "fallback": None,
        }

    def __call__(self, raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        m = self.masks if mask is None else mask
        rec = self.record
        if rec["fallback"] is not None:
            out = self.exact(raw, mask)
            rec["rows_total"] += len(out)
            return out
        if self.bound is None:
            return self._calibrate(raw, mask)
        out = self.fast(raw, mask).float()
        if self.perturb is not None:
            out = self.perturb(out)
        rows = len(out)
        rec["rows_total"] += rows
        low = ~(margins(out, self.task, self.cut) >= self.bound)  # NaN margins re-run too
        others = np.flatnonzero(~low.cpu().numpy())
        audit = self.generator.random(len(others)) < AUDIT_SHARE
        if len(others) and not audit.any():
            audit[self.generator.integers(len(others))] = True
        audited = others[audit]
        rerun = np.flatnonzero(low.cpu().numpy())
        rec["rows_rerun"] += len(rerun)
        rec["rows_audited"] += len(audited)
        chosen = np.concatenate([rerun, audited])
        if not len(chosen):
            return out
        exact = self._rows(raw, m, chosen, b=rows // len(m))
        same = torch.equal(
            decisions(exact[len(rerun) :], self.task, self.cut),
            decisions(out[torch.as_tensor(audited, device=out.device)], self.task, self.cut),
        )
        if not same:
            rec["fallback"] = (
                f"an audited bf16 decision differed from fp32 after {rec['rows_total']} rows "
                "(bound too small): this execution and all after it ran in fp32"
            )
            return self.exact(raw, mask)
        out[torch.as_tensor(chosen, device=out.device)] = exact.to(out.dtype)
        return out

    def _calibrate(self, raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        """Run both; widen the measured error; return the fp32 outputs."""
        exact = self.exact(raw, mask)
        approx = self.fast(raw, mask).float()
        e = (approx - exact).double()
        e = torch.where(torch.isfinite(e), e, torch.zeros_like(e))  # NaN rows re-run anyway
        if len(e):
            spread = e.abs() if self.task == "multi-label" else e.amax(1) - e.amin(1)
            self.err = max(self.err, float(spread.max()))
        self.calibrated_rows += len(exact)
        rec = self.record
        rec["rows_total"] += len(exact)
        rec["rows_calibration"] += len(exact)
        if self.calibrated_rows >= CALIBRATION_ROWS:
            self.bound = SAFETY * max(self.err, MIN_BOUND)
            rec["bound"], rec["bf16_max_error"] = self.bound, self.err
        return exact

    def _rows(
        self, raw: dict[str, torch.Tensor], m: torch.Tensor, rows: np.ndarray, b: int
    ) -> torch.Tensor:
        """fp32 outputs of execution rows ``rows`` (row k * b + i: coalition m[k], sample i),
        in that order: one call of the exact module per coalition, on its samples only."""
        ks, samples = rows // b, rows % b
        out: list[torch.Tensor] = []
        order: list[np.ndarray] = []
        for k in np.unique(ks):
            pick = np.flatnonzero(ks == k)
            idx = torch.as_tensor(samples[pick], device=m.device)
            sub = {s: t[idx.to(t.device)] for s, t in raw.items()}
            out.append(self.exact(sub, m[int(k) : int(k) + 1]))
            order.append(pick)
        result = torch.cat(out)
        back = torch.as_tensor(np.argsort(np.concatenate(order), kind="stable"))
        return result[back.to(result.device)]
