"""What one evaluation computed, as the runner hands it over: :class:`RunOutput`.

:func:`sareval.evaluator.runner.run_evaluation` returns a :class:`RunOutput` (typed, frozen);
:func:`sareval.evaluate` wraps its :meth:`RunOutput.to_document`, the results document of
:mod:`sareval.evaluator.results` (same keys, same order, whatever route computed it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sareval.evaluator.results import FORMAT, FORMAT_VERSION

#: the computed sections every run has, in document order (optional ones follow in ``extra``)
SECTIONS = ("n_samples", "metrics", "warnings", "per_class", "by", "counts", "ties")


@dataclass(frozen=True)
class RunOutput:
    """One evaluation's results (layout of each part: :mod:`sareval.evaluator.results`).

    ``config``: every choice and how it ran (the results' ``config``); ``provenance``: versions,
    model, data; ``players`` / ``coalitions`` in evaluation order; ``metrics``: metric -> V,
    relevance, cooperation (and ``ci``); ``counts``: coalition -> integer counts (the
    sufficient statistics); ``warnings``: one line each; ``per_class``, ``by`` (breakdowns),
    ``ties``; ``extra``: the optional sections in document order (``per_sample``,
    ``detection``, a shard's ``per_sample_state`` / ``scores``); ``empty``: the empty
    coalition's predictor; ``game``: the SHAPE game record (None for perceptual scores).
    """

    method: str
    config: Mapping[str, Any]
    provenance: Mapping[str, Any]
    task: str
    class_names: tuple[str, ...]
    players: tuple[str, ...]
    coalitions: tuple[str, ...]
    n_samples: int
    metrics: Mapping[str, Any]
    counts: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    per_class: Mapping[str, Any] = field(default_factory=dict)
    by: Mapping[str, Any] = field(default_factory=dict)
    ties: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    empty: Mapping[str, Any] = field(default_factory=dict)
    game: Mapping[str, Any] | None = None

    @classmethod
    def from_sections(
        cls,
        sections: Mapping[str, Any],
        *,
        method: str,
        config: Mapping[str, Any],
        provenance: Mapping[str, Any],
        task: str,
        class_names: tuple[str, ...],
        players: tuple[str, ...],
        coalitions: tuple[str, ...],
        empty: Mapping[str, Any],
    ) -> RunOutput:
        """From the computed sections of :func:`~sareval.evaluator.results.shape_sections` /
        :func:`~sareval.evaluator.results.perceptual_sections` (plus any optional ones)."""
        return cls(
            method=method,
            config=config,
            provenance=provenance,
            task=task,
            class_names=class_names,
            players=players,
            coalitions=coalitions,
            n_samples=int(sections["n_samples"]),
            metrics=sections["metrics"],
            counts=sections["counts"],
            warnings=tuple(sections["warnings"]),
            per_class=sections["per_class"],
            by=sections["by"],
            ties=sections["ties"],
            extra={k: v for k, v in sections.items() if k not in SECTIONS},
            empty=empty,
        )

    def with_game(self, game: Mapping[str, Any]) -> RunOutput:
        """A copy with the ``game`` record."""
        return replace(self, game=game)

    def to_document(self) -> dict[str, Any]:
        """The results document (JSON-able; the key order of every results file)."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "config": dict(self.config),
            "provenance": dict(self.provenance),
            "task": self.task,
            "class_names": list(self.class_names),
            "players": list(self.players),
            "coalitions": list(self.coalitions),
            "n_samples": self.n_samples,
            "metrics": dict(self.metrics),
            "warnings": list(self.warnings),
            "per_class": dict(self.per_class),
            "by": dict(self.by),
            "counts": dict(self.counts),
            "ties": dict(self.ties),
            **self.extra,
            "empty": dict(self.empty),
        }
        if self.game is not None:
            doc["game"] = dict(self.game)
        return doc
