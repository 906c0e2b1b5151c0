"""Reduced precision (torch backend, autocast) against fp32: metric differences and speed.

Usage: ``python -m benchmarks.precision_difference [--patches 400] [--size 128] [--arch resnet18]
[--device cpu|cuda] [--precisions bf16,fp16] [--share] [--json OUT]``. On the harness's cached
generated store and TorchScript model (``benchmarks/common.py``; ``--share``: the same weights as
an eager module with shared computation across coalitions, :mod:`sareval.evaluator.sharing`),
runs ``sareval.evaluate`` with ``--precision`` fp32 and each reduced precision, and prints per
precision: samples/s, the fraction of per-sample decisions that changed (over all coalitions),
and the largest absolute difference over every metric of V (any coalition), relevance (any
player) and cooperation. The CPU's reduced-precision flags (``avx512_bf16``, ``amx_bf16``,
``avx512_fp16``) are printed first: without them bf16 runs emulated and slower.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import sareval
from benchmarks.common import DEFAULT_WORKDIR, machine_description, prepare_inputs


def largest_differences(a: dict, b: dict) -> dict[str, float]:
    """max |a - b| over all metrics, for V, relevance and cooperation."""
    out = {"V": 0.0, "relevance": 0.0, "cooperation": 0.0}
    for name, ma in a["metrics"].items():
        mb = b["metrics"][name]
        for key in ("V", "relevance"):
            for k, v in ma[key].items():
                out[key] = max(out[key], abs(v - mb[key][k]))
        out["cooperation"] = max(out["cooperation"], abs(ma["cooperation"] - mb["cooperation"]))
    return out


def cpu_precision_flags() -> list[str]:
    """The CPU's reduced-precision instruction flags (Linux ``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(text.split())
    return sorted(f for f in ("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16") if f in flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="bf16,bf16-pure,fp16")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--share", action="store_true", help="eager module, shared computation")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    inputs = prepare_inputs(args.workdir, patches=args.patches, size=args.size, arch=args.arch)
    print(machine_description())
    print(f"CPU reduced-precision flags: {', '.join(cpu_precision_flags()) or 'none'}")
    model, card = inputs.torchscript_model, None
    if args.share:
        from benchmarks.shape_throughput import eager_network
        from sareval.card import read_card

        model, card = eager_network(inputs), read_card(inputs.onnx_model)
    print(
        f"{args.arch}, {inputs.n_samples} samples at {args.size} px, batch {args.batch_size}, "
        f"torch backend on {args.device}"
    )
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ["fp32", *args.precisions.split(",")]:
            pred = Path(tmp) / f"{precision}.h5"
            t0 = time.perf_counter()
            doc = sareval.evaluate(
                model, (inputs.store, inputs.subset), card=card, backend="torch",
                device=args.device, batch_size=args.batch_size, precision=precision,
                save_predictions=pred, share=args.share,
            ).doc  # fmt: skip
            seconds = time.perf_counter() - t0
            with h5py.File(pred) as f:
                decisions = f["decisions"][()]
            runs[precision] = (doc, decisions, inputs.n_samples / seconds)
    ref_doc, ref_dec, ref_rate = runs["fp32"]
    print(
        f"{'precision':9s} {'samples/s':>9s} {'changed':>8s} {'max|dV|':>9s} "
        f"{'max|dRel|':>9s} {'max|dC|':>9s}"
    )
    print(f"{'fp32':9s} {ref_rate:9.1f} {'-':>8s} {'-':>9s} {'-':>9s} {'-':>9s}")
    record = {"share": ref_doc["config"]["share"], "fp32_samples_per_s": ref_rate}
    for precision, (doc, dec, rate) in runs.items():
        if precision == "fp32":
            continue
        changed = float(np.mean(dec != ref_dec))
        d = largest_differences(ref_doc, doc)
        print(
            f"{precision:9s} {rate:9.1f} {changed:8.2%} {d['V']:9.4f} {d['relevance']:9.4f} "
            f"{d['cooperation']:9.4f}"
        )
        assert doc["config"]["precision"] == precision  # recorded in the results config
        record[precision] = {"samples_per_s": rate, "speedup": rate / ref_rate,
                             "decisions_changed": changed, "max_abs_diff": d}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
