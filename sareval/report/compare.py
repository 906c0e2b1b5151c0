"""Comparisons of two models, or two training setups with several runs each, from
``--save-predictions`` files: the difference B - A of V, relevance and cooperation with a paired
bootstrap interval and a p-value (definitions: :mod:`sareval.analysis.compare`,
``docs/analysis.md`` section 3).

Inputs: one predictions file per run (``sareval shape --save-predictions pred.h5``, or
``sareval.evaluate(..., save_predictions=...)``; for a training run, evaluate its exported
``model.onnx`` on the test store). Every file of both setups must hold the same samples (ids in
the same order) of the same store content, subset, players, task, classes, baseline and empty
coalition; otherwise :class:`SarevalError` names the two files and the difference. With one run
per setup the comparison is the paired bootstrap (:func:`paired_shape_difference`); with more it
is the two-level bootstrap over runs and samples (:func:`hierarchical_shape_difference`).

    sareval report --compare clear=runs/clear/seed-0/pred-very_cloudy.h5,runs/clear/seed-1/... \\
                   cloudy=runs/cloudy/seed-0/pred-very_cloudy.h5,... --out report/
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sareval.analysis.compare import (
    Difference,
    format_difference,
    hierarchical_shape_difference,
    paired_shape_difference,
)
from sareval.errors import InputFileError, SarevalError
from sareval.evaluator.coalitions import EMPTY_NAME, SEPARATOR

#: attributes of a predictions file that must agree between the compared runs
SAME_ATTRS = ("store_content_digest", "subset", "task", "class_names", "baseline", "empty")
PLAYER_TITLES = {"sar": "SAR", "opt": "optical"}


@dataclass
class PredictionRun:
    """The decisions of every coalition of one model on one subset (a predictions file)."""

    path: Path
    ids: np.ndarray
    labels: np.ndarray
    #: coalition name -> decisions (N,) or (N, K)
    decisions: dict[str, np.ndarray]
    players: tuple[str, ...]
    attrs: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.attrs["task"])

    @property
    def n_classes(self) -> int:
        return len(self.attrs["class_names"])

    def predictions(self) -> dict[frozenset[str], np.ndarray]:
        """Coalition (a frozenset of players) -> decisions, the input of the analysis."""
        return {
            frozenset() if name == EMPTY_NAME else frozenset(name.split(SEPARATOR)): d
            for name, d in self.decisions.items()
        }


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_predictions(path: str | Path) -> PredictionRun:
    """A ``--save-predictions`` file (layout: :mod:`sareval.evaluator.predictions`)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if attrs.get("format") != "sareval-predictions":
                raise InputFileError(path, "not a sareval predictions file (--save-predictions)")
            names = list(attrs["coalitions"])
            ids = np.asarray(f["ids"][()].astype(str))
            labels = np.asarray(f["labels"][()])
            decisions_all = np.asarray(f["decisions"][()])
    except (OSError, KeyError) as e:
        raise InputFileError(path, f"not a readable predictions file ({e})") from None
    full = names[-1].split(SEPARATOR)
    players = tuple(names[1 : 1 + len(full)])
    if names[0] != EMPTY_NAME or sorted(players) != sorted(full):
        raise InputFileError(path, f"unexpected coalition order {names}")
    decisions = dict(zip(names, decisions_all, strict=True))
    return PredictionRun(path, ids, labels, decisions, players, attrs)


def check_same_samples(runs: Sequence[PredictionRun]) -> None:
    """Raise unless every run holds the same samples, store and evaluation settings; the
    message names both files and what differs."""
    first = runs[0]
    for run in runs[1:]:
        where = f"{run.path} and {first.path}"
        for name in SAME_ATTRS:
            if run.attrs.get(name) != first.attrs.get(name):
                raise SarevalError(
                    f"{where} differ in {name}: {run.attrs.get(name)!r} vs "
                    f"{first.attrs.get(name)!r}; comparisons need the same samples and settings"
                )
        if run.players != first.players:
            raise SarevalError(f"{where} differ in the players: {run.players} vs {first.players}")
        if run.ids.shape != first.ids.shape or not np.array_equal(run.ids, first.ids):
            if run.ids.shape != first.ids.shape:
                what = f"{len(run.ids)} vs {len(first.ids)} samples"
            else:
                i = int(np.flatnonzero(run.ids != first.ids)[0])
                what = f"sample {i} is {run.ids[i]!r} vs {first.ids[i]!r}"
            raise SarevalError(f"{where} hold different samples (ids: {what})")
        if not np.array_equal(run.labels, first.labels):
            raise SarevalError(f"{where} differ in the labels of the same samples")


