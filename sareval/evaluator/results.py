"""The results document of ``sareval shape`` / ``sareval merge``: JSON, CSV and console table.

Layout (``results.schema.json`` beside this module is the normative JSON Schema)::

    {"format": "sareval-results", "format_version": 1, "method": "shape" | "perceptual",
     "config": {all options: method, backend, device, providers, batch_size, baseline, empty,
                z, players, bootstrap, seed, by, cloud_cover_bins, permutations, threshold,
                output, label_set, pad_to, shard, world_size},
     "provenance": {"sareval", "python", "platform", "packages": {torch, onnx, onnxruntime,
                    numpy, h5py}, "model": {"path", "sha256", "card"},
                    "store": {"path", "content_digest", "dataset", "split"},
                    "subset": {"name", "optical", "size"}, "shard": null | {"index", "count",
                    "start", "stop"}, "created"},
     "task", "class_names", "players", "coalitions": ["none", "sar", "opt", "sar+opt"],
     "n_samples": N,
     "metrics": {metric: {"V": {coalition: x}, "relevance": {player: x}, "cooperation": x,
                          "Z": x, "efficiency_gap": x, "higher_is_better": bool,
                          ["interactions": {"order": 2, index: {coalition: x}}],  (exact)
                          ["ci": {"V": {coalition: [lo, hi]},
                          "relevance": {player: [lo, hi]}, "cooperation": [lo, hi],
                          ["interactions": {index: {coalition: [lo, hi]}}]}]}},
     "warnings": [text, ...],
     "per_class": {coalition: {precision|recall|f1|f2|support: [K values]}},
     "by": {["class": {class: {"n_samples", "metrics": {recall|precision|f1|f2[|ap]: entry}}}],
            ["cloud_cover": [{"label": "[0, 0.1)", "bin": [lo, hi], "n_samples",
                              "metrics": {...}, "counts": {coalition: state}}]],
            ["cloud_cover_unknown": {"label": "unknown", "n_samples", "metrics", "counts"}]},
     "counts": {coalition: {field: nested lists of ints}},
     "ties": {"tolerance": 1e-5, "counts": {coalition: samples}},
     ["per_sample": {"definition", "prob_true" | "prob_pred" | "accuracy": summary},
      "detection": {"n_wrong", "n", ["rows"], "summary"}],      (per_sample, not in shards)
     ["per_sample_state": {"encoding", "sha256", "n", "data"}],  (per_sample shards only)
     ["scores": {"encoding", "sha256", "n", "data"}],     (shards only: the mAP state)
     "empty": {"kind": "baseline" | "majority" | null, "decision": ..., "output": [...] | null}}

Breakdowns (``by``) honour ``config.metrics`` (per class: the counterparts of
:func:`class_metrics_for`) and, with ``bootstrap``, carry each entry's ``ci`` from the SAME
replicates as the overall intervals; ``cloud_cover_unknown`` (NaN cover) is always there with
bins, so the bins' ``n_samples`` sum to ``n_samples`` (the runner refuses covers outside the
edges). NaN / Inf (e.g. relevance with Z = V(M) = 0) are written as ``null``. ``higher_is_better``
(false for ``hamming_loss``) says which way a metric, and so its relevance, points: for a
lower-is-better metric a positive relevance means the modality makes the metric worse.
``warnings`` (:func:`z_warnings`): with ``z = full`` every metric whose |V(all)| is below
:data:`Z_WARN_BELOW` (relevance divided by a near-zero Z, e.g. V(all) = 0.04 -> relevance
-8.25); ``sareval shape`` and ``merge`` print them. For ``method =
perceptual`` the coalition keys are conditions: the full model (``sar+opt``) and
``<player>@perm<j>`` (player permuted with permutation j); ``V`` holds the full model and
``<player>@permuted`` (the mean over permutations), ``relevance`` the perceptual scores,
``cooperation`` and ``efficiency_gap`` are null. Counts are the sufficient statistics: a
document can be recomputed from them (``sareval merge`` sums the counts of shards), except the
multi-label mean average precision (``map_macro``, ``map_micro``, per-class ``ap``), which needs
every score: a shard document embeds them in ``scores`` (:mod:`sareval.evaluator.scores`), and
the per-sample sections of ``ShapeConfig.reporting.per_sample``
(:mod:`sareval.evaluator.in_pass`), which
need every sample's values: a shard document carries those in ``per_sample_state`` instead of
``per_sample`` and ``detection``, and ``sareval merge`` computes the two sections from the
concatenated states. Both states use :mod:`sareval.evaluator.embedded`; merged and single-process
documents carry neither.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import atomic_output, check_outputs, is_stream, output_set
from sareval.choices import Z
from sareval.errors import InputFileError, SarevalError
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.config import upgrade_record
from sareval.evaluator.counting import TIE_TOLERANCE
from sareval.evaluator.estimators import GameSpec
from sareval.evaluator.metrics import METRIC_NAMES, Counts, counts_from_state, higher_is_better
from sareval.evaluator.pixels import PIXEL_STATES
from sareval.evaluator.relevance import (
    relevance_by_class,
    relevance_entries,
    relevance_from_counts,
)
from sareval.evaluator.scores import SCORE_METRIC_NAMES, ScoreState

FORMAT = "sareval-results"
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
#: with z = "full", a metric whose |V(all)| is below this gets a warning (relevance = phi / Z)
Z_WARN_BELOW = 0.1


def z_warnings(metrics: Mapping[str, Any], z: str, full: str) -> list[str]:
    """Warnings for ``z = "full"``: metrics whose |V(all)| (the coalition ``full``) is below
    :data:`Z_WARN_BELOW`, where dividing by Z blows small differences up."""
    if z != "full":
        return []
    out = []
    for metric, entry in metrics.items():
        v = entry["V"].get(full)
        if v is None or not math.isfinite(v) or abs(v) >= Z_WARN_BELOW:
            continue
        rel = [abs(r) for r in entry["relevance"].values() if r is not None and math.isfinite(r)]
        largest = f"; |relevance| up to {max(rel):.3g}" if rel else ""
        out.append(
            f"{metric}: V({full}) = {v:.4g} is below {Z_WARN_BELOW:g} in magnitude and z = full "
            f"divides every relevance by it{largest}; read this metric with z = one"
        )
    return out


# --- JSON cleaning ------------------------------------------------------------------------------
def to_json_value(obj: Any) -> Any:
    """numpy -> Python, non-finite floats -> None, tuples -> lists (recursively)."""
    if isinstance(obj, Mapping):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_value(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def counts_to_json(counts: Sequence[Counts], names: Sequence[str]) -> dict[str, dict]:
    return {n: to_json_value(c.to_state()) for n, c in zip(names, counts, strict=True)}


def counts_from_json(
    task: str, data: Mapping[str, Mapping[str, Any]], names: Sequence[str]
) -> list[Counts]:
    missing = [n for n in names if n not in data]
    if missing:
        raise SarevalError(f"results counts lack coalitions {missing}")
    return [
        counts_from_state(task, {k: np.asarray(v, dtype=np.int64) for k, v in data[n].items()})
        for n in names
    ]


def cloud_cover_warning(source: str) -> str:
    """The warning for cloud-cover bins that hold no sample (``source``: by.cloud_cover_source)."""
    if source == "none":
        return (
            "cloud cover: the data hold no estimate for the optical images read (a store's "
            "cover of a cloudy twin does not describe the clear image), so every sample is in "
            "bin 'unknown'"
        )
    return (
        f"cloud cover ({source}): every sample's cover is unknown (NaN), so every sample is in "
        "bin 'unknown'"
    )


# --- building ---------------------------------------------------------------------------------
def attach_intervals(entries: Mapping[str, Any], ci: Mapping[str, Any] | None) -> None:
    """Put ``ci[metric]`` (bootstrap intervals) into each metric's entry as ``"ci"``."""
    for metric, entry in entries.items():
        if ci and metric in ci:
            entry["ci"] = ci[metric]


