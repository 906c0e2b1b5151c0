"""``sareval merge``: combine the results of ``sareval shape --shard i/n`` runs into one.

The shards must come from the same model (file hash), store (content digest), subset and
evaluation options (everything in ``config`` except how the work was spread: shard,
world_size, device, providers, batch_size, pad_to), and together be the n parts 0..n-1 of one
split, each exactly once. Their integer counts (overall, per cloud-cover bin) and tie counts are
summed and every metric, relevance and cooperation is recomputed from the sums, so the merged
document equals a single-process run's, count for count. Mean average precision comes from the
shards' embedded score states (``"scores"``, :mod:`sareval.evaluator.scores`), concatenated;
the per-sample ``per_sample`` and ``detection`` sections (``ShapeConfig.reporting.per_sample``)
from their
per-sample states (``"per_sample_state"``, :mod:`sareval.evaluator.in_pass`), concatenated in
shard order and summarised with the configuration's seed and bootstrap replicates, as one
process does. The merged document carries neither state. A state is checked beyond its sha256
(which an edit can recompute): complex, object or NaN arrays are refused, naming the file and
the array (:func:`~sareval.evaluator.embedded.decode_arrays`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sareval.errors import SarevalError
from sareval.evaluator.distributed import part_range
from sareval.evaluator.in_pass import (
    DETECTION_BOOT,
    STATE_SECTION,
    PerSampleState,
    per_sample_sections,
)
from sareval.evaluator.results import (
    cloud_pixel_entries,
    counts_from_json,
    game_from_doc,
    perceptual_sections,
    select_metrics,
    shape_sections,
    to_json_value,
)
from sareval.evaluator.scores import ScoreState

SPREAD_KEYS = ("shard", "world_size", "device", "providers", "batch_size", "pad_to")
MAX_COUNT = 2**53  # counts are summed exactly in int64 and turned into float64 metrics


def _count_array(value: Any, where: str) -> tuple[int, ...]:
    """The shape of a (nested list) array of integer counts in 0..MAX_COUNT; else raise."""
    if isinstance(value, list):
        shapes = {_count_array(v, f"{where}[{i}]") for i, v in enumerate(value)}
        if len(shapes) > 1:
            raise SarevalError(f"{where}: rows of different lengths")
        return (len(value), *(shapes.pop() if shapes else ()))
    if isinstance(value, bool) or not isinstance(value, int):
        raise SarevalError(f"{where}: {str(value)[:40]!r} is not an integer count")
    if not 0 <= value <= MAX_COUNT:
        raise SarevalError(f"{where}: count {value} is outside 0..2^53")
    return ()


def check_counts(node: Any, source: str, shapes: dict[str, tuple[int, ...]], at: str = "") -> None:
    """Every ``counts`` section under ``node`` holds integer counts in 0..2^53 whose arrays have
    one shape per field (across coalitions, bins and files: ``shapes`` collects them)."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            check_counts(v, source, shapes, f"{at}[{i}]")
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        where = f"{at}.{key}" if at else str(key)
        if key == "counts" and isinstance(value, dict):
            for name, state in value.items():
                if not isinstance(state, dict):  # ties: coalition -> count
                    _count_array(state, f"{source}: {where}.{name}")
                    continue
                for field, array in state.items():
                    shape = _count_array(array, f"{source}: {where}.{name}.{field}")
                    if shapes.setdefault(field, shape) != shape:
                        raise SarevalError(
                            f"{source}: {where}.{name}.{field} has shape {shape}, "
                            f"expected {shapes[field]}"
                        )
        else:
            check_counts(value, source, shapes, where)


def _same(docs: Sequence[dict], sources: Sequence[str], what: str, get: Any) -> None:
    first = get(docs[0])
    for doc, source in zip(docs[1:], sources[1:], strict=True):
        if get(doc) != first:
            raise SarevalError(f"{source} and {sources[0]} differ in {what}; cannot merge them")


