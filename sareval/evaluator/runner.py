"""The streaming runner behind :func:`sareval.evaluate`: :func:`run_evaluation`.

One pass over positions ``[start, stop)`` of a data source (:mod:`sareval.evaluator.sources`:
the whole source, a shard, or a torchrun rank's part of either)::

    source.batches: store reader thread / arrays / torch Dataset -> raw arrays per sensor
    main thread:   backend.run(raw)  -> (n_coal, B, K) outputs of every non-empty coalition
                   counter.add(...)  -> integer counts per coalition (and per cloud-cover bin)
                   [decisions kept for --bootstrap; outputs streamed to --save-predictions]

The empty coalition is evaluated once before the pass (one row of the all-baseline input, or
the majority-class predictor of the subset's labels) and counted with its constant decision.
Memory is O(batch) whatever the subset size, except with ``--bootstrap``, which keeps every
sample's decision per coalition (O(N * 2^M) small integers, O(N * 2^M * K) booleans for
multi-label) for the resampling, and mean average precision (multi-label), which keeps every
sample's scores per coalition (:mod:`sareval.evaluator.scores`, bounded with a clear error).
Ctrl-C stops the reader thread and writes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sareval import __version__
from sareval.atomic import is_stream
from sareval.card import Modality, ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.absence import (
    MARGINAL_DRAWS,
    OnnxNetwork,
    check_absence,
    check_mask_used,
    make_absence_backend,
    read_donors,
)
from sareval.evaluator.backends import LoadedModel, load_torch_module, make_backend
from sareval.evaluator.bootstrap import (
    bootstrap_image_intervals,
    bootstrap_intervals,
    bootstrap_score_intervals,
    check_bootstrap,
    merge_intervals,
)
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.config import ShapeConfig, check_precision
from sareval.evaluator.counting import (
    TIE_TOLERANCE,
    CoalitionCounter,
    ConstantRows,
    CountResult,
)
from sareval.evaluator.distributed import (
    ProcessGroup,
    check_parts,
    init_from_env,
    part_range,
    rank_device,
)
from sareval.evaluator.estimators import GameSpec, choose_game
from sareval.evaluator.heap import reused_heap
from sareval.evaluator.in_pass import (
    DETECTION_BOOT,
    STATE_SECTION,
    PerSampleCollector,
    PerSampleState,
)
from sareval.evaluator.metrics import (
    METRIC_NAMES,
    decide,
    majority_prediction,
    nonfinite_rows,
    ties,
)
from sareval.evaluator.perceptual import perceptual_pass
from sareval.evaluator.pixels import (
    N_STATES,
    Matching,
    PixelCounter,
    check_per_image_memory,
    constant_map,
    pixel_states,
    sum_states,
    to_torch,
)
from sareval.evaluator.preamble import Preamble, baseline_band_means, build_preamble
from sareval.evaluator.predictions import PredictionsWriter
from sareval.evaluator.relevance import bin_labels, cloud_cover_bins, relevance_from_counts
from sareval.evaluator.relevance_maps import (
    PixelRelevanceMeans,
    SegmentationMapsWriter,
    pixel_relevance,
    pixel_values,
)
from sareval.evaluator.results import (
    cloud_pixel_entries,
    game_record,
    select_metrics,
    shape_sections,
)
from sareval.evaluator.run_output import RunOutput
from sareval.evaluator.scores import (
    SCORE_METRIC_NAMES,
    ScoreState,
    check_score_memory,
    sample_index,
    wants_scores,
)
from sareval.evaluator.sources import (
    Labels,
    Source,
    StoreSubset,
    check_images,
    check_task,
    label_converter,
)
from sareval.progress import progress_bar


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


# --- source <-> card ---------------------------------------------------------------------------
def with_players(card: ModelCard, players: dict[str, tuple[str, ...]] | None) -> ModelCard:
    """``card`` with ``players`` as its modalities; unknown band names are listed."""
    if players is None:
        return card
    unknown = sorted({b for bands in players.values() for b in bands} - set(card.channels))
    if unknown:
        raise SarevalError(
            f"ShapeConfig.game.players: bands {', '.join(unknown)} are not input channels of the "
            f"model (it has: {', '.join(card.channels)})"
        )
    try:
        return card.with_modalities(tuple(Modality(n, b) for n, b in players.items()))
    except SarevalError as e:
        problem = str(e).split("model card: ", 1)[-1]
        raise SarevalError(f"ShapeConfig.game.players: {problem}") from None


@dataclass
class Evaluation:
    """What a pass needs, checked against each other: the source, its labels, the card."""

    source: Source
    labels: Labels
    card: ModelCard
    to_model_order: Callable[[np.ndarray], np.ndarray]

    @property
    def store(self) -> Any:
        if not isinstance(self.source, StoreSubset):
            raise SarevalError("data: this method needs a store subset (random access to rows)")
        return self.source.store

    @property
    def subset(self) -> Any:
        return self.store and self.source.subset  # type: ignore[attr-defined]

    def all_labels(self) -> np.ndarray:
        return self.to_model_order(self.source.all_labels(self.labels))


def check_inputs(source: Source, card: ModelCard, model_source: str) -> Evaluation:
    """Match the card to the data (image size, bands, labels); raise on a mismatch."""
    sized = card.height is not None and card.width is not None
    if sized and (card.height, card.width) != tuple(source.image_size):
        h, w = source.image_size
        raise SarevalError(
            f"{source.description}: images are {h}x{w} but the model {model_source} expects "
            f"{card.height}x{card.width}"
        )
    for sensor in source.bands:  # before the empty coalition runs on a zero sample of each
        dtype = source.sample_spec(sensor)[1]
        check_images(np.empty(0, dtype), f"{source.description}: sensor {sensor!r}")
    labels = source.labels_for(card)
    check_task(labels, card, source.description)
    return Evaluation(source, labels, card, label_converter(labels, card, source.description))


# --- the pass ----------------------------------------------------------------------------------
@dataclass
class PassResult:
    counts: CountResult
    decisions: np.ndarray | None  # (J, n[, K]) for the bootstrap
    y_true: np.ndarray | None
    scores: ScoreState | None = None  # for mean average precision
    groups: np.ndarray | None = None  # (n,) cloud-cover group per sample, for the bootstrap
    outside: tuple[float, float] | None = None  # range of covers outside the bin edges
    per_image: np.ndarray | None = None  # segmentation: (n, J, 3, K, K) for the bootstrap
    clusters: np.ndarray | None = None  # (rows,) the sample of each kept row (donor draws)


@dataclass
class OutsideCover:
    """The range of the finite cloud covers seen outside the bin edges (None: none seen)."""

    range: tuple[float, float] | None = None

    def add(self, values: np.ndarray) -> None:
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            if self.range is not None:
                lo, hi = min(lo, self.range[0]), max(hi, self.range[1])
            self.range = (lo, hi)


def cover_groups(cover: np.ndarray, edges: Sequence[float], outside: OutsideCover) -> np.ndarray:
    """Group per sample: bin i (:func:`cloud_cover_bins`), B = len(edges) - 1 for an unknown
    (NaN) cover, B + 1 for a cover outside the edges (counted, its range kept in ``outside``,
    and refused after the pass by :func:`check_outside`)."""
    cover = np.asarray(cover, dtype=np.float64)
    groups = cloud_cover_bins(cover, list(edges))
    n_bins = len(edges) - 1
    unknown = np.isnan(cover)
    beyond = (groups < 0) & ~unknown
    groups[unknown] = n_bins
    groups[beyond] = n_bins + 1
    outside.add(cover[beyond])
    return groups


def check_outside(
    counts: CountResult,
    edges: Sequence[float] | None,
    outside: tuple[float, float] | None,
    group: ProcessGroup | None,
) -> None:
    """Refuse samples whose cloud cover lies outside ``ShapeConfig.reporting.cloud_cover_bins``
    (group B + 1 of :func:`cover_groups`; ``counts`` reduced over ranks, so every rank raises
    alike)."""
    if edges is None:
        return
    ranges = [outside] if group is None else group.gather_on_main(outside)
    n_out = counts.counts[len(edges)][-1].n
    if not n_out:
        return
    seen = [r for r in ranges or [] if r is not None]
    lo, hi = min((r[0] for r in seen), default=None), max((r[1] for r in seen), default=None)
    span = f" (from {lo:.4g} to {hi:.4g})" if seen else ""
    n_all = sum(c[-1].n for c in counts.counts)
    raise SarevalError(
        f"ShapeConfig.reporting.cloud_cover_bins: {n_out} of {n_all} samples have a cloud cover "
        f"outside the edges [{edges[0]:g}, {edges[-1]:g}]{span}; give edges that span them, "
        "e.g. from 0 to 1 (samples are never left out of the bins)"
    )


@dataclass
class PassOptions:
    """How one pass runs (from :class:`ShapeConfig` and the call). ``max_rows``: model rows
    per execution; a batch's coalitions run in chunks of at most ``max_rows // B`` coalitions."""

    start: int
    stop: int
    batch_size: int
    bin_edges: Sequence[float] | None = None
    keep_decisions: bool = False
    keep_scores: bool = False
    progress: bool = True
    queue_size: int = 2
    max_rows: int | None = None


