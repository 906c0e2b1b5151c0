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

**Intervals** (:meth:`Estimate.interval`, the results' ``interval`` of a sampled game): the
symmetric bootstrap-t interval over the units (Hall 1988, "On symmetric bootstrap confidence
intervals"; Efron & Tibshirani 1993, ch. 12), phi_i +- q * se_i with q the ``level`` quantile of
|t*| = |mean* - mean| / se* over :data:`INTERVAL_REPLICATES` resamples of the units (a fixed
seed: the interval is a function of the sampled values). A normal (1.96) or Student t quantile
assumes symmetric, light-tailed unit means; marginal contributions are discrete and skewed, and
with 8 antithetic pairs (16 orderings) both undercover: measured over 200 seeds of games with
known Shapley values (``benchmarks/sampled_coverage.py``, ``tests/test_sampled_coverage.py``,
5-10 players), normal 0.87-0.91, t (7 df) 0.90-0.95, symmetric bootstrap-t 0.94-0.97 at 16
orderings; all three 0.94-0.96 at 128.

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
from sareval.evaluator.coalitions import all_coalitions, coalition_name
from sareval.evaluator.shapley import shape_relevance_array

Game = Mapping[frozenset[str], float]


#: bootstrap resamples of the units behind a sampled game's intervals
INTERVAL_REPLICATES = 2000


def bootstrap_t_halfwidth(units: np.ndarray, level: float = 0.95) -> np.ndarray:
    """Half-width of the symmetric bootstrap-t interval of the mean of each column of ``units``
    (n, m) (module docstring): q * se with q the ``level`` quantile of |t*| (0 where se = 0;
    inf where fewer than two units, or where the quantile falls on a resample with se* = 0)."""
    units = np.asarray(units, dtype=np.float64)
    n, m = units.shape
    if n < 2:
        return np.full(m, np.inf)
    mean = units.mean(axis=0)
    se = units.std(axis=0, ddof=1) / np.sqrt(n)
    rng = np.random.default_rng([0x5A4D, 0xB007, n])
    draws = rng.integers(0, n, (INTERVAL_REPLICATES, n))
    t = np.empty((INTERVAL_REPLICATES, m))
    for a in range(0, INTERVAL_REPLICATES, 256):  # (256, n, m) at a time
        resampled = units[draws[a : a + 256]]
        se_b = resampled.std(axis=1, ddof=1) / np.sqrt(n)
        dev = np.abs(resampled.mean(axis=1) - mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            t[a : a + 256] = np.where(dev == 0, 0.0, dev / se_b)  # dev > 0, se* = 0: inf
    rank = min(INTERVAL_REPLICATES, int(np.ceil(level * (INTERVAL_REPLICATES + 1)))) - 1
    q = np.sort(t, axis=0)[rank]
    with np.errstate(invalid="ignore"):
        return np.where(se > 0, q * se, 0.0)


@dataclass(frozen=True)
class Estimate:
    """Estimated Shapley values with a standard error per player (0 for exact values);
    ``units``: the per-unit means (units, players) behind them (None for exact values)."""

    values: dict[str, float]
    stderr: dict[str, float]
    n_units: int
    units: np.ndarray | None = None

    def interval(
        self, player: str, level: float = 0.95, *, z: float | None = None
    ) -> tuple[float, float]:
        """The symmetric bootstrap-t interval at ``level`` (module docstring); with ``z``, the
        normal-approximation interval value +- z * stderr instead."""
        v, s = self.values[player], self.stderr[player]
        if z is not None:
            return v - z * s, v + z * s
        if self.units is None:
            return v, v
        half = bootstrap_t_halfwidth(self.units, level)[list(self.values).index(player)]
        return v - float(half), v + float(half)

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """:meth:`interval` of every player (one bootstrap for all)."""
        if self.units is None:
            return {p: (v, v) for p, v in self.values.items()}
        half = bootstrap_t_halfwidth(self.units, level)
        return {p: (v - float(h), v + float(h))
                for (p, v), h in zip(self.values.items(), half, strict=True)}  # fmt: skip


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
        units,
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


# --- the game a run evaluates ------------------------------------------------------------------
METHODS = ("exact", "sampled", "owen")


@dataclass(frozen=True)
class GameSpec:
    """Which coalitions a run evaluates and how relevance follows from their values.

    ``exact``: all 2^M coalitions, exact Shapley values; ``sampled``: the prefixes of
    ``orderings`` (permutation sampling, a standard error per player); ``owen``: players in
    ``groups`` (named ``group_names``), exact Owen values of the players and exact Shapley values
    of the groups (the quotient game). ``coalitions`` lists what to evaluate, the empty one first.
    """

    players: tuple[str, ...]
    method: str = "exact"
    orderings: tuple[tuple[str, ...], ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    group_names: tuple[str, ...] = ()

    @property
    def coalitions(self) -> list[frozenset[str]]:
        if self.method == "exact":
            return list(all_coalitions(self.players))
        if self.method == "sampled":
            return permutation_coalitions(self.orderings)
        return owen_coalitions(self.groups)

    def entry(self, V: Sequence[float] | np.ndarray, z: str) -> dict[str, object]:
        """One metric's results entry from V (aligned with :attr:`coalitions`); Z as SHAPE's."""
        coalitions = self.coalitions
        values = np.asarray(V, dtype=np.float64)
        names = [coalition_name(c, self.players) for c in coalitions]
        base = {"V": dict(zip(names, values.tolist(), strict=True))}
        if self.method == "exact":
            s = shape_relevance_array(values, self.players, z)  # type: ignore[arg-type]
            return {**base, "relevance": dict(zip(self.players, s["relevance"].tolist(),
                                                  strict=True)),
                    "cooperation": float(s["cooperation"]), "Z": float(s["Z"]),
                    "efficiency_gap": float(s["efficiency_gap"])}  # fmt: skip
        game = dict(zip(coalitions, values.tolist(), strict=True))
        full, empty = game[frozenset(self.players)], game[frozenset()]
        zval = 1.0 if z == "one" else full
        div = (lambda x: x / zval) if zval != 0 else (lambda x: float("nan"))
        if self.method == "sampled":
            est = permutation_estimate(game, self.players, self.orderings)
            relevance = {p: div(v) for p, v in est.values.items()}
            interval = {p: sorted([div(lo), div(hi)]) for p, (lo, hi) in est.intervals().items()}
            extra = {"stderr": {p: abs(div(v)) for p, v in est.stderr.items()},
                     "interval": interval, "samples": len(self.orderings),
                     "cooperation": None}  # fmt: skip
        else:
            owen = owen_values(game, self.groups)
            quotient = quotient_game(game, self.groups, self.group_names)
            phi_g = shape_relevance_array(
                np.array([quotient[c] for c in _group_order(self.group_names)]),
                self.group_names, z,  # type: ignore[arg-type]
            )  # fmt: skip
            relevance = {p: div(v) for p, v in owen.items()}
            extra = {"group_relevance": dict(zip(self.group_names, phi_g["relevance"].tolist(),
                                                 strict=True)),
                     "groups": {n: list(g) for n, g in zip(self.group_names, self.groups,
                                                           strict=True)},
                     "cooperation": float(phi_g["cooperation"])}  # fmt: skip
        gap = sum(relevance.values()) - div(full - empty)
        return {**base, "relevance": relevance, **extra, "Z": zval, "efficiency_gap": gap}


def _group_order(names: Sequence[str]) -> list[frozenset[str]]:
    return list(all_coalitions(tuple(names)))


def choose_game(
    players: Sequence[str],
    groups: Sequence[tuple[str, Sequence[str]]] | None,
    *,
    estimator: str,
    samples: int,
    seed: int,
) -> GameSpec:
    """The game of a run: Owen for nested players; else exact or sampled, ``auto`` taking the
    one that evaluates fewer coalitions (2^M vs the distinct prefixes of ``samples`` orderings)."""
    players = tuple(players)
    if groups:
        if estimator == "sampled":
            raise SarevalError(
                "ShapeConfig.estimation.estimator: 'sampled' does not apply to nested players"
            )
        return GameSpec(players, "owen", groups=tuple(tuple(b) for _, b in groups),
                        group_names=tuple(n for n, _ in groups))  # fmt: skip
    if estimator == "exact" or (estimator == "auto" and len(players) <= 3):
        return GameSpec(players)
    orderings = tuple(sample_permutations(players, samples, seed))
    sampled = GameSpec(players, "sampled", orderings=orderings)
    if estimator == "auto" and 2 ** len(players) <= len(sampled.coalitions):
        return GameSpec(players)
    return sampled
