"""SHAPE throughput: the naive way vs ``sareval shape`` vs the compute bound, in one run.

::

    python -m benchmarks.shape_throughput [--patches N] [--size PX] [--arch resnet18|resnet50]
        [--batch-size B] [--threads T] [--repeats R] [--device cpu|cuda] [--workdir DIR]
        [--reuse] [--modes naive,sareval-onnxruntime,sareval-torch,compute-bound]
        [--peak-tflops P] [--json OUT]

On one generated SEN12MS tree (``N`` patches of ``PX`` x ``PX``), its store, and one randomly
initialised model (BatchNorm statistics set on the data, so predictions vary) exported with
the ``sen12ms-s1s2`` preset (ONNX + TorchScript + the same weights for torch eager), with
``T`` threads (default: every core) for torch and onnxruntime in every mode:

- ``naive``: :func:`benchmarks.naive_shape.run_naive`, 2^M passes over the GeoTIFF tree (a
  per-sample rasterio ``Dataset``, torch eager, host masking, scikit-learn metrics);
- ``sareval-onnxruntime`` / ``sareval-torch``: ``sareval.evaluate`` on the store, end to end
  (model load, graph composition, session creation, streaming reads, counts, metrics,
  relevance), per backend;
- ``compute-bound``: the composed coalition graph in onnxruntime (the evaluator's own backend
  object and session options) run on raw batches already in memory: no reading, no counting,
  no metrics; ``compute-bound-torch`` (optional): the same with the torch backend;
- ``sareval-onnxruntime-shared`` / ``compute-bound-shared``: the same with ``share=True``
  (the composed graph's first conv as per-player partial convolutions once per sample,
  :mod:`sareval.evaluator.onnx_sharing`); the compute-bound mode also counts decision flips
  against the unshared graph;
- ``sareval-torch-module`` / ``sareval-torch-bf16-verified``: ``sareval.evaluate`` on the
  in-memory eager module (the notebook path; the torch backend's traced, frozen copy), fp32
  and ``precision="bf16-verified"`` (with the share of rows re-run in fp32);
- ``read``: the evaluator's reader thread alone over the split (HDF5 reads and decompression,
  labels), no compute: with ``compute-bound`` it tells whether reading or compute bounds.

Each round runs every mode once, each in a fresh child process (its peak RSS is its own, from
``wait4``): first untimed on a warm-up split (``WARMUP_SAMPLES`` patches: imports, library
loading, first allocations), then one timed pass over the whole split. Reported: the median
over ``R`` rounds of samples/s; the ratios sareval / naive and sareval / compute bound as the
median of per-round ratios (rounds interleave the modes, so a change of the machine's load
hits all of them); peak RSS per mode; the cores a mode kept busy (CPU time / wall time); model
FLOPs per forward and the achieved GFLOP/s (conv + linear MACs x 2, counting the forwards a
mode runs: 2^M per sample for naive, 2^M - 1 for the others), with ``--peak-tflops`` the
utilisation of the device's peak; and the machine.

Without rasterio (the GPU machine) the stores are written directly from the generator's arrays
and the naive mode is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_WORKDIR,
    BenchInputs,
    child_env,
    format_machine,
    machine_description,
    median,
    mib,
    n_cores,
    peak_rss_bytes,
    prepare_inputs,
    run_measured,
    set_threads,
    timed_runs,
)

MODES = (
    "naive", "sareval-onnxruntime", "sareval-torch", "compute-bound", "read",
    "sareval-torch-shared", "compute-bound-torch", "compute-bound-torch-shared",
    "compute-late", "compute-late-shared", "compute-bound-torch-shared-bf16",
    "naive-late", "sareval-torch-late", "sareval-torch-late-shared",
    "sareval-onnxruntime-shared", "compute-bound-shared",
    "sareval-torch-module", "sareval-torch-bf16-verified",
)  # fmt: skip
DEFAULT_MODES = MODES[:6]
#: end-to-end modes: (backend, share, fusion); sharing and late fusion run the eager module
BACKEND_OF_MODE = {
    "sareval-onnxruntime": ("onnxruntime", False, "early"),
    "sareval-onnxruntime-shared": ("onnxruntime", True, "early"),
    "sareval-torch": ("torch", False, "early"),
    "sareval-torch-shared": ("torch", True, "early"),
    "sareval-torch-late": ("torch", False, "late"),
    "sareval-torch-late-shared": ("torch", True, "late"),
}
#: end-to-end modes on the in-memory eager module (torch backend), by precision: the path a
#: notebook takes (``sareval.evaluate(module, ..., card=card)``)
MODULE_MODES = {"sareval-torch-module": "fp32", "sareval-torch-bf16-verified": "bf16-verified"}
#: torch compute-bound modes: (fusion, share, precision); share and late fusion run the eager
#: module (TorchScript otherwise); late fusion is a randomly initialised LateFusion network
TORCH_COMPUTE_MODES = {
    "compute-bound-torch": ("early", False, "fp32"),
    "compute-bound-torch-shared": ("early", True, "fp32"),
    "compute-late": ("late", False, "fp32"),
    "compute-late-shared": ("late", True, "fp32"),
    "compute-bound-torch-shared-bf16": ("early", True, "bf16"),
}
#: (mode, reference) pairs whose speed ratio is reported
RATIOS = (
    ("sareval-onnxruntime", "naive"),
    ("sareval-onnxruntime-shared", "naive"),
    ("sareval-onnxruntime-shared", "sareval-onnxruntime"),
    ("sareval-onnxruntime-shared", "compute-bound-shared"),
    ("compute-bound-shared", "compute-bound"),
    ("compute-bound-shared", "naive"),
    ("sareval-torch", "naive"),
    ("sareval-onnxruntime", "compute-bound"),
    ("sareval-torch", "compute-bound"),
    ("sareval-torch", "compute-bound-torch"),
    ("sareval-torch-shared", "naive"),
    ("sareval-torch-shared", "sareval-torch"),
    ("compute-bound-torch-shared", "compute-bound-torch"),
    ("compute-late-shared", "compute-late"),
    ("compute-bound-torch-shared-bf16", "compute-bound-torch-shared"),
    ("sareval-torch-late", "naive-late"),
    ("sareval-torch-late-shared", "naive-late"),
    ("sareval-torch-late-shared", "sareval-torch-late"),
    ("sareval-torch-module", "sareval-onnxruntime"),
    ("sareval-torch-bf16-verified", "sareval-onnxruntime"),
    ("sareval-torch-bf16-verified", "sareval-torch-module"),
)


def fusion_of(mode: str) -> str:
    """The network a mode runs: the late-fusion one for ``*late*`` modes, else early fusion."""
    return "late" if "late" in mode else "early"


#: the metric whose V(S) per coalition must be equal across the modes that evaluate
CHECK_METRIC = {"single-label": "oa", "multi-label": "f1_samples"}


# --- the modes (each runs in a child process) ------------------------------------------------
def check_values(metrics: dict[str, Any], task: str) -> dict[str, float] | None:
    """V(S) per coalition of :data:`CHECK_METRIC` from a results document's ``metrics``."""
    entry = metrics.get(CHECK_METRIC[task])
    return None if entry is None else dict(entry["V"])