#: bytes of model memory assumed per input byte of a row (activations of a CNN; documented
#: rough bound used only for the default chunk size: ResNet18 at 128 px measured ~30x)
ACTIVATION_FACTOR = 40


def available_memory() -> int:
    """Bytes the kernel reports as available (``MemAvailable``), or 8 GiB when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def row_bytes(pre: Preamble, source: Any) -> int:
    """Estimated model memory of one row of an execution: float32 input bytes of a row x
    :data:`ACTIVATION_FACTOR`."""
    h, w = source.image_size
    return int(pre.n_channels * h * w * 4 * ACTIVATION_FACTOR)


def default_max_rows(pre: Preamble, source: Any, batch_size: int) -> int:
    """Rows per execution from half the available memory (:data:`ACTIVATION_FACTOR`).

    The smallest execution is one coalition of a batch (``batch_size`` rows); when even that
    is estimated above the available memory the run is refused before it starts (an explicit
    ``max_rows`` skips this check)."""
    need, have = batch_size * row_bytes(pre, source), available_memory()
    if need > have:
        raise SarevalError(
            f"ShapeConfig.execution.batch_size: one coalition execution of {batch_size} rows "
            f"needs about {need / 2**30:.1f} GiB (estimate), {have / 2**30:.1f} GiB available; "
            "use a smaller batch size, or set max_rows to run it anyway"
        )
    return max(batch_size, int(have // 2 // max(row_bytes(pre, source), 1)))


def log_plan(
    pre: Preamble,
    game: Any,
    start: int,
    stop: int,
    opts: PassOptions,
    bytes_per_row: int,
    engine: Any = None,
) -> None:
    """One stderr line before the pass: players, coalitions, forwards, chunking and the
    estimated peak memory of one execution (``omit``: its model calls per batch; ``marginal``:
    its donor draws)."""
    import sys

    n = max(stop - start, 0) if stop >= start else None
    per_exec = max(1, (opts.max_rows or 1) // max(opts.batch_size, 1))
    chunks = -(-pre.n_coalitions // per_exec)
    rows = min(per_exec, pre.n_coalitions) * opts.batch_size
    how = f"{game.method} game" if game is not None else "perceptual scores"
    absence = getattr(engine, "absence", "")
    if absence == "omit":  # one call per coalition (inputs differ in structure)
        chunks = engine.calls_per_batch
        how += ", omit: one model call per coalition, the data read once"
    elif absence:
        how += f", {absence}"
        if absence == "marginal":
            how += f": {engine.draws} donor draws per sample"
    total = f", {pre.n_coalitions * n:,} forwards in all" if n is not None else ""
    print(
        f"sareval: {len(pre.players)} players, {pre.n_coalitions + 1} coalitions ({how}): "
        f"{pre.n_coalitions} forwards per sample{total}; {chunks} execution(s) per batch of "
        f"{opts.batch_size} (at most {opts.max_rows:,} rows each; about "
        f"{rows * bytes_per_row / 2**30:.1f} GiB peak model memory, estimated)",
        file=sys.stderr,
    )


class FirstBatchEstimate:
    """After the first batch, one stderr line: its time and the estimated time of the pass
    (samples left x seconds per sample of the first batch, which includes warm-up: an upper
    estimate)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.t0 = time.perf_counter()

    def done(self, b: int) -> None:
        if not self.enabled:
            return
        import sys

        from tqdm import tqdm

        self.enabled = False
        seconds = time.perf_counter() - self.t0
        rest = ""
        if self.total:
            rest = f"; about {seconds / b * self.total:.0f} s for all {self.total:,} samples"
        line = f"sareval: first batch of {b} samples in {seconds:.1f} s{rest}"
        tqdm.write(line, file=sys.stderr)  # above a terminal's bar; a plain line in a log


def _make_counter(
    ev: Evaluation,
    backend: Any,
    pre: Preamble,
    constant: ConstantRows | None,
    n_groups: int,
    empty_output: np.ndarray | None = None,
    keep_per_image: bool = False,
    draws: int = 1,
) -> CoalitionCounter | PixelCounter:
    """Counts on the torch backend's device (outputs stay there), else on the host;
    segmentation: pixel confusion matrices (:mod:`sareval.evaluator.pixels`)."""
    card = ev.card
    device = backend.device if getattr(backend, "name", "") == "torch" else None
    if card.is_segmentation:
        matching = segmentation_matching(ev)
        tie = None
        if constant is not None:
            _, tie = constant_map(empty_output, constant.decision, matching, TIE_TOLERANCE)
        return PixelCounter(
            card.n_classes, pre.n_coalitions, matching, constant=constant, constant_tie=tie,
            n_groups=n_groups, device=device, keep_per_image=keep_per_image, draws=draws,
        )  # fmt: skip
    return CoalitionCounter(
        card.task, card.n_classes, pre.n_coalitions, output_kind=card.output,
        threshold=card.threshold, constant=constant, n_groups=n_groups, device=device,
    )  # fmt: skip


