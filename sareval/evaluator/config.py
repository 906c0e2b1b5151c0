"""Every evaluation choice as typed, frozen values: :class:`ShapeConfig` and its four parts.

A SHAPE evaluation is defined by four small objects, each with one job and each validated once,
in its own ``__post_init__``:

- :class:`Game`: the cooperative game (players, what "absent" means, the empty coalition);
- :class:`Reporting`: what is reported (metrics, normalization, breakdowns, bootstrap
  replicates, per-sample values);
- :class:`Execution`: how it runs (batch size, backend, device, precision, shards, ...);
- :class:`Estimation`: how Shapley values are computed (all coalitions or sampled orderings).

``ShapeConfig(game=..., reporting=..., execution=..., estimation=...)`` composes them and checks
the rules that span two of them. No string mini-languages: players are a mapping ``name ->
band names``, cloud-cover bins a sequence of edges, a shard a pair ``(index, count)``; the CLI
parses its strings into these types (:mod:`sareval.commands.parsing`). Invalid values raise
:class:`~sareval.errors.SarevalError` naming the field by its path, e.g.
``ShapeConfig.reporting.normalization: 'half' is not one of one, full``.

Flat keywords (``ShapeConfig(by_class=True, batch_size=16)``, ``config.replace(seed=1)``,
``sareval.evaluate(..., replicates=100)``) are routed to their part by :data:`FLAT_FIELDS`;
the old names in :data:`DEPRECATED_NAMES` (``bootstrap``, ``samples``, ``z``, ``empty``) still
work with a :class:`DeprecationWarning` naming the new field.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sareval.choices import (
    ABSENCES,
    BACKENDS,
    BASELINE_STATISTICS,
    BASELINES,
    EMPTY_CHOICES,
    ESTIMATORS,
    MAP_ABSENT_CLASSES,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
    Absence,
    Backend,
    Baseline,
    BaselineStatistics,
    Empty,
    Estimator,
    MapAbsentClasses,
    Precision,
    Provider,
    Z,
)
from sareval.cores import default_workers
from sareval.errors import SarevalError

log = logging.getLogger(__name__)

#: ``cloud_cover_bins`` for "deciles": 0, 0.1, ..., 1
DECILES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: most bootstrap replicates accepted (their state is bounded again per run by
#: :func:`sareval.evaluator.bootstrap.check_bootstrap`)
MAX_REPLICATES = 100_000
#: permutations per player of :func:`sareval.perceptual_score` (and ``--method perceptual``)
PERMUTATIONS = 5

#: flat players: ((name, bands), ...); nested: ((group, ((name, bands), ...)), ...)
FlatPlayers = tuple[tuple[str, tuple[str, ...]], ...]
NestedPlayers = tuple[tuple[str, FlatPlayers], ...]

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d{1,4}))?$")


# --- the rules shared with the runtime (one definition each) ----------------------------------
def parse_device(device: str, where: str = "ShapeConfig.execution.device") -> tuple[str, int]:
    """``cpu`` / ``cuda`` / ``cuda:N`` -> (type, index); anything else is a SarevalError
    naming ``where``."""
    m = _DEVICE.match(device) if isinstance(device, str) else None
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise SarevalError(f"{where}: {device!r} is not cpu, cuda or cuda:N (N = 0, 1, ...)")
    return m.group(1), int(m.group(2) or 0)


def check_precision(precision: str, backend: str | None, score_outputs: Sequence[str] = ()) -> None:
    """fp16 / bf16 / bf16-pure / bf16-verified run the torch backend only (onnxruntime runs
    the exported fp32 graph as it is); ``backend`` None is decided later, from the model.
    ``score_outputs``: the score-based outputs asked for (e.g. ``"metric map_macro"``,
    ``"save_predictions"``), refused under ``bf16-verified``, whose decisions are fp32's but
    whose outputs are bf16 where no fp32 re-run was needed."""
    if precision != "fp32" and backend == "onnxruntime":
        raise SarevalError(
            f"ShapeConfig.execution.precision: {precision!r} needs "
            "ShapeConfig.execution.backend 'torch' (onnxruntime runs the exported fp32 graph "
            "as it is)"
        )
    if precision == "bf16-verified" and score_outputs:
        raise SarevalError(
            "ShapeConfig.execution.precision: 'bf16-verified' keeps decisions exact but not "
            f"scores; {', '.join(score_outputs)} need(s) 'fp32'"
        )


def check_provider(provider: str | None, device: str, backend: str | None) -> None:
    """An onnxruntime ``provider`` must run on ``device``; the torch backend takes none but
    the device's own."""
    if provider is None:
        return
    if backend == "torch" and provider not in ("cpu", "cuda"):
        raise SarevalError(
            f"ShapeConfig.execution.provider: {provider!r} applies to the onnxruntime backend"
        )
    kind, _ = parse_device(device)
    if (provider == "cpu") != (kind == "cpu"):
        raise SarevalError(
            f"ShapeConfig.execution.provider: {provider!r} does not run on "
            f"ShapeConfig.execution.device {device!r}"
        )


