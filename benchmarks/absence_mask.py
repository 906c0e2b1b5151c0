"""``mask`` absence in one execution per batch against one call per coalition (issue 22).

Usage: ``python -m benchmarks.absence_mask [--players 2] [--batch-size 32] [--size 64]
[--dim 128] [--depth 4] [--repeats 3] [--threads 2] [--json OUT]``.

A :class:`~sareval.models.vit.MultimodalViT` (random weights) on random inputs; per batch, best
of ``--repeats``: the evaluator's :class:`~sareval.evaluator.absence.MaskAbsenceBackend` (every
non-empty coalition's rows stacked, ONE ``forward(x, present)``), the same rows as one call per
coalition (what a loop over coalitions does), and the :class:`~sareval.evaluator.absence.
OmitAbsenceBackend`-style count of calls. Prints the machine, the load average before and after
(a figure taken with a load above the core count is labelled UNDER LOAD) and both timings.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sareval
from benchmarks.common import format_machine, machine_description, set_threads, timed_runs
from sareval.bands import S2_BANDS
from sareval.evaluator.absence import MaskAbsenceBackend
from sareval.evaluator.preamble import build_preamble
from sareval.models.vit import vit_for_card

GROUPS = {
    "sar": ["VV", "VH"],
    "rgb": ["B02", "B03", "B04"],
    "nir": ["B05", "B06", "B07", "B08", "B8A"],
    "swir": ["B11", "B12"],
}


def best(fn: Any, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (:func:`benchmarks.common.timed_runs`)."""
    return min(timed_runs(fn, repeats)[0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--players", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    load_before = os.getloadavg()
    machine = machine_description(args.threads)
    if args.players == 2:
        players = {"sar": GROUPS["sar"], "opt": [b for g in list(GROUPS.values())[1:] for b in g]}
    else:
        names = list(GROUPS)[: args.players - 1]
        players = {n: GROUPS[n] for n in names}
        players["rest"] = [b for n, g in GROUPS.items() if n not in names for b in g]
    card = sareval.ModelCard.custom(
        players, task="single-label", class_names=["a", "b"], input_size=args.size,
        absence=["fill", "mask"],
    )  # fmt: skip
    torch.manual_seed(0)
    vit = vit_for_card(card, dim=args.dim, depth=args.depth, heads=4, patch_size=8).eval()
    rng = np.random.default_rng(0)
    b, size = args.batch_size, args.size
    raw = {
        "s1": rng.normal(-15, 4, (b, 2, size, size)).astype(np.float32),
        "s2": rng.integers(0, 4000, (b, len(S2_BANDS), size, size)).astype(np.uint16),
    }
    bands = {"s1": ("VV", "VH"), "s2": tuple(S2_BANDS)}
    pre = build_preamble(card, bands, baseline="input-zero", source="bench")
    backend = MaskAbsenceBackend(vit, pre, card)
    present = backend.present(pre.masks)  # (n, M)

    def per_coalition() -> None:
        with torch.inference_mode():
            x = backend.normalise(raw)
            for row in present:
                vit(x, torch.from_numpy(np.repeat(row[None], b, 0)))

    t_one = best(lambda: backend.run_tensor(raw), args.repeats)
    t_loop = best(per_coalition, args.repeats)
    load_after = os.getloadavg()
    quiet = max(load_before[0], load_after[0]) < machine["cores"]
    result = {
        "machine": machine, "load_before": load_before, "load_after": load_after,
        "quiet": quiet, "players": len(players), "coalitions": pre.n_coalitions,
        "batch_size": b, "size": size, "one_call_s": t_one, "per_coalition_s": t_loop,
        "speedup": t_loop / t_one,
    }  # fmt: skip
    print(format_machine(machine))
    print(f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
          + ("" if quiet else "  (UNDER LOAD: not a result)"))  # fmt: skip
    print(f"ViT dim {args.dim} depth {args.depth}, {len(players)} players, "
          f"{pre.n_coalitions} coalitions x {b} rows of {size} px:")  # fmt: skip
    print(f"  mask, one call       {t_one * 1e3:9.1f} ms / batch")
    print(f"  one call per coalition {t_loop * 1e3:7.1f} ms / batch  ({t_loop / t_one:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()