def _n_players(inp: BenchInputs) -> int:
    from sareval.card import read_card

    return len(read_card(inp.onnx_model).modalities)


def run_naive_mode(
    inp: BenchInputs,
    *,
    batch_size: int,
    repeats: int,
    device: str = "cpu",
    workers: int = 0,
    fusion: str = "early",
) -> dict[str, Any]:
    """Time :func:`benchmarks.naive_shape.run_naive` over the split (after a warm-up split);
    ``fusion="late"``: on the late-fusion network of :func:`eager_network`."""
    import torch

    from benchmarks.naive_shape import load_split, run_naive
    from sareval.card import read_card
    from sareval.models import build_model

    card = read_card(inp.onnx_model)
    names, labels = load_split(inp.tree, inp.split_list, inp.labels_pkl)
    warm, _ = load_split(inp.tree, inp.warmup_list, inp.labels_pkl)

    def load_model() -> Any:
        if fusion == "late":
            return eager_network(inp, "late")
        model = build_model(inp.arch, card.n_channels, card.n_classes, fusion="early")
        model.load_state_dict(torch.load(inp.state_dict, weights_only=True))
        return model

    def one(split: list[str]) -> dict[str, Any]:
        # the model is loaded inside the timed call, as a script does before its loops
        return run_naive(
            inp.tree, split, labels, load_model(), card,
            batch_size=batch_size, num_workers=workers, device=device,
        )  # fmt: skip

    one(warm)
    times, cpu, result = timed_runs(lambda: one(names), repeats)
    out = {
        "times": times,
        "cpu": cpu,
        "n_samples": result["n_samples"],
        "forwards_per_sample": 2 ** _n_players(inp),
        "V_check": check_values(result["metrics"], inp.task),
    }
    if fusion == "late":  # executed FLOPs of the late network: 2^M forwards a sample
        out["flop_per_sample"] = (
            2 ** _n_players(inp) * coalition_flops_per_sample(inp, "late", False)
            / (2 ** _n_players(inp) - 1)
        )  # fmt: skip
    return out


