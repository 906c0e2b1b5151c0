"""The streaming runner and the public entry point :func:`evaluate_shape`.

One pass over positions ``[start, stop)`` of a subset (the whole subset, a ``--shard`` part, or
a torchrun rank's part of either)::

    reader thread: Store.read_batch -> bounded queue (sareval.evaluator.reader)
    main thread:   backend.run(raw)  -> (n_coal, B, K) outputs of every non-empty coalition
                   counter.add(...)  -> integer counts per coalition (and per cloud-cover bin)
                   [decisions kept for --bootstrap; outputs streamed to --save-predictions]

The empty coalition is evaluated once before the pass (one row of the all-baseline input, or
the majority-class predictor of the subset's labels) and counted with its constant decision.
Memory is O(batch) whatever the subset size, except with ``--bootstrap``, which keeps every
sample's decision per coalition (O(N * 2^M) small integers, O(N * 2^M * K) booleans for
multi-label) for the resampling. Ctrl-C stops the reader thread and writes nothing.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sareval import __version__
from sareval.card import ModelCard
from sareval.errors import SarevalError, StoreError
from sareval.evaluator.backends import LoadedModel, load_model, make_backend, parse_device
from sareval.evaluator.bootstrap import bootstrap_intervals, check_bootstrap
from sareval.evaluator.coalitions import all_coalitions, coalition_name
from sareval.evaluator.counting import ConstantRows, CountResult, HostCounter, TorchCounter
from sareval.evaluator.distributed import (
    ProcessGroup,
    check_parts,
    init_from_env,
    parse_shard,
    part_range,
    rank_device,
)
from sareval.evaluator.metrics import decide, majority_prediction, nonfinite_rows, ties
from sareval.evaluator.players import parse_players
from sareval.evaluator.preamble import Preamble, build_preamble
from sareval.evaluator.predictions import PredictionsWriter
from sareval.evaluator.reader import BatchReader
from sareval.evaluator.relevance import bin_labels, cloud_cover_bins, parse_bin_edges
from sareval.evaluator.results import FORMAT, FORMAT_VERSION, shape_sections
from sareval.evaluator.shapley import Z_CHOICES
from sareval.store import LabelSpec, Store, Subset

METHODS = ("shape", "perceptual")
EMPTY_CHOICES = ("baseline", "majority")
DEFAULT_CLOUD_BINS = tuple(round(0.1 * i, 1) for i in range(11))


# --- option parsing ---------------------------------------------------------------------------
def parse_by(by: Sequence[str]) -> tuple[bool, list[float] | None]:
    """``("class", "cloud-cover=0,0.5,1")`` -> (by class?, cloud-cover bin edges or None).

    ``cloud-cover`` alone uses deciles 0, 0.1, ..., 1.
    """
    by_class, edges = False, None
    for item in by:
        if item == "class":
            by_class = True
        elif item == "cloud-cover":
            edges = list(DEFAULT_CLOUD_BINS)
        elif item.startswith("cloud-cover="):
            edges = parse_bin_edges(item.split("=", 1)[1])
        else:
            raise SarevalError(
                f"--by {item!r}: expected 'class', 'cloud-cover' or 'cloud-cover=0,0.1,...,1'"
            )
    return by_class, edges


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name, dists in {
        "torch": ("torch",),
        "onnx": ("onnx",),
        "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
        "numpy": ("numpy",),
        "h5py": ("h5py",),
    }.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


# --- store <-> card checks ----------------------------------------------------------------------
@dataclass
class Evaluation:
    """What a pass needs, checked against each other: store, subset, labels, card."""

    store: Store
    subset: Subset
    labels: LabelSpec
    card: ModelCard
    to_model_order: Callable[[np.ndarray], np.ndarray]

    def labels_of(self, rows: np.ndarray) -> np.ndarray:
        return self.to_model_order(self.store.labels(self.labels.name, rows))


def check_inputs(store: Store, card: ModelCard, subset: str, model_source: str) -> Evaluation:
    """Match the card to the store (image size, labels) and pick the subset; raise on mismatch."""
    sized = card.height is not None and card.width is not None
    if sized and (card.height, card.width) != store.image_size:
        h, w = store.image_size
        raise StoreError(
            store.path,
            f"images are {h}x{w} but the model {model_source} expects {card.height}x{card.width}",
        )
    spec = store.find_labels(card.task, card.class_names)
    sub = store.subset(subset)
    if len(sub) == 0:
        raise StoreError(store.path, f"subset {subset!r} is empty")
    if spec.kind == "index":
        lut = np.array([card.class_names.index(c) for c in spec.class_names], dtype=np.int64)

        def to_model(y: np.ndarray) -> np.ndarray:
            if y.size and (y.min() < 0 or y.max() >= len(lut)):
                raise StoreError(
                    store.path, f"labels {spec.name!r} hold class indices outside [0, {len(lut)})"
                )
            return lut[y]
    else:
        cols = np.array([spec.class_names.index(c) for c in card.class_names], dtype=np.int64)

        def to_model(y: np.ndarray) -> np.ndarray:
            return np.asarray(y)[:, cols] != 0

    return Evaluation(store, sub, spec, card, to_model)


def band_means(store: Store, sub: Subset, sensors: Sequence[str]) -> dict[str, float]:
    """Raw per-band means of the subset's rows (finite pixels), keyed by band name."""
    out: dict[str, float] = {}
    for sensor in sensors:
        source = sub.optical if sensor == "s2" else sensor
        means = store.band_mean(source, sub.rows)
        out.update(zip(store.bands(sensor), (float(m) for m in means), strict=True))
    return out


