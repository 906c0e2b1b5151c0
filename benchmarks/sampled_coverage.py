"""Coverage of the sampled Shapley estimator's 95 % intervals against exact Shapley values.

Usage: ``python benchmarks/sampled_coverage.py [--seeds 200] [--players 5 6 8 10]
[--orderings 16 128]``. For each number of players, a game with main effects, pair and triple
interactions and a non-polynomial term (exact Shapley values from all 2^M coalitions) is
estimated from ``--seeds`` independent samples of antithetic orderings; the table gives the
fraction of (seed, player) intervals that contain the exact value: the normal quantile
(value +- 1.96 se, the estimator's former interval), Student t with pairs - 1 df (when scipy is
installed) and the symmetric bootstrap-t interval the results report
(:func:`sareval.evaluator.estimators.bootstrap_t_halfwidth`).
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np

from sareval.evaluator.estimators import (
    permutation_coalitions,
    permutation_estimate,
    sample_permutations,
)
from sareval.evaluator.shapley import shapley_values


def interaction_game(players: list[str], seed: int) -> dict[frozenset[str], float]:
    """Main effects, pair and triple interactions and a non-polynomial term: antithetic pairs
    cancel the pair interactions only, so the estimator keeps a variance to cover."""
    rng = np.random.default_rng(seed)
    weights = {frozenset(c): rng.normal(0, 1 / r) for r in (1, 2, 3)
               for c in combinations(players, r)}  # fmt: skip
    game = {}
    for r in range(len(players) + 1):
        for s in combinations(players, r):
            fs = frozenset(s)
            game[fs] = sum(w for k, w in weights.items() if k <= fs)
            game[fs] += 0.3 * np.sin(len(s) + sum(map(ord, "".join(sorted(s)))))
    return game


def coverage(m: int, orderings: int, seeds: int = 200) -> dict[str, float]:
    """Coverage of each interval kind (module docstring) for ``m`` players."""
    players = [f"p{i}" for i in range(m)]
    game = interaction_game(players, m)
    exact = shapley_values(game, players)
    try:
        from scipy import stats

        t_q: float | None = float(stats.t.ppf(0.975, orderings // 2 - 1))
    except ImportError:
        t_q = None
    hits = {"normal": 0, "student_t": 0, "bootstrap_t": 0}
    total = 0
    for seed in range(seeds):
        order = sample_permutations(players, orderings, seed)
        needed = permutation_coalitions(order)
        est = permutation_estimate({k: game[k] for k in needed}, players, order)
        for p, (lo, hi) in est.intervals().items():
            err, se = abs(est.values[p] - exact[p]), est.stderr[p]
            hits["bootstrap_t"] += lo <= exact[p] <= hi
            hits["normal"] += err <= 1.96 * se
            hits["student_t"] += t_q is not None and err <= t_q * se
            total += 1
    out = {k: v / total for k, v in hits.items()}
    if t_q is None:
        out["student_t"] = float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--players", type=int, nargs="+", default=[5, 6, 8, 10])
    parser.add_argument("--orderings", type=int, nargs="+", default=[16, 128])
    args = parser.parse_args()
    print(f"coverage of 95 % intervals over {args.seeds} seeds (nominal 0.95)")
    print("| players | orderings | normal 1.96 | Student t | bootstrap-t |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.orderings:
        for m in args.players:
            c = coverage(m, n, args.seeds)
            print(
                f"| {m} | {n} | {c['normal']:.3f} | {c['student_t']:.3f} | {c['bootstrap_t']:.3f} |"
            )


if __name__ == "__main__":
    main()
