"""Every evaluation choice as one frozen, typed value: :class:`ShapeConfig`.

No string mini-languages: players are a mapping ``name -> band names``, cloud-cover bins a
sequence of edges, a shard a pair ``(index, count)``. The CLI parses its strings into these
types (:mod:`sareval.commands.shape`); the results document records them
(:meth:`ShapeConfig.to_record`). Invalid values raise :class:`~sareval.errors.SarevalError`
naming the field, e.g. ``ShapeConfig.z: 'half' is not one of one, full``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from sareval.choices import (
    BACKENDS,
    BASELINE_STATISTICS,
    BASELINES,
    EMPTY_CHOICES,
    ESTIMATORS,
    MAP_ABSENT_CLASSES,
    METHODS,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
    Backend,
    Baseline,
    BaselineStatistics,
    Empty,
    Estimator,
    MapAbsentClasses,
    Method,
    Precision,
    Provider,
    Z,
)
from sareval.errors import SarevalError

log = logging.getLogger(__name__)

#: ``cloud_cover_bins`` for "deciles": 0, 0.1, ..., 1
DECILES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def _bands(where: str, bands: Any) -> tuple[str, ...]:
    if isinstance(bands, str) or not isinstance(bands, Sequence) or not bands:
        raise SarevalError(f"ShapeConfig.players[{where}]: expected a non-empty list of band names")
    if not all(isinstance(b, str) for b in bands):
        raise SarevalError(f"ShapeConfig.players[{where}]: band names must be strings")
    return tuple(bands)


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name or "+" in name:
        raise SarevalError(
            f"ShapeConfig.players: player name {name!r} must be a string without '+'"
        )
    return name


def _players(value: Any) -> tuple[Any, ...] | None:
    """Flat ``{name: bands}`` -> ((name, bands), ...); nested ``{group: {name: bands}}`` ->
    ((group, ((name, bands), ...)), ...) (Owen values: players inside groups)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise SarevalError("ShapeConfig.players: expected a non-empty mapping name -> band names")
    nested = [isinstance(v, Mapping) for v in value.values()]
    if any(nested) and not all(nested):
        raise SarevalError(
            "ShapeConfig.players: either every entry is name -> bands, or every entry is "
            "group -> {name: bands} (nested players)"
        )
    if not any(nested):
        return tuple((_name(n), _bands(repr(n), b)) for n, b in value.items())
    out = []
    for group, members in value.items():
        if not members:
            raise SarevalError(f"ShapeConfig.players[{group!r}]: a group needs players")
        out.append((_name(group), tuple((_name(n), _bands(f"{group!r}][{n!r}", b))
                                        for n, b in members.items())))  # fmt: skip
    leaves = [n for _, members in out for n, _ in members]
    if len(set(leaves)) != len(leaves):
        raise SarevalError("ShapeConfig.players: player names must be unique across groups")
    return tuple(out)


