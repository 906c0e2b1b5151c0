"""The flat, stable names under which relevance is logged per epoch, shared by
:class:`sareval.lightning.ShapeCallback` (a Lightning logger's columns) and ``sareval train``
(its ``metrics.jsonl`` records), so that ``sareval report`` reads both with one code::

    shape/<metric>/relevance/<player>      relevance (Shapley value / Z)
    shape/<metric>/value/<coalition>       V(S), coalitions named as in results (``sar+opt``)
    shape/<metric>/cooperation             C / Z (exact games)
    shape/<metric>/share/<player>          relevance_i / sum_j relevance_j
    shape/<metric>/<index>/<interaction>   with ``interactions``: the indices of
                                           :mod:`sareval.evaluator.interactions`

'sareval train`` evaluates several validation subsets: its records carry each subset's names
as ``val/<subset>/shape/...`` (:func:`subset_names`). :func:`games_from_names` turns names back
into the ``{"players", "metrics": {metric: {"V", "relevance", "cooperation"}}}`` summary of a
results document per validation set (``val`` for unprefixed names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sareval.evaluator.coalitions import EMPTY_NAME, all_coalitions, coalition_name
from sareval.evaluator.interactions import record_from_doc

PREFIX = "shape"
#: the validation set of names without a ``val/<subset>/`` prefix (a Lightning run)
DEFAULT_SUBSET = "val"


def relevance_shares(relevance: Mapping[str, float | None]) -> dict[str, float]:
    """relevance_i / sum_j relevance_j; empty when the sum is not positive (no share to speak
    of: the modalities together do not improve the metric) or undefined (NaN)."""
    values = {p: float(v) for p, v in relevance.items() if v is not None}
    total = sum(values.values())
    if len(values) != len(relevance) or not total > 0:
        return {}
    return {p: v / total for p, v in values.items()}


def log_names(doc: Mapping[str, Any], interactions: bool = False) -> dict[str, float]:
    """The logged values of a results document (or its ``V``/``relevance``/``cooperation``
    summary) under their stable names (module docstring); null values become NaN."""
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        out[f"{PREFIX}/{name}"] = float("nan") if value is None else float(value)

    records = record_from_doc(doc) if interactions else {}
    for metric, entry in doc["metrics"].items():
        for player, value in entry["relevance"].items():
            put(f"{metric}/relevance/{player}", value)
        for coalition, value in entry["V"].items():
            put(f"{metric}/value/{coalition}", value)
        if entry.get("cooperation") is not None:
            put(f"{metric}/cooperation", entry["cooperation"])
        for player, share in relevance_shares(entry["relevance"]).items():
            put(f"{metric}/share/{player}", share)
        for index, values in (records.get(metric) or {}).items():
            if isinstance(values, Mapping):
                for key, value in values.items():
                    put(f"{metric}/{index}/{key}", value)
    return out


def _subset_of(name: str) -> tuple[str, list[str]] | None:
    """(validation set, name parts from ``shape`` on) of a logged name: ``shape/...`` is the
    validation set ``val``, ``val/<subset>/shape/...`` (``sareval train``) is ``<subset>``."""
    parts = name.split("/")
    if parts[0] == PREFIX:
        return DEFAULT_SUBSET, parts
    if len(parts) > 2 and parts[0] == "val" and parts[2] == PREFIX:
        return parts[1], parts[2:]
    return None


def _number(name: str, raw: Any) -> float | None:
    """A logged value: a number or its text (a CSV cell); None for empty, null or NaN."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"{name}: {raw!r} is not a number")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a number") from None
    return None if math.isnan(value) else value


def games_from_names(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{subset: {"players", "metrics": {metric: {"V", "relevance", "cooperation"}}}}`` from
    logged names (other keys ignored; empty and NaN values are null; ValueError naming the
    name for a value that is not a number). Players are in the order
    of the logged name of V(all) (``shape/<metric>/value/sar+opt``), V in coalition order."""
    games: dict[str, dict[str, Any]] = {}
    for name, raw in values.items():
        found = _subset_of(name)
        if found is None:
            continue
        subset, parts = found
        if len(parts) < 3 or parts[2] not in ("relevance", "value", "cooperation"):
            continue
        value = _number(name, raw)
        game = games.setdefault(subset, {"players": [], "metrics": {}})
        entry = game["metrics"].setdefault(
            parts[1], {"V": {}, "relevance": {}, "cooperation": None}
        )
        if parts[2] == "cooperation" and len(parts) == 3:
            entry["cooperation"] = value
        elif parts[2] == "relevance" and len(parts) == 4:
            entry["relevance"][parts[3]] = value
            if parts[3] not in game["players"]:
                game["players"].append(parts[3])
        elif parts[2] == "value" and len(parts) == 4:
            entry["V"][parts[3]] = value
    return {subset: _in_player_order(game) for subset, game in games.items()}


def _in_player_order(game: dict[str, Any]) -> dict[str, Any]:
    """Players, relevance and V in the results' order (a logger may sort its columns): the
    players as the name of the coalition of all of them lists them, V in coalition order."""
    named = [c for e in game["metrics"].values() for c in e["V"] if c != EMPTY_NAME]
    full = max(named, key=lambda c: c.count("+"), default="")
    players = full.split("+")
    if sorted(players) != sorted(game["players"]):  # no V(all) logged: keep the order seen
        return game
    order = [coalition_name(c, players) for c in all_coalitions(players)]
    for entry in game["metrics"].values():
        entry["relevance"] = {p: entry["relevance"][p] for p in players if p in entry["relevance"]}
        entry["V"] = {c: entry["V"][c] for c in order if c in entry["V"]}
    return {"players": players, "metrics": game["metrics"]}


def subset_names(subset: str, values: Mapping[str, float]) -> dict[str, float]:
    """``values`` of one validation subset of ``sareval train`` under ``val/<subset>/shape/...``."""
    return {f"val/{subset}/{name}": value for name, value in values.items()}


__all__ = [
    "DEFAULT_SUBSET",
    "PREFIX",
    "games_from_names",
    "log_names",
    "relevance_shares",
    "subset_names",
]
