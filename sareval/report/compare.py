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


#: the datasets of a predictions file that a comparison reads (and checks)
REQUIRED_DATASETS = ("ids", "labels", "outputs", "decisions")


def read_predictions(path: str | Path) -> PredictionRun:
    """A ``--save-predictions`` file (layout: :mod:`sareval.evaluator.predictions`), checked:
    every dataset of :data:`REQUIRED_DATASETS` present with consistent shapes, finite outputs
    (the empty coalition's may be NaN only for the majority-class predictor), labels and
    decisions in range; otherwise :class:`InputFileError` naming the file and the dataset."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if attrs.get("format") != "sareval-predictions":
                raise InputFileError(path, "not a sareval predictions file (save_predictions)")
            missing = [
                name for name in REQUIRED_DATASETS if not isinstance(f.get(name), h5py.Dataset)
            ]
            if missing:
                raise InputFileError(
                    path, f"no dataset /{missing[0]} (a predictions file holds "
                    f"{', '.join('/' + n for n in REQUIRED_DATASETS)})"
                )  # fmt: skip
            names = attrs.get("coalitions")
            if not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
                raise InputFileError(path, "attribute coalitions is not a list of names")
            ids = np.asarray(f["ids"][()].astype(str))
            labels = np.asarray(f["labels"][()])
            decisions_all = np.asarray(f["decisions"][()])
            _check_outputs(path, f["outputs"], len(names), len(ids), attrs)
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise InputFileError(path, f"not a readable predictions file ({e})") from None
    _check_layout(path, names, ids, labels, decisions_all, attrs)
    full = names[-1].split(SEPARATOR)
    players = tuple(names[1 : 1 + len(full)])
    if names[0] != EMPTY_NAME or sorted(players) != sorted(full):
        raise InputFileError(path, f"unexpected coalition order {names}")
    decisions = dict(zip(names, decisions_all, strict=True))
    return PredictionRun(path, ids, labels, decisions, players, attrs)


def _check_outputs(path: Path, outputs: h5py.Dataset, j: int, n: int, attrs: dict) -> None:
    """``/outputs`` (J, n, K) float, finite per coalition (read one coalition at a time)."""
    k = len(attrs.get("class_names") or [])
    if outputs.shape != (j, n, k) or outputs.dtype.kind != "f":
        raise InputFileError(
            path, f"/outputs has shape {outputs.shape} and dtype {outputs.dtype}, expected "
            f"float ({j}, {n}, {k}) for {j} coalitions, {n} samples and {k} classes"
        )  # fmt: skip
    names = list(attrs["coalitions"])
    for i in range(j):
        if i == 0 and attrs.get("empty") == "majority":
            continue  # the majority-class predictor has no output (NaN)
        bad = int(np.count_nonzero(~np.isfinite(outputs[i])))
        if bad:
            raise InputFileError(
                path, f"/outputs of coalition {names[i]} hold {bad} NaN or infinite values; "
                "the decisions of such outputs cannot be compared"
            )  # fmt: skip


def _check_layout(
    path: Path,
    names: list[str],
    ids: np.ndarray,
    labels: np.ndarray,
    decisions: np.ndarray,
    attrs: dict[str, Any],
) -> None:
    """Shapes, dtypes and value ranges of ``/ids``, ``/labels`` and ``/decisions``."""
    task, classes = attrs.get("task"), attrs.get("class_names")
    if task not in ("single-label", "multi-label"):
        raise InputFileError(path, f"attribute task is {task!r}, not single- or multi-label")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise InputFileError(path, "attribute class_names is not a list of class names")
    if ids.ndim != 1:
        raise InputFileError(path, f"/ids has shape {ids.shape}, expected one id per sample")
    n, k, single = len(ids), len(classes), task == "single-label"
    want = (n,) if single else (n, k)
    for name, a, shape in (("labels", labels, want), ("decisions", decisions, (len(names), *want))):
        if a.shape != shape or a.dtype.kind not in "biu":
            raise InputFileError(
                path, f"/{name} has shape {a.shape} and dtype {a.dtype}, expected integer {shape}"
            )  # fmt: skip
        hi = k - 1 if single else 1
        if a.size and (a.min() < 0 or a.max() > hi):
            raise InputFileError(path, f"/{name} holds values outside 0..{hi}")


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

    check_labels(a, b)
    if not runs_a or not runs_b:
        raise SarevalError(
            f"compare_predictions: runs_{'a' if not runs_a else 'b'} is empty; a comparison "
            "needs at least one predictions file per setup"
        )
    loaded_a = [r if isinstance(r, PredictionRun) else read_predictions(r) for r in runs_a]
    loaded_b = [r if isinstance(r, PredictionRun) else read_predictions(r) for r in runs_b]
    check_distinct_runs(loaded_a, a)
    check_distinct_runs(loaded_b, b)
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


def check_distinct_runs(runs: Sequence[PredictionRun], label: str) -> None:
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


def parse_setup(spec: str) -> tuple[str, list[Path]]:
    """``"clear=a.h5,b.h5"`` -> ("clear", [a.h5, b.h5]); without ``LABEL=`` the label is the
    first file's stem. An empty label (``"=a.h5"``) or no file is refused."""
    label, sep, files = spec.partition("=")
    if not sep:
        label, files = "", spec
    elif not label.strip():
        raise SarevalError(f"compare {spec!r}: the label before '=' is empty; write "
                           "LABEL=FILE[,FILE...] or FILE[,FILE...]")  # fmt: skip
    paths = [Path(p) for p in files.split(",") if p.strip()]
    if not paths:
        raise SarevalError(f"compare {spec!r}: expected LABEL=FILE[,FILE...]")
    return label.strip() or paths[0].stem, paths


def parse_comparison(spec_a: str, spec_b: str) -> tuple[tuple[str, list[Path]], ...]:
    """Both setups of one ``compare`` pair (:func:`parse_setup`); the same label for both is
    refused, naming the pair."""
    (la, fa), (lb, fb) = parse_setup(spec_a), parse_setup(spec_b)
    if la == lb:
        raise SarevalError(
            f"compare {spec_a!r} {spec_b!r}: both setups are labelled {la!r}; give them "
            "different labels (LABEL=FILE[,FILE...])"
        )
    return (la, fa), (lb, fb)


def markdown(comparisons: Sequence[Comparison]) -> str:
    """One section per comparison: its header line and one line per quantity."""
    parts = []
    for c in comparisons:
        parts.append(f"## {c.header()}\n\n" + "\n".join(f"- {line}" for line in c.lines()))
    return "\n\n".join(parts) + "\n"