def coalition_flops_per_sample(inp: BenchInputs, fusion: str, share: bool, rows: int = 8) -> float:
    """FLOPs executed per sample by the torch coalition module of :func:`eager_network` (all
    2^M - 1 non-empty coalitions; ``share``: late fusion's encoders once and the head per
    coalition, or early fusion's first conv as per-player partials once; onnxruntime's shared
    graph runs the same convolutions)."""
    import numpy as np
    import torch

    from benchmarks.common import executed_flops
    from sareval.card import read_card
    from sareval.evaluator.backends import load_model, make_backend
    from sareval.evaluator.preamble import build_preamble
    from sareval.store import Store

    loaded = load_model(eager_network(inp, fusion), card=read_card(inp.onnx_model))
    with Store(inp.store) as store:
        sub = store.subset(inp.subset)
        bands = {s: store.bands(s) for s in ("s1", "s2")}
        dtypes = {s: store.image_spec(sub, s)[1] for s in ("s1", "s2")}
        raw = store.read_batch(sub, 0, rows).arrays
        image_size = store.image_size
    backend = make_backend(
        loaded, build_preamble(loaded.card, bands), backend="torch", device="cpu",
        provider=None, input_dtypes=dtypes, image_size=image_size, share=share,
    )  # fmt: skip
    backend.run(raw)  # the baseline's encoder outputs are computed once per run, not counted
    x = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
    return executed_flops(backend.module, x) / rows


def eager_network(inp: BenchInputs, fusion: str = "early", seed: int = 0) -> Any:
    """The benchmark's model as an eager module (early: the exported weights; late: a
    randomly initialised :class:`~sareval.models.fusion.LateFusion` of the same architecture)."""
    import torch

    from sareval.card import read_card
    from sareval.models import build_model, build_model_for_card

    card = read_card(inp.onnx_model)
    if fusion == "early":
        model = build_model(inp.arch, card.n_channels, card.n_classes, fusion="early")
        model.load_state_dict(torch.load(inp.state_dict, weights_only=True))
        return model.eval()
    torch.manual_seed(seed)
    return build_model_for_card(inp.arch, card, "late").eval()


