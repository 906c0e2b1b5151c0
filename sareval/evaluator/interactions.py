"""Interaction indices of a full coalition game: Möbius, SII, k-SII, Banzhaf, Shapley-Taylor.

Every index is a linear transform of the table V over all 2^M coalitions (shape (..., 2^M) in
:func:`~sareval.evaluator.coalitions.all_coalitions` order: empty first, then by size), so the
functions take bootstrap replicates (R, 2^M) as they take one game, and the replicates' indices
give percentile intervals from the SAME draws as relevance. With n = |N| players, s = |S|,
t = |T| and the discrete derivative of V with respect to T at S (S and T disjoint)

    delta_T V(S) = sum_{L subset T} (-1)^{t - |L|} V(S u L)

(delta_{i} V(S) = V(S + i) - V(S), the marginal contribution):

- Möbius transform (Harsanyi dividends), every T: m(T) = delta_T V(empty)
  = sum_{L subset T} (-1)^{t-|L|} V(L); V(S) = sum_{T subset S} m(T), so
  sum_{T != empty} m(T) = V(N) - V(empty). Two players: m(sar+opt) = V(all) - V(sar) - V(opt) +
  V(none), the study's cooperation times Z.
- Shapley interaction index (Grabisch & Roubens 1999):
  SII(T) = sum_{S subset N \\ T} s! (n - s - t)! / (n - t + 1)! * delta_T V(S)
  = sum_{S superset T} m(S) / (|S| - t + 1); SII({i}) is the Shapley value.
- k-SII (Bordt & von Luxburg 2023), order k: k-SII(empty) = V(empty) and for 1 <= t <= k
  k-SII(T) = sum_{S superset T, |S| <= k} B_{|S| - t} SII(S), B the Bernoulli numbers
  (B_1 = -1/2). Efficiency: sum_{|T| <= k} k-SII(T) = V(N).
- Banzhaf value: BV_i = 2^{-(n-1)} sum_{S subset N \\ {i}} delta_i V(S)
  = sum_{S contains i} m(S) / 2^{|S| - 1}; Banzhaf interaction (Grabisch & Roubens 1999):
  BII(T) = 2^{-(n-t)} sum_{S subset N \\ T} delta_T V(S) = sum_{S superset T} m(S) / 2^{|S|-t}.
  No efficiency.
- Shapley-Taylor interaction index (Sundararajan et al. 2020), order k: STII(T) = m(T) for
  t < k (STII(empty) = V(empty)), and for t = k
  STII(T) = k / n * sum_{S subset N \\ T} delta_T V(S) / C(n - 1, s).
  Efficiency: sum_{|T| <= k} STII(T) = V(N).

These are the definitions of shapiq's ``ExactComputer`` (indices ``Moebius``, ``SII``,
``k-SII``, ``BV``, ``BII``, ``STII``; :func:`to_shapiq` returns sareval's values as shapiq's
``InteractionValues``). Each derivative is taken one player at a time (a difference of two
halves of the table), so a dummy player (V unchanged by it) gets exactly 0 in every index that
involves it, not a rounding residue. Values are in the metric's units (not divided by Z).

Results (:func:`interaction_record`): one record per metric, keyed by coalition names
(``"sar+opt"``)::

    {"order": k, "moebius": {every non-empty coalition: m}, "sii": {T, 2 <= t <= k: SII},
     "k_sii": {T, 1 <= t <= k}, "banzhaf": {player: BV}, "banzhaf_interaction": {T, 2 <= t <= k},
     "shapley_taylor": {T, 1 <= t <= k}}

Only exact games have them (results entries, :func:`interaction_entry`): a sampled game
evaluates the prefixes of its orderings and an Owen game the coalitions of its nested sum, so
neither has the full table; no index is estimated for them (an entry then has no
``interactions``).

Owen values of nested players (:mod:`sareval.evaluator.estimators`) add up, per group, to the
group's Shapley value in the game between groups; in the interaction view that is
:func:`group_shapley_array`, each dividend m(S) shared equally among the groups S meets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import combinations
from math import comb, factorial
from typing import Any

import numpy as np

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import (
    check_players,
    coalition_name,
    coalition_positions,
    ordered_coalitions,
)
from sareval.evaluator.shapley import check_game_array

#: index names of the results record, and shapiq's name of each
SHAPIQ_INDEX: dict[str, str] = {
    "moebius": "Moebius",
    "sii": "SII",
    "k_sii": "k-SII",
    "banzhaf": "BV",
    "banzhaf_interaction": "BII",
    "shapley_taylor": "STII",
}
INDICES: tuple[str, ...] = tuple(SHAPIQ_INDEX)
#: interaction order of the results record
DEFAULT_ORDER = 2


# --- coalition tables as cubes --------------------------------------------------------------
@lru_cache(maxsize=64)
def _mask_order(players: tuple[str, ...]) -> np.ndarray:
    """Position in coalition order of each bit mask (bit i: player i present)."""
    index = coalition_positions(players)
    out = np.empty(2 ** len(players), dtype=np.int64)
    for mask in range(len(out)):
        out[mask] = index[frozenset(p for i, p in enumerate(players) if mask >> i & 1)]
    return out


def _cube(V: np.ndarray, players: tuple[str, ...]) -> np.ndarray:
    """V (..., 2^M) as (..., 2, ..., 2): player i on axis -(i + 1), index 1 = present."""
    n = len(players)
    return V[..., _mask_order(players)].reshape(*V.shape[:-1], *(2,) * n)


def _axis(i: int) -> int:
    return -(i + 1)


def _derivative(cube: np.ndarray, members: Sequence[int]) -> np.ndarray:
    """delta_T V(S) for T = ``members``: the players' axes kept with size 1 (index 0 = S)."""
    for i in members:
        axis = cube.ndim + _axis(i)
        upper = np.take(cube, [1], axis=axis)
        lower = np.take(cube, [0], axis=axis)
        cube = upper - lower
    return cube


