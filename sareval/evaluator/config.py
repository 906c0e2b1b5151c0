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
    METHODS,
    PRECISIONS,
    PROVIDERS,
    Z_CHOICES,
    Backend,
    Baseline,
    Empty,
    Method,
    Precision,
    Provider,
    Z,
)
from sareval.errors import SarevalError

#: ``cloud_cover_bins`` for "deciles": 0, 0.1, ..., 1
DECILES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def _players(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise SarevalError("ShapeConfig.players: expected a non-empty mapping name -> band names")
    out = []
    for name, bands in value.items():
        if not isinstance(name, str) or not name or "+" in name:
            raise SarevalError(f"ShapeConfig.players: player name {name!r} must be a string "
                               "without '+'")  # fmt: skip
        if isinstance(bands, str) or not isinstance(bands, Sequence) or not bands:
            raise SarevalError(
                f"ShapeConfig.players[{name!r}]: expected a non-empty list of band names"
            )
        if not all(isinstance(b, str) for b in bands):
            raise SarevalError(f"ShapeConfig.players[{name!r}]: band names must be strings")
        out.append((name, tuple(bands)))
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
      card's modalities. Every card channel must belong to exactly one player.
    - ``baseline`` / ``empty`` / ``z``: :mod:`sareval.choices`; ``metrics``: the metrics kept in
      the result (None: all of the task's, :data:`sareval.evaluator.metrics.METRIC_NAMES`).
    - ``by_class``; ``cloud_cover_bins``: bin edges in [0, 1] (e.g. :data:`DECILES`) or None.
    - ``bootstrap`` replicates (0: none) and ``seed``; ``method`` ``perceptual`` permutes
      each player ``permutations`` times instead of masking it.
    - execution: ``batch_size``, ``backend`` (None: torch for an in-memory module,
      onnxruntime for a model file), ``device`` (``cpu``, ``cuda``, ``cuda:N``), ``provider``
      (onnxruntime; None: from the device), ``precision``, ``threads``, ``queue_size``,
      ``pad_last_batch`` (None: on for CUDA), ``shard`` ``(index, count)``.
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
        for name, low in (("bootstrap", 0), ("permutations", 1), ("batch_size", 1),
                          ("threads", 0), ("queue_size", 1)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SarevalError(f"ShapeConfig.{name}: expected an integer >= {low}, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SarevalError(f"ShapeConfig.seed: expected an integer, got {self.seed!r}")
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
        """``players`` as a dict (None: the card's modalities)."""
        return None if self.players is None else dict(self.players)  # type: ignore[arg-type]

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
        d["players"] = self.player_map and {k: list(v) for k, v in self.player_map.items()}
        for k in ("metrics", "cloud_cover_bins", "shard"):
            d[k] = None if d[k] is None else list(d[k])
        return d
