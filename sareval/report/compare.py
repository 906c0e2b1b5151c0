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

A file of marginal imputation (attribute ``draws`` D > 1: D donor-draw rows per sample) is
paired by SAMPLE: replicate r draws N sample indices (the same generator, hence the same
indices, as for a file without draws) and each side counts every row of the drawn samples,
weighted by the sample's multiplicity (:func:`~sareval.evaluator.bootstrap.bootstrap_values`
with the file's ``clusters``); its point values count all D N rows. Files without draws give
the numbers of the paired (or two-level) bootstrap above, unchanged.

    sareval report --compare clear=runs/clear/seed-0/pred-very_cloudy.h5,runs/clear/seed-1/... \\
                   cloudy=runs/cloudy/seed-0/pred-very_cloudy.h5,... --out report/
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sareval.analysis.compare import (
    Difference,
    format_difference,
    hierarchical_shape_difference,
    paired_shape_difference,
    sample_paired_difference,
)
from sareval.errors import InputFileError, SarevalError
from sareval.evaluator.predictions import Predictions, read_predictions
from sareval.report.tables import DEFAULT_METRICS

#: attributes of a predictions file that must agree between the compared runs
SAME_ATTRS = ("store_content_digest", "subset", "task", "class_names", "baseline", "empty")
PLAYER_TITLES = {"sar": "SAR", "opt": "optical"}


def check_same_samples(runs: Sequence[Predictions]) -> None:
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
    runs_a: Sequence[str | Path | Predictions],
    runs_b: Sequence[str | Path | Predictions],
    *,
    a: str = "A",
    b: str = "B",
    metrics: Sequence[str] | None = None,
    replicates: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    z: str = "one",
    n_boot: int | None = None,
) -> Comparison:
    """B - A of V, relevance and cooperation from predictions files (module docstring).

    One run each: paired bootstrap; several: the two-level bootstrap over runs and samples.
    ``replicates``: bootstrap replicates (``n_boot``: its deprecated name, for one release).
    ``metrics`` default: ``oa``, ``aa``, ``f1_macro`` (single-label) or ``f1_micro``,
    ``f1_macro``, ``f1_samples`` (multi-label); ``z`` "one" (the study) or "full"."""
    replicates = deprecated_replicates("compare_predictions", replicates, n_boot)
    check_labels(a, b)
    if not runs_a or not runs_b:
        raise SarevalError(
            f"compare_predictions: runs_{'a' if not runs_a else 'b'} is empty; a comparison "
            "needs at least one predictions file per setup"
        )
    loaded_a = [r if isinstance(r, Predictions) else read_predictions(r) for r in runs_a]
    loaded_b = [r if isinstance(r, Predictions) else read_predictions(r) for r in runs_b]
    check_distinct_runs(loaded_a, a)
    check_distinct_runs(loaded_b, b)
    check_same_samples([*loaded_a, *loaded_b])
    first = loaded_a[0]
    chosen = list(metrics) if metrics else list(DEFAULT_METRICS[first.task])
    args = (first.labels, first.players, first.task, first.n_classes)
    kw: dict[str, Any] = dict(metrics=chosen, n_boot=replicates, seed=seed, alpha=alpha, z=z)
    if any(r.draws > 1 for r in (*loaded_a, *loaded_b)):  # donor draws: paired by sample
        diff = sample_paired_difference(loaded_a, loaded_b, **kw)
    elif len(loaded_a) == 1 and len(loaded_b) == 1:
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


def deprecated_replicates(function: str, replicates: int, n_boot: int | None) -> int:
    """``replicates``, or the deprecated keyword ``n_boot`` where given (a DeprecationWarning;
    both given: an error naming them)."""
    if n_boot is None:
        return replicates
    if replicates != 999:
        raise SarevalError(f"{function}: give replicates or its old name n_boot, not both")
    warnings.warn(
        f"{function}(n_boot=...) is deprecated; use replicates=", DeprecationWarning, stacklevel=3
    )
    return n_boot


def check_labels(a: str, b: str) -> None:
    """Refuse an empty label or the same label for both setups (the comparison's lines,
    ``B minus A``, could not tell them apart)."""
    for name, label in (("a", a), ("b", b)):
        if not isinstance(label, str) or not label.strip():
            raise SarevalError(f"compare_predictions: label {name}={label!r} is empty; "
                               "each setup needs a name")  # fmt: skip
    if a.strip() == b.strip():
        raise SarevalError(
            f"compare_predictions: both setups are labelled {a.strip()!r} (a and b); "
            "give them different labels"
        )


def _file_key(path: Path) -> tuple[int, int] | Path:
    """The file's identity: (device, inode), or its resolved path if it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return path.resolve()
    return st.st_dev, st.st_ino


def check_distinct_runs(runs: Sequence[Predictions], label: str) -> None:
    """Refuse one predictions file given twice as two runs of one setup (also through another
    path or a link): its runs would count as independent seeds."""
    seen: dict[Any, int] = {}
    for i, run in enumerate(runs):
        key = _file_key(run.path)
        if key in seen:
            first = runs[seen[key]].path
            also = "" if first == run.path else f" (as {first})"
            raise InputFileError(
                run.path, f"listed twice in setup {label!r}{also}, as runs {seen[key] + 1} and "
                f"{i + 1}; each run's predictions file may be given once"
            )  # fmt: skip
        seen[key] = i


@dataclass(frozen=True)
class Setup:
    """One side of a comparison: a ``label`` and its runs' predictions ``files`` (one per run,
    ``save_predictions`` of :func:`sareval.evaluate`)."""

    label: str
    files: tuple[Path, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise SarevalError(f"Setup.label: expected a non-empty name, got {self.label!r}")
        if isinstance(self.files, (str, Path)) or not self.files:
            raise SarevalError(f"Setup.files ({self.label}): expected one or more files")
        object.__setattr__(self, "files", tuple(Path(f) for f in self.files))


def check_pair(a: Setup, b: Setup) -> None:
    """Refuse a comparison of two setups with the same label (their rows would be ambiguous)."""
    if a.label == b.label:
        raise SarevalError(
            f"compare: both setups are labelled {a.label!r} ({', '.join(map(str, a.files))} "
            f"and {', '.join(map(str, b.files))}); give them different labels"
        )


def markdown(comparisons: Sequence[Comparison]) -> str:
    """One section per comparison: its header line and one line per quantity."""
    parts = []
    for c in comparisons:
        parts.append(f"## {c.header()}\n\n" + "\n".join(f"- {line}" for line in c.lines()))
    return "\n\n".join(parts) + "\n"