def _same_store(docs: Sequence[dict], sources: Sequence[str]) -> None:
    """Refuse shards read from stores of different content (e.g. a modified copy), naming both
    files and both ``content_digest`` values."""
    first = docs[0]["provenance"]["store"]["content_digest"]
    for doc, source in zip(docs[1:], sources[1:], strict=True):
        digest = doc["provenance"]["store"]["content_digest"]
        if digest != first:
            raise SarevalError(
                f"{source} and {sources[0]} differ in the store (content_digest {digest} vs "
                f"{first}): shards of different data; cannot merge them"
            )


def check_shards(docs: Sequence[dict], sources: Sequence[str]) -> None:
    """Raise unless ``docs`` are the complementary shards of one evaluation."""
    if not docs:
        raise SarevalError("merge: no results files given")
    shapes: dict[str, tuple[int, ...]] = {}
    for doc, source in zip(docs, sources, strict=True):
        check_counts(doc, source, shapes)
    for doc, source in zip(docs, sources, strict=True):
        shard = doc["provenance"].get("shard")
        if not shard or "index" not in shard:
            raise SarevalError(
                f"{source}: not a shard result (evaluated with ShapeConfig.execution.shard)"
            )
    _same(docs, sources, "the model", lambda d: d["provenance"]["model"]["sha256"])
    _same(docs, sources, "the model card", lambda d: d["provenance"]["model"]["card"])
    _same_store(docs, sources)
    _same(docs, sources, "the subset", lambda d: d["provenance"]["subset"])
    _same(docs, sources, "the players", lambda d: (d["players"], d["coalitions"]))
    _same(docs, sources, "the task or classes", lambda d: (d["task"], d["class_names"]))
    _same(docs, sources, "the empty coalition", lambda d: d["empty"])
    _same(
        docs,
        sources,
        "the evaluation options",
        lambda d: {k: v for k, v in d["config"].items() if k not in SPREAD_KEYS},
    )
    count = docs[0]["provenance"]["shard"]["count"]
    size = docs[0]["provenance"]["subset"]["size"]
    seen: dict[int, str] = {}
    for doc, source in zip(docs, sources, strict=True):
        shard = doc["provenance"]["shard"]
        i = shard["index"]
        if shard["count"] != count:
            raise SarevalError(f"{source}: shard of {shard['count']}, the others of {count}")
        if i in seen:
            raise SarevalError(f"{source}: shard {i}/{count} is also in {seen[i]}")
        if (shard["start"], shard["stop"]) != part_range(0, size, i, count):
            raise SarevalError(f"{source}: shard {i}/{count} covers an unexpected range")
        seen[i] = source
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise SarevalError(f"merge: shards {missing} of {count} are missing")


def _sum(docs: Sequence[dict], task: str, names: Sequence[str], get: Any) -> list[Any]:
    total: list[Any] | None = None
    for doc in docs:
        counts = counts_from_json(task, get(doc), names)
        total = counts if total is None else [a + b for a, b in zip(total, counts, strict=True)]
    assert total is not None
    return total


def merge_scores(docs: Sequence[dict], sources: Sequence[str]) -> ScoreState | None:
    """The shards' score states concatenated (None when no shard has one)."""
    have = ["scores" in d for d in docs]
    if not any(have):
        return None
    if not all(have):
        missing = [src for src, h in zip(sources, have, strict=True) if not h]
        raise SarevalError(f"{missing[0]}: no 'scores' section (the other shards have one)")
    return ScoreState.concat(
        [ScoreState.from_json(d["scores"], src) for d, src in zip(docs, sources, strict=True)]
    ).with_policy(docs[0]["config"].get("map_absent_classes", "zero"))  # absent: before 'skip'