# --- the pass ----------------------------------------------------------------------------------
@dataclass
class PassResult:
    counts: CountResult
    decisions: np.ndarray | None  # (J, n[, K]) for the bootstrap
    y_true: np.ndarray | None


def coalition_pass(
    ev: Evaluation,
    backend: Any,
    pre: Preamble,
    constant: ConstantRows,
    *,
    start: int,
    stop: int,
    batch_size: int,
    bin_edges: list[float] | None = None,
    keep_decisions: bool = False,
    predictions: PredictionsWriter | None = None,
    empty_output: np.ndarray | None = None,
    progress: bool = True,
    queue_size: int = 2,
) -> PassResult:
    """Stream positions ``[start, stop)`` through ``backend`` and count every coalition."""
    from tqdm.auto import tqdm

    card = ev.card
    k = card.n_classes
    n_groups = 1 if bin_edges is None else len(bin_edges)  # bins + one for unknown cover
    on_device = getattr(backend, "name", "") == "torch"
    kw = dict(
        output_kind=card.output, threshold=card.threshold, constant=constant, n_groups=n_groups
    )
    counter: HostCounter | TorchCounter
    if on_device:
        counter = TorchCounter(card.task, k, pre.n_coalitions, device=backend.device, **kw)
    else:
        counter = HostCounter(card.task, k, pre.n_coalitions, **kw)
    n = stop - start
    j_all = pre.n_coalitions + 1
    decisions = y_keep = None
    if keep_decisions:
        single = card.task == "single-label"
        decisions = np.zeros((j_all, n) if single else (j_all, n, k), np.int16 if single else bool)
        y_keep = np.zeros((n,) if single else (n, k), np.int64 if single else bool)
    bar = tqdm(
        total=n, disable=not progress, unit="sample", unit_scale=True, dynamic_ncols=True,
        desc=f"shape {ev.subset.name}", smoothing=0.1,
    )  # fmt: skip
    reader = BatchReader(
        ev.store, ev.subset, start, stop, batch_size,
        sensors=pre.sensors, label_sets=[ev.labels.name], queue_size=queue_size,
        pinned=bool(on_device and backend.cuda),
    )  # fmt: skip
    try:
        with reader:
            for batch, _ in reader:
                b = len(batch)
                raw = {s: batch.arrays[s][:b] for s in pre.sensors}
                y = ev.to_model_order(batch.labels[ev.labels.name])
                groups = None
                if bin_edges is not None:
                    groups = cloud_cover_bins(batch.cloud_cover, bin_edges)
                    groups[groups < 0] = n_groups - 1
                if on_device:
                    import torch

                    out_t = backend.run_tensor(raw)
                    g_t = None if groups is None else torch.from_numpy(groups)
                    dec_t = counter.add(out_t, torch.from_numpy(np.asarray(y)), g_t)
                    need_host = keep_decisions or predictions is not None
                    out = out_t.cpu().numpy() if predictions is not None else None
                    dec = dec_t.cpu().numpy() if need_host else None
                else:
                    out = backend.run(raw)
                    dec = counter.add(out, y, groups)
                at = slice(batch.positions.start - start, batch.positions.stop - start)
                if keep_decisions:
                    decisions[:, at] = dec  # type: ignore[index]
                    y_keep[at] = y  # type: ignore[index]
                if predictions is not None:
                    empty = np.broadcast_to(
                        np.full(k, np.nan, np.float32) if empty_output is None else empty_output,
                        (1, b, k),
                    )
                    predictions.write(
                        batch.positions, batch.rows, batch.ids, y,
                        np.concatenate([empty, out]), dec,
                    )  # fmt: skip
                bar.update(b)
    finally:
        bar.close()
    return PassResult(counter.result(), decisions, y_keep)


