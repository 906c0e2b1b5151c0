"""Shared pieces of the benchmarks: machine description, threads, timing, peak memory, model
FLOPs, and the generated inputs (SEN12MS tree, store, exported models) cached under a workdir.

Workdir layout (default ``/tmp/sareval-bench``, never inside the repository)::

    data-n<N>-s<PX>-seed<S>-<compression>/
                                   synth/ (sen12ms/: GeoTIFF tree + label pickle; sen12mscr/),
                                   bench_list.pkl (every s2 patch, sorted), test.h5 (its
                                   store), warmup_list.pkl + warmup.h5 (the first 64), done.json
    model-<arch>-s<PX>-<task>-seed<S>-<config hash>/
                                   model.onnx, model.pt (TorchScript), state_dict.pt,
                                   card.json, done.json
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_WORKDIR = Path("/tmp/sareval-bench")
REPO_ROOT = Path(__file__).resolve().parent.parent
PRESET = "sen12ms-s1s2"
#: samples of the warm-up store (one-time costs: imports, library loading, first allocations)
WARMUP_SAMPLES = 64


# --- machine ------------------------------------------------------------------------------------
def cpu_model() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` as a fallback)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def n_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def memory_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine_description(threads: int | None = None) -> dict[str, Any]:
    """CPU model, cores, memory, load average, package versions and the thread setting."""
    import h5py
    import onnxruntime
    import torch

    desc: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": n_cores(),
        "memory_gib": round(memory_total_gib(), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import rasterio

        desc["rasterio"] = rasterio.__version__
    except ImportError:  # the GPU machine may lack rasterio: the naive mode then cannot run
        desc["rasterio"] = None
    return desc


def format_machine(desc: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in desc["load_average"])
    return (
        f"{desc['cpu']}, {desc['cores']} cores, {desc['memory_gib']} GiB; "
        f"python {desc['python']}, torch {desc['torch']}, onnxruntime {desc['onnxruntime']}, "
        f"numpy {desc['numpy']}, h5py {desc['h5py']}, rasterio {desc['rasterio']}; "
        f"threads {desc['threads']}; load average {load}"
        + (f"; GPU {desc['cuda']}" if desc.get("cuda") else "")
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in torch (intra-op) in this process; onnxruntime sessions take
    theirs from the evaluator's option (the same number)."""
    import torch

    torch.set_num_threads(threads)


def child_env(threads: int) -> dict[str, str]:
    """Environment for a benchmark child process: ``threads`` for OpenMP/MKL, repo importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


# --- timing and memory -------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its reaped children (DataLoader workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_runs(
    fn: Callable[[], Any], repeats: int, warmup: int = 0
) -> tuple[list[float], list[float], Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns (wall seconds, CPU seconds, last result); CPU / wall is the number of cores the run
    kept busy (below the thread count when other processes took cores or threads waited).
    """
    out = None
    for _ in range(warmup):
        out = fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return walls, cpus, out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM`` of ``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: forks and execs the command, waits for it with ``wait4`` and writes "status maxrss_kib"
_LAUNCHER = """
import os, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, quiet: bool = False
) -> tuple[int, int, float]:
    """Run ``cmd`` (``quiet``: its stdout discarded); return (exit status, its peak RSS in
    bytes, wall seconds).

    The peak is ``ru_maxrss`` from ``wait4`` (the largest of the process and the descendants it
    waited for), read by a small launcher process that forks the command. Linux carries the
    RSS high-water mark of the forking process over ``fork`` + ``exec``, so waiting for a child
    of THIS (large) process directly would report at least this process's own RSS; forked from
    the launcher (``python -S``, about 10 MiB) it is the command's own peak.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sareval-bench-") as tmp:
        report = Path(tmp) / "rusage"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
            env=env,
            stdout=subprocess.DEVNULL if quiet else None,
        )
        wall = time.perf_counter() - t0
        if not report.is_file():
            return 127, 0, wall
        status, maxrss_kib = (int(x) for x in report.read_text().split())
    return status, maxrss_kib * 1024, wall


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


