"""Peak memory of ``sareval shape`` end to end on a split of N and of 10 N samples.

::

    python -m benchmarks.memory_scaling [--patches N] [--factor 10] [--size PX]
        [--arch resnet18] [--batch-size B] [--backend onnxruntime|torch] [--workdir DIR] [--reuse]

One generated SEN12MS tree of ``factor x N`` patches; two stores made from it with
``sareval preprocess``: the first N patches and all of them. ``sareval shape`` runs on each as a
user runs it (``python -m sareval shape --model M --data STORE --subset clear ...`` in a child
process); its peak RSS is the child's ``ru_maxrss`` from ``wait4``. The split's raw data grows
``factor`` times (34 bytes a pixel: 139 kB a sample at 64 px), so an evaluator that held
O(split) memory shows it; the target is a peak within 10 % of the small split's.

N must span several batches: onnxruntime's CPU arena grows over the first runs of each input
shape (a second run of the same shape allocates more than the first; the short last batch is a
second shape), so a split of one batch never reaches the steady state a long split runs in,
and would compare a transient with it. The defaults (N = 256 = 4 batches of 64) do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_WORKDIR,
    child_env,
    format_machine,
    machine_description,
    mib,
    n_cores,
    prepare_data,
    prepare_model,
    preprocess_store,
    run_measured,
    s2_names,
    write_split_list,
)

TARGET = 0.10  # allowed relative growth of the peak RSS


def shape_command(
    model: Path, store: Path, out: Path, *, backend: str, batch_size: int, threads: int
) -> list[str]:
    """``sareval shape`` as a user types it (through ``python -m sareval``)."""
    return [
        sys.executable, "-m", "sareval", "-q", "shape", "--model", str(model),
        "--data", str(store), "--subset", "clear", "--backend", backend,
        "--batch-size", str(batch_size), "--threads", str(threads),
        "--out", str(out), "--overwrite",
    ]  # fmt: skip


def measure(
    workdir: Path,
    *,
    patches: int,
    factor: int,
    size: int,
    arch: str,
    batch_size: int,
    backend: str,
    threads: int,
    repeats: int = 1,
    reuse: bool = True,
    compression: str | None = None,
) -> dict[str, Any]:
    """Peak RSS (bytes, the largest of ``repeats`` runs) of ``sareval shape`` on N and factor N."""
    data = prepare_data(workdir, patches * factor, size, reuse=reuse, compression=compression)
    model = prepare_model(workdir, arch, size, reuse=reuse)
    small_list = data["split_list"].parent / f"first{patches}_list.pkl"
    small_store = data["split_list"].parent / f"first{patches}.h5"
    if not (reuse and small_store.is_file()):
        write_split_list(small_list, s2_names(data["tree"])[:patches])
        preprocess_store(data["tree"], small_list, data["labels_pkl"], small_store, compression)
    model_path = model["onnx_model"] if backend == "onnxruntime" else model["torchscript_model"]
    runs: dict[str, Any] = {}
    for label, store, n in (
        ("N", small_store, patches),
        (f"{factor}N", data["store"], patches * factor),
    ):
        out = workdir / "runs" / f"memory-{label}-n{n}-s{size}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = shape_command(
            model_path, store, out, backend=backend, batch_size=batch_size, threads=threads
        )
        peaks, walls = [], []
        for _ in range(repeats):
            rc, rss, wall = run_measured(cmd, env=child_env(threads), quiet=True)
            if rc != 0:
                raise SystemExit(f"sareval shape failed (exit status {rc}): {' '.join(cmd)}")
            peaks.append(rss)
            walls.append(wall)
        result = json.loads(out.read_text())
        if result["n_samples"] != n:
            seen = result["n_samples"]
            raise SystemExit(f"expected {n} samples in {store}, sareval shape saw {seen}")
        runs[label] = {"n_samples": n, "peak_rss": max(peaks), "peaks": peaks, "wall_s": walls}
    small, large = runs["N"]["peak_rss"], runs[f"{factor}N"]["peak_rss"]
    template = shape_command(
        Path("MODEL"), Path("STORE"), Path("OUT"), backend=backend, batch_size=batch_size,
        threads=threads,
    )  # fmt: skip
    return {
        "runs": runs,
        "growth": large / small - 1.0,
        "flat": large <= small * (1 + TARGET),
        "sample_bytes": size * size * (2 * 4 + 13 * 2),
        "command": " ".join(template),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.memory_scaling",
        description="Peak RSS of sareval shape on a split of N and factor x N samples.",
    )
    p.add_argument("--patches", type=int, default=256, help="N: samples of the small split")
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--compression", help="store compression (default: sareval preprocess's)")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    p.add_argument("--threads", type=int, default=n_cores())
    p.add_argument("--repeats", type=int, default=1, help="runs per split (largest peak kept)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--reuse", action="store_true", help="reuse generated data and models")
    args = p.parse_args(argv)
    if args.patches < 3 * args.batch_size:
        print(
            f"warning: N = {args.patches} < 3 batches of {args.batch_size}: the small run may "
            "not reach the backend's steady-state memory (see the module docstring)",
            file=sys.stderr,
        )
    r = measure(
        args.workdir, patches=args.patches, factor=args.factor, size=args.size, arch=args.arch,
        batch_size=args.batch_size, backend=args.backend, threads=args.threads,
        repeats=args.repeats, reuse=args.reuse, compression=args.compression,
    )  # fmt: skip
    print(f"machine: {format_machine(machine_description(args.threads))}")
    print(f"per run: {r['command']}")
    for label, run in r["runs"].items():
        raw = run["n_samples"] * r["sample_bytes"]
        print(
            f"split {label:>4}: {run['n_samples']:6d} samples ({mib(raw):7.1f} MiB raw), "
            f"peak RSS {mib(run['peak_rss']):7.1f} MiB, {max(run['wall_s']):.1f} s"
        )
    verdict = "flat" if r["flat"] else "NOT flat"
    print(f"growth {100 * r['growth']:+.1f} % ({verdict}; target within {100 * TARGET:.0f} %)")
    return 0 if r["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