def evaluate_empty(
    ev: Evaluation, backend: Any, pre: Preamble, empty: str
) -> tuple[ConstantRows, np.ndarray | None]:
    """The empty coalition's constant decision (and the model output it came from)."""
    card = ev.card
    if empty == "majority":
        y_all = ev.labels_of(ev.subset.rows)
        return ConstantRows(majority_prediction(y_all, card.task, card.n_classes)), None
    one = {}
    for s in pre.sensors:
        ds = ev.store.file[ev.subset.optical if s == "s2" else s]
        one[s] = np.zeros((1, *ds.shape[1:]), dtype=ds.dtype)
    out = backend.run(one, pre.empty_mask())[0]  # (1, K)
    if nonfinite_rows(out).any():
        raise SarevalError(
            "model outputs are NaN or Inf for coalition none (the all-baseline input); "
            "try another --baseline"
        )
    decision = decide(out, card.task, card.output, card.threshold)[0]
    tie = bool(ties(out, card.task, card.output, card.threshold)[0])
    return ConstantRows(np.asarray(decision), tie), out[0]


def check_finite(counts: CountResult, names: Sequence[str]) -> None:
    bad = [(n, int(c)) for n, c in zip(names, counts.nonfinite, strict=True) if c]
    if bad:
        detail = ", ".join(f"coalition {n}: {c} samples" for n, c in bad)
        raise SarevalError(f"model outputs are NaN or Inf ({detail})")


def _reduce(group: ProcessGroup | None, counts: CountResult) -> CountResult:
    if group is None:
        return counts
    return counts.with_arrays(group.all_reduce_sum(counts.to_arrays()))