@lru_cache(maxsize=256)
def _sizes(n: int) -> np.ndarray:
    """|S| of every cell of an n-player cube, shape (2,) * n."""
    grid = np.indices((2,) * n).sum(axis=0) if n else np.zeros(())
    return np.asarray(grid, dtype=np.int64)


def _weighted(cube: np.ndarray, n: int, members: Sequence[int], weights: np.ndarray) -> np.ndarray:
    """sum_{S subset N \\ T} weights[|S|] * delta_T V(S), shape (...), for T = ``members``."""
    d = _derivative(cube, members)
    cells = tuple(slice(0, 1) if n - 1 - a in members else slice(None) for a in range(n))
    w = weights[_sizes(n)[cells]]
    terms = (d * w).reshape(*d.shape[: d.ndim - n], -1)
    return np.asarray(terms.sum(axis=-1))  # one axis: the same sum for a game or a replicate


def _check_order(order: int | None, n: int, name: str = "order") -> int:
    if order is None:
        return n
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= n:
        raise SarevalError(f"{name}: expected an integer in 1..{n} (players), got {order!r}")
    return int(order)


def interaction_sets(players: Sequence[str], order: int | None = None) -> list[frozenset[str]]:
    """The coalitions T with |T| <= ``order`` (default all), in coalition order (the index
    arrays' last axis)."""
    players = check_players(players)
    k = _check_order(order, len(players))
    return [c for c in ordered_coalitions(players) if len(c) <= k]


def _members(players: tuple[str, ...], order: int) -> list[tuple[int, ...]]:
    return [m for t in range(order + 1) for m in combinations(range(len(players)), t)]


# --- the indices ---------------------------------------------------------------------------------
def moebius_array(V: np.ndarray, players: Sequence[str]) -> np.ndarray:
    """Möbius transform m(T) of games V (..., 2^M), shape (..., 2^M) in coalition order."""
    players = check_players(players)
    V = check_game_array(V, players)
    cube = _cube(V, players).copy()
    n = len(players)
    for i in range(n):  # one player at a time: exact zeros for dummies
        axis = cube.ndim + _axis(i)
        upper: list[slice | int] = [slice(None)] * cube.ndim
        lower: list[slice | int] = [slice(None)] * cube.ndim
        upper[axis], lower[axis] = 1, 0
        cube[tuple(upper)] -= cube[tuple(lower)]
    flat = cube.reshape(*V.shape[:-1], 2**n)
    out = np.empty_like(flat)
    out[..., _mask_order(players)] = flat
    return out


