"""Shared computation across coalitions: FLOPs per sample and wall time, with and without.

Usage: ``python -m benchmarks.shared_flops [--sizes 64,128] [--batch-size 16] [--batches 3]
[--fusions late,early] [--threads 2]``. For a random-init ResNet18 (``sareval.models``) on the
``sen12ms-s1s2`` card (2 players, 3 non-empty coalitions), runs the plain coalition module
(:func:`~sareval.evaluator.preamble.coalition_module`, the whole network on ``n_coal * B`` rows)
and the shared one (:func:`~sareval.evaluator.sharing.shared_module`) on the same random batches
and prints per size: executed GFLOP per sample (``FlopCounterMode``; convs and matmuls; the
shared module's baseline terms are cached, so its count is the steady state), median seconds per
batch, samples/s and the largest output difference. Late fusion runs only the head per
coalition: ``n_coal`` encoder passes per modality become 1; early fusion shares the first conv
only. ``uptime`` is printed before and after; figures are "under load" when the 1-min load
average exceeds 0.5 (a shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sareval.card import ModelCard
from sareval.evaluator.preamble import build_preamble, coalition_module
from sareval.evaluator.sharing import shared_module
from sareval.models.registry import build_model


def load_line() -> tuple[str, float]:
    """``uptime``'s load averages and the 1-min one."""
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}", one


def flops(module: Any, raw: dict[str, torch.Tensor]) -> int:
    """FLOPs torch executes for ``module(raw)``."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(raw)
    return int(counter.get_total_flops())


def seconds(module: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Median seconds per batch (after one warm-up call)."""
    times = []
    with torch.inference_mode():
        module(batches[0])
        for raw in batches:
            t = time.perf_counter()
            module(raw)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(fusion: str, size: int, batch_size: int, n_batches: int) -> dict[str, Any]:
    """Plain vs shared coalition module of a ResNet18 with ``fusion`` at ``size`` px."""
    card = ModelCard.from_preset("sen12ms-s1s2", task="single-label", input_size=size)
    bands = {f"m{i}": list(m.bands) for i, m in enumerate(card.modalities)}
    pre = build_preamble(card, bands)
    torch.manual_seed(0)
    groups = [card.channel_indices(m) for m in card.modality_names]
    net = build_model(
        "resnet18", card.n_channels, card.n_classes, fusion=fusion,
        modality_channels=groups if fusion == "late" else None,
    ).eval()  # fmt: skip
    plain, shared = coalition_module(pre, net), shared_module(pre, net)
    assert shared is not None
    rng = np.random.default_rng(0)
    batches = [
        {s: torch.from_numpy(rng.normal(size=(batch_size, len(b), size, size)).astype(np.float32))
         for s, b in bands.items()}
        for _ in range(n_batches)
    ]  # fmt: skip
    with torch.inference_mode():
        diff = (plain(batches[0]) - shared(batches[0])).abs().max().item()
    out = {"fusion": fusion, "size": size, "kind": shared.kind, "max_abs_diff": diff}
    for name, module in (("plain", plain), ("shared", shared)):
        out[f"gflop_{name}"] = flops(module, batches[0]) / batch_size / 1e9
        out[f"s_{name}"] = seconds(module, batches)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128")
    p.add_argument("--fusions", default="late,early")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    before, load0 = load_line()
    print(f"before: {before}; torch threads {torch.get_num_threads()}")
    rows = []
    for fusion in args.fusions.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(r := run(fusion, size, args.batch_size, args.batches))
            b = args.batch_size
            print(
                f"{r['fusion']:5s} {r['size']:4d}px  GFLOP/sample plain {r['gflop_plain']:.3f} "
                f"shared {r['gflop_shared']:.3f} (x{r['gflop_plain'] / r['gflop_shared']:.2f})  "
                f"s/batch({b}) plain {r['s_plain']:.3f} shared {r['s_shared']:.3f} "
                f"(x{r['s_plain'] / r['s_shared']:.2f}; {b / r['s_shared']:.1f} samples/s)  "
                f"max|d| {r['max_abs_diff']:.1e}",
                flush=True,
            )
    after, load1 = load_line()
    label = "UNDER LOAD" if max(load0, load1) > 0.5 else "idle"
    print(f"after: {after}; timings {label} (1-min load > 0.5)")


if __name__ == "__main__":
    main()
