"""Exact Shapley values, SHAPE contribution scores and cooperation of a coalition game.

A game assigns a value V(S) (a data-set metric with only the modalities in S present) to each
of the 2^M coalitions S of the players M. With m = |M|:

    phi_i = sum_{S subset M \\ {i}} |S|! (m - |S| - 1)! / m! * (V(S u {i}) - V(S))

SHAPE contribution score: S_i = phi_i / Z with Z = 1 (``z="one"``, the seed study) or
Z = V(M) (``z="full"``, the SHAPE paper). Efficiency: sum_i phi_i = V(M) - V(empty).

Cooperation of a group A of players:

    C_A = phi_A(game with A merged into one player)
          - sum_{i in A} phi_i(game where the rest of A is always absent)

For A = M this is C_M = V(M) - V(empty) - sum_i (V({i}) - V(empty)); for two players
C = V(s,o) - V(s) - V(o) + V(empty). Reported as C_A / Z.

Every function has a mapping form (``V[frozenset] -> float``) and an array form: V as an array
of shape (..., 2^M) in :func:`~sareval.evaluator.coalitions.all_coalitions` order, so many
metrics and bootstrap replicates are handled at once. Each Shapley value is computed as a
weighted sum of marginal differences V(S u {i}) - V(S), so a dummy player (V unchanged by it)
gets exactly 0, not a rounding residue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import combinations
from math import factorial
from typing import Literal

import numpy as np

from sareval.choices import Z_CHOICES
from sareval.errors import SarevalError
from sareval.evaluator.coalitions import (
    check_players,
    coalition_positions,
    ordered_coalitions,
    parse_coalition_name,
)

Normalisation = Literal["one", "full"]


@lru_cache(maxsize=256)
def _marginal_terms(
    players: tuple[str, ...], groups: tuple[frozenset[str], ...], target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shapley value of ``groups[target]`` in the game whose players are ``groups``.

    A coalition T of groups has the value V(union of T). Returns index arrays ``with_``,
    ``without`` into the 2^M coalition axis and ``weights`` so that
    ``phi = sum(weights * (V[with_] - V[without]))``.
    """
    index = coalition_positions(players)
    others = [g for j, g in enumerate(groups) if j != target]
    g = len(groups)
    with_, without, weights = [], [], []
    for size in range(len(others) + 1):
        weight = factorial(size) * factorial(g - size - 1) / factorial(g)
        for members in combinations(others, size):
            base = frozenset().union(*members)
            with_.append(index[base | groups[target]])
            without.append(index[base])
            weights.append(weight)
    return np.array(with_), np.array(without), np.array(weights, dtype=np.float64)