def _base_index(
    V: np.ndarray,
    players: Sequence[str],
    order: int | None,
    weight: Callable[[int, int, int], float],
) -> np.ndarray:
    """sum_{S subset N \\ T} weight(n, |S|, |T|) delta_T V(S) for every |T| <= order."""
    players = check_players(players)
    V = check_game_array(V, players)
    n = len(players)
    k = _check_order(order, n)
    cube = _cube(V, players)
    parts = []
    for members in _members(players, k):
        t = len(members)
        weights = np.array([weight(n, s, t) for s in range(n - t + 1)], dtype=np.float64)
        parts.append(_weighted(cube, n, members, weights))
    return np.stack(parts, axis=-1)


def _sii_weight(n: int, s: int, t: int) -> float:
    return factorial(s) * factorial(n - s - t) / factorial(n - t + 1)


def _bii_weight(n: int, s: int, t: int) -> float:
    return 2.0 ** -(n - t)


def sii_array(V: np.ndarray, players: Sequence[str], order: int | None = None) -> np.ndarray:
    """Shapley interaction index SII(T) for |T| <= ``order`` (default all; the empty T
    included), shape (..., len(interaction_sets)). SII of one player is its Shapley value."""
    return _base_index(V, players, order, _sii_weight)


def banzhaf_interaction_array(
    V: np.ndarray, players: Sequence[str], order: int | None = None
) -> np.ndarray:
    """Banzhaf interaction index BII(T) for |T| <= ``order`` (default all; the empty T
    included), shape (..., len(interaction_sets))."""
    return _base_index(V, players, order, _bii_weight)


def banzhaf_array(V: np.ndarray, players: Sequence[str]) -> np.ndarray:
    """Banzhaf values, shape (..., M) in player order."""
    return banzhaf_interaction_array(V, players, 1)[..., 1:]


@lru_cache(maxsize=32)
def bernoulli(count: int) -> tuple[float, ...]:
    """Bernoulli numbers B_0 .. B_{count-1} (B_1 = -1/2), exact then rounded to float."""
    b: list[Fraction] = []
    for m in range(count):
        total = sum((comb(m + 1, j) * b[j] for j in range(m)), Fraction(0))
        b.append(Fraction(1) if m == 0 else -total / (m + 1))
    return tuple(float(x) for x in b)


def k_sii_array(V: np.ndarray, players: Sequence[str], order: int = DEFAULT_ORDER) -> np.ndarray:
    """k-SII of order k = ``order`` for |T| <= k, shape (..., len(interaction_sets)):
    V(empty) for the empty T, sum_{S superset T, |S| <= k} B_{|S|-|T|} SII(S) otherwise."""
    players = check_players(players)
    k = _check_order(order, len(players))
    return _k_sii(sii_array(V, players, k), check_game_array(V, players), players, k)


def _k_sii(sii: np.ndarray, V: np.ndarray, players: tuple[str, ...], k: int) -> np.ndarray:
    sets = interaction_sets(players, k)
    b = bernoulli(k + 1)
    out = np.zeros_like(sii)
    out[..., 0] = V[..., 0]
    for j, t in enumerate(sets):
        if not t:
            continue
        for i, s in enumerate(sets):
            if s >= t:
                out[..., j] += b[len(s) - len(t)] * sii[..., i]
    return out


def shapley_taylor_array(
    V: np.ndarray, players: Sequence[str], order: int = DEFAULT_ORDER
) -> np.ndarray:
    """Shapley-Taylor index of order k = ``order`` for |T| <= k, shape
    (..., len(interaction_sets)): m(T) below order k, the weighted derivatives at order k."""
    players = check_players(players)
    V = check_game_array(V, players)
    k = _check_order(order, len(players))
    return _shapley_taylor(V, moebius_array(V, players), players, k)