def segmentation_matching(ev: Evaluation) -> Matching:
    """How the card's outputs meet the source's label maps."""
    card = ev.card
    h, w = ev.source.image_size
    return Matching(card.label_matching, (h, w), card.ignore_index)


def run_chunked(backend: Any, raw: dict[str, np.ndarray], pre: Preamble,
                max_rows: int | None, positions: slice | None = None) -> Any:  # fmt: skip
    """Outputs (n_coal, B, K) of every coalition, in executions of at most ``max_rows`` rows
    (marginal imputation: (n_coal, draws x B, K), its donors keyed by the ``positions``)."""
    torch_backend = getattr(backend, "name", "") == "torch"
    run = backend.run_tensor if torch_backend else backend.run
    b = len(next(iter(raw.values())))
    draws = getattr(backend, "draws", 1)
    if draws > 1 and positions is not None:
        keys = np.arange(positions.start, positions.stop)
        run = functools.partial(backend.run_tensor, positions=keys)
        b *= draws
    per = pre.n_coalitions if max_rows is None else max(1, max_rows // max(b, 1))
    if per >= pre.n_coalitions:
        return run(raw)
    parts = [run(raw, pre.masks[a : a + per]) for a in range(0, pre.n_coalitions, per)]
    if torch_backend:
        import torch

        return torch.cat(parts)
    return np.concatenate(parts)


def _count_batch(
    counter: Any,
    backend: Any,
    raw: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray | None,
    need_host: bool,
    need_outputs: bool,
    pre: Preamble,
    max_rows: int | None,
    cloud_mask: np.ndarray | None = None,
    positions: slice | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Run and count one batch; (outputs, decisions) on the host where needed. Marginal
    imputation's outputs hold every donor draw of the batch: labels and groups repeat."""
    draws = getattr(backend, "draws", 1)
    if draws > 1:  # every draw counted as a sample, in its own group (its sampling error)
        y = np.concatenate([y] * draws)
        g = np.zeros(len(raw[next(iter(raw))]), np.int64) if groups is None else groups
        groups = np.concatenate([g * draws + d for d in range(draws)])
        if cloud_mask is not None:
            cloud_mask = np.concatenate([np.asarray(cloud_mask)[: len(g)]] * draws)
    if isinstance(counter, PixelCounter):
        out_any = run_chunked(backend, raw, pre, max_rows, positions)
        dec_t = counter.add(out_any, y, groups, cloud_mask)
        out = None
        if need_outputs:
            out = out_any.cpu().numpy() if hasattr(out_any, "cpu") else np.asarray(out_any)
        return out, dec_t.cpu().numpy() if need_host or need_outputs else None
    if getattr(backend, "name", "") != "torch":
        out = run_chunked(backend, raw, pre, max_rows)
        return out, counter.add(out, y, groups)
    import torch

    out_t = run_chunked(backend, raw, pre, max_rows, positions)
    g_t = None if groups is None else torch.from_numpy(groups)
    dec_t = counter.add(out_t, torch.from_numpy(np.asarray(y)), g_t)
    out = out_t.cpu().numpy() if need_outputs else None
    return out, dec_t.cpu().numpy() if need_host or need_outputs else None


@dataclass
class _Sinks:
    """Where a batch's outputs and decisions go besides the counter: kept decisions (bootstrap),
    score states (mAP), the per-sample collector and the predictions file."""

    opts: PassOptions
    k: int
    single: bool
    n_coalitions: int
    empty_output: np.ndarray | None
    total: int | None
    predictions: PredictionsWriter | None = None
    collector: Any = None
    dec_parts: list[np.ndarray] = field(default_factory=list)
    y_parts: list[np.ndarray] = field(default_factory=list)
    group_parts: list[np.ndarray] = field(default_factory=list)
    score_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    n_scored: int = 0
    clusters: list[np.ndarray] = field(default_factory=list)  # marginal: sample of each row
    segmentation: bool = False  # per-image matrices (the counter's) replace kept decisions

    @property
    def needs_outputs(self) -> bool:
        return self.predictions is not None or self.collector is not None or self.opts.keep_scores

    def _every(self, out: np.ndarray, b: int, fill: np.ndarray | None) -> np.ndarray:
        """Outputs of every coalition, the empty one (``fill``) first: (2^M, B, K)."""
        fill = np.full(self.k, np.nan, np.float32) if fill is None else fill
        return np.concatenate([np.broadcast_to(fill, (1, b, self.k)), out])

    def take(
        self, batch: Any, y: np.ndarray, groups: np.ndarray | None, out: Any, dec: Any
    ) -> None:
        b = len(batch)
        rows = out if out is not None else dec
        draws = 1 if rows is None else rows.shape[1] // b  # marginal: row d B + i, draw d of i
        if draws > 1 and (self.opts.keep_scores or self.opts.keep_decisions):
            pos = batch.positions  # the sample of every kept row
            self.clusters.append(np.tile(np.arange(pos.start, pos.stop), draws))
        if self.collector is not None:
            assert out is not None
            # the empty coalition: its constant output, or (marginal) counted per row in out
            every = out if self.empty_output is None else self._every(out, b, self.empty_output)
            self.collector.add(every, y, batch.cloud_cover[:b], draws=draws)
        if self.opts.keep_scores:
            assert out is not None
            self.n_scored += draws * b
            if self.total is None:  # an unsized stream: check as it grows
                check_score_memory(self.n_scored, self.k, self.n_coalitions)
            g16 = np.zeros(b, np.int16) if groups is None else groups.astype(np.int16)
            y_rows = np.tile(np.asarray(y, bool), (draws, 1))  # every draw a sample
            self.score_parts.append((out.astype(np.float32), y_rows, np.tile(g16, draws)))
        if self.opts.keep_decisions and not self.segmentation:
            assert dec is not None
            self.dec_parts.append(dec.astype(np.int16) if self.single else dec.astype(bool))
            self.y_parts.append(np.concatenate([np.asarray(y, np.int64 if self.single else bool)]
                                               * draws))  # fmt: skip
            if groups is not None:
                self.group_parts.append(np.tile(groups.astype(np.int16), draws))
        if self.predictions is not None:
            assert out is not None and dec is not None
            pos = batch.positions
            rows = batch.rows if batch.rows is not None else np.arange(pos.start, pos.stop)
            # marginal imputation: D B rows (d B + i: draw d of sample i), and with the
            # baseline empty coalition the pass ran it per row (its outputs are in ``out``)
            every = out
            if len(out) < len(dec):  # the empty coalition's output first
                every = self._every(out, out.shape[1], self.empty_output)
            self.predictions.write(
                pos, rows, batch.ids, y, every, dec, batch.cloud_cover[: len(batch)]
            )  # fmt: skip


def coalition_pass(
    ev: Evaluation,
    backend: Any,
    pre: Preamble,
    constant: ConstantRows | None,
    opts: PassOptions,
    *,
    predictions: PredictionsWriter | None = None,
    empty_output: np.ndarray | None = None,
    collector: Any = None,
) -> PassResult:
    """Stream positions ``[start, stop)`` through ``backend`` and count every coalition
    (``collector``: a :class:`~sareval.evaluator.in_pass.PerSampleCollector` fed every batch)."""

    card, k, edges = ev.card, ev.card.n_classes, opts.bin_edges
    n_groups = 1 if edges is None else len(edges) + 1  # bins, unknown, outside (refused)
    draws = getattr(backend, "draws", 1)
    n_groups *= draws  # marginal imputation: group = bin x draws + draw
    outside = OutsideCover()
    total = opts.stop - opts.start if opts.stop > opts.start else None
    segmentation = card.is_segmentation
    maps = None
    if segmentation:  # the maps file and per-pixel relevance replace the per-sample sinks
        if draws > 1 and predictions is not None:  # per_sample: refused by _absence_engine
            raise SarevalError(
                "save_predictions: the maps file of a segmentation model is not available with "
                "marginal imputation (ShapeConfig.game.absence 'marginal')"
            )
        maps = SegmentationSink(ev, pre, constant, empty_output, predictions, collector)
        predictions, collector = None, None
    keep_images = segmentation and opts.keep_decisions
    if keep_images and total is not None:
        check_per_image_memory(total, pre.n_coalitions + 1, k)
    counter = _make_counter(ev, backend, pre, constant, n_groups, empty_output, keep_images,
                            draws)  # fmt: skip
    if opts.keep_scores and total is not None:
        check_score_memory(total * draws, k, pre.n_coalitions)
    sinks = _Sinks(
        opts,
        k,
        card.task == "single-label",
        pre.n_coalitions,
        empty_output,
        total,
        predictions,
        collector,
        segmentation=segmentation,
    )
    bar = progress_bar(
        total=total,
        disable=not opts.progress,
        unit="sample",
        unit_scale=True,
        dynamic_ncols=True,
        desc=f"shape {ev.source.description}",
        smoothing=0.1,
    )
    batches = ev.source.batches(
        opts.start,
        opts.stop,
        opts.batch_size,
        sensors=pre.sensors,
        labels=ev.labels,
        queue_size=opts.queue_size,
        pinned=bool(getattr(backend, "cuda", False)),
    )
    first = FirstBatchEstimate(total, opts.progress)
    try:
        with batches as stream:
            for index, batch in enumerate(stream):
                batch.check(ev.source.description, index)  # lengths, values: before any count
                b = len(batch)
                raw = {s: batch.arrays[s][:b] for s in pre.sensors}
                if index == 0 and getattr(backend, "absence", "") == "mask":
                    check_mask_used(backend, raw)
                y = ev.to_model_order(batch.labels)
                groups = None
                if edges is not None:
                    groups = cover_groups(batch.cloud_cover[:b], edges, outside)
                out, dec = _count_batch(
                    counter,
                    backend,
                    raw,
                    y,
                    groups,
                    opts.keep_decisions,
                    sinks.needs_outputs or (maps is not None and maps.active),
                    pre,
                    opts.max_rows,
                    batch.cloud_mask,
                    batch.positions,
                )
                if keep_images and groups is not None:  # each image's bin, for the bootstrap
                    sinks.group_parts.append(groups.astype(np.int16))
                if maps is not None and maps.active:
                    maps.take(batch, y, out, counter)
                sinks.take(batch, y, groups, out, dec)
                first.done(b)
                bar.update(b)
    finally:
        bar.close()
    decisions = np.concatenate(sinks.dec_parts, axis=1) if sinks.dec_parts else None
    y_true = np.concatenate(sinks.y_parts) if sinks.y_parts else None
    scores = None
    if opts.keep_scores:  # constant None: the pass counts the empty coalition per row
        empty = empty_output if empty_output is not None or constant is None else constant.decision
        scores = ScoreState.from_batches(
            sinks.score_parts, empty, pre.n_coalitions, k,
            sinks.clusters or None,
        )  # fmt: skip
    groups_kept = np.concatenate(sinks.group_parts) if sinks.group_parts else None
    per_image = counter.per_image_state() if isinstance(counter, PixelCounter) else None
    clusters = np.concatenate(sinks.clusters) if sinks.clusters else None
    return PassResult(
        counter.result(),
        decisions,
        y_true,
        scores,
        groups_kept,
        outside.range,
        per_image,
        clusters,
    )


def evaluate_empty(
    ev: Evaluation, backend: Any, pre: Preamble, empty: str
) -> tuple[ConstantRows, np.ndarray | None]:
    """The empty coalition's constant decision (and the model output it came from)."""
    card = ev.card
    if empty == "majority":
        y_all = ev.all_labels()
        if card.is_segmentation:  # the most frequent class of the labelled pixels
            y_all = y_all[y_all != card.ignore_index] if card.ignore_index is not None else y_all
            return ConstantRows(majority_prediction(y_all.ravel(), "single-label",
                                                    card.n_classes)), None  # fmt: skip
        return ConstantRows(majority_prediction(y_all, card.task, card.n_classes)), None
    one = {}
    for s in pre.sensors:
        shape, dtype = ev.source.sample_spec(s)
        one[s] = np.zeros((1, *shape), dtype=dtype)
    out = backend.run(one, pre.empty_mask())[0]  # (1, K)
    if nonfinite_rows(out).any():
        raise SarevalError(
            "model outputs are NaN or Inf for coalition none (the all-baseline input); "
            "try another baseline"
        )
    if card.is_segmentation:  # a decision map; its near-ties are counted per pixel
        dec_map, _ = constant_map(out[0], np.zeros((), np.int64), segmentation_matching(ev),
                                  TIE_TOLERANCE)  # fmt: skip
        return ConstantRows(dec_map), out[0]
    decision = decide(out, card.task, card.output, card.threshold)[0]
    tie = bool(ties(out, card.task, card.output, card.threshold)[0])
    return ConstantRows(np.asarray(decision), tie), out[0]


def _reduce(group: ProcessGroup | None, counts: CountResult) -> CountResult:
    if group is None:
        return counts
    return counts.with_arrays(group.all_reduce_sum(counts.to_arrays()))


# --- the entry point ---------------------------------------------------------------------------
def run_evaluation(
    loaded: LoadedModel,
    source: Source,
    config: ShapeConfig,
    *,
    progress: bool = False,
    save_predictions: str | Path | None = None,
    overwrite: bool = False,
    permutations: int | None = None,
) -> RunOutput:
    """What ``loaded`` computes on ``source``: a :class:`RunOutput`, whose
    :meth:`~RunOutput.to_document` is the results document (:mod:`sareval.evaluator.results`).

    Writes nothing except ``save_predictions``. Under torchrun (``WORLD_SIZE`` > 1) every rank
    evaluates its part and returns the same document. ``permutations``: perceptual scores
    (:func:`sareval.perceptual_score`, each player permuted that many times) instead of SHAPE;
    they use ``config``'s game players, reporting metrics and seed, and execution only.
    """
    rep = config.reporting
    card = with_players(loaded.card, config.game.player_map)
    if rep.metrics is not None:
        known = METRIC_NAMES[card.task] + SCORE_METRIC_NAMES[card.task]
        unknown = [m for m in rep.metrics if m not in known]
        if unknown:
            raise SarevalError(
                f"ShapeConfig.reporting.metrics: {', '.join(unknown)} not among the "
                f"{card.task} metrics ({', '.join(known)})"
            )
        if permutations is not None and any(m in SCORE_METRIC_NAMES[card.task]
                                            for m in rep.metrics):  # fmt: skip
            raise SarevalError("metrics: map_* are SHAPE metrics, not perceptual scores")
    if permutations is not None and card.is_segmentation:
        raise SarevalError(
            "perceptual scores: not available for segmentation models (use SHAPE: sareval.evaluate)"
        )
    if permutations is not None and save_predictions is not None:
        raise SarevalError("save_predictions: not available with perceptual scores")
    model_source = str(loaded.path) if loaded.path else "(in-memory model)"
    check_absence(config.game.absence, loaded.card, config.game.player_map)
    ev = check_inputs(source, card, model_source)
    check_bootstrap(
        rep.replicates, 2 ** len(card.modality_names), card.n_classes if rep.by_class else 0,
        0 if rep.cloud_cover_bins is None else len(rep.cloud_cover_bins),
    )  # fmt: skip
    group = init_from_env(config.execution.device)
    try:
        with reused_heap():  # large buffers reused between batches (sareval/evaluator/heap.py)
            return _evaluate(
                ev, loaded, group, config, progress, save_predictions, overwrite, permutations
            )
    finally:
        if group is not None:
            group.close()


def _positions(ev: Evaluation, config: ShapeConfig, group: ProcessGroup | None) -> tuple[int, int]:
    shard = config.execution.shard
    needs_length = shard is not None or group is not None or config.reporting.replicates > 0
    try:
        n = len(ev.source)
    except SarevalError:
        if needs_length or config.game.empty_coalition == "majority":
            raise
        return 0, -1  # an unsized iterable: read it once to its end
    check_parts(n, shard, 1 if group is None else group.world_size)
    start, stop = 0, n
    if shard is not None:
        start, stop = part_range(start, stop, *shard)
    if group is not None:
        start, stop = part_range(start, stop, group.rank, group.world_size)
    return start, stop


def _evaluate(
    ev: Evaluation,
    loaded: LoadedModel,
    group: ProcessGroup | None,
    config: ShapeConfig,
    progress: bool,
    save_predictions: str | Path | None,
    overwrite: bool,
    permutations: int | None,
) -> RunOutput:
    card, source = ev.card, ev.source
    g, rep, ex = config.game, config.reporting, config.execution
    shape = permutations is None
    start, stop = _positions(ev, config, group)
    main = group is None or group.is_main
    bands = source.bands
    used = [s for s, names in bands.items() if set(names) & set(card.channels)]
    means, statistics = (
        baseline_band_means(g.baseline_statistics, card, source, used)
        if g.baseline == "band-mean"
        else (None, g.baseline_statistics)
    )
    game = choose_game(card.modality_names, g.player_groups,
                       estimator=config.estimation.estimator,
                       samples=config.estimation.orderings, seed=rep.seed)  # fmt: skip
    if game.method != "exact" and rep.replicates:  # estimator 'auto' chose sampling
        raise SarevalError(
            f"ShapeConfig.reporting.replicates: intervals are for exact games; this run is "
            f"{game.method} (its results carry a standard error per player instead)"
        )
    pre = build_preamble(
        card, bands, baseline=g.baseline, band_means=means, source=source.description,
        coalitions=game.coalitions if shape else None,
    )  # fmt: skip
    device = rank_device(ex.device, group)
    pad = device.startswith("cuda") if ex.pad_last_batch is None else ex.pad_last_batch
    pad_to = ex.batch_size if pad else None
    backend = ex.backend or ("onnxruntime" if loaded.kind == "onnx" else "torch")
    if g.absence != "fill":  # the model's own absence: omitted, masked or imputed inputs
        backend = "onnxruntime" if loaded.kind == "onnx" else "torch"
        pre, engine = _absence_engine(ev, loaded, pre, config, device, shape)
    else:
        engine = make_backend(
            loaded,
            pre,
            backend=backend,
            device=device,
            provider=ex.provider,
            input_dtypes={s: source.sample_spec(s)[1] for s in pre.sensors},
            image_size=source.image_size,
            pad_to=pad_to,
            threads=ex.threads,
            precision=ex.precision,
            share=ex.share,
        )
    verified = ex.precision == "bf16-verified"
    if verified:  # decisions exact, outputs not: score-based outputs stay fp32 or are refused
        asked = [f"metric {m}" for m in rep.metrics or () if m in SCORE_METRIC_NAMES[card.task]]
        asked += ["per_sample"] * rep.per_sample
        asked += ["save_predictions"] * (save_predictions is not None)
        check_precision(ex.precision, backend, asked)
    opts = PassOptions(
        start, stop, ex.batch_size, rep.cloud_cover_bins, rep.replicates > 0,
        wants_scores(card.task, "shape" if shape else "perceptual", rep.metrics) and not verified,
        progress and main, ex.queue_size,
        max_rows=ex.max_rows or default_max_rows(pre, source, ex.batch_size),
    )  # fmt: skip
    if opts.progress:
        log_plan(pre, game if shape else None, start, stop, opts, row_bytes(pre, source), engine)
    try:
        if permutations is not None:
            names, sections, _ = perceptual_pass(
                ev,
                engine,
                pre,
                start=start,
                stop=stop,
                batch_size=ex.batch_size,
                permutations=permutations,
                seed=rep.seed,
                progress=opts.progress,
                queue_size=ex.queue_size,
                reduce=lambda c: _reduce(group, c),
            )
            empty_section: dict[str, Any] = {"kind": None, "decision": None, "output": None}
        else:
            names, sections, empty_section = _shape(
                ev, engine, pre, group, config, opts, save_predictions, overwrite, loaded, game
            )
        providers = list(engine.providers)
    finally:
        engine.close()
    record = {
        "backend": backend,
        "device": device,
        "providers": providers,
        "pad_to": pad_to,
        "share": getattr(engine, "share", None),
        "torch_path": getattr(engine, "torch_path", None),  # what the torch backend ran
        "precision_record": getattr(engine, "precision_record", None),  # bf16-verified
        "world_size": 1 if group is None else group.world_size,
        "absence_details": getattr(engine, "record", None),
        "baseline_statistics": statistics,  # band-mean: where its means come from, and them
        "baseline_values": means and {b: means[b] for b in card.channels},
    }
    output = document(ev, loaded, config, record, names, sections, empty_section, permutations)
    if shape:
        output = output.with_game(game_record(game))
    if group is not None:
        output = group.broadcast_from_main(output if main else None)
    return output


def marginal_spread(per_draw: list[list[Any]], game: GameSpec, z: Any) -> dict[str, Any]:
    """Marginal imputation's sampling error: per metric, the standard error over the D donor
    draws (std with ddof 1 / sqrt(D)) of V of every coalition and of each player's relevance,
    each draw's values computed from its own counts."""
    from_draws = [
        relevance_from_counts(dict(zip(game.coalitions, c, strict=True)), game, z) for c in per_draw
    ]
    d = len(per_draw)
    out: dict[str, Any] = {"draws": d, "standard_error": {}}
    for metric, first in from_draws[0].items():

        def se(values: list[float]) -> float:
            return float(np.std(values, ddof=1) / np.sqrt(d)) if d > 1 else float("nan")

        out["standard_error"][metric] = {
            "V": {k: se([e[metric]["V"][k] for e in from_draws]) for k in first["V"]},
            "relevance": {
                p: se([e[metric]["relevance"][p] for e in from_draws]) for p in first["relevance"]
            },
        }
    return out


def _absence_engine(
    ev: Evaluation,
    loaded: LoadedModel,
    pre: Preamble,
    config: ShapeConfig,
    device: str,
    shape: bool,
) -> tuple[Preamble, Any]:
    """The backend of ``ShapeConfig.game.absence`` (mask, omit, marginal: torch, fp32, eager;
    :mod:`sareval.evaluator.absence`) and the preamble of the pass. ``marginal`` with the
    baseline empty coalition counts the empty coalition per sample (every input from donors):
    its preamble's first row set is the empty coalition."""
    g, ex, rep = config.game, config.execution, config.reporting
    where = f"ShapeConfig.game.absence {g.absence!r}"
    if not shape:
        raise SarevalError(f"{where}: perceptual scores permute inputs; they take fill only")
    if ex.precision != "fp32" or ex.share:
        raise SarevalError(
            f"{where}: runs in fp32 without share (leave ShapeConfig.execution.precision and "
            "share at their defaults)"
        )
    if ex.backend is not None and (ex.backend == "onnxruntime") != (loaded.kind == "onnx"):
        raise SarevalError(
            f"{where}: runs the model as it is: onnxruntime for an .onnx file (mask models "
            "export with their mask input), torch for a module or a TorchScript / .pt2 file"
        )
    donors = None
    if g.absence == "marginal":
        if (
            rep.per_sample and ev.card.is_segmentation
        ):  # the relevance maps are per image, not per draw
            raise SarevalError(
                "ShapeConfig.reporting.per_sample: per-pixel relevance of a segmentation model "
                f"is not available with {where}"
            )
        if ex.shard is not None and wants_scores(ev.card.task, "shape", rep.metrics):
            raise SarevalError(
                f"ShapeConfig.execution.shard: map_* metrics of {where} are not merged across "
                "shards; run without shard, or leave map_* out of ShapeConfig.reporting.metrics"
            )
        donors, _ = read_donors(ev.source, ev.labels, pre.sensors, seed=rep.seed)
        if g.empty_coalition == "baseline":
            empty = np.zeros((1, pre.n_channels), bool)
            pre = dataclasses.replace(
                pre, coalitions=(frozenset(), *pre.coalitions),
                masks=np.concatenate([empty, pre.masks]),
            )  # fmt: skip
    source = str(loaded.path) if loaded.path else "model"
    if loaded.kind == "onnx":  # an exported mask model: (x, present) in one graph
        assert loaded.path is not None
        network: Any = OnnxNetwork(loaded.path, device, source)
    else:
        network = load_torch_module(loaded, device)
    engine = make_absence_backend(
        g.absence, network, pre, ev.card, device, donors=donors,
        draws=MARGINAL_DRAWS, seed=rep.seed, model_card=loaded.card, source=source,
    )  # fmt: skip
    return pre, engine


def document(
    ev: Evaluation,
    loaded: LoadedModel,
    config: ShapeConfig,
    run: dict[str, Any],
    names: list[str],
    sections: dict[str, Any],
    empty_section: dict[str, Any],
    permutations: int | None = None,
) -> RunOutput:
    """The run's output: config (every choice), provenance and the computed sections
    (``permutations``: of perceptual scores)."""
    card, rep, shard = ev.card, config.reporting, config.execution.shard
    edges = rep.cloud_cover_bins
    select_metrics(sections, rep.metrics, card.task)
    method = "shape" if permutations is None else "perceptual"
    return RunOutput.from_sections(
        sections,
        method=method,
        config={
            **config.to_record(),
            **run,
            "method": method,
            "empty_coalition": config.game.empty_coalition if permutations is None else None,
            "by": (["class"] if rep.by_class else []) + (["cloud-cover"] if edges else []),
            "permutations": permutations,
            "threshold": card.threshold,
            "output": card.output,
            "label_set": ev.labels.name,
            "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        },
        provenance=provenance(ev, loaded, shard),
        task=card.task,
        class_names=tuple(card.class_names),
        players=tuple(card.modality_names),
        coalitions=tuple(names),
        empty=empty_section,
    )


def provenance(
    ev: Evaluation, loaded: LoadedModel, shard: tuple[int, int] | None
) -> dict[str, Any]:
    shard_info = None
    if shard is not None:
        a, b = part_range(0, len(ev.source), *shard)
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
        **ev.source.provenance(),
        "shard": shard_info,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _predictions_writer(
    ev: Evaluation,
    config: ShapeConfig,
    group: ProcessGroup | None,
    out: str | Path,
    opts: PassOptions,
    names: list[str],
    loaded: LoadedModel,
    overwrite: bool,
    game: GameSpec,
) -> PredictionsWriter:
    card = ev.card
    path = Path(out)
    if group is not None and not is_stream(path):  # a device: every rank writes to it
        path = path.with_name(f"{path.stem}.rank{group.rank}-of-{group.world_size}{path.suffix}")
    digest = ev.source.provenance()["store"]["content_digest"]
    store_path = ev.source.provenance()["store"].get("path")
    inputs = [p for p in (loaded.path, store_path) if p and Path(p).exists()]
    attrs = {
        "players": list(card.modality_names),
        "class_names": list(card.class_names),
        "model_sha256": loaded.sha256 or "",
        "store_content_digest": digest,
        "subset": ev.source.provenance()["subset"]["name"],
        "baseline": config.game.baseline,
        "empty": config.game.empty_coalition,
    }
    if card.is_segmentation:
        if config.reporting.per_sample and game.method != "exact":
            raise SarevalError("ShapeConfig.reporting.per_sample: needs an exact game")
        return SegmentationMapsWriter(
            path, inputs=inputs, n=opts.stop - opts.start, first_position=opts.start,
            coalitions=names, players=card.modality_names, size=ev.source.image_size,
            relevance=config.reporting.per_sample, overwrite=overwrite,
            attrs={**attrs, "ignore_index": -1 if card.ignore_index is None else card.ignore_index,
                   "label_matching": card.label_matching},
        )  # fmt: skip
    return PredictionsWriter(
        path,
        inputs=inputs,
        n=opts.stop - opts.start,
        first_position=opts.start,
        coalitions=names,
        n_classes=card.n_classes,
        task=card.task,
        overwrite=overwrite,
        attrs=attrs,
        draws=MARGINAL_DRAWS if config.game.absence == "marginal" else 1,  # donor draws
    )


def _bootstrap(
    ev: Evaluation,
    result: PassResult,
    group: ProcessGroup | None,
    config: ShapeConfig,
    constant: ConstantRows | None,
    coalitions: list[frozenset[str]],
) -> dict[str, Any] | None:
    decisions, y_true, groups = result.decisions, result.y_true, result.groups
    clusters = result.clusters
    if group is not None:
        parts = group.gather_on_main((decisions, y_true, groups, clusters))
        if parts is not None:
            decisions = np.concatenate([p[0] for p in parts], axis=1)
            y_true = np.concatenate([p[1] for p in parts])
            groups = None if groups is None else np.concatenate([p[2] for p in parts])
            clusters = None if clusters is None else np.concatenate([p[3] for p in parts])
    if group is not None and not group.is_main:
        return None
    assert decisions is not None and y_true is not None
    predictions = {c: decisions[j] for j, c in enumerate(coalitions)}
    if constant is not None:  # else the pass counted the empty coalition per row
        predictions[frozenset()] = constant.decision
    if clusters is not None:  # donor draws: resample samples, each with its draws
        clusters = sample_index(clusters)
    card = ev.card
    return bootstrap_intervals(  # type: ignore[no-any-return]
        y_true,
        predictions,
        card.modality_names,
        card.task,
        card.n_classes,
        config.reporting.replicates,
        config.reporting.seed,
        z=config.reporting.normalization,
        by_class=config.reporting.by_class,
        groups=groups,  # the bins and unknown (no sample is outside: check_outside)
        n_groups=len(config.reporting.cloud_cover_bins or ()),
        clusters=clusters,
    )


class SegmentationSink:
    """Per batch of a segmentation pass: per-pixel relevance (``collector``: a
    :class:`~sareval.evaluator.relevance_maps.PixelRelevanceMeans`) and the maps file
    (``writer``: a :class:`~sareval.evaluator.relevance_maps.SegmentationMapsWriter`), one image
    at a time (memory: J x K x h x w float64)."""

    def __init__(self, ev: Evaluation, pre: Preamble, constant: ConstantRows | None,
                 empty_output: np.ndarray | None, writer: Any, means: Any) -> None:  # fmt: skip
        self.card, self.writer, self.means = ev.card, writer, means
        self.constant, self.empty_output = constant, empty_output
        self.coalitions = [frozenset(), *pre.coalitions] if pre.coalitions else None
        self.active = writer is not None or means is not None

    def take(self, batch: Any, y: np.ndarray, out: np.ndarray | None, counter: Any) -> None:
        assert out is not None
        card, matching = self.card, counter.matching
        out_t = matching.outputs(to_torch(out))
        h, w = out_t.shape[-2:]
        labels = np.asarray(matching.maps(np.asarray(y), (h, w)))
        mask = matching.maps(batch.cloud_mask, (h, w))
        k = card.n_classes
        if self.empty_output is None:  # the majority-class predictor: a 0 / 1 probability
            empty = torch_full_nan((1, *out_t.shape[1:]))
        else:
            empty = matching.outputs(to_torch(self.empty_output)[None])[None].expand(
                1, out_t.shape[1], *out_t.shape[2:]
            )
        every = np.concatenate([empty.numpy(), out_t.numpy()])  # (J, B, K, h, w)
        decisions = every.argmax(2)
        assert self.constant is not None  # marginal imputation (no constant) is refused here
        decisions[0] = np.broadcast_to(np.asarray(self.constant.decision), decisions[0].shape)
        ignore = card.ignore_index
        valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
        states = np.asarray(pixel_states(mask, labels.shape, "cpu"))
        relevance: dict[str, list[np.ndarray]] = {}
        if self.means is not None:
            assert self.coalitions is not None
            for i in range(len(labels)):
                values = pixel_values(every[:, i : i + 1], decisions[:, i : i + 1],
                                      labels[i : i + 1], card.output)  # fmt: skip
                for q, v in values.items():
                    phi = pixel_relevance(v, self.coalitions, card.modality_names)
                    phi[np.broadcast_to(~valid[i : i + 1, None], phi.shape)] = np.nan
                    relevance.setdefault(q, []).append(phi)
            stacked = {q: np.concatenate(v) for q, v in relevance.items()}
            self.means.add(stacked, labels, valid & (labels < k), states)
        if self.writer is not None:
            pos = batch.positions
            rows = batch.rows if batch.rows is not None else np.arange(pos.start, pos.stop)
            self.writer.write_maps(
                pos, rows, batch.ids, batch.cloud_cover[: len(batch)], labels, mask,
                decisions, {q: np.concatenate(v) for q, v in relevance.items()} or None,
            )  # fmt: skip


def torch_full_nan(shape: tuple[int, ...]) -> Any:
    import torch

    return torch.full(shape, float("nan"))


def _bootstrap_images(
    ev: Evaluation,
    result: PassResult,
    group: ProcessGroup | None,
    config: ShapeConfig,
    constant: ConstantRows | None,
    coalitions: list[frozenset[str]],
) -> dict[str, Any] | None:
    """Segmentation intervals: images resampled (their confusion matrices gathered on the
    main torchrun rank)."""
    per_image, groups = result.per_image, result.groups
    if group is not None:
        parts = group.gather_on_main((per_image, groups))
        if parts is not None:
            per_image = np.concatenate([p[0] for p in parts])
            groups = None if groups is None else np.concatenate([p[1] for p in parts])
    if group is not None and not group.is_main:
        return None
    assert per_image is not None
    rep = config.reporting
    return bootstrap_image_intervals(
        per_image, coalitions, ev.card.modality_names, rep.replicates, rep.seed,
        z=rep.normalization, by_class=rep.by_class, image_groups=groups,
        n_groups=len(rep.cloud_cover_bins or ()),
    )  # fmt: skip


def _per_sample_collector(ev: Evaluation, config: ShapeConfig, game: GameSpec) -> Any:
    """The collector of ``ShapeConfig.reporting.per_sample`` (exact games with a model empty
    coalition: :class:`ShapeConfig` checks the choices, this the game ``auto`` chose)."""
    if game.method != "exact":
        raise SarevalError(
            "ShapeConfig.reporting.per_sample: needs an exact game (the per-sample values use "
            f"every coalition's model output); this run is {game.method}"
        )
    card, rep = ev.card, config.reporting
    if card.is_segmentation:
        if config.execution.shard is not None:
            raise SarevalError(
                "ShapeConfig.reporting.per_sample: per-pixel relevance of a segmentation model "
                "is not merged across shards yet; run without ShapeConfig.execution.shard"
            )
        return PixelRelevanceMeans(card.modality_names, card.class_names)
    return PerSampleCollector(
        card.modality_names, kind=card.output, task=card.task, threshold=card.threshold,
        class_names=card.class_names, bin_edges=rep.cloud_cover_bins,
        n_boot=rep.replicates or DETECTION_BOOT, seed=rep.seed,
    )  # fmt: skip


def _pixel_relevance_section(means: Any, group: ProcessGroup | None) -> dict[str, Any]:
    """Segmentation's ``pixel_relevance`` section (the ranks' sums merged on the main one)."""
    if means is None:
        return {}
    if group is not None:
        parts = group.gather_on_main(means)
        if parts is None:
            return {}
        for other in parts[1:]:
            parts[0].merge(other)
        means = parts[0]
    return {"pixel_relevance": means.section()}


def _per_sample_sections(collector: Any, group: ProcessGroup | None, shard: bool) -> dict[str, Any]:
    """The ``per_sample`` and ``detection`` sections (gathered on the main torchrun rank); a
    shard's: its state for ``sareval merge`` (``per_sample_state``) instead."""
    if collector is None:
        return {}
    state = collector.state()
    if group is not None:
        states = group.gather_on_main(state)
        if states is None:
            return {}
        state = PerSampleState.concat(states)
    if shard:
        return {STATE_SECTION: state.to_json()}
    return collector.section(state)  # type: ignore[no-any-return]


def _gather_scores(group: ProcessGroup | None, state: ScoreState | None) -> ScoreState | None:
    """The whole pass's score state: under torchrun the ranks' parts on rank 0 (None on the
    others, whose document is replaced by rank 0's)."""
    if state is None or group is None:
        return state
    parts = group.gather_on_main(state)
    return None if parts is None else ScoreState.concat(parts)


def _shape(
    ev: Evaluation,
    engine: Any,
    pre: Preamble,
    group: ProcessGroup | None,
    config: ShapeConfig,
    opts: PassOptions,
    save_predictions: str | Path | None,
    overwrite: bool,
    loaded: LoadedModel,
    game: GameSpec,
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    card = ev.card
    players = card.modality_names
    coalitions = game.coalitions
    names = [coalition_name(c, players) for c in coalitions]
    rep = config.reporting
    if pre.coalitions and not pre.coalitions[0]:  # the empty coalition is counted per sample
        constant, empty_output = None, None
    else:
        constant, empty_output = evaluate_empty(ev, engine, pre, config.game.empty_coalition)
    writer = None
    if save_predictions is not None:
        if opts.stop < opts.start:
            raise SarevalError("save_predictions: needs data with a length (a map-style Dataset)")
        writer = _predictions_writer(
            ev, config, group, save_predictions, opts, names, loaded, overwrite, game
        )
    collector = _per_sample_collector(ev, config, game) if rep.per_sample else None
    try:
        result = coalition_pass(
            ev, engine, pre, constant, opts, predictions=writer, empty_output=empty_output,
            collector=collector,
        )  # fmt: skip
        counts = _reduce(group, result.counts)
        counts.check_finite(names)
        regrouped, per_draw = None, None
        draws = getattr(engine, "draws", 1)
        if draws > 1:  # marginal imputation: counts per (group, draw) -> per group, per draw
            # segmentation: each group of counts is (image group x draws + draw) x 3 + state
            cell = N_STATES if card.is_segmentation else 1
            index = np.arange(len(counts.counts)).reshape(-1, draws, cell)  # (group, draw, state)
            per_draw = [
                CountResult([counts.counts[i] for i in index[:, d].ravel()], counts.ties,
                            counts.nonfinite).total
                for d in range(draws)
            ]  # fmt: skip
            by_group = [
                CountResult([counts.counts[i] for i in index[g, :, p]], counts.ties,
                            counts.nonfinite).total
                for g in range(index.shape[0])
                for p in range(cell)
            ]  # fmt: skip
            counts = CountResult(by_group, counts.ties, counts.nonfinite, counts.n_images)
        if card.is_segmentation:  # counts per (image group, pixel state) -> per image group
            n_image_groups = 1 if rep.cloud_cover_bins is None else len(rep.cloud_cover_bins) + 1
            regrouped = sum_states(counts.counts, n_image_groups)
            counts = CountResult(regrouped["images"], counts.ties, counts.nonfinite,
                                 counts.n_images)  # fmt: skip
        check_outside(counts, rep.cloud_cover_bins, result.outside, group)
        if writer is not None:
            if collector is not None and not card.is_segmentation:
                writer.write_arrays(collector.arrays())
            writer.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    ci = None
    if rep.replicates:
        bootstrap = _bootstrap_images if card.is_segmentation else _bootstrap
        ci = bootstrap(ev, result, group, config, constant, coalitions)
    sharded = config.execution.shard is not None
    if card.is_segmentation:
        extra = _pixel_relevance_section(collector, group)
    else:
        extra = _per_sample_sections(collector, group, sharded)
    scores = _gather_scores(group, result.scores)
    if scores is not None:
        scores = scores.with_policy(rep.map_absent_classes)
    edges = rep.cloud_cover_bins
    if ci is not None and scores is not None:
        n_groups = 0 if edges is None else len(edges)  # the bins and unknown
        score_ci = bootstrap_score_intervals(
            scores, players, rep.replicates, rep.seed, z=rep.normalization, n_groups=n_groups,
            by_class=rep.by_class,
        )  # fmt: skip
        ci = merge_intervals(ci, score_ci)
    cloud_bins: list[tuple[str, list[float] | None, Any]] | None = None
    if edges is not None:
        labels = bin_labels(list(edges))
        cloud_bins = [
            (labels[i], [edges[i], edges[i + 1]], counts.counts[i]) for i in range(len(edges) - 1)
        ]
        cloud_bins.append(("unknown", None, counts.counts[len(edges) - 1]))
    sections = shape_sections(
        task=card.task,
        game=game,
        class_names=card.class_names,
        counts=counts.total,
        z=rep.normalization,
        by_class=rep.by_class,
        cloud_bins=cloud_bins,
        ties=counts.ties.tolist(),
        ci=ci,
        scores=scores,
        cloud_cover_source=ev.source.cloud_cover_source,
    )
    sections.update(extra)
    if regrouped is not None:  # segmentation: images, pixels, and the pixel-state split
        assert counts.n_images is not None
        sections["n_samples"] = int(counts.n_images[0])
        sections["n_pixels"] = counts.total[-1].n
        sections["by"]["cloud_pixels"] = cloud_pixel_entries(
            regrouped["pixels"], game, names, rep.normalization, (ci or {}).get("by_pixels")
        )
    if per_draw is not None:  # n_samples: samples, not draws; the spread over the draws
        sections["n_samples"] //= len(per_draw)
        sections["marginal_draws"] = marginal_spread(per_draw, game, rep.normalization)
    if sharded and scores is not None:
        sections["scores"] = scores.to_json()  # for `sareval merge`
    empty_section = {
        "kind": config.game.empty_coalition,
        "decision": None if constant is None else constant.decision.tolist(),
        "output": None if empty_output is None else empty_output.tolist(),
    }
    if card.is_segmentation:  # a map: its decisions are in the maps file (save_predictions)
        empty_section.update(decision=None, output=None)
    return names, sections, empty_section