def _phi(V: np.ndarray, terms: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    with_, without, weights = terms
    return ((V[..., with_] - V[..., without]) * weights).sum(axis=-1)


def check_game_array(V: np.ndarray, players: tuple[str, ...]) -> np.ndarray:
    """``V`` as float64 whose last axis holds the 2^M coalition values of ``players`` (in
    :func:`~sareval.evaluator.coalitions.all_coalitions` order); an error otherwise."""
    V = np.asarray(V, dtype=np.float64)
    if V.ndim == 0 or V.shape[-1] != 2 ** len(players):
        raise SarevalError(
            f"V has shape {V.shape}; expected (..., {2 ** len(players)}) for players {players}"
        )
    return V


def game_array(V: Mapping[frozenset[str] | str, float], players: Sequence[str]) -> np.ndarray:
    """A mapping game (keys: coalitions or their names) as an array in coalition order."""
    players = check_players(players)
    values = {}
    for key, value in V.items():
        coalition = parse_coalition_name(key, players) if isinstance(key, str) else key
        values[frozenset(coalition)] = float(value)
    coalitions = ordered_coalitions(players)
    missing = [c for c in coalitions if c not in values]
    if missing:
        raise SarevalError(f"game lacks V for coalitions {[sorted(c) for c in missing]}")
    return np.array([values[c] for c in coalitions], dtype=np.float64)


def shapley_array(V: np.ndarray, players: Sequence[str]) -> np.ndarray:
    """Shapley values, shape (..., M) in player order, of games V of shape (..., 2^M)."""
    players = check_players(players)
    V = check_game_array(V, players)
    groups = tuple(frozenset([p]) for p in players)
    return np.stack(
        [_phi(V, _marginal_terms(players, groups, i)) for i in range(len(players))], axis=-1
    )


def cooperation_array(
    V: np.ndarray, players: Sequence[str], group: Sequence[str] | None = None
) -> np.ndarray:
    """Cooperation C_A (unnormalised), shape (...), of games V of shape (..., 2^M).

    ``group`` = A, default all players. C_A = phi_A(A merged) - sum_{i in A} phi_i(A \\ {i}
    always absent).
    """
    players = check_players(players)
    V = check_game_array(V, players)
    group = tuple(players) if group is None else tuple(group)
    unknown = set(group) - set(players)
    if not group or unknown or len(set(group)) != len(group):
        raise SarevalError(f"bad cooperation group {list(group)} for players {list(players)}")
    rest = tuple(frozenset([p]) for p in players if p not in group)
    merged = (frozenset(group), *rest)
    total = _phi(V, _marginal_terms(players, merged, 0))
    for player in group:
        alone = (frozenset([player]), *rest)
        total = total - _phi(V, _marginal_terms(players, alone, 0))
    return total


def normaliser_array(V: np.ndarray, players: Sequence[str], z: Normalisation = "one") -> np.ndarray:
    """Z of shape (...): 1 for ``z="one"``, V(M) for ``z="full"``."""
    players = check_players(players)
    V = check_game_array(V, players)
    if z == "one":
        return np.ones(V.shape[:-1])
    if z == "full":
        return V[..., -1].copy()
    raise SarevalError(f"unknown normalisation z={z!r}; choose one of {list(Z_CHOICES)}")


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b == 0 (a relevance normalised by a zero full-model metric)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def shape_relevance_array(
    V: np.ndarray, players: Sequence[str], z: Normalisation = "one"
) -> dict[str, np.ndarray]:
    """SHAPE scores of games V (..., 2^M): arrays ``relevance`` (..., M), ``cooperation``,
    ``Z`` and ``efficiency_gap`` (...).

    relevance_i = phi_i / Z, cooperation = C_M / Z,
    efficiency_gap = sum_i relevance_i - (V(M) - V(empty)) / Z (zero up to rounding).
    Where Z = 0 (``z="full"`` and V(M) = 0) the normalised values are NaN.
    """
    players = check_players(players)
    V = check_game_array(V, players)
    Z = normaliser_array(V, players, z)
    relevance = _divide(shapley_array(V, players), Z[..., None])
    cooperation = _divide(cooperation_array(V, players), Z)
    efficiency_gap = relevance.sum(axis=-1) - _divide(V[..., -1] - V[..., 0], Z)
    return {
        "relevance": relevance,
        "cooperation": cooperation,
        "Z": Z,
        "efficiency_gap": efficiency_gap,
    }


def shapley_values(
    V: Mapping[frozenset[str] | str, float], players: Sequence[str]
) -> dict[str, float]:
    """Exact Shapley value of each player (unnormalised), keyed by player."""
    phi = shapley_array(game_array(V, players), players)
    return {p: float(v) for p, v in zip(players, phi, strict=True)}


def cooperation(
    V: Mapping[frozenset[str] | str, float],
    players: Sequence[str],
    group: Sequence[str] | None = None,
) -> float:
    """Cooperation C_A (unnormalised) of ``group`` (default: all players)."""
    return float(cooperation_array(game_array(V, players), players, group))


def shape_relevance(
    V: Mapping[frozenset[str] | str, float], players: Sequence[str], z: Normalisation = "one"
) -> dict:
    """``{"relevance": {player: phi/Z}, "cooperation": C/Z, "Z": Z, "efficiency_gap": gap}``."""
    result = shape_relevance_array(game_array(V, players), players, z)
    return {
        "relevance": {p: float(v) for p, v in zip(players, result["relevance"], strict=True)},
        "cooperation": float(result["cooperation"]),
        "Z": float(result["Z"]),
        "efficiency_gap": float(result["efficiency_gap"]),
    }