def _shapley_taylor(V: np.ndarray, m: np.ndarray, players: tuple[str, ...], k: int) -> np.ndarray:
    n = len(players)
    cube = _cube(V, players)
    parts = []
    for members in _members(players, k):
        if len(members) < k:
            parts.append(m[..., _mask_order(players)[sum(1 << i for i in members)]])
        else:
            weights = np.array([k / n / comb(n - 1, s) for s in range(n - k + 1)])
            parts.append(_weighted(cube, n, members, weights))
    return np.stack(parts, axis=-1)


def group_shapley_array(
    V: np.ndarray, players: Sequence[str], groups: Sequence[Sequence[str]]
) -> np.ndarray:
    """Shapley values (..., G) of the game between ``groups`` (a partition of the players):
    phi_G = sum_{S meets G} m(S) / (number of groups S meets)."""
    players = check_players(players)
    m = moebius_array(V, players)
    sets = [frozenset(g) for g in groups]
    if sorted(p for g in groups for p in g) != sorted(players) or any(not g for g in sets):
        raise SarevalError(f"groups: expected a partition of the players {list(players)}")
    out = np.zeros((*m.shape[:-1], len(sets)))
    for j, coalition in enumerate(ordered_coalitions(players)):
        met = [g for g, members in enumerate(sets) if members & coalition]
        for g in met:
            out[..., g] += m[..., j] / len(met)
    return out


def interaction_arrays(
    V: np.ndarray, players: Sequence[str], order: int = DEFAULT_ORDER
) -> dict[str, np.ndarray]:
    """Every index of :data:`INDICES` of games V (..., 2^M): Möbius over all 2^M coalitions,
    Banzhaf values over the players, the others over :func:`interaction_sets` up to ``order``."""
    players = check_players(players)
    V = check_game_array(V, players)
    k = _check_order(order, len(players))
    m = moebius_array(V, players)
    sii = sii_array(V, players, k)
    bii = banzhaf_interaction_array(V, players, k)
    return {
        "moebius": m,
        "sii": sii,
        "k_sii": _k_sii(sii, V, players, k),
        "banzhaf": bii[..., 1 : 1 + len(players)],  # the single players follow the empty set
        "banzhaf_interaction": bii,
        "shapley_taylor": _shapley_taylor(V, m, players, k),
    }


_ORDERED: dict[str, Callable[[np.ndarray, Sequence[str], int], np.ndarray]] = {
    "sii": sii_array,
    "k_sii": k_sii_array,
    "banzhaf_interaction": banzhaf_interaction_array,
    "shapley_taylor": shapley_taylor_array,
}


# --- results records -----------------------------------------------------------------------------
def _record_keys(players: tuple[str, ...], order: int) -> dict[str, list[tuple[int, str]]]:
    """For each index: (position in its array, key) of what the record keeps."""
    sets = interaction_sets(players, order)

    def named(low: int) -> list[tuple[int, str]]:
        return [(j, coalition_name(t, players)) for j, t in enumerate(sets) if len(t) >= low]

    everything = list(enumerate(coalition_name(c, players) for c in ordered_coalitions(players)))
    return {
        "moebius": everything[1:],
        "sii": named(2),
        "k_sii": named(1),
        "banzhaf": list(enumerate(players)),
        "banzhaf_interaction": named(2),
        "shapley_taylor": named(1),
    }