def run_sareval_mode(
    inp: BenchInputs,
    backend: str,
    *,
    share: bool = False,
    fusion: str = "early",
    batch_size: int,
    repeats: int,
    threads: int,
    device: str = "cpu",
    module: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Time ``sareval.evaluate`` end to end on the store (after a warm-up store); sharing,
    late fusion and ``module`` run the eager module of :func:`eager_network`, built inside the
    timed call like a model file is loaded. ``bf16-verified`` also reports the share of
    network rows re-run in fp32 (the backend's ``precision_record`` of the timed pass)."""
    import sareval
    from sareval.card import read_card
    from sareval.evaluator.backends import TorchBackend

    eager = (share and backend == "torch") or fusion == "late" or module
    card = read_card(inp.onnx_model) if eager else None
    records: list[dict[str, Any]] = []
    close = TorchBackend.close

    def keep_record(self: Any) -> None:  # the runner closes the backend after the pass
        records.append(dict(self.precision_record or {}))
        close(self)

    def one(store: str) -> dict[str, Any]:
        if eager:
            model: Any = eager_network(inp, fusion)
        else:
            model = inp.onnx_model if backend == "onnxruntime" else inp.torchscript_model
        return sareval.evaluate(
            model, (store, inp.subset), card=card, backend=backend, device=device,
            batch_size=batch_size, threads=threads, share=share, precision=precision,
        ).doc  # fmt: skip

    faults: list[int] = []

    def counted(store: str) -> dict[str, Any]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        doc = one(store)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return doc

    TorchBackend.close = keep_record  # type: ignore[method-assign]
    try:
        one(inp.warmup_store)
        times, cpu, result = timed_runs(lambda: counted(inp.store), repeats)
    finally:
        TorchBackend.close = close  # type: ignore[method-assign]
    metrics = result["metrics"]
    out = {
        "times": times,
        "cpu": cpu,
        "n_samples": result["n_samples"],
        "forwards_per_sample": 2 ** _n_players(inp) - 1,
        "V_check": check_values(metrics, inp.task),
        "minor_faults": faults,  # page faults per timed run (sareval.evaluator.heap)
    }
    if fusion == "late" or share:
        out["flop_per_sample"] = coalition_flops_per_sample(inp, fusion, share)
    if precision == "bf16-verified" and records and records[-1].get("rows_total"):
        rec = records[-1]
        out["precision_record"] = rec
        out["rerun_share"] = (rec["rows_rerun"] + rec["rows_audited"]) / rec["rows_total"]
    return out


def run_compute_bound_mode(
    inp: BenchInputs,
    *,
    batch_size: int,
    repeats: int,
    threads: int,
    device: str = "cpu",
    backend_name: str = "onnxruntime",
    max_resident_batches: int = 4,
    fusion: str = "early",
    share: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Time the coalition graph (the evaluator's backend object: composed ONNX graph in
    onnxruntime, or the torch module) on raw batches already in host memory.

    A pass runs the same batch sizes as the evaluator over the split (full batches, then the
    remainder, then the empty coalition once on one row), cycling over at most
    ``max_resident_batches`` batches read beforehand, so memory stays small at any split size.
    Outputs are copied to the host (as the evaluator's onnxruntime path does); nothing is
    counted; inside :func:`~sareval.evaluator.heap.reused_heap`, as an evaluation runs. With
    ``pad_to`` as the evaluator sets it on CUDA (every batch padded to
    ``batch_size``). Torch modes on the eager module (``share``, late ``fusion``) also report
    the FLOPs executed per sample with and without sharing (FlopCounterMode) and, against the
    unshared fp32 graph on the first two resident batches, the decisions that flip and the
    largest absolute output difference.
    """
    import numpy as np

    from sareval.card import read_card
    from sareval.evaluator.backends import load_model, make_backend
    from sareval.evaluator.heap import reused_heap
    from sareval.evaluator.preamble import build_preamble
    from sareval.store import Store

    eager = backend_name == "torch" and (share or fusion == "late")
    if eager:
        loaded = load_model(eager_network(inp, fusion), card=read_card(inp.onnx_model))
    else:
        loaded = load_model(
            inp.onnx_model if backend_name == "onnxruntime" else inp.torchscript_model
        )
    with Store(inp.store) as store:
        sub = store.subset(inp.subset)
        bands = {s: store.bands(s) for s in ("s1", "s2")}
        dtypes = {s: store.image_spec(sub, s)[1] for s in ("s1", "s2")}
        pre = build_preamble(loaded.card, bands)
        n = len(sub)
        resident = [
            store.read_batch(sub, a, min(a + batch_size, n)).arrays
            for a in range(0, min(n, batch_size * max_resident_batches), batch_size)
        ]
        last = n % batch_size
        tail = store.read_batch(sub, n - last, n).arrays if last else None
        image_size = store.image_size
    device_type = device.split(":")[0]
    backend = make_backend(
        loaded, pre, backend=backend_name, device=device, provider=None,
        input_dtypes=dtypes, image_size=image_size, threads=threads,
        pad_to=batch_size if device_type == "cuda" else None,
        share=share, **({"precision": precision} if backend_name == "torch" else {}),
    )  # fmt: skip
    full = n // batch_size
    one_row = {s: a[:1] for s, a in resident[0].items()}
    empty = pre.empty_mask()
    sink = np.zeros((), np.float64)

    def one_pass() -> None:
        nonlocal sink
        for i in range(full):
            out = backend.run(resident[i % len(resident)])
            sink = sink + out[0, 0, 0]
        if tail is not None:
            sink = sink + backend.run(tail)[0, 0, 0]
        sink = sink + backend.run(one_row, empty)[0, 0, 0]

    with reused_heap():  # as inside an evaluation (sareval.evaluator.heap)
        times, cpu, _ = timed_runs(one_pass, repeats, warmup=1)  # warm-up: first allocations
    out = {
        "times": times,
        "cpu": cpu,
        "n_samples": n,
        "forwards_per_sample": 2 ** len(pre.players) - 1,
        "providers": list(backend.providers),
        "V_check": None,
    }
    if eager or share:
        ref = make_backend(
            loaded, pre, backend=backend_name, device=device, provider=None,
            input_dtypes=dtypes, image_size=image_size, share=False,
        )  # fmt: skip
        out.update(check_against_unshared(backend, ref, resident[:2], loaded.card))
        if not eager:  # onnxruntime: the same convolutions, counted on the torch module
            out["flop_per_sample"] = coalition_flops_per_sample(inp, fusion, True)
            out["flop_per_sample_unshared"] = coalition_flops_per_sample(inp, fusion, False)
        out["share"] = backend.share
    return out


def check_against_unshared(
    backend: Any, ref: Any, batches: list[dict[str, Any]], card: Any, rows: int = 8
) -> dict[str, Any]:
    """FLOPs per sample (``rows`` rows) of ``backend`` and of the unshared fp32 ``ref``; decision
    flips and max |output difference| of ``backend`` against ``ref`` over ``batches``."""
    import numpy as np
    import torch

    from benchmarks.common import executed_flops

    def decide(o: np.ndarray) -> np.ndarray:
        if card.task == "single-label":
            return o.argmax(-1)
        return o > (0.0 if card.output == "logits" else 0.5)

    flips = checked = 0
    diff = 0.0
    for raw in batches:
        a, b = backend.run(raw), ref.run(raw)
        da, db = decide(a), decide(b)
        flips += int((da != db).sum())
        checked += da.size
        diff = max(diff, float(np.abs(a - b).max()))
    out: dict[str, Any] = {"flips": flips, "checked_decisions": checked, "max_abs_diff": diff}
    if hasattr(backend, "module"):  # the torch backend: its module's FLOPs
        x = {s: torch.from_numpy(np.ascontiguousarray(v[:rows])) for s, v in batches[0].items()}
        n = len(next(iter(x.values())))
        out["flop_per_sample"] = executed_flops(backend.module, x) / n
        out["flop_per_sample_unshared"] = executed_flops(ref.module, x) / n
    return out


def run_read_mode(inp: BenchInputs, *, batch_size: int, repeats: int) -> dict[str, Any]:
    """Time reading the split alone, as the evaluator reads it: its reader thread
    (:class:`~sareval.evaluator.reader.BatchReader`: chunked HDF5 reads and decompression into
    preallocated buffers, labels), consumed without computing anything."""
    from sareval.card import read_card
    from sareval.evaluator.preamble import build_preamble
    from sareval.evaluator.reader import BatchReader
    from sareval.store import Store

    card = read_card(inp.onnx_model)
    with Store(inp.store) as store:
        sub = store.subset(inp.subset)
        pre = build_preamble(card, {s: store.bands(s) for s in ("s1", "s2")})
        labels = store.find_labels(card.task, card.class_names).name

        def one_pass() -> int:
            seen = 0
            with BatchReader(
                store, sub, 0, len(sub), batch_size, sensors=pre.sensors, label_sets=[labels]
            ) as reader:
                for batch, _ in reader:
                    seen += len(batch)
            return seen

        times, cpu, seen = timed_runs(one_pass, repeats, warmup=1)
    return {
        "times": times, "cpu": cpu, "n_samples": seen, "forwards_per_sample": 0, "V_check": None,
    }  # fmt: skip


def run_mode(mode: str, inp: BenchInputs, args: argparse.Namespace) -> dict[str, Any]:
    """One mode in this process; adds its own peak RSS and the thread count."""
    set_threads(args.threads)
    common = {"batch_size": args.batch_size, "repeats": args.repeats, "device": args.device}
    if mode in ("naive", "naive-late"):
        out = run_naive_mode(inp, workers=args.naive_workers, fusion=fusion_of(mode), **common)
    elif mode in BACKEND_OF_MODE:
        backend, share, fusion = BACKEND_OF_MODE[mode]
        out = run_sareval_mode(
            inp, backend, share=share, fusion=fusion, threads=args.threads, **common
        )
    elif mode in MODULE_MODES:
        out = run_sareval_mode(
            inp, "torch", module=True, precision=MODULE_MODES[mode], threads=args.threads,
            **common,
        )  # fmt: skip
    elif mode in ("compute-bound", "compute-bound-shared"):
        out = run_compute_bound_mode(
            inp, threads=args.threads, share=mode.endswith("-shared"), **common
        )
    elif mode == "read":
        out = run_read_mode(inp, batch_size=args.batch_size, repeats=args.repeats)
    elif mode in TORCH_COMPUTE_MODES:
        fusion, share, precision = TORCH_COMPUTE_MODES[mode]
        out = run_compute_bound_mode(
            inp, threads=args.threads, backend_name="torch", fusion=fusion, share=share,
            precision=precision, **common,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown mode {mode!r}")
    out["mode"] = mode
    out["threads"] = args.threads
    out["peak_rss_self"] = peak_rss_bytes()
    return out


# --- the parent: prepare, run each mode in a child, summarise ---------------------------------
def summarise(
    rounds: list[dict[str, dict[str, Any]]],
    inp: BenchInputs,
    machine: dict[str, Any],
    peak_tflops: float | None = None,
    gemm_peaks: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Samples/s, GFLOP/s, ratios from ``rounds`` (each: mode -> one child's output).

    A mode's figure is the median over rounds; a ratio is the median of the per-round ratios
    (modes of one round ran minutes apart at most, so a change of the machine's load between
    rounds cancels out), with the ratio of the medians beside it.
    """
    flop_per_forward = 2 * inp.macs_per_forward
    modes = [m for m in MODES if any(m in r for r in rounds)]
    rows: dict[str, Any] = {}
    for mode in modes:
        runs = [r[mode] for r in rounds if mode in r]
        times = [t for r in runs for t in r["times"]]
        cpus = [c for r in runs for c in r["cpu"]]
        n, fwd = runs[0]["n_samples"], runs[0]["forwards_per_sample"]
        rate = n / median(times)
        flop = runs[0].get("flop_per_sample") or fwd * flop_per_forward  # executed FLOPs
        rows[mode] = {
            "median_s": median(times),
            "times_s": times,
            "samples_per_s": rate,
            "gflop_per_sample": flop / 1e9,
            "gflop_per_s": rate * flop / 1e9,
            "forwards_per_sample": fwd,
            "busy_cores": median([c / t for c, t in zip(cpus, times, strict=True)]),
            "peak_rss_mib": mib(max(r["peak_rss"] for r in runs)),
            "n_samples": n,
        }
        for key in ("flop_per_sample_unshared", "flips", "checked_decisions", "max_abs_diff",
                    "share", "rerun_share", "precision_record"):  # fmt: skip
            if key in runs[0]:
                rows[mode][key] = runs[0][key]
        if all("minor_faults" in r for r in runs):
            rows[mode]["minor_faults"] = median([f for r in runs for f in r["minor_faults"]])
        if gemm_peaks:
            peak = gemm_peaks["bf16" if "-bf16" in mode else "fp32"]
            rows[mode]["of_gemm_peak"] = rows[mode]["gflop_per_s"] / peak
    ratios: dict[str, Any] = {}
    for mode, ref in RATIOS:
        if mode in rows and ref in rows:
            per_round = [
                median(r[ref]["times"]) / median(r[mode]["times"])
                for r in rounds
                if mode in r and ref in r
            ]
            ratios[f"{mode} / {ref}"] = {
                "median_of_rounds": median(per_round),
                "rounds": per_round,
                "of_medians": rows[mode]["samples_per_s"] / rows[ref]["samples_per_s"],
            }
    # the evaluations of one network must agree: V(S) of CHECK_METRIC per coalition, mode by
    # mode (first round), to 1e-12 (a metric summed in another order may differ in the last bit)
    agreement: dict[str, Any] = {}
    for fusion in ("early", "late"):
        values = {m: rounds[0][m]["V_check"] for m in modes
                  if fusion_of(m) == fusion and rounds[0].get(m, {}).get("V_check")}  # fmt: skip
        first = next(iter(values.values()), None)
        agreement["agreement" if fusion == "early" else "agreement_late"] = {
            "metric": CHECK_METRIC[inp.task],
            "modes": sorted(values),
            "equal": all(
                v.keys() == first.keys() and all(abs(v[c] - first[c]) <= 1e-12 for c in v)
                for v in values.values()
            ),
            "V": values,
        }
    if peak_tflops:
        for r in rows.values():
            r["utilisation"] = r["gflop_per_s"] / (1000 * peak_tflops)
    return {
        "machine": machine,
        "inputs": json.loads(inp.to_json()),
        "model_gflop_per_forward": flop_per_forward / 1e9,
        "gemm_peak_gflops": gemm_peaks,
        "modes": rows,
        "ratios": ratios,
        **agreement,
    }


def weights_of(inp: dict[str, Any]) -> str:
    epochs = inp.get("train_epochs", 0)
    return f"trained {epochs} epochs on another generated split" if epochs else "random init"


def format_summary(s: dict[str, Any]) -> str:
    inp = s["inputs"]
    lines = [
        f"command: {s['command']}",
        f"machine: {format_machine(s['machine'])}",
        f"load average before / after: {s['load_before']} / {s['load_after']}",
        f"split: {inp['n_samples']} samples of {inp['size']}x{inp['size']} px; model "
        f"{inp['arch']} ({inp['task']}, {weights_of(inp)}, sen12ms-s1s2 card); "
        f"{s['model_gflop_per_forward']:.3f} GFLOP per forward per sample "
        f"(conv + linear MACs x 2); batch {s['batch_size']}; {s['threads']} threads per mode; "
        f"store compression {inp['compression']}",
        "GEMM peak (torch.mm 2048^2, same threads, this run): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in (s.get("gemm_peak_gflops") or {}).items()),
        "",
        f"{'mode':<32}{'median s':>9}{'samples/s':>10}{'GFLOP/s':>9}{'fwd/sample':>11}"
        f"{'busy cores':>11}{'peak RSS MiB':>13}  runs (s)",
    ]
    for mode, r in s["modes"].items():
        runs = ", ".join(f"{t:.2f}" for t in r["times_s"])
        util = f"  utilisation {100 * r['utilisation']:.1f} %" if "utilisation" in r else ""
        if "of_gemm_peak" in r:
            util += f"  {100 * r['of_gemm_peak']:.1f} % of GEMM peak"
        if "flips" in r:
            util += (
                f"  [{r['gflop_per_sample']:.3f} GFLOP/sample executed, unshared "
                f"{r['flop_per_sample_unshared'] / 1e9:.3f}; {r['flips']} flips of "
                f"{r['checked_decisions']} vs unshared fp32, max|d| {r['max_abs_diff']:.1e}]"
            )
        if "rerun_share" in r:
            util += f"  [{100 * r['rerun_share']:.1f} % of rows re-run in fp32 (incl. audit)]"
        if "minor_faults" in r:
            util += f"  [{r['minor_faults']:.0f} page faults]"
        lines.append(
            f"{mode:<32}{r['median_s']:>9.2f}{r['samples_per_s']:>10.1f}{r['gflop_per_s']:>9.1f}"
            f"{r['forwards_per_sample']:>11d}{r['busy_cores']:>11.2f}{r['peak_rss_mib']:>13.0f}"
            f"  {runs}{util}"
        )
    lines.append("")
    for agree in (s["agreement"], s.get("agreement_late") or {"modes": []}):
        if len(agree["modes"]) > 1:
            verdict = "equal" if agree["equal"] else "DIFFERENT"
            modes = ", ".join(agree["modes"])
            lines.append(f"{agree['metric']} per coalition of {modes}: {verdict}")
    for name, r in s["ratios"].items():
        rounds = ", ".join(f"{x:.2f}" for x in r["rounds"])
        lines.append(
            f"{name:<38}{r['median_of_rounds']:6.2f}x  (rounds: {rounds}; "
            f"ratio of medians {r['of_medians']:.2f}x)"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.shape_throughput",
        description="SHAPE throughput: naive vs sareval shape vs the compute bound.",
    )
    p.add_argument("--patches", type=int, default=400, help="patches in the generated tree")
    p.add_argument("--size", type=int, default=128, help="patch side in pixels")
    p.add_argument("--arch", default="resnet18", help="resnet18 | resnet50 | ...")
    p.add_argument("--task", default="single-label", choices=("single-label", "multi-label"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--compression", help="store compression (default: sareval preprocess's default)"
    )
    p.add_argument("--threads", type=int, default=n_cores(), help="default: every core")
    p.add_argument(
        "--repeats", type=int, default=3,
        help="rounds; each round runs every mode once, in a fresh process (median over rounds)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--naive-workers", type=int, default=0, help="DataLoader workers (naive)")
    p.add_argument(
        "--modes", default=",".join(DEFAULT_MODES),
        help=f"comma-separated, from: {', '.join(MODES)}",
    )  # fmt: skip
    p.add_argument(
        "--peak-tflops", type=float,
        help="the device's dense peak (TFLOP/s) for the precision used: prints FLOP utilisation",
    )  # fmt: skip
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--reuse", action="store_true", help="reuse generated data and models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-epochs", type=int, default=0,
        help="train the model this many epochs on another generated split (default 0: random "
        "init); bf16-verified re-runs rows with small margins, which a trained model has fewer of",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument(
        "--fresh-heap", action="store_true",
        help="evaluate without sareval.evaluator.heap.reused_heap (glibc's default: every "
        "large buffer mapped afresh), to measure what it is worth",
    )  # fmt: skip
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode
    p.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    return args


def child_command(mode: str, args: argparse.Namespace, inputs: Path, result: Path) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.shape_throughput", "--child", mode]
    cmd += ["--inputs", str(inputs), "--result", str(result), "--repeats", "1"]
    cmd += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    cmd += ["--device", args.device, "--naive-workers", str(args.naive_workers)]
    return cmd + (["--fresh-heap"] if args.fresh_heap else [])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.fresh_heap:
            from sareval.evaluator import heap

            heap.enabled = False
        inp = BenchInputs.from_json(args.inputs.read_text())
        out = run_mode(args.child, inp, args)
        args.result.write_text(json.dumps(out))
        return 0
    command = "python -m benchmarks.shape_throughput " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    inp = prepare_inputs(
        args.workdir, patches=args.patches, size=args.size, arch=args.arch, task=args.task,
        seed=args.seed, reuse=args.reuse, compression=args.compression,
        train_epochs=args.train_epochs,
    )  # fmt: skip
    (args.workdir / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="throughput-", dir=args.workdir / "runs"))
    inputs_path = run_dir / "inputs.json"
    inputs_path.write_text(inp.to_json())
    modes = args.modes.split(",")
    if "naive" in modes and not inp.tree:
        print("no GeoTIFF tree (rasterio missing): the naive mode is skipped", file=sys.stderr)
        modes.remove("naive")
    load_before = load_average()
    from benchmarks.common import gemm_peak_gflops

    gemm_peaks = {d: gemm_peak_gflops(d, threads=args.threads) for d in ("fp32", "bf16")}
    rounds: list[dict[str, dict[str, Any]]] = []
    failed = []
    for i in range(args.repeats):
        this_round: dict[str, dict[str, Any]] = {}
        for mode in modes:
            result_path = run_dir / f"{mode}.json"
            result_path.unlink(missing_ok=True)
            print(f"round {i + 1}/{args.repeats}: {mode} ...", file=sys.stderr, flush=True)
            cmd = child_command(mode, args, inputs_path, result_path)
            rc, rss, wall = run_measured(cmd, env=child_env(args.threads))
            if rc != 0 or not result_path.is_file():
                print(f"{mode} failed (exit status {rc})", file=sys.stderr)
                failed.append(mode)
                continue
            this_round[mode] = json.loads(result_path.read_text())
            this_round[mode]["peak_rss"] = rss
            this_round[mode]["wall_s"] = wall
        rounds.append(this_round)
    summary = summarise(
        rounds, inp, machine_description(args.threads), args.peak_tflops, gemm_peaks
    )
    summary.update(
        command=command, load_before=load_before, load_after=load_average(),
        batch_size=args.batch_size, threads=args.threads, failed=failed,
    )  # fmt: skip
    print(format_summary(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
