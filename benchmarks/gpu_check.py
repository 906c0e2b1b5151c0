"""GPU check: parity of every GPU execution path against CPU counts, and end-to-end throughput.

::

    benchmarks/gpu_check.sh [--patches 4096] [--parity-patches 256] [--size 128]
        [--batch-size 256] [--workdir DIR] [--cpu-dry-run]

On generated SEN12MS stores written straight from the generator (no rasterio, no GeoTIFFs:
:func:`benchmarks.common.prepare_inputs` with ``geotiff=False``) and the benchmark's ResNet18
(BatchNorm statistics set on the data, exported to ONNX; the same weights as an eager module):

1. parity (``--parity-patches``): the CPU reference is onnxruntime fp32 on the CPU provider;
   each mode's per-coalition counts must be identical: onnxruntime CUDA, onnxruntime TensorRT,
   torch CUDA fp32, torch CUDA ``bf16-verified`` (in-memory module). One line per mode: ``OK``,
   ``DIFF`` (with the coalitions that differ) or ``ERROR`` (a provider or device that is not
   there is the backend's one-line error: nothing falls back to the CPU silently);
2. throughput (``--patches``, a split large enough that reading matters): each mode end to end
   (``sareval.evaluate``, after a warm-up on the parity store), samples/s, plus the reader
   alone (``read``): a mode at the read rate is I/O-bound.

3. segmentation (``seg-<mode>``): a seeded ResNet18-UNet (64 px, 10 classes, exported to ONNX)
   on generated arrays with label maps and per-pixel cloud masks: every mode's per-coalition
   pixel confusion matrices and clear / cloudy split identical to onnxruntime CPU fp32's, and
   its images/s.

One table at the end; exit status 1 when any mode is DIFF or ERROR. ``--cpu-dry-run`` runs the
same code with the CPU as the "GPU" (device ``cpu``, provider ``cpu``), for the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_WORKDIR, BenchInputs, prepare_inputs

#: mode -> (model kind, backend, provider, precision); the GPU device is ``cuda``
MODES = {
    "ort-cuda": ("onnx", "onnxruntime", "cuda", "fp32"),
    "ort-tensorrt": ("onnx", "onnxruntime", "tensorrt", "fp32"),
    "torch-cuda-fp32": ("module", "torch", None, "fp32"),
    "torch-cuda-bf16-verified": ("module", "torch", None, "bf16-verified"),
}


def evaluate(inp: BenchInputs, store: str, mode: str | None, device: str, batch: int) -> Any:
    """``sareval.evaluate`` of the benchmark's model on ``store`` in ``mode`` (None: the CPU
    reference, onnxruntime fp32 on the CPU provider)."""
    import sareval
    from benchmarks.shape_throughput import eager_network
    from sareval.card import read_card

    kind, backend, provider, precision = MODES[mode] if mode else ("onnx", "onnxruntime", "cpu",
                                                                  "fp32")  # fmt: skip
    if device == "cpu" and provider is not None:
        provider = "cpu"  # the dry run: the same calls on the CPU
    model: Any = inp.onnx_model if kind == "onnx" else eager_network(inp)
    card = None if kind == "onnx" else read_card(inp.onnx_model)
    return sareval.evaluate(
        model, (store, inp.subset), card=card, backend=backend, provider=provider,
        device=device if mode else "cpu", precision=precision, batch_size=batch,
        progress=False,
    )  # fmt: skip


def segmentation_rows(device: str, workdir: Path, batch: int) -> list[tuple[str, str, str]]:
    """``(seg-<mode>, verdict, images/s)`` for every mode on a generated segmentation case."""
    import numpy as np
    import torch

    import sareval
    from sareval.export import export_onnx
    from sareval.models import build_model_for_card

    size, n, k = 64, 64, 10
    players = {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04", "B08"]}
    card = sareval.ModelCard.custom(
        players, task="segmentation", class_names=[f"c{i}" for i in range(k)], input_size=size,
        normalization={b: {"mean": 0.0, "std": 1.0} for bs in players.values() for b in bs},
    )  # fmt: skip
    torch.manual_seed(0)
    net = build_model_for_card("resnet18-unet", card).eval()
    rng = np.random.default_rng(0)
    bands = {"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04", "B08"]}
    arrays = {s: rng.normal(0, 1, (n, len(b), size, size)).astype(np.float32)
              for s, b in bands.items()}  # fmt: skip
    maps = rng.integers(0, k, (n, size, size)).astype(np.uint8)
    clouds = (rng.random((n, size, size)) < 0.5).astype(np.uint8)
    data = sareval.ArrayData(arrays, maps, bands=bands, cloud_mask=clouds)
    onnx_path = workdir / "seg-resnet18-unet.onnx"
    workdir.mkdir(parents=True, exist_ok=True)
    export_onnx(net, card, onnx_path, overwrite=True)

    def run(mode: str | None) -> Any:
        kind, backend, provider, precision = MODES[mode] if mode else ("onnx", "onnxruntime",
                                                                      "cpu", "fp32")  # fmt: skip
        if device == "cpu" and provider is not None:
            provider = "cpu"
        model: Any = onnx_path if kind == "onnx" else net
        return sareval.evaluate(
            model, data, card=card, backend=backend, provider=provider,
            device=device if mode else "cpu", precision=precision, batch_size=batch,
        )  # fmt: skip

    reference = run(None)
    rows = []
    for mode in MODES:
        try:
            t = time.perf_counter()
            r = run(mode)
            rate = f"{n / (time.perf_counter() - t):.1f}"
            same = r.counts == reference.counts and r.by_cloud_pixels == reference.by_cloud_pixels
            verdict = "OK" if same else "DIFF"
        except Exception as e:  # a missing provider / device: one line, never a CPU fallback
            verdict, rate = f"ERROR {type(e).__name__}: {str(e).splitlines()[0][:160]}", "-"
        rows.append((f"seg-{mode}", verdict, rate))
        print(f"gpu_check: seg-{mode}: {verdict}", flush=True)
    return rows


def read_rate(inp: BenchInputs, batch: int) -> float:
    """Samples/s of the store reader alone (no compute)."""
    from sareval.store import Store

    t0 = time.perf_counter()
    with Store(inp.store) as store:
        sub = store.subset(inp.subset)
        n = len(sub)
        for a in range(0, n, batch):
            store.read_batch(sub, a, min(a + batch, n))
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.split("\n")[0])
    p.add_argument("--patches", type=int, default=4096, help="throughput split size")
    p.add_argument("--parity-patches", type=int, default=256)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workdir", default=str(Path(DEFAULT_WORKDIR) / "gpu"))
    p.add_argument("--cpu-dry-run", action="store_true", help="the same code on the CPU")
    args = p.parse_args(argv)
    device = "cpu" if args.cpu_dry_run else "cuda"
    if not args.cpu_dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: torch sees no CUDA device (use --cpu-dry-run to test the script)")
            return 1
    common = dict(size=args.size, arch="resnet18", geotiff=False)
    t0 = time.perf_counter()
    parity = prepare_inputs(Path(args.workdir) / "parity", patches=args.parity_patches, **common)
    big = prepare_inputs(Path(args.workdir) / "throughput", patches=args.patches, **common)
    print(f"gpu_check: data and models ready in {time.perf_counter() - t0:.0f} s", flush=True)
    reference = evaluate(parity, parity.store, None, device, args.batch_size).counts
    rows: list[tuple[str, str, str]] = []
    failed = False
    for mode in MODES:
        try:
            counts = evaluate(parity, parity.store, mode, device, args.batch_size).counts
            differ = [c for c in reference if counts.get(c) != reference[c]]
            verdict = "OK" if not differ else "DIFF " + ",".join(differ)
            evaluate(big, big.warmup_store, mode, device, args.batch_size)  # warm-up
            t = time.perf_counter()
            evaluate(big, big.store, mode, device, args.batch_size)
            rate = f"{big.n_samples / (time.perf_counter() - t):.1f}"
        except Exception as e:  # a missing provider / device: one line, never a CPU fallback
            verdict, rate = f"ERROR {type(e).__name__}: {str(e).splitlines()[0][:160]}", "-"
        failed |= not verdict.startswith("OK")
        rows.append((mode, verdict, rate))
        print(f"gpu_check: {mode}: {verdict}", flush=True)
    rows.append(("read (reader alone)", "-", f"{read_rate(big, args.batch_size):.1f}"))
    seg = segmentation_rows(device, Path(args.workdir) / "segmentation", min(args.batch_size, 16))
    failed |= any(not verdict.startswith("OK") for _, verdict, _ in seg)
    rows += seg
    where = "CPU DRY RUN (no GPU used)" if args.cpu_dry_run else "GPU"
    print(f"\n{where}: parity on {parity.n_samples} samples vs onnxruntime CPU fp32 counts; "
          f"throughput end to end on {big.n_samples} samples of {args.size} px, batch "
          f"{args.batch_size}")  # fmt: skip
    print(f"{'mode':<28}{'samples/s':>10}  parity  (seg-*: images/s, pixel counts)")
    for mode, verdict, rate in rows:
        print(f"{mode:<28}{rate:>10}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
