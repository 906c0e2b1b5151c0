"""Pixel counting against the model pass of a segmentation SHAPE evaluation (issue 21).

Usage: ``python -m benchmarks.segmentation_counting [--images 16] [--size 256]
[--batch-size 4] [--arch resnet18-unet] [--repeats 3] [--threads 2] [--json OUT]``.

On random inputs (12 SEN12MS channels, two players: 3 non-empty coalitions a batch), times per
batch, best of ``--repeats``:

- ``pass``: the coalition graph (torch backend, fp32) on a batch: every coalition's logits;
- ``counting``: :class:`~sareval.evaluator.pixels.PixelCounter` on those logits (argmax,
  near-ties, label matching, one ``bincount`` per batch, per-image state);
- ``end to end``: ``sareval.evaluate`` over all images (reading arrays, pass, counting).

and prints counting / pass (the issue's target: under 10 % on CPU), with the machine, the load
average before and after, and the fp32 GEMM peak of the same run
(:func:`benchmarks.common.gemm_peak_gflops`). A figure taken with a load average above the core
count is not a result (the table says so).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sareval
from benchmarks.common import (
    format_machine,
    gemm_peak_gflops,
    machine_description,
    set_threads,
    timed_runs,
)
from sareval.bands import S2_BANDS
from sareval.evaluator.backends import LoadedModel, make_backend
from sareval.evaluator.pixels import Matching, PixelCounter
from sareval.evaluator.preamble import build_preamble
from sareval.models.registry import build_model_for_card

PLAYERS = {
    "sar": ["VV", "VH"],
    "opt": ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"],
}
K = 10


def best(fn: Any, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (:func:`benchmarks.common.timed_runs`)."""
    return min(timed_runs(fn, repeats)[0])


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--arch", default="resnet18-unet")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    load_before = os.getloadavg()
    machine = machine_description(args.threads)
    peak = gemm_peak_gflops(threads=args.threads)
    rng = np.random.default_rng(0)
    n, size, b = args.images, args.size, args.batch_size
    s1 = rng.normal(-15, 4, (n, 2, size, size)).astype(np.float32)
    s2 = rng.integers(0, 4000, (n, len(S2_BANDS), size, size)).astype(np.uint16)
    y = rng.integers(0, K, (n, size, size)).astype(np.uint8)
    card = sareval.ModelCard.custom(
        PLAYERS, task="segmentation", class_names=[f"c{i}" for i in range(K)], input_size=size
    )
    torch.manual_seed(0)
    net = build_model_for_card(args.arch, card).eval()
    data = sareval.ArrayData({"s1": s1, "s2": s2}, y)

    # one batch through the evaluator's own coalition graph, then counting on its outputs
    pre = build_preamble(card, data.bands, baseline="input-zero", source="bench")
    loaded = LoadedModel(card, "module", module=net)
    backend = make_backend(
        loaded, pre, backend="torch", device="cpu", provider=None,
        input_dtypes={"s1": s1.dtype, "s2": s2.dtype}, image_size=(size, size),
    )  # fmt: skip
    raw = {"s1": s1[:b], "s2": s2[:b]}
    out = backend.run_tensor(raw)
    matching = Matching("nearest-labels", (size, size), 255)

    def count() -> None:
        counter = PixelCounter(K, pre.n_coalitions, matching, keep_per_image=True)
        counter.add(out, y[:b])
        counter.result()

    t_pass = best(lambda: backend.run_tensor(raw), args.repeats)
    t_count = best(count, args.repeats)
    t0 = time.perf_counter()
    sareval.evaluate(net, data, card=card, batch_size=b, replicates=10)
    t_end = time.perf_counter() - t0
    load_after = os.getloadavg()
    quiet = max(load_before[0], load_after[0]) < machine["cores"]
    result = {
        "machine": machine,
        "gemm_peak_fp32_gflops": peak,
        "load_before": load_before,
        "load_after": load_after,
        "quiet": quiet,
        "arch": args.arch,
        "size": size,
        "batch_size": b,
        "coalition_rows_per_batch": pre.n_coalitions * b,
        "pass_s_per_batch": t_pass,
        "counting_s_per_batch": t_count,
        "counting_share_of_pass": t_count / t_pass,
        "end_to_end_s": t_end,
        "images_per_s_end_to_end": n / t_end,
    }
    print(format_machine(machine))
    print(f"fp32 GEMM peak {peak:.0f} GFLOP/s; load {load_before[0]:.2f} -> {load_after[0]:.2f}"
          + ("" if quiet else "  (UNDER LOAD: not a result)"))  # fmt: skip
    print(f"{args.arch} {size} px, batch {b} x {pre.n_coalitions} coalitions:")
    print(f"  pass      {t_pass * 1e3:9.1f} ms / batch")
    print(f"  counting  {t_count * 1e3:9.1f} ms / batch  ({100 * t_count / t_pass:.2f} % of pass)")
    print(f"  end to end {n} images with 10 replicates: {t_end:.1f} s ({n / t_end:.2f} images/s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