@dataclass
class Comparison:
    """B - A per metric: ``{"V": {coalition: Difference}, "relevance": {player: Difference},
    "cooperation": Difference}``, with the setups' labels and run counts."""

    a: str
    b: str
    subset: str
    runs_a: int
    runs_b: int
    n_samples: int
    z: str
    baseline: str
    differences: dict[str, dict] = field(default_factory=dict)

    def relevance(self, metric: str, player: str) -> Difference:
        d: Difference = self.differences[metric]["relevance"][player]
        return d

    def lines(self, digits: int = 2) -> list[str]:
        """One line per metric and quantity, e.g. ``SAR relevance (oa), cloudy minus clear,
        very_cloudy: +0.11 [0.08, 0.14], p = 0.002``."""
        out = []
        for metric, entry in self.differences.items():
            full = list(entry["V"])[-1]
            items = [(f"{metric} V({full})", entry["V"][full])]
            items += [
                (f"{PLAYER_TITLES.get(p, p)} relevance ({metric})", d)
                for p, d in entry["relevance"].items()
            ]
            items.append((f"cooperation ({metric})", entry["cooperation"]))
            out += [
                format_difference(q, d, a=self.a, b=self.b, subset=self.subset, digits=digits)
                for q, d in items
            ]
        return out

    def header(self) -> str:
        z = "1" if self.z == "one" else "V(all)"
        return (
            f"{self.b} minus {self.a} on {self.subset} ({self.n_samples} samples; runs: "
            f"{self.runs_b} vs {self.runs_a}; baseline {self.baseline}, Z = {z}; 95 % paired "
            "bootstrap intervals, two-sided p-values)"
        )

    def rows(self) -> list[dict[str, Any]]:
        """Long format for CSV: a, b, subset, metric, quantity, key, estimate, lo, hi, p."""
        out = []
        for metric, entry in self.differences.items():
            cells = [("V", k, d) for k, d in entry["V"].items()]
            cells += [("relevance", k, d) for k, d in entry["relevance"].items()]
            cells.append(("cooperation", "", entry["cooperation"]))
            for quantity, key, d in cells:
                out.append({
                    "a": self.a, "b": self.b, "subset": self.subset, "runs_a": self.runs_a,
                    "runs_b": self.runs_b, "n_samples": self.n_samples, "metric": metric,
                    "quantity": quantity, "key": key, "estimate": d.estimate, "lo": d.lo,
                    "hi": d.hi, "p_value": d.p_value, "n_boot": d.n_boot, "z": self.z,
                    "baseline": self.baseline,
                })  # fmt: skip
        return out


def compare_predictions(
    runs_a: Sequence[str | Path | PredictionRun],
    runs_b: Sequence[str | Path | PredictionRun],
    *,
    a: str = "A",
    b: str = "B",
    metrics: Sequence[str] | None = None,
    n_boot: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    z: str = "one",
) -> Comparison:
    """B - A of V, relevance and cooperation from predictions files (module docstring).

    One run each: paired bootstrap; several: the two-level bootstrap over runs and samples.
    ``metrics`` default: ``oa``, ``aa``, ``f1_macro`` (single-label) or ``f1_micro``,
    ``f1_macro``, ``f1_samples`` (multi-label); ``z`` "one" (the study) or "full"."""
    from sareval.report.tables import DEFAULT_METRICS

    if not runs_a or not runs_b:
        raise SarevalError("a comparison needs at least one predictions file per setup")
    loaded_a = [r if isinstance(r, PredictionRun) else read_predictions(r) for r in runs_a]
    loaded_b = [r if isinstance(r, PredictionRun) else read_predictions(r) for r in runs_b]
    check_same_samples([*loaded_a, *loaded_b])
    first = loaded_a[0]
    chosen = list(metrics) if metrics else list(DEFAULT_METRICS[first.task])
    args = (first.labels, first.players, first.task, first.n_classes)
    kw: dict[str, Any] = dict(metrics=chosen, n_boot=n_boot, seed=seed, alpha=alpha, z=z)
    if len(loaded_a) == 1 and len(loaded_b) == 1:
        diff = paired_shape_difference(
            first.labels, loaded_a[0].predictions(), loaded_b[0].predictions(), *args[1:], **kw
        )
    else:
        diff = hierarchical_shape_difference(
            first.labels,
            [r.predictions() for r in loaded_a],
            [r.predictions() for r in loaded_b],
            *args[1:],
            **kw,
        )
    return Comparison(
        a, b, str(first.attrs.get("subset", "?")), len(loaded_a), len(loaded_b),
        len(first.ids), z, str(first.attrs.get("baseline", "?")), diff,
    )  # fmt: skip


def parse_setup(spec: str) -> tuple[str, list[Path]]:
    """``"clear=a.h5,b.h5"`` -> ("clear", [a.h5, b.h5]); without ``LABEL=`` the label is the
    first file's stem."""
    label, sep, files = spec.partition("=")
    if not sep:
        label, files = "", spec
    paths = [Path(p) for p in files.split(",") if p]
    if not paths:
        raise SarevalError(f"--compare {spec!r}: expected LABEL=FILE[,FILE...]")
    return label or paths[0].stem, paths


def markdown(comparisons: Sequence[Comparison]) -> str:
    """One section per comparison: its header line and one line per quantity."""
    parts = []
    for c in comparisons:
        parts.append(f"## {c.header()}\n\n" + "\n".join(f"- {line}" for line in c.lines()))
    return "\n\n".join(parts) + "\n"