# --- value checks -----------------------------------------------------------------------------
def _choice(where: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SarevalError(f"{where}: {value!r} is not one of {', '.join(allowed)}")


def _integer(where: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SarevalError(f"{where}: expected an integer >= {low}, got {value!r}")


def _flag(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SarevalError(f"{where}: expected a bool, got {value!r}")


def _bands(where: str, bands: Any) -> tuple[str, ...]:
    if isinstance(bands, str) or not isinstance(bands, Sequence) or not bands:
        raise SarevalError(f"{where}: expected a non-empty list of band names")
    if not all(isinstance(b, str) for b in bands):
        raise SarevalError(f"{where}: band names must be strings")
    return tuple(bands)


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name or "+" in name:
        raise SarevalError(
            f"ShapeConfig.game.players: player name {name!r} must be a string without '+'"
        )
    return name


def _players(value: Any) -> FlatPlayers | NestedPlayers | None:
    """Flat ``{name: bands}`` -> ((name, bands), ...); nested ``{group: {name: bands}}`` ->
    ((group, ((name, bands), ...)), ...) (Owen values: players inside groups)."""
    where = "ShapeConfig.game.players"
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise SarevalError(f"{where}: expected a non-empty mapping name -> band names")
    nested = [isinstance(v, Mapping) for v in value.values()]
    if any(nested) and not all(nested):
        raise SarevalError(
            f"{where}: either every entry is name -> bands, or every entry is "
            "group -> {name: bands} (nested players)"
        )
    if not any(nested):
        return tuple((_name(n), _bands(f"{where}[{n!r}]", b)) for n, b in value.items())
    out: list[tuple[str, FlatPlayers]] = []
    for group, members in value.items():
        if not members:
            raise SarevalError(f"{where}[{group!r}]: a group needs players")
        out.append((_name(group), tuple((_name(n), _bands(f"{where}[{group!r}][{n!r}]", b))
                                        for n, b in members.items())))  # fmt: skip
    leaves = [n for _, members in out for n, _ in members]
    if len(set(leaves)) != len(leaves):
        raise SarevalError(f"{where}: player names must be unique across groups")
    return tuple(out)


def _edges(value: Any) -> tuple[float, ...] | None:
    where = "ShapeConfig.reporting.cloud_cover_bins"
    if value is None:
        return None
    try:
        edges = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SarevalError(f"{where}: expected a list of numbers") from None
    if len(edges) < 2 or not all(math.isfinite(e) for e in edges):
        raise SarevalError(f"{where}: expected at least two finite edges")
    given = ", ".join(f"{e:g}" for e in edges)
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise SarevalError(f"{where}: edges must increase strictly, got {given}")
    if edges[0] < 0 or edges[-1] > 1:
        raise SarevalError(f"{where}: edges must lie in [0, 1] (cover is a fraction), got {given}")
    return edges


def _statistics(value: Any, baseline: str) -> str | tuple[str, str]:
    """``baseline_statistics``: one of :data:`~sareval.choices.BASELINE_STATISTICS`, or a store
    subset ``(store path, subset name)``; anything but the default needs ``band-mean``."""
    where = "ShapeConfig.game.baseline_statistics"
    pair = f"{', '.join(BASELINE_STATISTICS)} or a (store path, subset name) pair"
    if isinstance(value, str):
        if value not in BASELINE_STATISTICS:
            raise SarevalError(f"{where}: {value!r} is not one of {pair}")
        out: str | tuple[str, str] = value
    elif (
        isinstance(value, Sequence)
        and len(value) == 2
        and isinstance(value[0], (str, os.PathLike))
        and isinstance(value[1], str)
        and value[1]
    ):
        out = (os.fspath(value[0]), value[1])
    else:
        raise SarevalError(f"{where}: expected one of {pair}, got {value!r}")
    if out != "evaluated" and baseline != "band-mean":
        raise SarevalError(
            f"{where}: {out!r} applies to ShapeConfig.game.baseline 'band-mean' only "
            f"(baseline is {baseline!r})"
        )
    return out


# --- the four parts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Game:
    """The cooperative game: who plays and what "absent" means.

    - ``players``: ``{"sar": ["VV", "VH"], "rgb": ["B02", "B03", "B04"], ...}``; None = the
      card's modalities. Every card channel must belong to exactly one player. Nested,
      ``{"sar": {"VV": ["VV"], "VH": ["VH"]}, "opt": {"rgb": [...], "nir": [...]}}``, gives Owen
      values of the inner players and Shapley values of the groups in one run.
    - ``baseline``: the fill of an absent player's channels (:data:`~sareval.choices.Baseline`:
      0 after normalisation, raw 0, or the per-band mean).
    - ``baseline_statistics``: where ``band-mean`` takes its per-band raw means: ``evaluated``
      (the evaluated data itself), ``card`` (the card's normalisation means) or ``(store path,
      subset name)``, e.g. ``("train.h5", "clear")``; recorded with the values used
      (:func:`sareval.evaluator.preamble.baseline_band_means`).
    - ``empty_coalition``: V(no player): the model on the all-baseline input (``baseline``) or
      the evaluated data's majority-class predictor (``majority``).
    - ``absence``: what "absent" means to the model (:data:`~sareval.choices.Absence`): its
      channels filled with ``baseline`` (``fill``), its inputs left out (``omit``), its tokens
      masked (``mask``) or its channels taken from other samples (``marginal``); the model's
      card lists the operators it supports (:mod:`sareval.evaluator.absence`).
    """

    players: Mapping[str, Any] | FlatPlayers | NestedPlayers | None = None
    baseline: Baseline = "input-zero"
    baseline_statistics: BaselineStatistics | tuple[str, str] = "evaluated"
    empty_coalition: Empty = "baseline"
    absence: Absence = "fill"

    def __post_init__(self) -> None:
        object.__setattr__(self, "players", _players(self.players))
        _choice("ShapeConfig.game.baseline", self.baseline, BASELINES)
        _choice("ShapeConfig.game.empty_coalition", self.empty_coalition, EMPTY_CHOICES)
        _choice("ShapeConfig.game.absence", self.absence, ABSENCES)
        if self.absence != "fill" and self.baseline != "input-zero":
            raise SarevalError(
                f"ShapeConfig.game.baseline: {self.baseline!r} applies to "
                f"ShapeConfig.game.absence 'fill' only (absence is {self.absence!r})"
            )
        statistics = _statistics(self.baseline_statistics, self.baseline)
        object.__setattr__(self, "baseline_statistics", statistics)

    @property
    def player_groups(self) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        """Nested players: (group, its players' names) per group; None when flat."""
        nested = self._nested()
        return None if nested is None else tuple((g, tuple(n for n, _ in m)) for g, m in nested)

    @property
    def player_map(self) -> dict[str, tuple[str, ...]] | None:
        """The (inner) players as a dict name -> bands (None: the card's modalities)."""
        nested = self._nested()
        if nested is not None:
            return {n: b for _, members in nested for n, b in members}
        flat: Any = self.players  # FlatPlayers or None, normalised by __post_init__
        return None if flat is None else dict(flat)

    def _nested(self) -> NestedPlayers | None:
        players: Any = self.players
        if not players or not isinstance(players[0][1][0], tuple):
            return None
        return players  # type: ignore[no-any-return]

    def players_record(self) -> dict[str, Any] | None:
        """Players as JSON: ``{name: [bands]}`` or ``{group: {name: [bands]}}``."""
        nested = self._nested()
        if nested is not None:
            return {g: {n: list(b) for n, b in m} for g, m in nested}
        flat = self.player_map
        return None if flat is None else {k: list(v) for k, v in flat.items()}


@dataclass(frozen=True)
class Reporting:
    """What is reported.

    - ``metrics``: the metrics kept in the result (None: all of the task's,
      :data:`sareval.evaluator.metrics.METRIC_NAMES`), overall, per class and per bin.
    - ``normalization``: the SHAPE normalization factor Z_f: ``one`` (Z = 1, the study) or
      ``full`` (Z = V(all players), the SHAPE paper); was ``z``.
    - ``by_class``; ``cloud_cover_bins``: bin edges in [0, 1] (e.g. :data:`DECILES`) or None.
      A NaN cover goes to the ``unknown`` bin; a cover outside the edges is refused after the
      pass, never left out.
    - ``replicates``: bootstrap replicates over samples for 95 % intervals (0: none; was
      ``bootstrap``); ``seed``: of the replicates and of sampled orderings.
    - ``per_sample``: per-sample Shapley values of each sample's model score and
      false-prediction detection from them (:mod:`sareval.analysis.in_pass`).
    - ``map_absent_classes``: what ``map_macro`` does with a class without a positive sample:
      ``skip`` (torchmetrics' macro mean, reBEN's) or ``zero`` (scikit-learn's).
    """

    metrics: Sequence[str] | None = None
    normalization: Z = "one"
    by_class: bool = False
    cloud_cover_bins: Sequence[float] | None = None
    replicates: int = 0
    seed: int = 0
    per_sample: bool = False
    map_absent_classes: MapAbsentClasses = "skip"

    def __post_init__(self) -> None:
        if self.metrics is not None:
            if isinstance(self.metrics, str) or not all(isinstance(m, str) for m in self.metrics):
                raise SarevalError("ShapeConfig.reporting.metrics: expected a list of metric names")
            object.__setattr__(self, "metrics", tuple(self.metrics))
        _choice("ShapeConfig.reporting.normalization", self.normalization, Z_CHOICES)
        _flag("ShapeConfig.reporting.by_class", self.by_class)
        object.__setattr__(self, "cloud_cover_bins", _edges(self.cloud_cover_bins))
        _integer("ShapeConfig.reporting.replicates", self.replicates, 0)
        if self.replicates > MAX_REPLICATES:
            raise SarevalError(
                f"ShapeConfig.reporting.replicates: {self.replicates} is outside "
                f"0..{MAX_REPLICATES}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SarevalError(
                f"ShapeConfig.reporting.seed: expected an integer, got {self.seed!r}"
            )
        _flag("ShapeConfig.reporting.per_sample", self.per_sample)
        _choice(
            "ShapeConfig.reporting.map_absent_classes", self.map_absent_classes, MAP_ABSENT_CLASSES
        )


@dataclass(frozen=True)
class Execution:
    """How the evaluation runs (never what it computes: results are identical, to the count,
    whatever these are, up to float rounding for ``precision`` and ``share``).

    ``batch_size`` samples per step; ``backend`` (None: torch for an in-memory module,
    onnxruntime for a model file); ``device`` (``cpu``, ``cuda``, ``cuda:N``); ``provider``
    (onnxruntime; None: from the device); ``precision`` (fp16/bf16: torch autocast);
    ``threads`` (onnxruntime; 0: its default; more than the cores is clamped to them with a
    logged note); ``queue_size`` (prefetched batches); ``pad_last_batch`` (None: on for CUDA);
    ``shard`` ``(index, count)``: evaluate that part, for :func:`sareval.merge`-style merging;
    ``max_rows``: model rows per execution (None: from the memory budget); ``share``: work
    shared across coalitions (:mod:`sareval.evaluator.sharing`,
    :mod:`sareval.evaluator.onnx_sharing`), recorded as what ran.
    """

    batch_size: int = 64
    backend: Backend | None = None
    device: str = "cpu"
    provider: Provider | None = None
    precision: Precision = "fp32"
    threads: int = 0
    queue_size: int = 2
    pad_last_batch: bool | None = None
    shard: tuple[int, int] | None = None
    max_rows: int | None = None
    share: bool = False

    def __post_init__(self) -> None:
        _integer("ShapeConfig.execution.batch_size", self.batch_size, 1)
        if self.backend is not None:
            _choice("ShapeConfig.execution.backend", self.backend, BACKENDS)
        parse_device(self.device)
        if self.provider is not None:
            _choice("ShapeConfig.execution.provider", self.provider, PROVIDERS)
        _choice("ShapeConfig.execution.precision", self.precision, PRECISIONS)
        check_precision(self.precision, self.backend)
        check_provider(self.provider, self.device, self.backend)
        _integer("ShapeConfig.execution.threads", self.threads, 0)
        _integer("ShapeConfig.execution.queue_size", self.queue_size, 1)
        if self.pad_last_batch is not None:
            _flag("ShapeConfig.execution.pad_last_batch", self.pad_last_batch)
        if self.max_rows is not None:
            _integer("ShapeConfig.execution.max_rows", self.max_rows, 1)
        _flag("ShapeConfig.execution.share", self.share)
        if self.shard is not None:
            shard = self.shard
            ok = (
                isinstance(shard, Sequence)
                and len(shard) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
            )
            if not ok or not 0 <= shard[0] < shard[1]:
                raise SarevalError(
                    f"ShapeConfig.execution.shard: expected (index, count) with "
                    f"0 <= index < count, got {shard!r}"
                )
            object.__setattr__(self, "shard", (shard[0], shard[1]))
        self._clamp_threads()

    def _clamp_threads(self) -> None:
        """``threads`` above the cores this process may use is clamped to them, with a note
        (onnxruntime would start every thread asked for)."""
        cores = default_workers()
        if self.threads > cores:
            log.warning(
                "ShapeConfig.execution.threads: %d is more than the %d cores this process may "
                "use; using %d",
                self.threads, cores, cores,
            )  # fmt: skip
            object.__setattr__(self, "threads", cores)


@dataclass(frozen=True)
class Estimation:
    """How the Shapley values are computed: ``estimator`` ``exact`` (all 2^M coalitions),
    ``sampled`` (permutation sampling of ``orderings`` player orderings, antithetic pairs; was
    ``samples``) or ``auto`` (whichever evaluates fewer coalitions)."""

    estimator: Estimator = "auto"
    orderings: int = 128

    def __post_init__(self) -> None:
        _choice("ShapeConfig.estimation.estimator", self.estimator, ESTIMATORS)
        v = self.orderings
        if isinstance(v, bool) or not isinstance(v, int) or v < 2 or v % 2:
            raise SarevalError(
                f"ShapeConfig.estimation.orderings: expected an even number >= 2, got {v!r}"
            )


PARTS: dict[str, type] = {
    "game": Game,
    "reporting": Reporting,
    "execution": Execution,
    "estimation": Estimation,
}
#: every flat keyword -> (part, field): one table for ShapeConfig(...), replace() and evaluate()
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    f.name: (part, f.name) for part, cls in PARTS.items() for f in fields(cls)
}
#: old flat names (deprecated) -> the new flat name
DEPRECATED_NAMES: dict[str, str] = {
    "bootstrap": "replicates",
    "samples": "orderings",
    "z": "normalization",
    "empty": "empty_coalition",
}


def field_path(name: str) -> str:
    """A flat field name's path, e.g. ``replicates`` -> ``ShapeConfig.reporting.replicates``."""
    part, field = FLAT_FIELDS[DEPRECATED_NAMES.get(name, name)]
    return f"ShapeConfig.{part}.{field}"


def _route(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat keywords -> {part: {field: value}}; old names warn, unknown names are an error."""
    out: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
    unknown = []
    for name, value in flat.items():
        new = DEPRECATED_NAMES.get(name)
        if new is not None:
            warnings.warn(
                f"ShapeConfig: {name!r} is deprecated; use {new!r} ({field_path(new)})",
                DeprecationWarning,
                stacklevel=4,
            )
            if new in flat:
                raise SarevalError(f"ShapeConfig: give {new!r} or its old name {name!r}, not both")
            name = new
        if name not in FLAT_FIELDS:
            unknown.append(name)
            continue
        part, field = FLAT_FIELDS[name]
        out[part][field] = value
    if unknown:
        raise SarevalError(
            f"unknown ShapeConfig field(s) {', '.join(sorted(unknown))}; "
            f"fields: {', '.join(sorted(FLAT_FIELDS))}"
        )
    return out


@dataclass(frozen=True, init=False)
class ShapeConfig:
    """What :func:`sareval.evaluate` computes and how: the :class:`Game`, its
    :class:`Reporting`, :class:`Execution` and :class:`Estimation` (every field has the study's
    default).

    ``ShapeConfig(game=Game(...), reporting=Reporting(...))``, or flat keywords routed by
    :data:`FLAT_FIELDS` (``ShapeConfig(by_class=True, batch_size=16)``), or both (flat keywords
    then replace fields of the given parts). Rules that span two parts are checked here.
    """

    game: Game
    reporting: Reporting
    execution: Execution
    estimation: Estimation

    def __init__(
        self,
        game: Game | None = None,
        reporting: Reporting | None = None,
        execution: Execution | None = None,
        estimation: Estimation | None = None,
        **flat: Any,
    ) -> None:
        given = {"game": game, "reporting": reporting, "execution": execution,
                 "estimation": estimation}  # fmt: skip
        routed = _route(flat)
        for part, cls in PARTS.items():
            value = given[part]
            if value is not None and not isinstance(value, cls):
                raise SarevalError(
                    f"ShapeConfig.{part}: expected a sareval.{cls.__name__}, "
                    f"got {type(value).__name__}"
                )
            if value is None:
                value = cls(**routed[part])
            elif routed[part]:
                value = dataclasses.replace(value, **routed[part])
            object.__setattr__(self, part, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        """The rules across parts."""
        rep, ex, est, game = self.reporting, self.execution, self.estimation, self.game
        if rep.replicates and ex.shard is not None:
            raise SarevalError(
                "ShapeConfig.reporting.replicates needs every sample in one job: "
                "ShapeConfig.execution.shard must be None (use torchrun instead)"
            )
        if rep.replicates and est.estimator == "sampled":
            raise SarevalError(
                "ShapeConfig.reporting.replicates: intervals are for exact games; "
                "ShapeConfig.estimation.estimator is 'sampled' (its results carry a standard "
                "error per player instead)"
            )
        if rep.per_sample and (game.empty_coalition != "baseline" or est.estimator == "sampled"):
            raise SarevalError(
                "ShapeConfig.reporting.per_sample: needs an exact game and "
                "ShapeConfig.game.empty_coalition 'baseline' (the per-sample values use every "
                "coalition's model output, the empty one included)"
            )

    def replace(self, **changes: Any) -> ShapeConfig:
        """A copy with ``changes``: parts (``execution=Execution(...)``) or flat field names
        (unknown names are an error naming them)."""
        parts = {p: changes.pop(p) for p in list(changes) if p in PARTS}
        current = {p: getattr(self, p) for p in PARTS}
        return ShapeConfig(**{**current, **parts}, **changes)

    def to_record(self) -> dict[str, Any]:
        """The flat JSON record of the results' ``config`` (players as {name: [bands]}, tuples
        as lists)."""
        d: dict[str, Any] = {}
        for part in PARTS:
            obj = getattr(self, part)
            for f in fields(obj):
                d[f.name] = getattr(obj, f.name)
        d["players"] = self.game.players_record()
        for k in ("metrics", "cloud_cover_bins", "shard", "baseline_statistics"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A results ``config`` record with the old names (``bootstrap``, ``samples``, ``z``,
    ``empty``) renamed to the current ones (results files written before the rename)."""
    out = dict(record)
    for old, new in DEPRECATED_NAMES.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out


__all__ = [
    "DECILES",
    "DEPRECATED_NAMES",
    "FLAT_FIELDS",
    "Estimation",
    "Execution",
    "Game",
    "Reporting",
    "ShapeConfig",
    "check_precision",
    "check_provider",
    "field_path",
    "parse_device",
    "upgrade_record",
]
