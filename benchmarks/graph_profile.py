"""Where the composed coalition graph spends its time, node by node (onnxruntime profiling).

::

    python -m benchmarks.graph_profile [--batch 64] [--size 128] [--arch resnet18]
        [--threads 2] [--runs 4] [--top 12]

Builds a randomly initialised early-fusion network on the ``sen12ms-s1s2`` card, exports it to
ONNX, composes it with the coalition preamble (:func:`~sareval.evaluator.preamble.compose_onnx`)
and, for the unshared graph and the graph with a shared first conv
(:mod:`sareval.evaluator.onnx_sharing`), runs ``--runs`` batches of random SEN12MS-like raw
inputs (after one warm-up) under onnxruntime's profiler. Prints the milliseconds per batch
of: the preamble (select, cast, nan_to_num, clip, z-score, coalition stacking), the sharing
nodes (partial convs, mixing), the network's convolutions, the NCHWc layout reorders and the
rest, then the ``--top`` slowest nodes outside the network's convolutions. Also prints the
largest output difference and the decision flips between the two graphs.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sareval.evaluator.preamble import PREFIX

SHARE_PREFIX = PREFIX + "share_"


def node_category(name: str, op: str) -> str:
    """The bucket a profiled node's time goes to."""
    if name.startswith(SHARE_PREFIX):
        return "sharing"
    if name.startswith(PREFIX):
        return "preamble"
    if op.startswith("Reorder"):
        return "layout reorders"
    return "network conv" if op == "Conv" else "network other"


def profile(model: Any, feeds: dict[str, np.ndarray], threads: int, runs: int) -> dict[str, Any]:
    """Per-node kernel milliseconds per batch of ``model`` (a ModelProto) and its outputs."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="sareval-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.intra_op_num_threads = threads
        options.enable_mem_pattern = False  # as the evaluator's backend
        options.log_severity_level = 3
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in names}
        out = session.run(None, feeds)[0]  # warm-up: first allocations
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["name"][: -len("_kernel_time")], e["args"]["op_name"])] += e["dur"]
    # the profiler records the warm-up run too: the mean is over runs + 1
    ms = {k: v / 1000 / (runs + 1) for k, v in per_node.items()}
    return {"ms": ms, "output": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)

    import torch

    from sareval.bands import S1_BANDS, S2_BANDS
    from sareval.card import ModelCard
    from sareval.evaluator.backends import _module_to_onnx, load_model
    from sareval.evaluator.onnx_sharing import share_first_conv
    from sareval.evaluator.preamble import build_preamble, compose_onnx
    from sareval.models.registry import build_model_for_card

    torch.manual_seed(0)
    card = ModelCard.from_preset("sen12ms-s1s2", task="single-label")
    net = build_model_for_card(args.arch, card).eval()
    pre = build_preamble(card, {"s1": S1_BANDS, "s2": S2_BANDS})
    rng = np.random.default_rng(0)
    size = (args.size, args.size)
    feeds = {
        "s1": rng.normal(-15, 4, (args.batch, len(S1_BANDS), *size)).astype(np.float32),
        "s2": rng.integers(0, 4000, (args.batch, len(S2_BANDS), *size)).astype(np.uint16),
    }
    dtypes = {s: a.dtype for s, a in feeds.items()}
    plain = compose_onnx(pre, _module_to_onnx(load_model(net, card=card), size),
                         input_dtypes=dtypes, image_size=size)  # fmt: skip
    shared = share_first_conv(plain, pre)
    if shared is None:
        raise SystemExit(f"{args.arch}: no shareable first conv")
    print(f"{args.arch}, batch {args.batch} of {args.size} px, {args.threads} threads, "
          f"{pre.n_coalitions} coalitions; ms per batch (onnxruntime profiler, {args.runs} "
          "runs + 1 warm-up averaged)")  # fmt: skip
    results = {}
    for label, model in (("unshared", plain), ("shared", shared)):
        r = profile(model, feeds, args.threads, args.runs)
        results[label] = r
        buckets: collections.Counter[str] = collections.Counter()
        for (name, op), v in r["ms"].items():
            buckets[node_category(name, op)] += v
        total = sum(buckets.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(buckets.items()))
        print(f"\n{label}: total {total:.1f} ms ({parts})")
        slow = [(k, v) for k, v in r["ms"].items() if node_category(*k) != "network conv"]
        for (name, op), v in sorted(slow, key=lambda kv: -kv[1])[: args.top]:
            print(f"  {name[:56]:56s} {op:14s} {v:7.1f}")
    a, b = results["unshared"]["output"], results["shared"]["output"]
    flips = int((a.argmax(-1) != b.argmax(-1)).sum())
    print(f"\nshared vs unshared: max |d output| {np.abs(a - b).max():.2e}, "
          f"{flips} of {len(a)} decisions flipped")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