# --- the public entry point --------------------------------------------------------------------
def evaluate_shape(
    model: str | Path | tuple[Any, ModelCard],
    store: str | Path,
    subset: str,
    *,
    backend: str = "onnxruntime",
    device: str = "cpu",
    provider: str | None = None,
    batch_size: int = 64,
    baseline: str = "input-zero",
    empty: str = "baseline",
    z: str = "one",
    players: str | None = None,
    method: str = "shape",
    permutations: int = 5,
    bootstrap: int = 0,
    seed: int = 0,
    by: Sequence[str] = (),
    save_predictions: str | Path | None = None,
    shard: tuple[int, int] | str | None = None,
    progress: bool = True,
    pad_last_batch: bool | None = None,
    threads: int = 0,
    queue_size: int = 2,
    overwrite: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """SHAPE relevance (or perceptual scores) of ``model`` on ``subset`` of ``store``.

    ``model``: an ``.onnx`` / TorchScript ``.pt`` / ``torch.export`` ``.pt2`` file with a model
    card, or ``(nn.Module, ModelCard)``. Returns the results document
    (:mod:`sareval.evaluator.results`); writes nothing except ``save_predictions``. Under
    torchrun (``WORLD_SIZE`` > 1) every rank evaluates its part and returns the same document.
    ``pad_last_batch`` (default: on for CUDA) pads the last batch to ``batch_size`` rows.
    ``precision`` fp16/bf16 runs the torch backend's network under autocast (recorded in
    ``config.precision``; compare with an fp32 run: ``benchmarks/precision_difference.py``).
    """
    if method not in METHODS:
        raise SarevalError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if empty not in EMPTY_CHOICES:
        raise SarevalError(f"unknown --empty {empty!r}; choose one of {', '.join(EMPTY_CHOICES)}")
    if z not in Z_CHOICES:
        raise SarevalError(f"unknown --z {z!r}; choose one of {', '.join(Z_CHOICES)}")
    if batch_size < 1:
        raise SarevalError("--batch-size must be at least 1")
    if bootstrap < 0 or permutations < 1:
        raise SarevalError("--bootstrap must be >= 0 and --permutations >= 1")
    check_bootstrap(bootstrap)
    parse_device(device)
    by_class, bin_edges = parse_by(by)
    shard_t = parse_shard(shard) if isinstance(shard, str) else shard
    if shard_t is not None:
        parse_shard(f"{shard_t[0]}/{shard_t[1]}")
    if bootstrap and shard_t is not None:
        raise SarevalError(
            "--bootstrap needs every sample in one job; use torchrun instead of --shard"
        )
    if method == "perceptual" and (
        bootstrap or by_class or bin_edges is not None or save_predictions is not None
    ):
        raise SarevalError(
            "--method perceptual supports none of --bootstrap, --by, --save-predictions"
        )
    loaded = load_model(model)
    card = parse_players(players, loaded.card) if players else loaded.card
    source = str(loaded.path) if loaded.path else "(in-memory model)"
    group = init_from_env(device)
    try:
        with Store(store) as st:
            ev = check_inputs(st, card, subset, source)
            check_parts(len(ev.subset), shard_t, 1 if group is None else group.world_size)
            return _evaluate(
                ev, loaded, group,
                backend=backend, device=rank_device(device, group), provider=provider,
                batch_size=batch_size, baseline=baseline, empty=empty, z=z, players=players,
                method=method, permutations=permutations, bootstrap=bootstrap, seed=seed,
                by_class=by_class, bin_edges=bin_edges, save_predictions=save_predictions,
                shard=shard_t, progress=progress, pad_last_batch=pad_last_batch,
                threads=threads, queue_size=queue_size, overwrite=overwrite,
                precision=precision,
            )  # fmt: skip
    finally:
        if group is not None:
            group.close()


def _evaluate(
    ev: Evaluation,
    loaded: LoadedModel,
    group: ProcessGroup | None,
    *,
    backend: str,
    device: str,
    provider: str | None,
    batch_size: int,
    baseline: str,
    empty: str,
    z: str,
    players: str | None,
    method: str,
    permutations: int,
    bootstrap: int,
    seed: int,
    by_class: bool,
    bin_edges: list[float] | None,
    save_predictions: str | Path | None,
    shard: tuple[int, int] | None,
    progress: bool,
    pad_last_batch: bool | None,
    threads: int,
    queue_size: int,
    overwrite: bool,
    precision: str,
) -> dict[str, Any]:
    st, sub, card = ev.store, ev.subset, ev.card
    start, stop = 0, len(sub)
    if shard is not None:
        start, stop = part_range(start, stop, *shard)
    if group is not None:
        start, stop = part_range(start, stop, group.rank, group.world_size)
    main = group is None or group.is_main
    store_bands = {s: st.bands(s) for s in ("s1", "s2") if s in st.file}
    means = band_means(st, sub, list(store_bands)) if baseline == "band-mean" else None
    pre = build_preamble(
        card, store_bands, baseline=baseline, band_means=means, source=str(st.path)
    )
    input_dtypes = {s: st.file[sub.optical if s == "s2" else s].dtype for s in pre.sensors}
    pad = device.startswith("cuda") if pad_last_batch is None else pad_last_batch
    pad_to = batch_size if pad else None
    engine = make_backend(
        loaded, pre, backend=backend, device=device, provider=provider,
        input_dtypes=input_dtypes, image_size=st.image_size,
        pad_to=pad_to, threads=threads, precision=precision,
    )  # fmt: skip
    try:
        if method == "perceptual":
            from sareval.evaluator.perceptual import perceptual_pass

            names, sections, _ = perceptual_pass(
                ev, engine, pre, start=start, stop=stop, batch_size=batch_size,
                permutations=permutations, seed=seed, progress=progress and main,
                queue_size=queue_size, reduce=lambda c: _reduce(group, c),
            )  # fmt: skip
            empty_section = {"kind": None, "decision": None, "output": None}
        else:
            names, sections, empty_section = _shape(
                ev, engine, pre, group,
                start=start, stop=stop, batch_size=batch_size, empty=empty, z=z,
                bootstrap=bootstrap, seed=seed, by_class=by_class, bin_edges=bin_edges,
                save_predictions=save_predictions, shard=shard, progress=progress and main,
                queue_size=queue_size, overwrite=overwrite, loaded=loaded, baseline=baseline,
            )  # fmt: skip
        providers = list(engine.providers)
    finally:
        engine.close()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "config": {
            "method": method,
            "backend": backend,
            "device": device,
            "providers": providers,
            "batch_size": batch_size,
            "precision": precision,
            "baseline": baseline,
            "empty": empty if method == "shape" else None,
            "z": z,
            "players": players,
            "bootstrap": bootstrap,
            "seed": seed,
            "by": (["class"] if by_class else []) + (["cloud-cover"] if bin_edges else []),
            "cloud_cover_bins": bin_edges,
            "permutations": permutations if method == "perceptual" else None,
            "threshold": card.threshold,
            "output": card.output,
            "label_set": ev.labels.name,
            "pad_to": pad_to,
            "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
            "world_size": 1 if group is None else group.world_size,
        },
        "provenance": provenance(ev, loaded, shard),
        "task": card.task,
        "class_names": list(card.class_names),
        "players": list(card.modality_names),
        "coalitions": names,
        **sections,
        "empty": empty_section,
    }
    if group is not None:
        doc = group.broadcast_from_main(doc if main else None)
    return doc


