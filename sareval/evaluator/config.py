"""Every evaluation choice as one frozen, typed value: :class:`ShapeConfig`.

No string mini-languages: players are a mapping ``name -> band names``, cloud-cover bins a
sequence of edges, a shard a pair ``(index, count)``. The CLI parses its strings into these
types (:mod:`sareval.commands.shape`); the results document records them
(:meth:`ShapeConfig.to_record`). Invalid values raise :class:`~sareval.errors.SarevalError`
naming the field, e.g. ``ShapeConfig.z: 'half' is not one of one, full``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from sareval.choices import (
    BACKENDS,
    BASELINES,
    EMPTY_CHOICES,
    ESTIMATORS,
    METHODS,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
    Backend,
    Baseline,
    Empty,
    Estimator,
    Method,
    Precision,
    Provider,
    Z,
)
from sareval.errors import SarevalError

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
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise SarevalError("ShapeConfig.cloud_cover_bins: edges must increase strictly")
    if edges[0] < 0 or edges[-1] > 1:
        raise SarevalError("ShapeConfig.cloud_cover_bins: edges must lie in [0, 1]")
    return edges


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
    - ``by_class``; ``cloud_cover_bins``: bin edges in [0, 1] (e.g. :data:`DECILES`) or None.
    - ``bootstrap`` replicates (0: none) and ``seed``; ``method`` ``perceptual`` permutes
      each player ``permutations`` times instead of masking it.
    - execution: ``batch_size``, ``backend`` (None: torch for an in-memory module,
      onnxruntime for a model file), ``device`` (``cpu``, ``cuda``, ``cuda:N``), ``provider``
      (onnxruntime; None: from the device), ``precision``, ``threads``, ``queue_size``,
      ``pad_last_batch`` (None: on for CUDA), ``shard`` ``(index, count)``.
    - ``share``: work shared across coalitions (late-fusion encoders once per sample on the
      torch backend, or an early-fusion first conv as per-player partial sums on either
      backend; :mod:`sareval.evaluator.sharing`, :mod:`sareval.evaluator.onnx_sharing`), off by
      default. A network it does not recognise runs
      the plain graph with a warning. Exact up to float rounding; the result records what ran
      (``config.share``: the kind, ``unshared`` after a fallback, null when off).
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
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SarevalError(f"ShapeConfig.seed: expected an integer, got {self.seed!r}")
        if not isinstance(self.per_sample, bool):
            raise SarevalError(f"ShapeConfig.per_sample: expected a bool, got {self.per_sample!r}")
        if self.per_sample and self.method == "perceptual":
            raise SarevalError("ShapeConfig.per_sample: needs method 'shape'")
        if not isinstance(self.share, bool):
            raise SarevalError(f"ShapeConfig.share: expected a bool, got {self.share!r}")
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