def interaction_record(
    V: np.ndarray,
    players: Sequence[str],
    order: int = DEFAULT_ORDER,
    summary: Callable[[np.ndarray], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """The results record (module docstring) of one game V (2^M,); with ``summary``, of
    replicates V (R, 2^M) instead, each value being ``summary(values (R, n))[column]`` (e.g.
    the percentile interval of each column)."""
    players = check_players(players)
    k = min(order, len(players))
    V = check_game_array(V, players)
    if summary is None and V.ndim != 1:
        raise SarevalError(f"V: expected one game of shape ({2 ** len(players)},), got {V.shape}")
    arrays = interaction_arrays(V, players, k)
    flat = np.concatenate([arrays[name] for name in INDICES], axis=-1)  # one summary call
    columns = summary(flat) if summary is not None else flat.tolist()
    record: dict[str, Any] = {"order": k}
    offset = 0
    for name, keys in _record_keys(players, k).items():
        record[name] = {key: columns[offset + j] for j, key in keys}
        offset += arrays[name].shape[-1]
    return record


def interaction_entry(V: np.ndarray, players: Sequence[str], method: str) -> dict[str, Any]:
    """``{"interactions": record}`` for a metric entry of an exact game (V in coalition order),
    ``{}`` for a sampled or Owen game (the indices need every coalition's V)."""
    if method != "exact":
        return {}
    return {"interactions": interaction_record(np.asarray(V, dtype=np.float64), players)}


def doc_game(doc: Mapping[str, Any], metric: str) -> np.ndarray:
    """V (2^M,) in coalition order of ``metric`` in a SHAPE results document (NaN for null);
    refuses documents whose game is not exact (sampled, Owen, perceptual)."""
    method = (doc.get("game") or {}).get("method", "exact")
    if doc.get("method", "shape") != "shape" or method != "exact":
        kind = method if doc.get("method", "shape") == "shape" else doc["method"]
        raise SarevalError(
            f"interactions: need every coalition's V (an exact SHAPE game); this result is {kind!r}"
        )
    if metric not in doc["metrics"]:
        raise SarevalError(f"metric: {metric!r} is not in the result ({', '.join(doc['metrics'])})")
    players = check_players(doc["players"])
    table = doc["metrics"][metric]["V"]
    names = [coalition_name(c, players) for c in ordered_coalitions(players)]
    return np.array([np.nan if table[c] is None else table[c] for c in names], dtype=np.float64)


def record_from_doc(doc: Mapping[str, Any], order: int = DEFAULT_ORDER) -> dict[str, Any]:
    """``{metric: record}`` of a SHAPE results document: the stored records where every entry
    has one (and ``order`` is theirs), else computed from the V tables; ``{}`` for a game that
    is not exact."""
    entries = doc["metrics"]
    stored = [e.get("interactions") for e in entries.values()]
    if stored and all(r is not None and r["order"] == order for r in stored):
        return {m: e["interactions"] for m, e in entries.items()}
    method = (doc.get("game") or {}).get("method", "exact")
    if doc.get("method", "shape") != "shape" or method != "exact":
        return {}
    players = doc["players"]
    return {m: interaction_record(doc_game(doc, m), players, order) for m in entries}


# --- shapiq -------------------------------------------------------------------------------------
def to_shapiq(
    V: np.ndarray, players: Sequence[str], index: str = "k_sii", order: int = DEFAULT_ORDER
) -> Any:
    """sareval's ``index`` (one of :data:`INDICES`) of one game V (2^M,) as shapiq's
    ``InteractionValues`` (players as 0 .. M-1 in player order), for shapiq's plots. Needs the
    optional dependency shapiq (``pip install shapiq``)."""
    try:
        from shapiq import InteractionValues
    except ImportError:
        raise SarevalError(
            "to_shapiq: needs the optional package shapiq (pip install shapiq)"
        ) from None
    players = check_players(players)
    V = check_game_array(V, players)
    if V.ndim != 1:
        raise SarevalError(f"V: expected one game of shape ({2 ** len(players)},), got {V.shape}")
    if index not in SHAPIQ_INDEX:
        raise SarevalError(f"index: {index!r} is not one of {', '.join(INDICES)}")
    n = len(players)
    k = n if index == "moebius" else 1 if index == "banzhaf" else _check_order(order, n)
    if index == "moebius":
        values = moebius_array(V, players)
    elif index == "banzhaf":  # the empty set's entry: BII(empty), as shapiq 1.4's BV has it
        values = banzhaf_interaction_array(V, players, 1)
    else:
        values = _ORDERED[index](V, players, k)
    sets = interaction_sets(players, k)
    lookup = {tuple(i for i, p in enumerate(players) if p in t): j for j, t in enumerate(sets)}
    return InteractionValues(
        values=values,
        index=SHAPIQ_INDEX[index],
        max_order=k,
        min_order=0,
        n_players=n,
        interaction_lookup=lookup,
        estimated=False,
        baseline_value=float(V[0]),
    )