def provenance(
    ev: Evaluation, loaded: LoadedModel, shard: tuple[int, int] | None
) -> dict[str, Any]:
    st, sub = ev.store, ev.subset
    shard_info = None
    if shard is not None:
        a, b = part_range(0, len(sub), *shard)
        shard_info = {"index": shard[0], "count": shard[1], "start": a, "stop": b}
    return {
        "sareval": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "model": {
            "path": str(loaded.path.resolve()) if loaded.path else None,
            "sha256": loaded.sha256,
            "card": loaded.card.to_dict(),
        },
        "store": {
            "path": str(st.path.resolve()),
            "content_digest": st.content_digest,
            "dataset": st.dataset,
            "split": st.split,
        },
        "subset": {"name": sub.name, "optical": sub.optical, "size": len(sub)},
        "shard": shard_info,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _shape(
    ev: Evaluation,
    engine: Any,
    pre: Preamble,
    group: ProcessGroup | None,
    *,
    start: int,
    stop: int,
    batch_size: int,
    empty: str,
    z: str,
    bootstrap: int,
    seed: int,
    by_class: bool,
    bin_edges: list[float] | None,
    save_predictions: str | Path | None,
    shard: tuple[int, int] | None,
    progress: bool,
    queue_size: int,
    overwrite: bool,
    loaded: LoadedModel,
    baseline: str,
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    card = ev.card
    players = card.modality_names
    coalitions = all_coalitions(players)
    names = [coalition_name(c, players) for c in coalitions]
    constant, empty_output = evaluate_empty(ev, engine, pre, empty)
    writer = None
    if save_predictions is not None:
        out = Path(save_predictions)
        if group is not None:
            out = out.with_name(f"{out.stem}.rank{group.rank}-of-{group.world_size}{out.suffix}")
        writer = PredictionsWriter(
            out, n=stop - start, first_position=start, coalitions=names,
            n_classes=card.n_classes, task=card.task, overwrite=overwrite,
            attrs={
                "players": list(players), "class_names": list(card.class_names),
                "model_sha256": loaded.sha256 or "", "store_content_digest":
                ev.store.content_digest, "subset": ev.subset.name, "baseline": baseline,
                "empty": empty,
            },
        )  # fmt: skip
    try:
        result = coalition_pass(
            ev, engine, pre, constant,
            start=start, stop=stop, batch_size=batch_size, bin_edges=bin_edges,
            keep_decisions=bootstrap > 0, predictions=writer, empty_output=empty_output,
            progress=progress, queue_size=queue_size,
        )  # fmt: skip
        counts = _reduce(group, result.counts)
        check_finite(counts, names)
        if writer is not None:
            writer.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    ci = None
    if bootstrap:
        decisions, y_true = result.decisions, result.y_true
        if group is not None:
            parts = group.gather_on_main((decisions, y_true))
            if parts is not None:
                decisions = np.concatenate([p[0] for p in parts], axis=1)
                y_true = np.concatenate([p[1] for p in parts])
        if group is None or group.is_main:
            assert decisions is not None and y_true is not None
            predictions = {c: decisions[j] for j, c in enumerate(coalitions)}
            predictions[frozenset()] = constant.decision
            ci = bootstrap_intervals(
                y_true,
                predictions,
                players,
                card.task,
                card.n_classes,
                bootstrap,
                seed,
                z=z,  # type: ignore[arg-type]
            )
    cloud_bins = None
    if bin_edges is not None:
        labels = bin_labels(bin_edges)
        cloud_bins = [
            (labels[i], [bin_edges[i], bin_edges[i + 1]], counts.counts[i])
            for i in range(len(bin_edges) - 1)
        ]
        cloud_bins.append(("unknown", None, counts.counts[-1]))
    sections = shape_sections(
        task=card.task, players=players, coalitions=coalitions, names=names,
        class_names=card.class_names, counts=counts.total, z=z, by_class=by_class,
        cloud_bins=cloud_bins, ties=counts.ties, ci=ci,
    )  # fmt: skip
    empty_section = {
        "kind": empty,
        "decision": constant.decision.tolist(),
        "output": None if empty_output is None else empty_output.tolist(),
    }
    return names, sections, empty_section