#: single-label metrics identical by definition (module :mod:`sareval.evaluator.metrics`): the
#: console table prints each group as one row named by its first metric
SINGLE_LABEL_ALIASES: tuple[tuple[str, ...], ...] = (
    ("oa", "f1_micro", "f1_samples", "f2_micro", "f2_samples", "precision_micro", "recall_micro"),
    ("aa", "recall_macro"),
)


def class_metrics_for(task: str, metrics: Sequence[str] | None) -> list[str] | None:
    """The per-class metrics (``by.class``) that correspond to the chosen overall ``metrics``:
    ``precision_*`` -> precision, ``recall_*`` -> recall, ``f1_*`` -> f1, ``f2_*`` -> f2,
    ``map_*`` -> ap, and for single-label ``oa`` / ``aa`` / ``balanced_accuracy`` -> recall (the
    accuracy on a class's samples). None (all of them) when ``metrics`` is None or none of
    the chosen metrics has a per-class counterpart (e.g. ``kappa``, ``hamming_loss``)."""
    if metrics is None:
        return None
    out: list[str] = []
    for metric in metrics:
        family = metric.split("_", 1)[0]
        if family in ("precision", "recall", "f1", "f2"):
            name = family
        elif family == "map":
            name = "ap"
        elif task == "single-label" and metric in ("oa", "aa", "balanced_accuracy"):
            name = "recall"
        else:
            continue
        if name not in out:
            out.append(name)
    return out or None


