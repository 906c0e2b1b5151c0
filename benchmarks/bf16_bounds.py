"""bf16-verified's two bounds on the benchmark's network: how many rows each re-runs.

Usage: ``python -m benchmarks.bf16_bounds [--patches 400] [--size 128] [--arch resnet18]
[--train-epochs 0] [--batch-size 64] [--threads 2]``. On the harness's cached store and model
(``benchmarks/common.py``; ``--train-epochs``: the trained network of
``shape_throughput --train-epochs``), every coalition row of the ``clear`` subset runs through
the fp32 copy and the bf16 copies the torch backend builds (:mod:`sareval.evaluator.
torch_speed`): the frozen bf16 copy under oneDNN Graph fusion (what bf16-verified runs), and the
eager bf16 copy. Printed per bf16 copy: the largest and median error spread across classes
(:mod:`sareval.evaluator.bf16_verified`), its correlation with the row's largest |output|, and
the share of rows whose bf16 margin falls below the absolute and the relative bound calibrated
on the first 64 rows (evenly spaced over the first batch), as ``VerifiedBf16`` does, and how
many rows of the whole split have an error above each bound (the largest error / bound
beside it: above 1, the calibration missed part of the error's tail). ``--safety``: another
SAFETY factor than bf16-verified's.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch

from benchmarks.common import DEFAULT_WORKDIR, prepare_inputs, set_threads
from benchmarks.shape_throughput import eager_network
from sareval.card import read_card
from sareval.evaluator.backends import _pure_bf16
from sareval.evaluator.bf16_verified import (
    CALIBRATION_ROWS,
    SAFETY,
    error_spreads,
    margins,
    scales,
)
from sareval.evaluator.preamble import build_preamble, coalition_module
from sareval.evaluator.torch_speed import CHUNK_ROWS, FastNetwork
from sareval.store import Store


def outputs(module: Any, raws: list[dict[str, np.ndarray]]) -> list[torch.Tensor]:
    """(n B, K) float64 outputs of every coalition row, per batch."""
    with torch.inference_mode():
        return [module({s: torch.from_numpy(a) for s, a in raw.items()}).double() for raw in raws]


def rule_shares(
    exact: list[torch.Tensor], approx: list[torch.Tensor], safety: float = SAFETY
) -> dict[str, float]:
    """Error statistics, and for each bound its re-run share, the rows whose error exceeds it
    and the largest error / bound over all rows (module docstring)."""
    e, o = torch.cat(approx) - torch.cat(exact), torch.cat(approx)
    spread = error_spreads(e, "single-label")
    scale, margin = scales(o), margins(o, "single-label", 0.0)
    first = len(exact[0])
    calib = torch.from_numpy(
        np.unique(np.linspace(0, first - 1, min(CALIBRATION_ROWS, first)).round().astype(int))
    )
    err = float(spread[calib].max())
    ratio = float((spread[calib] / scale[calib]).max())
    out = {
        "max error": float(spread.max()),
        "median error": float(spread.median()),
        "corr(error, scale)": float(np.corrcoef(spread.numpy(), scale.numpy())[0, 1]),
    }
    bounds = {"absolute": torch.full_like(scale, safety * err), "relative": safety * ratio * scale}
    for rule, bound in bounds.items():
        out[f"re-run, {rule} bound"] = float((margin < bound).double().mean())
        out[f"rows over the {rule} bound"] = float((spread > bound).sum())
        out[f"max error / {rule} bound"] = float((spread / bound).max())
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patches", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--train-epochs", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    ap.add_argument("--safety", type=float, default=SAFETY, help="bf16-verified's SAFETY")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    inp = prepare_inputs(args.workdir, patches=args.patches, size=args.size, arch=args.arch,
                         train_epochs=args.train_epochs)  # fmt: skip
    card, net = read_card(inp.onnx_model), eager_network(inp)
    with Store(inp.store) as store:
        sub = store.subset(inp.subset)
        pre = build_preamble(card, {s: store.bands(s) for s in ("s1", "s2")})
        raws = [store.read_batch(sub, a, min(a + args.batch_size, len(sub))).arrays
                for a in range(0, len(sub), args.batch_size)]  # fmt: skip
    exact = outputs(coalition_module(pre, FastNetwork(net, rows=CHUNK_ROWS)), raws)
    copies = {
        "frozen, fused (bf16-verified)": FastNetwork(
            _pure_bf16(net), mkldnn=False, llga=True, rows=CHUNK_ROWS
        ),
        "eager": _pure_bf16(net),
    }
    out = {name: rule_shares(exact, outputs(coalition_module(pre, c), raws), args.safety)
           for name, c in copies.items()}  # fmt: skip
    weights = f"trained {args.train_epochs} epochs" if args.train_epochs else "random init"
    print(f"{args.arch} ({weights}), {sum(len(o) for o in exact)} coalition rows, "
          f"SAFETY {args.safety:g}")  # fmt: skip
    for name, stats in out.items():
        print(f"  bf16 {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items()))
    return out


if __name__ == "__main__":
    main()
