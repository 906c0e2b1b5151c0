"""Report inputs: results files (``sareval shape``), training histories (``sareval train``'s
``metrics.jsonl``, or a Lightning CSVLogger ``metrics.csv`` with
:class:`sareval.lightning.ShapeCallback` columns ``shape/...``) and
predictions files with per-sample detector scores (``sareval shape --per-sample
--save-predictions``, for the ROC figure) and segmentation maps files (``save_predictions`` of a
segmentation evaluation, :mod:`sareval.evaluator.relevance_maps`, for the maps figures).

Each input is a PATH or ``(LABEL, PATH)``; PATH is a results JSON, a ``metrics.jsonl`` or
Lightning ``metrics.csv``, a
predictions ``.h5`` or maps ``.h5``, or a directory searched recursively for all of them
(``.h5`` files other than predictions files with ``/detector`` scores and maps files, e.g.
stores, are passed over). A predictions or maps file without a label takes that of the results
file of the same model, store and subset, else its folder's name (figures add the file's name
where one label has several predictions files).
Results of the same model label and test subset are runs of one model (mean and standard
deviation over them); so are the histories of one label (seeds).

Results of ``sareval shape --method perceptual`` get `` [perceptual]`` appended to their label.
Default labels: a results file's model card name (plus ``multi-label`` for that task and
``(cloudy-prob P)`` when the card records how sareval trained it); a history's run directory
name (its parent's for ``seed-K`` directories). Give labels (``(LABEL, PATH)``) to be sure.

A report cannot mix what is not comparable (:func:`check_collection`):

- **Settings that define the game** (baseline, empty coalition, Z, players) are never averaged
  together: where they differ within a report, each label gets the differing settings appended
  (``clear [baseline=raw-zero]``), so such results form separate, labelled groups.
- **Runs of one group** (label and subset) must come from the same store content
  (``provenance.store.content_digest``) and task; otherwise the report is refused, naming both
  files and the difference.
- **The same result counted twice** (the same file reached twice, a copy of it, or a shard
  given twice) is refused. Two results are the same when their provenance ``created`` time,
  model sha256, store digest, shard, subset and options agree.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sareval.errors import InputFileError, SarevalError
from sareval.evaluator.log_names import PREFIX, games_from_names
from sareval.evaluator.predictions import is_predictions_file, read_predictions
from sareval.evaluator.relevance_maps import MAPS_FORMAT

RESULTS_FORMAT = "sareval-results"
SEED_DIR = re.compile(r"^seed-\d+$")


@dataclass
class ResultRun:
    """One results document: a model (``label``) evaluated on one test ``subset``."""

    label: str
    subset: str
    path: Path
    doc: dict[str, Any]

    @property
    def players(self) -> list[str]:
        return list(self.doc["players"])

    @property
    def full(self) -> str:
        """Name of the coalition of all players (``sar+opt``)."""
        return "+".join(self.players)


@dataclass
class TrainingRun:
    """One training history (``metrics.jsonl``): one JSON object per epoch."""

    label: str
    path: Path
    epochs: list[dict[str, Any]]


@dataclass
class DetectionRun:
    """The detector scores of a predictions file: ``detectors`` name -> (N,) (higher = more
    likely wrong), ``correct`` (N,) bool, and the file's attributes."""

    label: str
    subset: str
    path: Path
    attrs: dict[str, Any]
    detectors: dict[str, np.ndarray]
    correct: np.ndarray


@dataclass
class MapsRun:
    """A segmentation maps file (its arrays are read when drawn) and its attributes."""

    label: str
    subset: str
    path: Path
    attrs: dict[str, Any]


