"""How much the absence operator changes relevance: one model, one data set, several operators.

:func:`compare_absence` evaluates the model under each operator of ``ShapeConfig.game.absence``
(``fill``, ``omit``, ``mask``, ``marginal``; each must be in the card's ``absence`` list) with
the same configuration and seed, and compares every operator with the first one (the
reference): the difference of V, relevance and cooperation, operator minus reference, with
paired bootstrap intervals and p-values over the SAME sample draws
(:func:`~sareval.report.compare.compare_predictions` on the runs' predictions files). Every
run gets its own ``replicates`` intervals. Marginal imputation counts every donor draw as a
sample (D = ``MARGINAL_DRAWS`` rows per sample in its predictions file); its comparisons are
paired by SAMPLE: a replicate draws N samples, the same for both operators, and marginal's side
counts every draw of the drawn samples. So marginal gets a paired interval, and may be the
reference. Its relevance is also shown with its standard error over the draws
(``marginal_draws``). :meth:`AbsenceComparison.figure` draws each player's relevance per
operator with the run's own interval.

Which operator answers which question (docs/api.md, "Absence"):

- ``fill``: the model on a constant input where the player is off (the study's zeros after
  normalisation): its relevance depends on how unusual that input is for the model;
- ``omit`` / ``mask``: the model as deployed without the player (inputs left out, tokens
  masked): meaningful for models built or trained to run without it;
- ``marginal``: the player's information replaced by another sample's (in-distribution but
  wrong): a model that uses the player is misled rather than told it is missing, so its
  relevance is at least that of ``mask`` for a model that falls back gracefully.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sareval
from sareval.api import ShapeResult
from sareval.errors import SarevalError
from sareval.report.compare import Comparison, compare_predictions
from sareval.report.figures import absence_figure, figure_format, save_as


@dataclass
class AbsenceComparison:
    """Results per operator (in the order given) and differences from the first."""

    operators: tuple[str, ...]
    results: dict[str, ShapeResult]
    differences: dict[str, Comparison] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.operators[0]

    def table(self, metric: str) -> str:
        """Per operator: V(all), each player's relevance (marginal: +- its standard error over
        the draws), and its difference from the reference with the paired interval."""
        first = self.results[self.reference]
        players = first.players
        lines = [f"relevance of {metric} under each absence operator (reference "
                 f"{self.reference}; difference: operator minus reference, 95 % paired "
                 "bootstrap interval)"]  # fmt: skip
        head = ["operator", f"V({'+'.join(players)})"]
        head += [f"R({p})" for p in players] + [f"diff R({p})" for p in players]
        rows = [head]
        for op in self.operators:
            r = self.results[op]
            full = list(r.values[metric])[-1]
            row = [op, f"{r.values[metric][full]:.4f}"]
            spread = r.doc.get("marginal_draws", {}).get("standard_error", {}).get(metric)
            for p in players:
                cell = f"{r.relevance[metric][p]:+.4f}"
                if spread is not None:
                    cell += f" +-{spread['relevance'][p]:.4f}"
                row.append(cell)
            for p in players:
                if op == self.reference:
                    row.append("-")
                else:
                    d = self.differences[op].relevance(metric, p)
                    row.append(f"{d.estimate:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)

    def figure(self, metric: str, path: str | Path) -> Path:
        """Bars of each player's relevance of ``metric`` per operator (one group per player,
        one colour per operator) with each run's own bootstrap interval as error bars
        (:func:`~sareval.report.figures.absence_figure`), written to ``path`` (its suffix gives
        the format: ``.png``, ``.pdf``, ``.svg``); returns ``path``."""
        figure_format(Path(path))  # a bad suffix: refused before drawing
        first = self.results[self.reference]
        if metric not in first.relevance:
            raise SarevalError(
                f"metric: {metric!r} was not evaluated; known: {sorted(first.relevance)}"
            )
        relevance = {op: dict(self.results[op].relevance[metric]) for op in self.operators}
        intervals = {
            op: self.results[op].intervals.get(metric, {}).get("relevance", {})
            for op in self.operators
        }
        z = str(first.config.get("normalization", "?"))
        settings = f"Z = {z}, baseline {first.config.get('baseline', '?')}"
        fig = absence_figure(relevance, intervals, metric, settings)
        return save_as(fig, Path(path))


def compare_absence(
    model: Any,
    data: Any,
    operators: Sequence[str],
    *,
    card: Any = None,
    metrics: Sequence[str] | None = None,
    replicates: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    workdir: str | Path | None = None,
    **config: Any,
) -> AbsenceComparison:
    """Relevance of ``model`` on ``data`` under each absence operator, side by side, with
    paired bootstrap intervals of the differences from ``operators[0]`` (module docstring);
    every run also gets its own ``replicates`` intervals and a predictions file.
    ``config``: further :class:`~sareval.ShapeConfig` fields (flat names), the same for every
    run; ``workdir``: where the predictions files go (default: a temporary directory)."""
    ops = tuple(operators)
    if len(ops) < 2 or len(set(ops)) != len(ops):
        raise SarevalError(
            f"operators: give at least two different absence operators, got {list(ops)}"
        )
    for key in ("absence", "save_predictions", "replicates"):
        if key in config:
            raise SarevalError(f"{key}: set by compare_absence; leave it out")
    with tempfile.TemporaryDirectory(prefix="sareval-absence-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results: dict[str, ShapeResult] = {}
        files: dict[str, Path] = {}
        for op in ops:  # its own intervals, and its predictions for the pairing
            files[op] = folder / f"predictions-{op}.h5"
            results[op] = sareval.evaluate(
                model, data, **config, absence=op, seed=seed, card=card,
                save_predictions=files[op], overwrite=True, replicates=replicates,
            )  # fmt: skip
        z = str(config.get("normalization", "one"))
        differences = {
            op: compare_predictions(
                [files[ops[0]]], [files[op]], a=ops[0], b=op, metrics=metrics,
                replicates=replicates, seed=seed, alpha=alpha, z=z,
            )
            for op in ops[1:]
        }  # fmt: skip
    return AbsenceComparison(ops, results, differences)