def select_metrics(sections: dict[str, Any], metrics: Sequence[str] | None, task: str) -> None:
    """Keep only ``metrics`` (``ShapeConfig.reporting.metrics``; None: all) in the computed
    sections, in place: overall, every cloud-cover bin, their warnings, and per class the metrics of
    :func:`class_metrics_for`."""
    if metrics is None:
        return
    keep = list(metrics)

    def pick(entries: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        return {m: entries[m] for m in names if m in entries}

    sections["metrics"] = pick(sections["metrics"], keep)
    by = sections.get("by") or {}
    for entry in [*by.get("cloud_cover", []), by.get("cloud_cover_unknown") or {"metrics": {}}]:
        entry["metrics"] = pick(entry["metrics"], keep)
    per_class = class_metrics_for(task, keep)
    if per_class is not None:
        for entry in by.get("class", {}).values():
            entry["metrics"] = pick(entry["metrics"], per_class)
    dropped = set(METRIC_NAMES[task] + SCORE_METRIC_NAMES[task]) - set(keep)
    sections["warnings"] = [w for w in sections.get("warnings", [])
                            if w.split(":", 1)[0] not in dropped]  # fmt: skip


def shape_sections(
    *,
    task: str,
    game: GameSpec,
    class_names: Sequence[str],
    counts: Sequence[Counts],
    z: Z,
    by_class: bool,
    cloud_bins: Sequence[tuple[str, list[float] | None, Sequence[Counts]]] | None,
    ties: Sequence[int],
    ci: Mapping[str, Any] | None = None,
    scores: ScoreState | None = None,
    cloud_cover_source: str | None = None,
) -> dict[str, Any]:
    """The computed sections (``n_samples`` .. ``ties``) of a SHAPE document from counts
    (one per coalition of ``game``, in its order).

    ``cloud_bins``: (label, [lo, hi] or None, counts per coalition) per bin, the i-th bin
    being group i of ``scores`` (the unknown bin last). ``scores``: adds ``map_macro`` and
    ``map_micro`` (:mod:`sareval.evaluator.scores`) overall and per bin, and ``ap`` per class.
    ``cloud_cover_source``: where the binned cover comes from
    (:data:`~sareval.evaluator.sources.CLOUD_COVER_SOURCES`), recorded as
    ``by.cloud_cover_source``; a warning says when no sample could be binned.
    """
    coalitions = game.coalitions
    names = [coalition_name(c, game.players) for c in coalitions]
    by_coalition = dict(zip(coalitions, counts, strict=True))
    metrics = relevance_from_counts(by_coalition, game, z)  # type: ignore[arg-type]
    if scores is not None:
        metrics.update(relevance_entries(scores.values(), game, z))
        metrics["map_macro"].update(scores.macro_record(class_names))  # classes averaged
    attach_intervals(metrics, ci)
    by: dict[str, Any] = {}
    warnings: list[str] = [] if scores is None else scores.macro_warnings(class_names)
    if by_class:
        by["class"] = relevance_by_class(by_coalition, game, class_names, z)  # type: ignore[arg-type]
        if scores is not None:  # each class's average precision
            ap = scores.per_class_ap()  # (2^M, K)
            for i, name in enumerate(class_names):
                entry = relevance_entries({"ap": ap[:, i]}, game, z)
                by["class"][name]["metrics"].update(entry)
        class_cis = (ci or {}).get("by_class")
        for name, class_ci in zip(class_names, class_cis or [{}] * len(class_names), strict=True):
            attach_intervals(by["class"][name]["metrics"], class_ci)
    if cloud_bins is not None:
        entries = []
        bin_cis = (ci or {}).get("by_group") or [{}] * len(cloud_bins)
        for i, (label, edges, bin_counts) in enumerate(cloud_bins):
            bin_metrics: dict[str, Any] = {}
            if bin_counts[-1].n:
                bin_game = dict(zip(coalitions, bin_counts, strict=True))
                bin_metrics = relevance_from_counts(bin_game, game, z)  # type: ignore[arg-type]
                if scores is not None:
                    bin_metrics.update(relevance_entries(scores.values(i), game, z))
                    bin_metrics["map_macro"].update(scores.macro_record(class_names, i))
                attach_intervals(bin_metrics, bin_cis[i])
            entries.append(
                {
                    "label": label,
                    "bin": edges,
                    "n_samples": bin_counts[-1].n,
                    "metrics": bin_metrics,
                    "counts": counts_to_json(bin_counts, names),
                }
            )
        by["cloud_cover"] = [e for e in entries if e["bin"] is not None]
        unknown = [e for e in entries if e["bin"] is None]
        if unknown:  # always there (n_samples 0 when every cover is known)
            by["cloud_cover_unknown"] = {k: v for k, v in unknown[0].items() if k != "bin"}
        by["cloud_cover_source"] = cloud_cover_source or "none"
        binned = sum(e["n_samples"] for e in by["cloud_cover"])
        if not binned:
            warnings.append(cloud_cover_warning(by["cloud_cover_source"]))
    return {
        "n_samples": counts[-1].n,
        "metrics": metrics,
        "warnings": z_warnings(metrics, z, names[-1]) + warnings,
        "per_class": {n: c.per_class() for n, c in zip(names, counts, strict=True)},
        "by": by,
        "counts": counts_to_json(counts, names),
        "ties": {
            "tolerance": TIE_TOLERANCE,
            "counts": dict(zip(names, (int(t) for t in ties), strict=True)),
        },
    }


def cloud_pixel_entries(
    pixels: Sequence[Sequence[Counts]],
    game: GameSpec,
    names: Sequence[str],
    z: Z,
    cis: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Segmentation's ``by.cloud_pixels``: for the clear, cloudy and unknown pixels (counts
    per coalition of each, :data:`~sareval.evaluator.pixels.PIXEL_STATES` order) every metric,
    its relevance and (``cis``) intervals."""
    entries = []
    for i, (label, state_counts) in enumerate(zip(PIXEL_STATES, pixels, strict=True)):
        metrics: dict[str, Any] = {}
        if state_counts[-1].n:
            by_coalition = dict(zip(game.coalitions, state_counts, strict=True))
            metrics = relevance_from_counts(by_coalition, game, z)  # type: ignore[arg-type]
            attach_intervals(metrics, cis[i] if cis else None)
        entries.append({"label": label, "n_pixels": state_counts[-1].n, "metrics": metrics,
                        "counts": counts_to_json(state_counts, names)})  # fmt: skip
    return entries


def game_record(game: GameSpec) -> dict[str, Any]:
    """The ``game`` section: how relevance follows from the evaluated coalitions."""
    return {
        "method": game.method,
        "orderings": [list(o) for o in game.orderings] or None,
        "groups": (
            {n: list(g) for n, g in zip(game.group_names, game.groups, strict=True)} or None
        ),
    }


def game_from_doc(doc: Mapping[str, Any]) -> GameSpec:
    """The :class:`GameSpec` a results document was computed with (exact if not recorded)."""
    rec = doc.get("game") or {"method": "exact"}
    players = tuple(doc["players"])
    groups = rec.get("groups") or {}
    return GameSpec(
        players, rec["method"], orderings=tuple(tuple(o) for o in rec.get("orderings") or ()),
        groups=tuple(tuple(g) for g in groups.values()), group_names=tuple(groups),
    )  # fmt: skip


def perceptual_sections(
    *,
    players: Sequence[str],
    names: Sequence[str],
    permutations: int,
    counts: Sequence[Counts],
    ties: Sequence[int],
) -> dict[str, Any]:
    """Sections of a perceptual-score document; ``counts[0]`` is the full model, then
    ``<player>@perm<j>`` for each player and permutation (player-major)."""
    full = counts[0].metrics()
    per = [c.metrics() for c in counts[1:]]
    metrics = {}
    full_name = names[0]
    for metric, v_full in full.items():
        V = {full_name: v_full}
        relevance = {}
        for i, player in enumerate(players):
            values = [per[i * permutations + j][metric] for j in range(permutations)]
            mean = float(np.mean(values))
            V[f"{player}@permuted"] = mean
            relevance[player] = (v_full - mean) / v_full if v_full != 0 else math.nan
        metrics[metric] = {
            "V": V,
            "relevance": relevance,
            "cooperation": None,
            "Z": v_full,
            "efficiency_gap": None,
            "higher_is_better": higher_is_better(metric),
        }
    return {
        "n_samples": counts[0].n,
        "metrics": metrics,
        "warnings": [],
        "per_class": {n: c.per_class() for n, c in zip(names, counts, strict=True)},
        "by": {},
        "counts": counts_to_json(counts, names),
        "ties": {
            "tolerance": TIE_TOLERANCE,
            "counts": dict(zip(names, (int(t) for t in ties), strict=True)),
        },
    }


# --- schema, reading, writing -------------------------------------------------------------------
@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc: Mapping[str, Any], source: str | Path = "results") -> None:
    """Raise :class:`InputFileError` when ``doc`` does not follow the results schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        message = e.message if len(e.message) <= 160 else e.message[:160] + "..."
        raise InputFileError(source, f"not a valid sareval results file: {where}: {message}")


def read_results(path: str | Path) -> dict[str, Any]:
    """Load and validate a results JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "results file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputFileError(path, f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputFileError(path, f"not a sareval results file (no format={FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputFileError(
            path, f"results format version {doc.get('format_version')} is not {FORMAT_VERSION}"
        )
    if isinstance(doc.get("config"), dict):  # files written before the configuration's renames
        doc["config"] = upgrade_record(doc["config"])
    validate(doc, path)
    return doc


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(to_json_value(doc), indent=1, allow_nan=False) + "\n"


def write_results(doc: Mapping[str, Any], out: str | Path, overwrite: bool = False) -> Path:
    """Validate and write ``doc`` atomically; refuse an existing file without ``overwrite``."""
    clean = to_json_value(doc)
    validate(clean)
    with atomic_output(out, overwrite) as tmp:
        tmp.write_text(dumps(clean))
    return Path(out)


def save_results(
    doc: Mapping[str, Any],
    path: str | Path,
    csv: str | Path | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write the results JSON ``path`` (and the CSV table ``csv``) as one output set: vetted
    together first (:func:`~sareval.atomic.check_outputs`: not one of ``inputs``, not the
    same file twice, a ``.json`` name unless a device or FIFO), then both or neither."""
    target = Path(path)
    if not is_stream(target) and target.suffix.lower() != ".json":
        raise SarevalError(f"{target}: path is the results JSON; give it a .json name")
    outputs = check_outputs({"path": path, "csv": csv}, overwrite, inputs=inputs)
    clean = to_json_value(doc)
    validate(clean)
    with output_set(outputs.values(), overwrite) as written:
        write_results(clean, written.temp(target), overwrite=True)
        if csv is not None:
            write_csv(clean, written.temp(csv), overwrite=True)
    return target


def csv_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per number: group, metric, higher_is_better, quantity (V | relevance |
    cooperation | Z | efficiency_gap), key (coalition or player), value, ci_low, ci_high."""
    rows: list[dict[str, Any]] = []

    def add_entries(group: str, metrics: Mapping[str, Any]) -> None:
        for metric, entry in metrics.items():
            start = len(rows)
            ci = entry.get("ci") or {}
            for quantity in ("V", "relevance"):
                for key, value in entry[quantity].items():
                    lo_hi = (ci.get(quantity) or {}).get(key) or [None, None]
                    rows.append(_row(group, metric, quantity, key, value, lo_hi))
            for quantity in ("cooperation", "Z", "efficiency_gap"):
                lo_hi = ci.get(quantity) or [None, None]
                rows.append(_row(group, metric, quantity, "", entry.get(quantity), lo_hi))
            for row in rows[start:]:
                row["higher_is_better"] = entry.get("higher_is_better", higher_is_better(metric))

    add_entries("all", doc["metrics"])
    for name, group in doc.get("by", {}).get("class", {}).items():
        add_entries(f"class:{name}", group["metrics"])
    for group in doc.get("by", {}).get("cloud_cover", []):
        add_entries(f"cloud_cover:{group['label']}", group["metrics"])
    unknown = doc.get("by", {}).get("cloud_cover_unknown")
    if unknown:
        add_entries("cloud_cover:unknown", unknown["metrics"])
    return rows


def _row(group: str, metric: str, quantity: str, key: str, value: Any, ci: Sequence[Any]) -> dict:
    return {
        "group": group,
        "metric": metric,
        "quantity": quantity,
        "key": key,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
    }


#: columns of every CSV row naming the run, so that concatenated CSVs stay identifiable
IDENTITY_COLUMNS = ("model", "model_sha256", "store", "store_content_digest", "subset",
                    "method", "baseline", "empty_coalition", "normalization", "players",
                    "shard")  # fmt: skip


def csv_identity(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`IDENTITY_COLUMNS` of a results document (model file name and sha256, store
    path and content digest, subset, evaluation options; ``shard`` ``i/n`` or empty)."""
    cfg, prov = doc.get("config", {}), doc.get("provenance", {})
    model, store = prov.get("model") or {}, prov.get("store") or {}
    shard = prov.get("shard") or {}
    return {
        "model": Path(model.get("path") or "").name,
        "model_sha256": model.get("sha256", ""),
        "store": store.get("path", ""),
        "store_content_digest": store.get("content_digest", ""),
        "subset": (prov.get("subset") or {}).get("name", ""),
        "method": cfg.get("method", ""),
        "baseline": cfg.get("baseline", ""),
        "empty_coalition": cfg.get("empty_coalition", ""),
        "normalization": cfg.get("normalization", ""),
        "players": ";".join(doc.get("players", [])),
        "shard": f"{shard['index']}/{shard['count']}" if "index" in shard else "",
    }


def write_csv(doc: Mapping[str, Any], out: str | Path, overwrite: bool = False) -> Path:
    """The CSV table of :func:`csv_rows` plus the run's :data:`IDENTITY_COLUMNS`, atomically."""
    buf = io.StringIO()
    fields = ["group", "metric", "higher_is_better", "quantity", "key", "value", "ci_low",
              "ci_high", *IDENTITY_COLUMNS]  # fmt: skip
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    identity = csv_identity(doc)
    for row in csv_rows(doc):
        writer.writerow({k: ("" if v is None else v) for k, v in {**row, **identity}.items()})
    with atomic_output(out, overwrite) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(out)


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"


def _table_header(doc: Mapping[str, Any]) -> str:
    cfg, prov = doc["config"], doc["provenance"]
    header = (
        f"{cfg['method']}: {Path(prov['model']['path'] or 'model').name} on "
        f"{Path(prov['store']['path']).name} / {prov['subset']['name']} "
        f"({doc['n_samples']} samples)"
    )
    if cfg["method"] == "shape":
        z = "1" if cfg["normalization"] == "one" else "V(all)"
        header += f", baseline {cfg['baseline']}, empty {cfg['empty_coalition']}, Z = {z}"
        method = (doc.get("game") or {}).get("method", "exact")
        if method != "exact":
            header += f", {method} game"
    else:
        header += f", {cfg['permutations']} permutations, scores relative to V(all)"
    shard = prov.get("shard") or {}
    if "index" in shard:
        header += f", shard {shard['index']}/{shard['count']}"
    elif "merged" in shard:
        header += f", merged from {len(shard['merged'])} shards"
    return header


def _cell(entry: Mapping[str, Any], key: str, player: str) -> str:
    """A relevance cell; ``+-se`` for sampled games, ``[lo, hi]`` when bootstrapped."""
    text = _fmt(entry[key][player])
    se = (entry.get("stderr") or {}).get(player) if key == "relevance" else None
    ci = ((entry.get("ci") or {}).get(key) or {}).get(player)
    if se is not None:
        text += f" +-{_fmt(se)}"
    elif ci:
        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def _grid(
    cols: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)
) -> list[str]:
    """Header and rows in aligned columns (those of index in ``left`` left-aligned, the
    others right-aligned)."""
    widths = [max(len(str(r[i])) for r in [cols, *rows]) for i in range(len(cols))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(cols), *(line(row) for row in rows)]