@dataclass
class Collection:
    results: list[ResultRun] = field(default_factory=list)
    histories: list[TrainingRun] = field(default_factory=list)
    detections: list[DetectionRun] = field(default_factory=list)
    maps: list[MapsRun] = field(default_factory=list)

    def labels(self) -> list[str]:
        """Model labels in first-seen order (results, then histories)."""
        seen: dict[str, None] = {}
        for r in self.results:
            seen.setdefault(r.label)
        for h in self.histories:
            seen.setdefault(h.label)
        return list(seen)

    def subsets(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.results:
            seen.setdefault(r.subset)
        return list(seen)


def read_results_file(path: Path) -> dict[str, Any]:
    """A results document; :class:`InputFileError` if ``path`` is not one."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InputFileError(path, f"not a readable JSON file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise InputFileError(path, f"not a sareval results file (no format={RESULTS_FORMAT!r})")
    for key in ("players", "metrics", "provenance"):
        if key not in doc:
            raise InputFileError(path, f"results file has no {key!r}")
    problem = check_results(doc)
    if problem:
        raise InputFileError(path, f"results file: {problem}")
    return doc


def read_detection(path: Path, label: str | None) -> DetectionRun | None:
    """The detector scores of a predictions file (None: an HDF5 file of another kind, or one
    without ``/detector``); :class:`InputFileError` for a damaged one
    (:func:`~sareval.evaluator.predictions.read_predictions` checks it)."""
    if not is_predictions_file(path):
        return None
    run = read_predictions(path)
    if not run.detectors or run.correct is None:
        return None
    return DetectionRun(label or "", run.subset, path, run.attrs, run.detectors, run.correct)


def read_maps_run(path: Path, label: str | None) -> MapsRun | None:
    """A segmentation maps file (None: an HDF5 file of another kind); :class:`InputFileError`
    for a file that is not readable HDF5."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as e:
        raise InputFileError(path, f"not a readable HDF5 file ({e})") from None
    if attrs.get("format") != MAPS_FORMAT:
        return None
    return MapsRun(label or "", str(attrs.get("subset", "?")), path, attrs)


def _label_detections(found: Collection) -> None:
    """Give unlabelled detection and maps runs the label of the results file of the same
    model, store and subset (if exactly one label matches), else their folder's name (the
    file's stem for a file in the working folder given by a relative path)."""
    runs: list[DetectionRun | MapsRun] = [*found.detections, *found.maps]
    for d in runs:
        if d.label:
            continue
        labels = {
            r.label
            for r in found.results
            if r.subset == d.subset
            and (r.doc["provenance"].get("model", {}).get("sha256") or "")
            == (d.attrs.get("model_sha256") or "")  # an in-memory model: None, ""
            and r.doc["provenance"].get("store", {}).get("content_digest")
            == d.attrs.get("store_content_digest")
        }  # fmt: skip
        d.label = labels.pop() if len(labels) == 1 else (d.path.parent.name or d.path.stem)


def _numbers(value: Any) -> bool:
    """True for a dict of numbers (None allowed: a NaN score)."""
    return isinstance(value, dict) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
        for v in value.values()
    )


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _metrics_problem(players: Any, metrics: Any, where: str) -> str | None:
    """What is wrong with ``players`` and a ``metrics`` section (None: nothing)."""
    if not _names(players):
        return f"{where}players is not a list of names"
    if not isinstance(metrics, dict):
        return f"{where}metrics is not an object"
    for metric, m in metrics.items():
        if not (isinstance(m, dict) and _numbers(m.get("V")) and _numbers(m.get("relevance"))):
            return f"{where}metrics.{metric} lacks numeric 'V' and 'relevance'"
        if not _numbers({"cooperation": m.get("cooperation")}):
            return f"{where}metrics.{metric}.cooperation is not a number"
    return None


