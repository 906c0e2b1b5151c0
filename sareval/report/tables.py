"""Summary tables: per model, test subset and metric, V(all), relevance per modality, cooperation.

Several results files of one model label and subset are runs: each quantity is reported as the
mean and the sample standard deviation over runs (``ddof=1``; undefined for one run). A single
run with bootstrap intervals (``metrics.<m>.ci``) reports those instead. Outputs::

    summary.md    one markdown table per metric: "mean ± std" or "value [lo, hi]"; for
                  segmentation results also the breakdown tables (:func:`breakdown_markdown`):
                  per-class IoU relevance, and each metric over clear / cloudy / unknown pixels
    summary.csv   long format: model, subset, metric, quantity, runs, n_samples, mean, std,
                  ci_lo, ci_hi (empty where undefined)
    runs.csv      one row per results file: label, subset, path, model file and sha256, store
                  and content digest, subset size, n, baseline, empty, Z, players, shard,
                  created, then <metric>:V(all) and <metric>:relevance:<player>
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sareval.errors import SarevalError
from sareval.report.collect import ResultRun

#: Default metrics per task (single-label micro/samples F-scores equal OA, so they are left out).
DEFAULT_METRICS = {
    "single-label": ("oa", "aa", "f1_macro"),
    "multi-label": ("f1_micro", "f1_macro", "f1_samples"),
    "segmentation": ("miou", "oa", "f1_macro"),
}


@dataclass(frozen=True)
class Stat:
    """A quantity over runs: mean, std (NaN for one run), bootstrap interval (NaN if none)."""

    mean: float
    std: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    runs: int = 1

    def text(self, digits: int = 3) -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        if self.runs > 1 and math.isfinite(self.std):
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        if math.isfinite(self.lo):
            return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        return f"{self.mean:.{digits}f}"

    @property
    def error(self) -> tuple[float, float]:
        """(below, above) error bar: std over runs, else the bootstrap interval, else 0."""
        if self.runs > 1 and math.isfinite(self.std):
            return self.std, self.std
        if math.isfinite(self.lo):
            return max(self.mean - self.lo, 0.0), max(self.hi - self.mean, 0.0)
        return 0.0, 0.0


@dataclass
class SummaryRow:
    model: str
    subset: str
    metric: str
    runs: int
    n_samples: int
    players: list[str]
    #: "V(all)", "relevance:<player>", "cooperation", "V:<coalition>" -> Stat
    values: dict[str, Stat] = field(default_factory=dict)


def stat_over_runs(values: Sequence[float], ci: tuple[float, float] | None = None) -> Stat:
    """Mean and sample std over runs; with one run, ``ci`` (a bootstrap interval) if given."""
    a = np.asarray(values, dtype=float)
    if len(a) == 1:
        lo, hi = ci if ci is not None else (math.nan, math.nan)
        return Stat(float(a[0]), math.nan, float(lo), float(hi), 1)
    return Stat(float(a.mean()), float(a.std(ddof=1)), runs=len(a))


def available_metrics(results: Sequence[ResultRun]) -> list[str]:
    """Metrics (with V and relevance) of any results file, in first-seen order."""
    seen: dict[str, None] = {}
    for r in results:
        for m, v in r.doc["metrics"].items():
            if isinstance(v, dict) and "V" in v and "relevance" in v:
                seen.setdefault(m)
    return list(seen)


def choose_metrics(results: Sequence[ResultRun], requested: Sequence[str] | None) -> list[str]:
    """``requested`` (each must be in some results file; else an error naming
    ``make_report``'s ``metrics``), else the defaults of the tasks."""
    have = available_metrics(results)
    if requested:
        bad = [m for m in requested if m not in have]
        if bad:
            raise SarevalError(
                f"make_report: metrics {','.join(bad)}: not in the results; available: "
                f"{', '.join(have)}"
            )
        return list(requested)
    tasks = dict.fromkeys(str(r.doc.get("task", "single-label")) for r in results)
    chosen = dict.fromkeys(m for t in tasks for m in DEFAULT_METRICS.get(t, ()) if m in have)
    return list(chosen) or have[:3]


def group_runs(results: Sequence[ResultRun]) -> dict[tuple[str, str], list[ResultRun]]:
    """(model label, subset) -> runs, in first-seen order."""
    groups: dict[tuple[str, str], list[ResultRun]] = {}
    for r in results:
        groups.setdefault((r.label, r.subset), []).append(r)
    return groups


def _ci(ci: dict | None, key: str, sub: str | None = None) -> tuple[float, float] | None:
    """The bootstrap interval ``ci[key]`` (or ``ci[key][sub]``), if the results have one."""
    if not ci or key not in ci:
        return None
    v = ci[key] if sub is None else ci[key].get(sub)
    return None if v is None else (float(v[0]), float(v[1]))


def summarize(results: Sequence[ResultRun], metrics: Sequence[str]) -> list[SummaryRow]:
    """One :class:`SummaryRow` per (model, subset, metric)."""
    rows = []
    for (label, subset), runs in group_runs(results).items():
        players = runs[0].players
        full = runs[0].full
        for metric in metrics:
            if any(metric not in r.doc["metrics"] for r in runs):
                continue  # e.g. oa of a multi-label model
            ms = [r.doc["metrics"][metric] for r in runs]
            row = SummaryRow(
                label, subset, metric, len(runs), int(runs[0].doc["n_samples"]), players
            )
            row.values = entry_stats(ms, players, full)
            rows.append(row)
    return rows


def entry_stats(ms: Sequence[dict], players: Sequence[str], full: str) -> dict[str, Stat]:
    """``SummaryRow.values`` over runs of one metric entry each (``{"V", "relevance",
    "cooperation", ["ci"]}``): a single run's bootstrap interval, else mean and std."""
    ci = ms[0].get("ci") if len(ms) == 1 else None
    values = {"V(all)": stat_over_runs([m["V"][full] for m in ms], _ci(ci, "V", full))}
    for p in players:
        values[f"relevance:{p}"] = stat_over_runs(
            [m["relevance"][p] for m in ms], _ci(ci, "relevance", p)
        )
    if all("cooperation" in m for m in ms):
        values["cooperation"] = stat_over_runs(
            [m["cooperation"] for m in ms], _ci(ci, "cooperation")
        )
    for coalition in ms[0]["V"]:
        if coalition != full:
            values[f"V:{coalition}"] = stat_over_runs(
                [m["V"][coalition] for m in ms], _ci(ci, "V", coalition)
            )
    return values


#: the breakdowns of segmentation results with a table (:func:`breakdown_markdown`): the entries
#: (category, {"metrics", size}) of a document, the size key and what a category is called
BREAKDOWN_TABLES = {
    "class": (lambda doc: list((doc.get("by", {}).get("class") or {}).items()), "n_samples",
              "class"),
    "cloud_pixels": (lambda doc: [(e["label"], e) for e in doc.get("by", {}).get("cloud_pixels")
                                  or []], "n_pixels", "pixel state"),
}  # fmt: skip


def breakdown_markdown(
    results: Sequence[ResultRun], breakdown: str, metric: str, digits: int = 3
) -> str:
    """A markdown table of ``metric`` (V(all), relevance per player, cooperation) per model,
    test subset and category of a breakdown of :data:`BREAKDOWN_TABLES` (``class``: per-class
    metrics such as ``iou``; ``cloud_pixels``: clear / cloudy / unknown pixels), one row per
    category with members; "" when no result has it."""
    entries_of, size, what = BREAKDOWN_TABLES[breakdown]
    players = list(dict.fromkeys(p for r in results for p in r.players))
    keys = ["V(all)", *(f"relevance:{p}" for p in players), "cooperation"]
    head = ["model", "test subset", "runs", what, "pixels", f"{metric} (all)"]
    head += [f"relevance {p}" for p in players] + ["cooperation"]
    lines = []
    for (label, subset), runs in group_runs(results).items():
        found = [dict(entries_of(r.doc)) for r in runs]
        for category, entry in entries_of(runs[0].doc):
            ms = [(f.get(category) or {}).get("metrics", {}).get(metric) for f in found]
            if any(m is None for m in ms) or not entry.get(size):
                continue
            values = entry_stats(ms, runs[0].players, runs[0].full)  # type: ignore[arg-type]
            cells = [label, subset, str(len(runs)), str(category), str(entry[size])]
            cells += [values[k].text(digits) if k in values else "n/a" for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return ""
    title = {"class": f"{metric} per class", "cloud_pixels": f"{metric} over clear and cloudy "
             "pixels"}[breakdown]  # fmt: skip
    rule = "|" + "|".join(["---"] * 5 + ["---:"] * (len(head) - 5)) + "|"
    return "\n".join([f"### {title}", "", "| " + " | ".join(head) + " |", rule, *lines]) + "\n"


def markdown(rows: Sequence[SummaryRow], digits: int = 3) -> str:
    """One table per metric: model, subset, runs, n, V(all), relevance per player, cooperation."""
    out = []
    for metric in dict.fromkeys(r.metric for r in rows):
        sel = [r for r in rows if r.metric == metric]
        players = list(dict.fromkeys(p for r in sel for p in r.players))
        head = ["model", "test subset", "runs", "samples", f"{metric} (all)"]
        head += [f"relevance {p}" for p in players] + ["cooperation"]
        lines = [f"### {metric}", "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|")
        for r in sel:
            cells = [r.model, r.subset, str(r.runs), str(r.n_samples)]
            keys = ["V(all)", *(f"relevance:{p}" for p in players), "cooperation"]
            cells += [r.values[k].text(digits) if k in r.values else "n/a" for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    notes = (
        "Values: mean ± sample standard deviation over runs; a single run shows its value and, "
        "when bootstrapped, [95% interval]. Relevance: Shapley value of each modality "
        "(see each results file's config for the baseline and normalisation)."
    )
    return "\n\n".join(out) + "\n\n" + notes + "\n"


CSV_HEADER = (
    "model", "subset", "metric", "quantity", "runs", "n_samples", "mean", "std", "ci_lo", "ci_hi",
)  # fmt: skip


def csv_text(rows: Sequence[SummaryRow]) -> str:
    """Long-format CSV of every quantity of every row (``CSV_HEADER``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)

    def num(x: float) -> str:
        return "" if not math.isfinite(x) else repr(float(x))

    for r in rows:
        for q, s in r.values.items():
            stats = [num(s.mean), num(s.std), num(s.lo), num(s.hi)]
            w.writerow([r.model, r.subset, r.metric, q, s.runs, r.n_samples, *stats])
    return buf.getvalue()


#: columns of ``runs.csv`` before the metric values (:func:`runs_csv_text`)
RUNS_HEADER = [
    "model", "subset", "path", "model_file", "model_sha256", "store", "store_content_digest",
    "subset_size", "n_samples", "baseline", "empty", "z", "players", "shard", "created",
]  # fmt: skip


def runs_csv_text(results: Sequence[ResultRun], metrics: Sequence[str]) -> str:
    """One row per results file: which model, store, subset and game settings it is
    (``RUNS_HEADER``), then ``<metric>:V(all)`` and ``<metric>:relevance:<player>`` of
    ``metrics``: the runs behind every mean of ``summary.csv``, each identifiable."""
    players = list(dict.fromkeys(p for r in results for p in r.players))
    value_cols = [
        f"{m}:{q}" for m in metrics for q in ["V(all)", *(f"relevance:{p}" for p in players)]
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RUNS_HEADER + value_cols)
    for r in results:
        prov = r.doc.get("provenance", {})
        model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
        store = prov.get("store") if isinstance(prov.get("store"), dict) else {}
        subset = prov.get("subset") if isinstance(prov.get("subset"), dict) else {}
        config = r.doc.get("config", {})
        shard = prov.get("shard")
        values = []
        for m in metrics:
            block = r.doc["metrics"].get(m)
            ok = isinstance(block, dict) and "V" in block
            values.append(repr(block["V"].get(r.full)) if ok else "")
            values += [repr(block["relevance"].get(p)) if ok else "" for p in players]
        w.writerow([
            r.label, r.subset, str(r.path), model.get("path", ""), model.get("sha256", ""),
            store.get("path", ""), store.get("content_digest", ""), subset.get("size", ""),
            r.doc.get("n_samples", ""), config.get("baseline", ""),
            config.get("empty_coalition", config.get("empty", "")),
            config.get("normalization", config.get("z", "")), ";".join(r.players),
            "" if shard is None else f"{shard.get('index')}/{shard.get('count')}",
            prov.get("created", ""), *values,
        ])  # fmt: skip
    return buf.getvalue()