def alias_groups(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Single-label metrics printed as one row: first metric -> the others of its group of
    :data:`SINGLE_LABEL_ALIASES` present in ``doc["metrics"]`` with equal values (the JSON
    keeps every key)."""
    if doc.get("task") != "single-label":
        return {}
    metrics = doc["metrics"]
    out = {}
    for group in SINGLE_LABEL_ALIASES:
        present = [m for m in group if m in metrics]
        same = [m for m in present[1:] if metrics[m]["V"] == metrics[present[0]]["V"]]
        if same:
            out[present[0]] = same
    return out


def _breakdown_tables(doc: Mapping[str, Any], hidden: set[str]) -> list[str]:
    """The per-class and per-cloud-cover-bin tables: per group its size n and, per metric
    in the section, V of the full coalition and the relevance of every player (with its
    interval when bootstrapped)."""
    by = doc.get("by") or {}
    players = doc["players"]
    full = "+".join(players)
    cols = ["", "n", "metric", f"V({full})", *[f"R({p})" for p in players]]
    out: list[str] = []

    def rows_of(groups: Sequence[tuple[str, Mapping[str, Any]]]) -> list[list[str]]:
        rows = []
        for label, group in groups:
            first = [label, str(group.get("n_samples", group.get("n_pixels")))]
            entries = [(m, e) for m, e in group["metrics"].items() if m not in hidden]
            if not entries:
                rows.append([*first, "-", "-", *["-" for _ in players]])
            for metric, entry in entries:
                v = entry["V"].get(full)
                rows.append([*first, metric, _fmt(v), *[_cell(entry, "relevance", p)
                                                      for p in players]])  # fmt: skip
                first = ["", ""]
        return rows

    if by.get("class"):
        unit = "pixels" if doc.get("task") == "segmentation" else "samples"
        out.append(f"by class (n: {unit} of the class):")
        out += _grid(["class", *cols[1:]], rows_of(list(by["class"].items())), (0, 2))
    if "cloud_cover" in by:
        bins = [(b["label"], b) for b in by["cloud_cover"]]
        unknown = by.get("cloud_cover_unknown")
        if unknown is not None:
            bins.append((unknown["label"], unknown))
        source = by.get("cloud_cover_source") or "none"
        unit = "pixels" if doc.get("task") == "segmentation" else "samples"
        out.append(f"by cloud cover (source {source}; unknown: no estimate; n: {unit}):")
        out += _grid(["bin", *cols[1:]], rows_of(bins), (0, 2))
    if by.get("cloud_pixels"):
        pixels = [(e["label"], e) for e in by["cloud_pixels"]]
        out.append("by pixel (the per-pixel cloud mask; n: pixels):")
        out += _grid(["pixels", *cols[1:]], rows_of(pixels), (0, 2))
    return out


def console_table(doc: Mapping[str, Any], max_coalitions: int = 8) -> str:
    """A readable summary: one line per metric with V of every coalition (of the empty and the
    full one past ``max_coalitions``, with a note where the rest is), relevance (with +-stderr
    or bootstrap intervals when computed), group relevance for nested players, cooperation;
    single-label metrics identical by definition in one row (:func:`alias_groups`, with a
    note); then the per-class and per-bin tables (:func:`_breakdown_tables`)."""
    cfg = doc["config"]
    players = doc["players"]
    first = next(iter(doc["metrics"].values()))
    v_keys = list(first["V"])
    hidden = 0
    if len(v_keys) > max_coalitions:
        full = "+".join(players)
        keep = [v_keys[0], full] if cfg["method"] == "shape" and full in first["V"] else v_keys[:1]
        hidden, v_keys = len(v_keys) - len(keep), keep
    groups = list(first.get("group_relevance") or {})
    cols = ["metric", "better", *[f"V({k})" for k in v_keys], *[f"G({g})" for g in groups],
            *[f"R({p})" for p in players]]  # fmt: skip
    if cfg["method"] == "shape":
        cols.append("coop")
    aliases = alias_groups(doc)
    aliased = {m for others in aliases.values() for m in others}
    lines = []
    for metric, entry in doc["metrics"].items():
        if metric in aliased:
            continue
        up = entry.get("higher_is_better", higher_is_better(metric))
        row = [metric, "higher" if up else "lower", *(_fmt(entry["V"][k]) for k in v_keys)]
        row += [_cell(entry, "group_relevance", g) for g in groups]
        row += [_cell(entry, "relevance", p) for p in players]
        if cfg["method"] == "shape":
            row.append(_fmt(entry["cooperation"]))
        lines.append(row)
    out = [_table_header(doc), *_grid(cols, lines)]
    out += [
        f"{m} also stands for {', '.join(others)} (identical for single-label results; the "
        "results JSON keeps every metric)"
        for m, others in aliases.items()
    ]
    if hidden:
        out.append(f"V of the other {hidden} coalitions: metrics.<metric>.V in the results JSON")
    out += _breakdown_tables(doc, aliased)
    out += [f"warning: {w}" for w in doc.get("warnings", [])]
    ties = doc["ties"]["counts"]
    if any(ties.values()):
        out.append(
            f"near-ties (|difference| <= {doc['ties']['tolerance']:g}): "
            + ", ".join(f"{k} {v}" for k, v in ties.items() if v)
        )
    return "\n".join(out)