def check_results(doc: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a results document the report reads (None: nothing)."""
    for key, kind in (("provenance", dict), ("config", dict), ("by", dict), ("task", str)):
        if key in doc and not isinstance(doc[key], kind):
            return f"{key!r} is not {'an object' if kind is dict else 'a string'}"
    n = doc.get("n_samples", 0)
    if isinstance(n, bool) or not isinstance(n, int):
        return "'n_samples' is not an integer"
    bins = doc.get("by", {}).get("cloud_cover") or []
    if not (isinstance(bins, list) and all(isinstance(b, dict) for b in bins)):
        return "by.cloud_cover is not a list of bins"
    return _metrics_problem(doc["players"], doc["metrics"], "")


def check_epoch(record: Any) -> str | None:
    """What is wrong with one ``metrics.jsonl`` record (None: nothing): ``epoch`` an integer,
    ``train_loss`` a number, ``val`` {subset: {players: [str], metrics: {metric: {V: {..},
    relevance: {..}}}}} with numbers (or null)."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    epoch = record.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return "'epoch' is not an integer"
    if not _numbers({"train_loss": record.get("train_loss")}):
        return "'train_loss' is not a number"
    val = record.get("val", {})
    if not isinstance(val, dict):
        return "'val' is not an object"
    for subset, v in val.items():
        if not (isinstance(v, dict) and isinstance(v.get("metrics"), dict)):
            return f"val.{subset} has no 'metrics' object"
        problem = _metrics_problem(v.get("players"), v["metrics"], f"val.{subset}.")
        if problem:
            return problem
    return None


def read_history(path: Path) -> list[dict[str, Any]]:
    """The epochs of a ``metrics.jsonl``; :class:`InputFileError` on a malformed line."""
    epochs = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(path, f"not readable ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(path, f"line {n} is not JSON ({e.msg})") from None
        except RecursionError:
            raise InputFileError(path, f"line {n} is nested too deeply") from None
        if isinstance(record, dict) and "val" not in record:  # only the logged names
            try:
                record["val"] = games_from_names(record)
            except ValueError as e:
                raise InputFileError(path, f"line {n}: {e}") from None
        problem = check_epoch(record)
        if problem:
            raise InputFileError(path, f"line {n}: {problem}")
        epochs.append(record)
    if not epochs:
        raise InputFileError(path, "no epochs (the file is empty)")
    return epochs


#: training-loss columns of a Lightning ``metrics.csv``, in order of preference
LOSS_COLUMNS = ("train_loss_epoch", "train_loss")


def is_lightning_csv(path: Path) -> bool:
    """True for a CSV whose header names ``shape/...`` columns (a Lightning CSVLogger's
    ``metrics.csv`` with :class:`sareval.lightning.ShapeCallback` values)."""
    try:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "epoch" in header and any(c.split("/")[0] == PREFIX for c in header)


def read_lightning_csv(path: Path) -> list[dict[str, Any]]:
    """The epochs of a Lightning CSVLogger ``metrics.csv`` as ``metrics.jsonl`` records: the
    rows of each ``epoch`` merged (later non-empty cells win), ``epoch`` counted from 1 (as
    finished epochs, like ``sareval train``), ``train_loss`` from ``train_loss_epoch`` or
    ``train_loss`` (null without), ``val`` from the ``shape/...`` columns
    (:func:`~sareval.evaluator.log_names.games_from_names`); epochs without them are skipped."""
    merged: dict[int, dict[str, str]] = {}
    try:
        with path.open(newline="") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                if not row.get("epoch"):  # a row of other values (hyperparameters)
                    continue
                try:
                    epoch = int(float(row["epoch"]))
                except (TypeError, ValueError, OverflowError):
                    raise InputFileError(path, f"line {n}: 'epoch' is not a number") from None
                cells = merged.setdefault(epoch, {})
                cells.update({k: v for k, v in row.items() if k and v not in (None, "")})
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputFileError(path, f"not a readable CSV file ({e})") from None
    epochs = []
    for epoch, cells in sorted(merged.items()):
        try:
            val = games_from_names(cells)
            loss = next((float(cells[c]) for c in LOSS_COLUMNS if c in cells), None)
        except ValueError as e:
            raise InputFileError(path, f"epoch {epoch}: {e}") from None
        if not val:
            continue
        record = {"epoch": epoch + 1, "train_loss": loss, "val": val}
        problem = check_epoch(record)
        if problem:
            raise InputFileError(path, f"epoch {epoch}: {problem}")
        epochs.append(record)
    if not epochs:
        raise InputFileError(path, f"no epoch with {PREFIX}/... values")
    return epochs


def default_result_label(doc: dict[str, Any], path: Path) -> str:
    """The model card's name (+ task, + training cloudy probability), else the file's stem."""
    prov = doc.get("provenance", {})
    model = prov.get("model", {}) if isinstance(prov.get("model"), dict) else {}
    card: dict[str, Any] = model["card"] if isinstance(model.get("card"), dict) else {}
    name = card.get("name") or model.get("card_name") or model.get("name") or ""
    if not name:
        return path.stem
    if doc.get("task") == "multi-label":
        name += " multi-label"
    training = card.get("provenance", {}).get("training", {}) if card else {}
    if "cloudy_prob" in training:
        name += f" (cloudy-prob {training['cloudy_prob']:g})"
    return name


def default_history_label(path: Path) -> str:
    run = path.parent
    if SEED_DIR.match(run.name):
        run = run.parent
    return run.name or str(run)


def _subset_name(doc: dict[str, Any]) -> str:
    sub = doc.get("provenance", {}).get("subset", {})
    if isinstance(sub, dict) and sub.get("name"):
        return str(sub["name"])
    return str(doc.get("config", {}).get("subset", "?"))


def _is_results_json(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return RESULTS_FORMAT.encode() in head


#: a report input: a path (its label derived from the file), or ``(label, path)``
ReportInput = str | Path | tuple[str, str | Path]


def labelled_path(spec: ReportInput) -> tuple[str | None, Path]:
    """``("clear", "runs/clear")`` -> ("clear", Path("runs/clear")); a bare path has no label.
    No text is parsed: the CLI's ``LABEL=PATH`` is split in :mod:`sareval.commands.parsing`."""
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], str) or not spec[0]:
            raise SarevalError(f"inputs: expected a path or (label, path), got {spec!r}")
        return spec[0], Path(spec[1])
    if not isinstance(spec, (str, Path)):
        raise SarevalError(f"inputs: expected a path or (label, path), got {spec!r}")
    return None, Path(spec)


def collect(inputs: Sequence[ReportInput]) -> Collection:
    """Read every input; see the module docstring for what each may be."""
    found = Collection()
    for spec in inputs:
        label, path = labelled_path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            results = [p for p in files if p.suffix == ".json" and _is_results_json(p)]
            histories = [p for p in files if p.name == "metrics.jsonl"
                         or (p.name == "metrics.csv" and is_lightning_csv(p))]  # fmt: skip
            maps = [m for p in files if p.suffix == ".h5"
                    if (m := read_maps_run(p, label)) is not None]  # fmt: skip
            detections = [d for p in files if p.suffix == ".h5"
                          if (d := read_detection(p, label)) is not None]  # fmt: skip
            if not results and not histories and not detections and not maps:
                raise InputFileError(path, "no results files (*.json) or metrics.jsonl inside")
        elif path.is_file():
            is_history = path.name.endswith(".jsonl") or (
                path.suffix == ".csv" and is_lightning_csv(path)
            )
            is_h5 = path.suffix == ".h5"
            results = [] if is_history or is_h5 else [path]
            histories = [path] if is_history else []
            map_run = read_maps_run(path, label) if is_h5 else None
            maps = [map_run] if map_run is not None else []
            detection = read_detection(path, label) if is_h5 and not maps else None
            if is_h5 and detection is None and not maps:
                raise InputFileError(
                    path, "not a predictions file with per-sample detector scores (/detector: "
                    "sareval shape --per-sample --save-predictions) nor a segmentation maps file"
                )  # fmt: skip
            detections = [detection] if detection is not None else []
        else:
            raise InputFileError(path, "not found")
        found.detections += detections
        found.maps += maps
        for p in results:
            doc = read_results_file(p)
            name = label or default_result_label(doc, p)
            if doc.get("method", "shape") != "shape":  # never averaged with SHAPE runs
                name += f" [{doc['method']}]"
            found.results.append(ResultRun(name, _subset_name(doc), p, doc))
        for p in histories:
            epochs = read_lightning_csv(p) if p.suffix == ".csv" else read_history(p)
            if epochs:
                found.histories.append(TrainingRun(label or default_history_label(p), p, epochs))
    if not found.results and not found.histories and not found.detections and not found.maps:
        raise SarevalError("nothing to report: the inputs hold no results and no epochs")
    check_collection(found)
    seen: set[Path] = set()
    h5_runs: list[DetectionRun | MapsRun] = [*found.detections, *found.maps]
    for run in h5_runs:
        if run.path.resolve() in seen:
            raise SarevalError(
                f"{run.path}: given twice; each predictions file may be counted once"
            )
        seen.add(run.path.resolve())
    _label_detections(found)
    return found


#: evaluation settings that change what V and relevance mean: never averaged together
GAME_SETTINGS = ("baseline", "empty", "z", "players")


def _setting(doc: dict[str, Any], name: str) -> str:
    if name == "players":
        return ";".join(doc["players"])
    return str(doc.get("config", {}).get(name, "?"))


def _identity(doc: dict[str, Any]) -> tuple[str, ...]:
    """(created, model sha256, store digest, shard, subset, options): equal for the same
    evaluation (``created`` has one-second resolution, so the subset and the options tell apart
    evaluations of one model and store started in the same second)."""
    prov = doc.get("provenance", {})
    model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
    store = prov.get("store") if isinstance(prov.get("store"), dict) else {}
    shard = prov.get("shard") or {}
    return (
        str(prov.get("created", "")),
        str(model.get("sha256", "")),
        str(store.get("content_digest", "")),
        json.dumps(shard, sort_keys=True),
        json.dumps(prov.get("subset"), sort_keys=True),
        json.dumps(doc.get("config"), sort_keys=True),
    )


def check_collection(found: Collection) -> None:
    """Refuse duplicates and runs of one group on different stores; label differing game
    settings (module docstring). Changes ``found.results`` labels in place."""
    seen: dict[tuple[str, ...], Path] = {}
    for r in found.results:
        key = _identity(r.doc)
        if not key[0]:  # no creation time recorded: nothing to tell copies apart by
            continue
        if key in seen:
            raise SarevalError(
                f"{r.path}: the same result as {seen[key]} (provenance created {key[0]}, model "
                f"{key[1][:12]}, store {key[2][:12]}); each result may be counted once"
            )
        seen[key] = r.path
    varying = [
        name for name in GAME_SETTINGS if len({_setting(r.doc, name) for r in found.results}) > 1
    ]
    for r in found.results:
        if varying:
            r.label += " [" + ", ".join(f"{n}={_setting(r.doc, n)}" for n in varying) + "]"
    groups: dict[tuple[str, str], ResultRun] = {}
    for r in found.results:
        first = groups.setdefault((r.label, r.subset), r)
        for what, get in (
            ("store (content_digest)", lambda d: _identity(d)[2]),
            ("task", lambda d: d.get("task")),
            ("class names", lambda d: d.get("class_names")),
        ):
            if get(r.doc) != get(first.doc):
                raise SarevalError(
                    f"{r.path} and {first.path}: runs of {r.label!r} on {r.subset!r} differ in "
                    f"the {what}: {get(r.doc)} vs {get(first.doc)}; they cannot be averaged "
                    "(give them different labels: (label, path))"
                )
