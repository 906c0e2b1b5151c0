"""Sampling estimator and Owen values against exact Shapley values and hand-computed games."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from sareval.evaluator.estimators import (
    owen_coalitions,
    owen_values,
    permutation_coalitions,
    permutation_estimate,
    quotient_game,
    sample_permutations,
)
from sareval.evaluator.shapley import shapley_values


def random_game(players: list[str], seed: int) -> dict[frozenset[str], float]:
    """A game with main effects, pair interactions and noise: not additive."""
    rng = np.random.default_rng(seed)
    main = dict(zip(players, rng.normal(0, 1, len(players)), strict=True))
    pair = {frozenset(p): rng.normal(0, 0.5) for p in combinations(players, 2)}
    game = {}
    for r in range(len(players) + 1):
        for s in combinations(players, r):
            fs = frozenset(s)
            game[fs] = sum(main[p] for p in s) + sum(v for k, v in pair.items() if k <= fs)
            game[fs] += 0.3 * np.sin(len(s) + sum(map(ord, "".join(sorted(s)))))
    return game


def unanimity(t: set[str], players: list[str]) -> dict[frozenset[str], float]:
    return {frozenset(s): float(t <= set(s)) for r in range(len(players) + 1)
            for s in combinations(players, r)}  # fmt: skip


def test_owen_hand_computed_four_players() -> None:
    """Unanimity game on {a, b, c}, groups {a, b} | {c, d}: Owen 1/4, 1/4, 1/2, 0 (each touched
    group gets 1/2, split equally among its members in T); Shapley 1/3, 1/3, 1/3, 0."""
    players = ["a", "b", "c", "d"]
    game = unanimity({"a", "b", "c"}, players)
    owen = owen_values(game, [["a", "b"], ["c", "d"]])
    assert owen == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5, "d": 0.0}, abs=1e-15)
    assert shapley_values(game, players) == pytest.approx({p: v for p, v in zip(
        players, [1 / 3, 1 / 3, 1 / 3, 0.0], strict=True)}, abs=1e-15)  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_owen_sums_to_group_shapley_and_reduces_to_shapley(seed: int) -> None:
    players = ["VV", "VH", "rgb", "re", "nir", "swir"]
    groups = [["VV", "VH"], ["rgb", "re", "nir", "swir"]]
    game = random_game(players, seed)
    owen = owen_values(game, groups)
    group_phi = shapley_values(quotient_game(game, groups, ["sar", "opt"]), ["sar", "opt"])
    assert sum(owen[p] for p in groups[0]) == pytest.approx(group_phi["sar"], abs=1e-12)
    assert sum(owen[p] for p in groups[1]) == pytest.approx(group_phi["opt"], abs=1e-12)
    exact = shapley_values(game, players)
    singletons = owen_values(game, [[p] for p in players])
    one_group = owen_values(game, [players])
    assert singletons == pytest.approx(exact, abs=1e-12) and one_group == pytest.approx(exact)
    needed = owen_coalitions(groups)
    assert len(needed) < 2 ** len(players)  # fewer coalitions than the full game
    assert owen_values({k: game[k] for k in needed}, groups) == pytest.approx(owen)


@pytest.mark.parametrize("m", [6, 7, 8])
def test_sampling_matches_exact_within_its_interval(m: int) -> None:
    players = [f"p{i}" for i in range(m)]
    inside, total = 0, 0
    for seed in range(5):
        game = random_game(players, 100 + seed)
        exact = shapley_values(game, players)
        orderings = sample_permutations(players, 200, seed)
        needed = permutation_coalitions(orderings)
        est = permutation_estimate({k: game[k] for k in needed}, players, orderings)
        assert sum(est.values.values()) == pytest.approx(
            game[frozenset(players)] - game[frozenset()], abs=1e-12
        )  # efficiency holds for every sample
        for p in players:
            lo, hi = est.interval(p, z=3.0)
            inside += lo <= exact[p] <= hi
            total += 1
    assert inside / total >= 0.9


def test_sampling_error_shrinks_with_samples() -> None:
    players = [f"p{i}" for i in range(7)]
    errors = {n: [] for n in (8, 64, 512)}
    for seed in range(6):
        game = random_game(players, seed)
        exact = np.array(list(shapley_values(game, players).values()))
        for n in errors:
            est = permutation_estimate(game, players, sample_permutations(players, n, seed))
            errors[n].append(np.abs(np.array(list(est.values.values())) - exact).mean())
    means = [np.mean(errors[n]) for n in (8, 64, 512)]
    assert means[0] > means[1] > means[2]
    assert means[2] < means[0] / 4  # ~ 1/sqrt(n): 8x the samples, about 1/2.8 the error twice


def test_antithetic_orderings_and_bad_counts() -> None:
    orders = sample_permutations(["a", "b", "c"], 4, 0)
    assert orders[1] == orders[0][::-1] and orders[3] == orders[2][::-1]
    with pytest.raises(Exception, match="even"):
        sample_permutations(["a", "b"], 3, 0)