def merge_per_sample(docs: Sequence[dict], sources: Sequence[str]) -> dict[str, Any]:
    """The ``per_sample`` and ``detection`` sections of the shards' per-sample states ({}
    without ``per_sample``); a shard without a state, or with one of the wrong size, is refused."""
    first = docs[0]
    cfg = first["config"]
    wanted = bool(cfg.get("per_sample"))
    for doc, source in zip(docs, sources, strict=True):
        if (STATE_SECTION in doc) != wanted:
            raise SarevalError(
                f"{source}: no {STATE_SECTION!r} section (the shards ran with per_sample)"
                if wanted
                else f"{source}: a {STATE_SECTION!r} section, but per_sample is off"
            )
    if not wanted:
        return {}
    states = []
    for doc, source in sorted(
        zip(docs, sources, strict=True), key=lambda d: d[0]["provenance"]["shard"]["index"]
    ):
        state = PerSampleState.from_json(doc[STATE_SECTION], source, len(doc["players"]))
        shard = doc["provenance"]["shard"]
        if state.n != shard["stop"] - shard["start"]:
            raise SarevalError(
                f"{source}: {STATE_SECTION!r} holds {state.n} samples, the shard "
                f"{shard['stop'] - shard['start']}"
            )
        states.append(state)
    return per_sample_sections(
        PerSampleState.concat(states), first["players"], task=first["task"],
        class_names=first["class_names"], bin_edges=cfg["cloud_cover_bins"],
        n_boot=cfg["replicates"] or DETECTION_BOOT, seed=cfg["seed"],
    )  # fmt: skip


def merge_documents(docs: Sequence[dict], sources: Sequence[str]) -> dict[str, Any]:
    """The merged results document (JSON-ready: NaN as None) of complementary shards."""
    check_shards(docs, sources)
    first = docs[0]
    task, names, players = first["task"], first["coalitions"], first["players"]
    cfg = first["config"]
    counts = _sum(docs, task, names, lambda d: d["counts"])
    ties = [sum(d["ties"]["counts"][n] for d in docs) for n in names]
    if first["method"] == "perceptual":
        sections = perceptual_sections(
            players=players, names=names, permutations=cfg["permutations"], counts=counts,
            ties=ties,
        )  # fmt: skip
    else:
        cloud_bins = None
        if cfg["cloud_cover_bins"] is not None:
            cloud_bins = []
            for i, entry in enumerate(first["by"]["cloud_cover"]):
                bin_counts = _sum(
                    docs, task, names, lambda d, i=i: d["by"]["cloud_cover"][i]["counts"]
                )
                cloud_bins.append((entry["label"], entry["bin"], bin_counts))
            if any("cloud_cover_unknown" in d["by"] for d in docs):
                unknown = [
                    counts_from_json(task, d["by"]["cloud_cover_unknown"]["counts"], names)
                    for d in docs
                    if "cloud_cover_unknown" in d["by"]
                ]
                total: list[Any] = unknown[0]
                for more in unknown[1:]:
                    total = [a + b for a, b in zip(total, more, strict=True)]
                cloud_bins.append(("unknown", None, total))
        sections = shape_sections(
            task=task, game=game_from_doc(first),
            class_names=first["class_names"], counts=counts, z=cfg["normalization"],
            by_class="class" in cfg["by"], cloud_bins=cloud_bins, ties=ties,
            scores=merge_scores(docs, sources),
            cloud_cover_source=first["by"].get("cloud_cover_source"),
        )  # fmt: skip
    if task == "segmentation":  # images and pixels, and the clear / cloudy pixel split
        sections["n_samples"] = sum(d["n_samples"] for d in docs)
        sections["n_pixels"] = sum(d["n_pixels"] for d in docs)
        pixels = [
            _sum(docs, task, names, lambda d, i=i: d["by"]["cloud_pixels"][i]["counts"])
            for i in range(len(first["by"]["cloud_pixels"]))
        ]
        sections["by"]["cloud_pixels"] = cloud_pixel_entries(
            pixels, game_from_doc(first), names, cfg["normalization"]
        )
    select_metrics(sections, cfg.get("metrics"), task)  # as the shards' run chose
    per_sample = merge_per_sample(docs, sources)
    merged: dict[str, Any] = {}
    for key, value in first.items():  # the per-sample sections where a single run has them
        if key == STATE_SECTION:
            merged.update(per_sample)
        elif key != "scores":
            merged[key] = copy.deepcopy(value)
    merged.update(sections)
    merged["config"]["shard"] = None
    merged["provenance"]["shard"] = {"merged": list(sources)}
    merged["provenance"]["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return to_json_value(merged)