def _edges(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        edges = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SarevalError("ShapeConfig.cloud_cover_bins: expected a list of numbers") from None
    if len(edges) < 2 or not all(math.isfinite(e) for e in edges):
        raise SarevalError("ShapeConfig.cloud_cover_bins: expected at least two finite edges")
    given = ", ".join(f"{e:g}" for e in edges)
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise SarevalError(
            f"ShapeConfig.cloud_cover_bins: edges must increase strictly, got {given}"
        )
    if edges[0] < 0 or edges[-1] > 1:
        raise SarevalError(
            f"ShapeConfig.cloud_cover_bins: edges must lie in [0, 1] (cover is a fraction), "
            f"got {given}"
        )
    return edges


def _statistics(value: Any, baseline: str) -> str | tuple[str, str]:
    """``baseline_statistics``: one of :data:`~sareval.choices.BASELINE_STATISTICS`, or a store
    subset ``(store path, subset name)``; anything but the default needs ``band-mean``."""
    if isinstance(value, str):
        if value not in BASELINE_STATISTICS:
            raise SarevalError(
                f"ShapeConfig.baseline_statistics: {value!r} is not one of "
                f"{', '.join(BASELINE_STATISTICS)} or a (store path, subset name) pair"
            )
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
        raise SarevalError(
            f"ShapeConfig.baseline_statistics: expected one of {', '.join(BASELINE_STATISTICS)} "
            f"or a (store path, subset name) pair, got {value!r}"
        )
    if out != "evaluated" and baseline != "band-mean":
        raise SarevalError(
            f"ShapeConfig.baseline_statistics: {out!r} applies to baseline 'band-mean' only "
            f"(baseline is {baseline!r})"
        )
    return out


@dataclass(frozen=True)
class ShapeConfig:
    """What :func:`sareval.evaluate` computes and how (every field has the study's default).

    - ``players``: ``{"sar": ["VV", "VH"], "rgb": ["B02", "B03", "B04"], ...}``; None = the
      card's modalities. Every card channel must belong to exactly one player. Nested,
      ``{"sar": {"VV": ["VV"], "VH": ["VH"]}, "opt": {"rgb": [...], "nir": [...]}}``, gives Owen
      values of the inner players and Shapley values of the groups in one run.
    - ``estimator``: ``exact`` (all 2^M coalitions), ``sampled`` (permutation sampling with
      ``samples`` orderings, antithetic pairs) or ``auto`` (whichever evaluates fewer
      coalitions); ``max_rows``: model rows per execution (coalitions of a batch run in chunks
      of at most this many rows; None: from the memory budget).
    - ``per_sample``: per-sample Shapley values of each sample's model score and false-prediction
      detection from them (:mod:`sareval.analysis.in_pass`; results sections ``per_sample``,
      ``detection``; arrays in the predictions file; a shard carries the per-sample state
      instead, for ``sareval merge``).
    - ``baseline`` / ``empty`` / ``z``: :mod:`sareval.choices`; ``metrics``: the metrics kept in
      the result (None: all of the task's, :data:`sareval.evaluator.metrics.METRIC_NAMES`).
    - ``by_class``; ``cloud_cover_bins``: bin edges in [0, 1] (e.g. :data:`DECILES`, what
      ``--by cloud-cover`` uses) or None. A NaN cover goes to the ``unknown`` bin; a cover
      outside the edges (e.g. 0.7 with edges 0, 0.5) is refused after the pass, naming how
      many samples and their range, never left out. Breakdowns keep only ``metrics`` and get
      bootstrap intervals from the same replicates as the overall ones.
    - ``bootstrap`` replicates (0: none) and ``seed``; ``method`` ``perceptual`` permutes
      each player ``permutations`` times instead of masking it.
    - execution: ``batch_size``, ``backend`` (None: torch for an in-memory module,
      onnxruntime for a model file), ``device`` (``cpu``, ``cuda``, ``cuda:N``), ``provider``
      (onnxruntime; None: from the device), ``precision``, ``threads`` (onnxruntime; 0: its
      default; more than the cores is clamped to them with a logged note), ``queue_size``,
      ``pad_last_batch`` (None: on for CUDA), ``shard`` ``(index, count)``.
    - ``share``: work shared across coalitions (late-fusion encoders once per sample on the
      torch backend, or an early-fusion first conv as per-player partial sums on either
      backend; :mod:`sareval.evaluator.sharing`, :mod:`sareval.evaluator.onnx_sharing`), off by
      default. A network it does not recognise runs
      the plain graph with a warning. Exact up to float rounding; the result records what ran
      (``config.share``: the kind, ``unshared`` after a fallback, null when off).
    - ``map_absent_classes``: what ``map_macro`` does with a class that has no positive sample
      in the evaluated data: ``skip`` (mean over the classes with one; torchmetrics' macro
      average, what the reBEN code reports) or ``zero`` (AP 0, scikit-learn's); the
      ``map_macro`` entries record ``classes_averaged`` and ``absent_classes``
      (:mod:`sareval.evaluator.scores`).
    - ``baseline_statistics``: where ``band-mean`` takes its per-band raw means:
      ``evaluated`` (the evaluated data itself, clouds included), ``card`` (the card's
      normalisation means) or ``(store path, subset name)``, e.g. ``("train.h5", "clear")``;
      recorded with the values used (``config.baseline_statistics``,
      ``config.baseline_values``; :func:`sareval.evaluator.preamble.baseline_band_means`).
    """

    players: Mapping[str, Sequence[str]] | None = None
    baseline: Baseline = "input-zero"
    empty: Empty = "baseline"
    z: Z = "one"
    metrics: Sequence[str] | None = None
    by_class: bool = False
    cloud_cover_bins: Sequence[float] | None = None
    bootstrap: int = 0
    seed: int = 0
    method: Method = "shape"
    permutations: int = 5
    batch_size: int = 64
    backend: Backend | None = None
    device: str = "cpu"
    provider: Provider | None = None
    precision: Precision = "fp32"
    threads: int = 0
    queue_size: int = 2
    pad_last_batch: bool | None = None
    shard: tuple[int, int] | None = field(default=None)
    estimator: Estimator = "auto"
    samples: int = 128
    max_rows: int | None = None
    per_sample: bool = False
    share: bool = False
    map_absent_classes: MapAbsentClasses = "skip"
    baseline_statistics: BaselineStatistics | tuple[str, str] = "evaluated"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "players", _players(self.players))
        set_(self, "cloud_cover_bins", _edges(self.cloud_cover_bins))
        if self.metrics is not None:
            if isinstance(self.metrics, str) or not all(isinstance(m, str) for m in self.metrics):
                raise SarevalError("ShapeConfig.metrics: expected a list of metric names")
            set_(self, "metrics", tuple(self.metrics))
        for name, allowed in (
            ("baseline", BASELINES), ("empty", EMPTY_CHOICES), ("z", Z_CHOICES),
            ("method", METHODS), ("precision", PRECISIONS),
        ):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise SarevalError(
                    f"ShapeConfig.{name}: {getattr(self, name)!r} is not one of "
                    f"{', '.join(allowed)}"
                )
        if self.backend is not None and self.backend not in BACKENDS:
            raise SarevalError(
                f"ShapeConfig.backend: {self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        if self.provider is not None and self.provider not in PROVIDERS:
            raise SarevalError(
                f"ShapeConfig.provider: {self.provider!r} is not one of {', '.join(PROVIDERS)}"
            )
        if self.estimator not in ESTIMATORS:
            raise SarevalError(
                f"ShapeConfig.estimator: {self.estimator!r} is not one of {', '.join(ESTIMATORS)}"
            )
        if self.samples < 2 or self.samples % 2:
            raise SarevalError(
                f"ShapeConfig.samples: expected an even number >= 2, got {self.samples!r}"
            )
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 1):
            raise SarevalError(
                f"ShapeConfig.max_rows: expected an integer >= 1, got {self.max_rows!r}"
            )
        for name, low in (("bootstrap", 0), ("permutations", 1), ("batch_size", 1),
                          ("threads", 0), ("queue_size", 1)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SarevalError(f"ShapeConfig.{name}: expected an integer >= {low}, got {v!r}")
        self._clamp_threads()
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SarevalError(f"ShapeConfig.seed: expected an integer, got {self.seed!r}")
        if not isinstance(self.per_sample, bool):
            raise SarevalError(f"ShapeConfig.per_sample: expected a bool, got {self.per_sample!r}")
        if self.per_sample and self.method == "perceptual":
            raise SarevalError("ShapeConfig.per_sample: needs method 'shape'")
        if not isinstance(self.share, bool):
            raise SarevalError(f"ShapeConfig.share: expected a bool, got {self.share!r}")
        if self.map_absent_classes not in MAP_ABSENT_CLASSES:
            raise SarevalError(
                f"ShapeConfig.map_absent_classes: {self.map_absent_classes!r} is not one of "
                f"{', '.join(MAP_ABSENT_CLASSES)}"
            )
        set_(self, "baseline_statistics", _statistics(self.baseline_statistics, self.baseline))
        if not isinstance(self.by_class, bool):
            raise SarevalError(f"ShapeConfig.by_class: expected a bool, got {self.by_class!r}")
        self._check_device()
        self._check_shard()
        if self.bootstrap and self.shard is not None:
            raise SarevalError(
                "ShapeConfig.bootstrap needs every sample in one job: use torchrun, not a shard"
            )
        if self.method == "perceptual" and (
            self.bootstrap or self.by_class or self.cloud_cover_bins is not None
        ):
            raise SarevalError(
                "ShapeConfig.method 'perceptual' supports none of bootstrap, by_class, "
                "cloud_cover_bins"
            )

    def _clamp_threads(self) -> None:
        """``threads`` above the cores this process may use is clamped to them, with a note
        (onnxruntime would start every thread asked for)."""
        from sareval.preprocess.pipeline import default_workers

        cores = default_workers()
        if self.threads > cores:
            log.warning(
                "ShapeConfig.threads: %d is more than the %d cores this process may use; "
                "using %d",
                self.threads, cores, cores,
            )  # fmt: skip
            object.__setattr__(self, "threads", cores)

    def _check_device(self) -> None:
        kind, _, index = str(self.device).partition(":")
        if kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit())):
            raise SarevalError(
                f"ShapeConfig.device: {self.device!r} is not cpu, cuda or cuda:N (N = 0, 1, ...)"
            )

    def _check_shard(self) -> None:
        if self.shard is None:
            return
        ok = (
            isinstance(self.shard, tuple)
            and len(self.shard) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in self.shard)
        )
        if not ok or not 0 <= self.shard[0] < self.shard[1]:
            raise SarevalError(
                f"ShapeConfig.shard: expected (index, count) with 0 <= index < count, "
                f"got {self.shard!r}"
            )

    @property
    def player_map(self) -> dict[str, tuple[str, ...]] | None:
        """The (inner) players as a dict name -> bands (None: the card's modalities)."""
        players: Any = self.players  # normalised by __post_init__ (see _players)
        if players is None:
            return None
        if self.player_groups is None:
            return dict(players)
        return {n: b for _, members in players for n, b in members}

    @property
    def player_groups(self) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        """Nested players: (group, its players' names) per group; None when flat."""
        players: Any = self.players
        if not players or not isinstance(players[0][1][0], tuple):
            return None
        return tuple((g, tuple(n for n, _ in m)) for g, m in players)

    def replace(self, **changes: Any) -> ShapeConfig:
        """A copy with ``changes`` (unknown names are an error naming them)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SarevalError(
                f"unknown ShapeConfig field(s) {', '.join(unknown)}; "
                f"fields: {', '.join(sorted(known))}"
            )
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """JSON-able fields (players as {name: [bands]}, tuples as lists)."""
        d = asdict(self)
        if self.player_groups is None:
            d["players"] = self.player_map and {k: list(v) for k, v in self.player_map.items()}
        else:
            players: Any = self.players
            d["players"] = {g: {n: list(b) for n, b in m} for g, m in players}
        for k in ("metrics", "cloud_cover_bins", "shard"):
            d[k] = None if d[k] is None else list(d[k])
        return d