# --- model FLOPs --------------------------------------------------------------------------------
def model_macs(model: Any, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one sample (conv and linear layers only).

    Conv: output elements x (in_channels / groups) x kernel area; linear: output elements x
    in_features; counted by forward hooks on a batch of 1. FLOPs = 2 x MACs.
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        k = m.weight.shape[2] * m.weight.shape[3]  # type: ignore[index]
        total += out.numel() * (m.in_channels // m.groups) * k  # type: ignore[operator]

    def linear_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features  # type: ignore[operator]

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def gemm_peak_gflops(
    dtype: str = "fp32", threads: int = 2, n: int = 2048, seconds: float = 2.0
) -> float:
    """Achieved GFLOP/s of ``torch.mm`` on n x n ``dtype`` (fp32 / bf16) matrices with ``threads``
    threads (2 n^3 FLOP per product; best of ~``seconds`` of repeats): the machine's practical
    dense peak, the physical bound a mode's GFLOP/s is held against."""
    import time

    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
        torch.mm(a, b)  # warm-up
        best, t_end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(old)


def executed_flops(module: Any, *args: Any) -> int:
    """FLOPs torch executes for ``module(*args)`` (convs and matmuls, FlopCounterMode). The
    torch backend's frozen copies (:class:`~sareval.evaluator.torch_speed.FastNetwork`) run
    their eager network meanwhile: a TorchScript graph's ops are invisible to the counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sareval.evaluator.torch_speed import FastNetwork

    fast = [m for m in module.modules() if isinstance(m, FastNetwork)] if hasattr(
        module, "modules"
    ) else []  # fmt: skip
    saved = [m.fast for m in fast]
    for m in fast:
        m.fast = m.network
    counter = FlopCounterMode(display=False)
    try:
        with torch.inference_mode(), counter:
            module(*args)
    finally:
        for m, f in zip(fast, saved, strict=True):
            m.fast = f
    return int(counter.get_total_flops())


# --- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchInputs:
    """Everything a benchmark mode needs, as paths (JSON-able, handed to child processes)."""

    tree: str  # SEN12MS root (GeoTIFF tree)
    split_list: str  # pickle: list of s2 file names (the evaluated split)
    labels_pkl: str  # IGBP_probability_labels.pkl
    store: str  # HDF5 store of split_list
    subset: str  # store subset = split_list with clear optical
    warmup_list: str  # the first WARMUP_SAMPLES names of split_list
    warmup_store: str  # their store
    onnx_model: str
    torchscript_model: str
    state_dict: str
    arch: str
    task: str
    size: int
    n_samples: int
    macs_per_forward: int  # conv + linear MACs of one model forward, one sample
    compression: str  # of the stores
    train_epochs: int = 0  # 0: random init (BatchNorm statistics calibrated); else trained

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchInputs:
        return cls(**json.loads(text))


def _done(folder: Path, config: dict[str, Any]) -> bool:
    marker = folder / "done.json"
    return marker.is_file() and json.loads(marker.read_text()) == config


def _mark_done(folder: Path, config: dict[str, Any]) -> None:
    (folder / "done.json").write_text(json.dumps(config, sort_keys=True))


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def s2_names(tree: Path) -> list[str]:
    """Every s2 patch file name of a SEN12MS tree, sorted."""
    return sorted(p.name for p in tree.glob("*/s2_*/*_s2_*_p*.tif"))


def write_split_list(path: Path, names: list[str]) -> None:
    """A split list as SEN12MS ships them: a pickled list of s2 file names."""
    with open(path, "wb") as f:
        pickle.dump(list(names), f, protocol=2)


def default_compression() -> str:
    """The store compression ``sareval preprocess`` uses by default."""
    from sareval.preprocess.pipeline import DEFAULT_COMPRESSION

    return DEFAULT_COMPRESSION


def preprocess_store(
    tree: Path, split_list: Path, labels_pkl: Path, out: Path, compression: str | None = None
) -> Path:
    """``sareval preprocess sen12ms TREE --split-list LIST --labels PKL --out OUT
    [--compression C]``."""
    from sareval.preprocess.sen12ms import preprocess_sen12ms

    return preprocess_sen12ms(
        tree, out, split_list=split_list, labels=labels_pkl, overwrite=True, progress=False,
        compression=compression or default_compression(),
    )  # fmt: skip


def write_store_direct(
    out: Path, patches: int, size: int, seed: int = 0, compression: str | None = None
) -> Path:
    """A SEN12MS store of ``patches`` synthetic patches written straight from the generator's
    arrays (no GeoTIFFs, no rasterio: for machines without it, e.g. the GPU machine).

    Same signal model and labels as ``sareval synth`` + ``sareval preprocess``; one subset
    ``clear`` with every row.
    """
    from sareval.bands import S1_BANDS, S2_BANDS
    from sareval.preprocess.pipeline import compression_filter
    from sareval.preprocess.sen12ms import label_rows, label_specs
    from sareval.preprocess.synth_sen12ms import (
        SEASONS,
        igbp_signatures,
        plan_scenes,
        render_sen12ms_patch,
    )
    from sareval.store import SensorSpec, StoreWriter

    rng = np.random.default_rng(np.random.SeedSequence([seed, 9999]))
    todo = [(sc, p) for sc in plan_scenes(rng, patches, 0.0) for p in sc.patches]
    signatures = igbp_signatures()
    writer = StoreWriter(
        out, dataset="sen12ms", split="bench", default_task="single-label",
        ids=[f"{SEASONS[sc.season]}_{sc.scene}_p{p}" for sc, p in todo], height=size,
        width=size, labels=label_specs(0.1), config={"direct": [patches, size, seed]},
        sensors=[SensorSpec("s1", S1_BANDS, "float32"), SensorSpec("s2", S2_BANDS, "uint16")],
        chunk_rows=max(1, (4 << 20) // (len(S2_BANDS) * size * size * 2)), overwrite=True,
        compression=compression_filter(compression or default_compression()),
    )  # fmt: skip
    block = 16
    for a in range(0, len(todo), block):
        rendered = [
            render_sen12ms_patch(seed, sc, p, size, signatures)[0] for sc, p in todo[a : a + block]
        ]
        writer.write_rows(
            a,
            {"s1": np.stack([r.s1 for r in rendered]), "s2": np.stack([r.s2 for r in rendered])},
            label_rows(np.stack([r.fractions for r in rendered]), 0.1),
        )
    return writer.finish({"clear": (np.arange(len(todo)), "s2", "all rows, clear optical")})


def have_rasterio() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_data(
    workdir: Path,
    patches: int,
    size: int,
    seed: int = 0,
    reuse: bool = True,
    geotiff: bool = True,
    compression: str | None = None,
) -> dict[str, Path]:
    """Generate (or reuse) a SEN12MS tree of ``patches`` patches, the store of all of them
    (``test.h5``) and a warm-up store of the first :data:`WARMUP_SAMPLES` (``warmup.h5``).

    ``geotiff=False`` (no rasterio): both stores are written directly
    (:func:`write_store_direct`); there is no tree, so the naive mode cannot run.
    ``compression``: of the stores (default: ``sareval preprocess``'s).
    """
    compression = compression or default_compression()
    config = {
        "patches": patches, "size": size, "seed": seed, "version": 1, "geotiff": geotiff,
        "compression": compression,
    }  # fmt: skip
    name = f"data-n{patches}-s{size}-seed{seed}-{compression}" + ("" if geotiff else "-direct")
    folder = workdir / name
    paths = {
        "tree": folder / "synth" / "sen12ms",
        "split_list": folder / "bench_list.pkl",
        "labels_pkl": folder / "synth" / "sen12ms" / "IGBP_probability_labels.pkl",
        "store": folder / "test.h5",
        "warmup_list": folder / "warmup_list.pkl",
        "warmup_store": folder / "warmup.h5",
    }
    if reuse and _done(folder, config):
        return paths
    _fresh(folder)
    if not geotiff:
        write_store_direct(paths["store"], patches, size, seed, compression)
        n_warm = min(patches, WARMUP_SAMPLES)
        write_store_direct(paths["warmup_store"], n_warm, size, seed, compression)
        _mark_done(folder, config)
        return paths
    from sareval.preprocess.synth_sen12ms import generate_sen12ms

    t0 = time.perf_counter()
    generate_sen12ms(folder / "synth", n_patches=patches, size=size, seed=seed)
    names = s2_names(paths["tree"])
    write_split_list(paths["split_list"], names)
    write_split_list(paths["warmup_list"], names[:WARMUP_SAMPLES])
    t1 = time.perf_counter()
    for split, store in (("split_list", "store"), ("warmup_list", "warmup_store")):
        preprocess_store(
            paths["tree"], paths[split], paths["labels_pkl"], paths[store], compression
        )
    print(
        f"prepared {len(names)} patches of {size}x{size} px in {folder} "
        f"(synth {t1 - t0:.1f} s, preprocess {time.perf_counter() - t1:.1f} s)",
        file=sys.stderr,
    )
    _mark_done(folder, config)
    return paths


def calibrate_batchnorm(model: Any, card: Any, store_path: Path, rows: int = 64) -> None:
    """Set the BatchNorm running statistics of a randomly initialised ``model`` from the first
    ``rows`` samples of the store (normalised per the card), so that its predictions depend on
    the input (freshly initialised statistics give one class for nearly every sample)."""
    import torch

    from sareval.evaluator.preamble import build_preamble, normalise_numpy
    from sareval.store import Store

    with Store(store_path) as store:
        sub = store.subset("clear")
        pre = build_preamble(card, {s: store.bands(s) for s in ("s1", "s2")})
        raw = store.read_batch(sub, 0, min(rows, len(sub))).arrays
    x = torch.from_numpy(normalise_numpy(pre, raw))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def prepare_model(
    workdir: Path,
    arch: str,
    size: int,
    task: str = "single-label",
    seed: int = 0,
    reuse: bool = True,
    calibration_store: Path | None = None,
    train_epochs: int = 0,
    train_store: Path | None = None,
) -> dict[str, Any]:
    """Build a randomly initialised ``arch`` (seeded) with the ``sen12ms-s1s2`` preset card,
    optionally calibrate its BatchNorm statistics on ``calibration_store``, and export it to ONNX
    and TorchScript; also save its state dict for the naive (eager) path.

    ``train_epochs`` > 0: instead, train it that many epochs with ``sareval.train`` on
    ``train_store`` (a split generated with another seed; the card's normalisation from it), so
    that its decision margins are those of a trained classifier (bf16-verified re-runs the rows
    with small margins)."""
    import torch

    from sareval.card import ModelCard, make_card
    from sareval.export.onnx_export import export_onnx
    from sareval.export.torchscript_export import export_torchscript
    from sareval.models import build_model

    config = {
        "arch": arch, "size": size, "task": task, "seed": seed, "version": 1,
        "calibration": str(calibration_store) if calibration_store else None,
    }  # fmt: skip
    if train_epochs:
        config |= {"train_epochs": train_epochs, "train_store": str(train_store)}
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    folder = workdir / f"model-{arch}-s{size}-{task}-seed{seed}-{key}"
    paths: dict[str, Any] = {
        "onnx_model": folder / "model.onnx",
        "torchscript_model": folder / "model.pt",
        "state_dict": folder / "state_dict.pt",
        "card": folder / "card.json",
    }
    if reuse and _done(folder, config):
        paths["macs_per_forward"] = json.loads((folder / "macs.json").read_text())["macs"]
        return paths
    _fresh(folder)
    card = make_card(
        PRESET, task, architecture=arch, fusion="early", checkpoint_sha256=None,
        random_init=True, input_size=size,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = build_model(arch, card.n_channels, card.n_classes, fusion="early").eval()
    if train_epochs:
        assert train_store is not None
        card = train_model(model, arch, task, train_store, folder / "train", train_epochs, seed)
    elif calibration_store is not None:
        calibrate_batchnorm(model, card, calibration_store)
    export_onnx(model, card, paths["onnx_model"])
    export_torchscript(model, card, paths["torchscript_model"])
    torch.save(model.state_dict(), paths["state_dict"])
    paths["card"].write_text(card.to_json())
    macs = model_macs(model, (card.n_channels, size, size))
    (folder / "macs.json").write_text(json.dumps({"macs": macs}))
    paths["macs_per_forward"] = macs
    ModelCard.from_json(paths["card"].read_text())  # validates what the naive path reads
    _mark_done(folder, config)
    return paths


def train_model(model: Any, arch: str, task: str, store: Path, out: Path, epochs: int,
                seed: int) -> Any:  # fmt: skip
    """Train ``arch`` on the ``clear`` subset of ``store`` with ``sareval.train`` (the
    :data:`PRESET` card, no validation), load the weights into ``model`` (eval mode) and
    return the trained card."""
    import torch

    from sareval.card import read_card
    from sareval.train.loop import TrainConfig, train

    config = TrainConfig(
        data=str(store), out=str(out), arch=arch, preset=PRESET, task=task, epochs=epochs,
        seed=seed, val=None, val_subsets=(), progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = train(config, overwrite=True)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    model.eval()
    print(f"trained {arch} {epochs} epochs on {store} ({time.perf_counter() - t0:.1f} s)",
          file=sys.stderr)  # fmt: skip
    assert result.model_file is not None
    return read_card(result.model_file)


def prepare_inputs(
    workdir: str | Path = DEFAULT_WORKDIR,
    *,
    patches: int,
    size: int,
    arch: str,
    task: str = "single-label",
    seed: int = 0,
    reuse: bool = True,
    geotiff: bool | None = None,
    compression: str | None = None,
    train_epochs: int = 0,
) -> BenchInputs:
    """The generated tree + store and the exported model, cached under ``workdir``.

    ``geotiff`` (default: when rasterio is installed) writes the GeoTIFF tree the naive mode
    reads; without it only the stores exist (``tree`` is empty).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    geotiff = have_rasterio() if geotiff is None else geotiff
    data = prepare_data(workdir, patches, size, seed, reuse, geotiff, compression)
    train_store = None
    if train_epochs:  # a split of the same size from another seed: the training data
        train = prepare_data(workdir, patches, size, seed + 1, reuse, geotiff, compression)
        train_store = train["store"]
    model = prepare_model(workdir, arch, size, task, seed, reuse, data["store"],
                          train_epochs, train_store)  # fmt: skip
    from sareval.store import Store

    with Store(data["store"]) as store:
        subset = "clear"
        n = len(store.subset(subset))
    return BenchInputs(
        tree=str(data["tree"]) if geotiff else "",
        split_list=str(data["split_list"]) if geotiff else "",
        labels_pkl=str(data["labels_pkl"]) if geotiff else "",
        store=str(data["store"]),
        subset=subset,
        warmup_list=str(data["warmup_list"]) if geotiff else "",
        warmup_store=str(data["warmup_store"]),
        onnx_model=str(model["onnx_model"]),
        torchscript_model=str(model["torchscript_model"]),
        state_dict=str(model["state_dict"]),
        arch=arch,
        task=task,
        size=size,
        n_samples=n,
        macs_per_forward=int(model["macs_per_forward"]),
        compression=compression or default_compression(),
        train_epochs=train_epochs,
    )
