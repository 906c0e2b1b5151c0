"""Forward-only time of one network under each torch execution path (issue 24).

Usage: ``python -m benchmarks.forward_paths [--arch resnet18] [--rows 192] [--size 128]
[--repeats 3] [--threads 2]``. A randomly initialised network of the registry on N(0, 1) inputs
(12 channels, 10 classes), best of ``--repeats``: onnxruntime on the network's ONNX export (what
the onnxruntime backend runs), fp32 eager, channels-last, the frozen oneDNN
copy the torch backend runs (:class:`~sareval.evaluator.torch_speed.FastNetwork`) in one call
and in calls of ``CHUNK_ROWS`` rows (what the backend does); bf16 channels-last eager, its frozen
copy, and the bf16 copy of the fp32 trace under oneDNN Graph fusion in calls of ``CHUNK_ROWS``
rows on bf16 channels-last rows (what ``bf16-verified`` runs first). Every path runs inside
:func:`~sareval.evaluator.heap.reused_heap`, as an evaluation does; ``--fresh-heap`` times them
without it (every large buffer mapped afresh: glibc's default). Prints the load average before
and after: a figure taken under load is not a result.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from typing import Any

import torch

from benchmarks.common import set_threads, timed_runs
from sareval.evaluator.backends import _pure_bf16
from sareval.evaluator.heap import reused_heap
from sareval.evaluator.torch_speed import CHUNK_ROWS, FROZEN_BF16, LLGA_BF16, FastNetwork
from sareval.models.registry import build_model


def onnxruntime_network(net: Any, x: torch.Tensor, threads: int) -> Any:
    """A callable running ``net`` exported to ONNX (dynamic batch) on onnxruntime's CPU
    provider with ``threads`` intra-op threads: the network the onnxruntime backend runs."""
    import onnxruntime as ort

    from sareval.export.onnx_export import quiet_exporter

    with quiet_exporter():
        program = torch.onnx.export(
            copy.deepcopy(net), (x[:2],), dynamo=True, input_names=["input"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
    assert program is not None
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = x.numpy()
    return lambda: session.run(None, {"input": feed})


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--rows", type=int, default=192)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fresh-heap", action="store_true",
                    help="time outside reused_heap (glibc's default: large buffers mapped "
                    "afresh each call)")  # fmt: skip
    args = ap.parse_args(argv)
    set_threads(args.threads)
    before = os.getloadavg()[0]
    torch.manual_seed(0)
    net = build_model(args.arch, 12, 10, input_size=args.size).eval()
    x = torch.randn(args.rows, 12, args.size, args.size)
    channels_last = copy.deepcopy(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    xc = x.contiguous(memory_format=torch.channels_last)
    bf16 = _pure_bf16(net)
    fast, fast_bf16 = FastNetwork(net), FastNetwork(bf16, mkldnn=False)
    chunked = FastNetwork(net, rows=CHUNK_ROWS)
    fused_bf16 = FastNetwork(bf16, mkldnn=False, llga=True, rows=CHUNK_ROWS, bf16_of=chunked)
    xb = x.to(torch.bfloat16, memory_format=torch.channels_last)  # the rows bf16-verified builds
    ort_run = onnxruntime_network(net, x, args.threads)
    paths: dict[str, Any] = {
        "fp32 onnxruntime (the exported network, one call)": ort_run,
        "fp32 eager": lambda: net(x),
        "fp32 channels-last": lambda: channels_last(xc),
        "fp32 frozen oneDNN, one call": lambda: fast(x),
        f"fp32 frozen oneDNN, {CHUNK_ROWS}-row calls (torch backend)": lambda: chunked(x),
        "bf16 channels-last eager": lambda: bf16(x),
        f"bf16 {FROZEN_BF16}": lambda: fast_bf16(x),
        f"bf16 {LLGA_BF16} (bf16-verified)": lambda: fused_bf16(xb),
    }
    out = {}
    heap = contextlib.nullcontext() if args.fresh_heap else reused_heap()
    with heap, torch.inference_mode():
        for name, fn in paths.items():
            fn()  # builds the frozen copies, warms the kernels (the fused graph: twice)
            fn()
            out[name] = min(timed_runs(fn, args.repeats)[0])
    after = os.getloadavg()[0]
    print(f"{args.arch}, {args.rows} rows of {args.size} px, {args.threads} threads, "
          f"{'fresh heap' if args.fresh_heap else 'reused heap'}; load "
          f"{before:.2f} -> {after:.2f}" + ("" if max(before, after) < (os.cpu_count() or 1)
                                          else "  (UNDER LOAD: not a result)"))  # fmt: skip
    for name, seconds in out.items():
        print(f"  {name:<72} {seconds * 1e3:8.1f} ms")
    return out


if __name__ == "__main__":
    main()
