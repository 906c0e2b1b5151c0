"""Shapley estimators for many players, and Owen values for nested players.

Both work on a game given as a mapping ``V[frozenset of players] -> value`` that holds only the
coalitions the estimator asked for (:func:`permutation_coalitions`, :func:`owen_coalitions`):
the evaluator runs exactly those coalitions and computes each V exactly from counts over the
whole subset, so the only approximation is the sampling of permutations.

**Permutation sampling** (Castro, Gomez & Tejada 2009), with antithetic pairs (a permutation and
its reverse; Mitchell et al. 2022, "Sampling permutations for Shapley value estimation"): for
sampled orderings pi_1..pi_n of the m players,

    phi_i ~ 1/n sum_t [V(Pre_i(pi_t) u {i}) - V(Pre_i(pi_t))]

where Pre_i(pi) is the set of players before i in pi. Each ordering's contributions sum to
V(M) - V(empty) (efficiency holds exactly for every sample). The standard error of phi_i is the
standard deviation of the per-unit means / sqrt(units), a unit being one ordering, or one
antithetic pair (pair members are dependent, pairs are independent).

**Owen values** (Owen 1977) for players partitioned into groups (e.g. SAR = {VV, VH}, optical =
{RGB, red edge, NIR, SWIR}): with g groups, group k of size b_k holding player i,

    Ow_i = sum_{R subset groups \\ {k}} sum_{T subset B_k \\ {i}}
           |R|! (g - |R| - 1)! / g!  *  |T|! (b_k - |T| - 1)! / b_k!
           * [V(Q_R u T u {i}) - V(Q_R u T)],      Q_R = union of the groups in R.

The Owen values of a group's players sum to the group's Shapley value in the game between
groups (the quotient game), so one run answers both "SAR vs optical" and "which optical bands".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import factorial

import numpy as np

from sareval.errors import SarevalError

Game = Mapping[frozenset[str], float]


@dataclass(frozen=True)
class Estimate:
    """Estimated Shapley values with a standard error per player (0 for exact values)."""

    values: dict[str, float]
    stderr: dict[str, float]
    n_units: int

    def interval(self, player: str, z: float = 1.96) -> tuple[float, float]:
        """The normal-approximation interval value +- z * stderr."""
        v, s = self.values[player], self.stderr[player]
        return v - z * s, v + z * s


# --- permutation sampling ---------------------------------------------------------------------
def sample_permutations(
    players: Sequence[str], n: int, seed: int, *, antithetic: bool = True
) -> list[tuple[str, ...]]:
    """``n`` orderings of ``players`` (``n`` even with ``antithetic``: each one and its reverse)."""
    if n < 1 or (antithetic and n % 2):
        raise SarevalError(
            f"permutations: expected a positive{' even' if antithetic else ''} number, got {n}"
        )
    rng = np.random.default_rng([seed, 0x5A4D])
    out: list[tuple[str, ...]] = []
    for _ in range(n // 2 if antithetic else n):
        order = tuple(players[i] for i in rng.permutation(len(players)))
        out.append(order)
        if antithetic:
            out.append(order[::-1])
    return out


def permutation_coalitions(orderings: Sequence[Sequence[str]]) -> list[frozenset[str]]:
    """Every prefix coalition of the orderings (the empty and the full one included)."""
    seen: dict[frozenset[str], None] = {}
    for order in orderings:
        for k in range(len(order) + 1):
            seen.setdefault(frozenset(order[:k]), None)
    return list(seen)


def permutation_estimate(
    game: Game, players: Sequence[str], orderings: Sequence[Sequence[str]], *,
    antithetic: bool = True,
) -> Estimate:  # fmt: skip
    """Shapley values by permutation sampling (module docstring) from the prefix values."""
    m = len(players)
    contributions = np.zeros((len(orderings), m))
    index = {p: i for i, p in enumerate(players)}
    for t, order in enumerate(orderings):
        before: frozenset[str] = frozenset()
        for p in order:
            after = before | {p}
            contributions[t, index[p]] = game[after] - game[before]
            before = after
    units = contributions.reshape(-1, 2, m).mean(axis=1) if antithetic else contributions
    n = len(units)
    mean = units.mean(axis=0)
    se = units.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(m, np.nan)
    return Estimate(
        {p: float(mean[i]) for p, i in index.items()},
        {p: float(se[i]) for p, i in index.items()},
        n,
    )


# --- Owen values ---------------------------------------------------------------------------------
def _check_groups(groups: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    out = [tuple(g) for g in groups]
    flat = [p for g in out for p in g]
    if not out or any(not g for g in out) or len(set(flat)) != len(flat):
        raise SarevalError("players: nested groups must be non-empty and disjoint")
    return out


def _owen_terms(
    groups: Sequence[Sequence[str]],
) -> list[tuple[str, float, frozenset[str], frozenset[str]]]:
    """(player, weight, with, without) of every marginal difference in the Owen sum."""
    gs = _check_groups(groups)
    g = len(gs)
    terms = []
    for k, group in enumerate(gs):
        others = [frozenset(x) for j, x in enumerate(gs) if j != k]
        b = len(group)
        for r in range(g):
            w_r = factorial(r) * factorial(g - r - 1) / factorial(g)
            for chosen in combinations(others, r):
                q = frozenset().union(*chosen)
                for i in group:
                    rest = [p for p in group if p != i]
                    for t in range(b):
                        w_t = factorial(t) * factorial(b - t - 1) / factorial(b)
                        for sub in combinations(rest, t):
                            base = q | frozenset(sub)
                            terms.append((i, w_r * w_t, base | {i}, base))
    return terms


def owen_coalitions(groups: Sequence[Sequence[str]]) -> list[frozenset[str]]:
    """The coalitions the Owen values of ``groups`` need (unions of whole groups and part of
    one group), the empty and the full coalition first."""
    seen: dict[frozenset[str], None] = {frozenset(): None}
    seen.setdefault(frozenset(p for g in groups for p in g), None)
    for _, _, with_, without in _owen_terms(groups):
        seen.setdefault(without, None)
        seen.setdefault(with_, None)
    return list(seen)


def owen_values(game: Game, groups: Sequence[Sequence[str]]) -> dict[str, float]:
    """Owen values of every player of ``groups`` (module docstring); exact."""
    out = {p: 0.0 for g in groups for p in g}
    for player, weight, with_, without in _owen_terms(groups):
        out[player] += weight * (game[with_] - game[without])
    return out


def quotient_game(game: Game, groups: Sequence[Sequence[str]], names: Sequence[str]) -> dict:
    """The game between groups: V'(R) = V(union of the groups in R), keyed by group name."""
    sets = [frozenset(g) for g in groups]
    out = {}
    for r in range(len(sets) + 1):
        for chosen in combinations(range(len(sets)), r):
            key = frozenset(names[j] for j in chosen)
            out[key] = game[frozenset().union(*(sets[j] for j in chosen))]
    return out
