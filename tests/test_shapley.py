"""Shapley values, SHAPE scores and cooperation: hand-computed games, axioms, paper rows."""

from __future__ import annotations

from itertools import permutations
from math import factorial

import numpy as np
import pytest

from sareval.errors import SarevalError
from sareval.evaluator.coalitions import (
    all_coalitions,
    coalition_index,
    coalition_mask,
    coalition_name,
    coalition_names,
    parse_coalition_name,
)
from sareval.evaluator.shapley import (
    cooperation,
    cooperation_array,
    game_array,
    shape_relevance,
    shape_relevance_array,
    shapley_array,
    shapley_values,
)

F = frozenset


def test_coalition_order_and_names() -> None:
    players = ["sar", "opt"]
    assert all_coalitions(players) == [F(), F({"sar"}), F({"opt"}), F({"sar", "opt"})]
    assert coalition_names(players) == ["none", "sar", "opt", "sar+opt"]
    three = ["sar", "rgb", "swir"]
    assert coalition_names(three) == [
        "none", "sar", "rgb", "swir", "sar+rgb", "sar+swir", "rgb+swir", "sar+rgb+swir"
    ]  # fmt: skip
    assert coalition_name(F({"swir", "sar"}), three) == "sar+swir"  # card order, not set order
    for c in all_coalitions(three):
        assert parse_coalition_name(coalition_name(c, three), three) == c
    assert coalition_index(three)[F({"rgb", "swir"})] == 6
    assert coalition_mask(F({"swir"}), three) == (False, False, True)
    assert len(all_coalitions(["a", "b", "c", "d", "e"])) == 32
    with pytest.raises(SarevalError, match="bad coalition name"):
        parse_coalition_name("sar+nir", players)
    with pytest.raises(SarevalError, match="unknown players"):
        coalition_name(F({"nir"}), players)
    with pytest.raises(SarevalError, match="duplicate"):
        all_coalitions(["sar", "sar"])
    with pytest.raises(SarevalError, match="not allowed"):
        all_coalitions(["sar+opt"])


def test_two_player_game_by_hand() -> None:
    """V(none) = 10, V(sar) = 20, V(opt) = 50, V(sar+opt) = 80.

    phi_sar = [(80 - 50) + (20 - 10)] / 2 = (30 + 10) / 2 = 20
    phi_opt = [(80 - 20) + (50 - 10)] / 2 = (60 + 40) / 2 = 50      (sum 70 = 80 - 10)
    C = 80 - 20 - 50 + 10 = 20
    Z = V(M) = 80: 20/80 = 0.25, 50/80 = 0.625, C/Z = 0.25
    """
    players = ["sar", "opt"]
    V = {"none": 10.0, "sar": 20.0, "opt": 50.0, "sar+opt": 80.0}
    assert shapley_values(V, players) == {"sar": 20.0, "opt": 50.0}
    assert cooperation(V, players) == 20.0
    one = shape_relevance(V, players, z="one")
    assert one == {
        "relevance": {"sar": 20.0, "opt": 50.0},
        "cooperation": 20.0,
        "Z": 1.0,
        "efficiency_gap": 0.0,
    }
    full = shape_relevance(V, players, z="full")
    assert full["relevance"] == {"sar": 0.25, "opt": 0.625}
    assert full["cooperation"] == 0.25 and full["Z"] == 80.0
    assert full["efficiency_gap"] == pytest.approx(0.0, abs=1e-15)
    # frozenset keys work as well as names
    assert shapley_values({F(k.split("+")) if k != "none" else F(): v for k, v in V.items()},
                          players) == {"sar": 20.0, "opt": 50.0}  # fmt: skip


def test_three_player_game_by_hand() -> None:
    """V: none 0, a 12, b 6, c 0, ab 24, ac 12, bc 12, abc 36.

    Weights for m = 3: |S| = 0 -> 0!2!/3! = 1/3, |S| = 1 -> 1!1!/3! = 1/6, |S| = 2 -> 1/3.
    phi_a = 1/3 (12 - 0) + 1/6 (24 - 6) + 1/6 (12 - 0) + 1/3 (36 - 12) = 4 + 3 + 2 + 8 = 17
    phi_b = 1/3 (6 - 0) + 1/6 (24 - 12) + 1/6 (12 - 0) + 1/3 (36 - 12) = 2 + 2 + 2 + 8 = 14
    phi_c = 1/3 (0 - 0) + 1/6 (12 - 12) + 1/6 (12 - 6) + 1/3 (36 - 24) = 0 + 0 + 1 + 4 = 5
    sum = 36 = V(abc) - V(none).
    C_M = 36 - 0 - (12 + 6 + 0) = 18.
    C_{a,b}: merged game {AB, c}: phi_AB = 1/2 (24 - 0) + 1/2 (36 - 0) = 30;
      phi_a with b absent (players a, c) = 1/2 (12 - 0) + 1/2 (12 - 0) = 12;
      phi_b with a absent (players b, c) = 1/2 (6 - 0) + 1/2 (12 - 0) = 9;  C = 30 - 12 - 9 = 9.
    """
    players = ["a", "b", "c"]
    V = {"none": 0, "a": 12, "b": 6, "c": 0, "a+b": 24, "a+c": 12, "b+c": 12, "a+b+c": 36}
    phi = shapley_values(V, players)
    assert phi == pytest.approx({"a": 17.0, "b": 14.0, "c": 5.0}, abs=1e-12)
    assert cooperation(V, players) == pytest.approx(18.0, abs=1e-12)
    assert cooperation(V, players, group=["a", "b"]) == pytest.approx(9.0, abs=1e-12)
    assert cooperation(V, players, group=["c"]) == 0.0  # a single player does not cooperate
    with pytest.raises(SarevalError, match="bad cooperation group"):
        cooperation(V, players, group=["a", "x"])


def _naive_shapley(V: np.ndarray, players: list[str]) -> np.ndarray:
    """Average marginal contribution over all m! orderings (the definition, not the formula)."""
    index = coalition_index(players)
    phi = np.zeros(len(players))
    for order in permutations(range(len(players))):
        present: set[str] = set()
        for i in order:
            before = V[index[F(present)]]
            present.add(players[i])
            phi[i] += V[index[F(present)]] - before
    return phi / factorial(len(players))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_against_permutation_definition_and_efficiency(m: int) -> None:
    rng = np.random.default_rng(m)
    players = [f"p{i}" for i in range(m)]
    V = rng.uniform(0, 1, (6, 2**m))
    phi = shapley_array(V, players)
    for r in range(V.shape[0]):
        np.testing.assert_allclose(phi[r], _naive_shapley(V[r], players), atol=1e-12)
    np.testing.assert_allclose(phi.sum(-1), V[:, -1] - V[:, 0], atol=1e-12)
    for z in ("one", "full"):
        scores = shape_relevance_array(V, players, z)
        np.testing.assert_allclose(scores["efficiency_gap"], 0.0, atol=1e-12)
    # C_M = V(M) - V(empty) - sum_i (V({i}) - V(empty)); singletons sit at indices 1..m
    expected_c = V[:, -1] - V[:, 0] - (V[:, 1 : m + 1] - V[:, :1]).sum(-1)
    np.testing.assert_allclose(cooperation_array(V, players), expected_c, atol=1e-12)


def test_symmetry_dummy_linearity() -> None:
    rng = np.random.default_rng(7)
    players = ["a", "b", "c", "d"]
    coalitions = all_coalitions(players)
    # symmetric in a and b: V depends on the coalition through a value per multiset
    base = rng.uniform(size=(3, 2, 2))  # (how many of a, b) x (c present) x (d present)
    V = np.array([base[len(c & {"a", "b"}), int("c" in c), int("d" in c)] for c in coalitions])
    phi = shapley_array(V, players)
    assert phi[0] == pytest.approx(phi[1], abs=1e-12)
    # dummy: d never changes V -> exactly 0 (differences, not a rounding residue)
    W = rng.uniform(size=2**4)
    index = coalition_index(players)
    for c in coalitions:
        if "d" in c:
            W[index[c]] = W[index[c - {"d"}]]
    assert shapley_array(W, players)[3] == 0.0
    assert shape_relevance_array(W, players, "full")["relevance"][3] == 0.0
    # linearity
    U = rng.uniform(size=2**4)
    np.testing.assert_allclose(
        shapley_array(2.5 * U - 0.5 * W, players),
        2.5 * shapley_array(U, players) - 0.5 * shapley_array(W, players),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        cooperation_array(U + W, players),
        cooperation_array(U, players) + cooperation_array(W, players),
        atol=1e-12,
    )


def test_two_modality_closed_forms() -> None:
    """The reference's formulas for s = SAR, o = optical, as an array of random games."""
    rng = np.random.default_rng(8)
    V = rng.uniform(0.1, 1, (50, 4))  # none, sar, opt, sar+opt
    v0, vs, vo, vso = V.T
    for z, Z in (("one", np.ones(50)), ("full", vso)):
        scores = shape_relevance_array(V, ["sar", "opt"], z)
        np.testing.assert_allclose(scores["relevance"][:, 0], (vso - vo + vs - v0) / (2 * Z))
        np.testing.assert_allclose(scores["relevance"][:, 1], (vso - vs + vo - v0) / (2 * Z))
        np.testing.assert_allclose(scores["relevance"].sum(-1), (vso - v0) / Z)
        np.testing.assert_allclose(scores["cooperation"], (vso - vs - vo + v0) / Z)
        np.testing.assert_array_equal(scores["Z"], Z)


def _paper_game(acc: float, s1: float, s2: float, c: float) -> dict[str, float]:
    """V (in %) from a SHAPE table row, assuming the table reports 100 phi/Z and 100 C/Z with
    Z = V(M) = Acc:  V(empty) = Acc (1 - (S1 + S2)/100), V(1) - V(2) = Acc (S1 - S2)/100,
    V(1) + V(2) = V(M) + V(empty) - Acc C/100 (from C = V(M) - V(1) - V(2) + V(empty))."""
    v0 = acc * (1 - (s1 + s2) / 100)
    diff = acc * (s1 - s2) / 100
    total = acc + v0 - acc * c / 100
    return {"none": v0, "m1": (total + diff) / 2, "m2": (total - diff) / 2, "m1+m2": acc}


@pytest.mark.parametrize(
    ("row", "acc", "s1", "s2", "c"),
    [("SNLI Early", 82.47, 21.34, 38.25, 42.52), ("B-T4SA Early", 95.01, 0.52, 64.40, 1.04)],
)
def test_shape_paper_rows(row: str, acc: float, s1: float, s2: float, c: float) -> None:
    """SHAPE paper (Hu, Li, Zhou 2022) table rows from their V values.

    Both data sets have three classes and V(empty) comes out at chance, 33.33 %, in both rows.
    A table row fixes V(empty) and V(1) - V(2); V(1) + V(2) follows from C once its
    normalisation is chosen. Finding: the table reports C / Z with Z = V(M). Read that way,
    modality 1 alone scores chance in both rows (V(1) - V(empty) = 0.00 for B-T4SA, where
    C = 1.04 is exactly 2 S_V = 2 x 0.52, the two-player identity C = V(M) - V(T) = 2 phi_V when
    V(V) = V(empty); and 0.07 for SNLI, whose premise alone carries no label information).
    Read as an unnormalised C in accuracy points, modality 1 alone would score below the
    no-input model: by 0.026 points (B-T4SA) and 3.66 points (SNLI).
    """
    players = ["m1", "m2"]
    V = _paper_game(acc, s1, s2, c)
    assert V["none"] == pytest.approx(100 / 3, abs=0.01), "V(empty) is chance for 3 classes"
    full = shape_relevance(V, players, z="full")
    assert 100 * full["relevance"]["m1"] == pytest.approx(s1, abs=1e-9)
    assert 100 * full["relevance"]["m2"] == pytest.approx(s2, abs=1e-9)
    assert 100 * full["cooperation"] == pytest.approx(c, abs=1e-9)
    assert full["Z"] == acc
    assert 100 * (full["relevance"]["m1"] + full["relevance"]["m2"]) == pytest.approx(
        100 * (acc - V["none"]) / acc
    )
    # Z = 1: the same game in accuracy points
    one = shape_relevance(V, players, z="one")
    assert one["relevance"]["m1"] == pytest.approx(s1 * acc / 100, abs=1e-9)
    assert one["cooperation"] == pytest.approx(c * acc / 100, abs=1e-9)
    # the two readings of C: C/Z puts modality 1 alone at chance, unnormalised C below it
    assert V["m1"] - V["none"] == pytest.approx(0.0, abs=0.1)
    shift = acc * c / 200 - c / 2  # V(1) and V(2) each move by (Acc C/100 - C) / 2
    raw = {**V, "m1": V["m1"] + shift, "m2": V["m2"] + shift}
    assert cooperation(raw, players) == pytest.approx(c)
    assert raw["m1"] - raw["none"] < -0.02
    if row == "B-T4SA Early":
        assert c == pytest.approx(2 * s1, abs=1e-12)
        assert V["m1"] - V["none"] == pytest.approx(0.0, abs=1e-9)


def test_full_normalisation_with_zero_metric_is_nan() -> None:
    scores = shape_relevance({"none": 0.0, "sar": 0.0, "opt": 0.0, "sar+opt": 0.0},
                             ["sar", "opt"], "full")  # fmt: skip
    assert np.isnan(scores["relevance"]["sar"]) and np.isnan(scores["cooperation"])


def test_bad_games_are_refused() -> None:
    with pytest.raises(SarevalError, match="lacks V"):
        game_array({"none": 0.0, "sar": 1.0}, ["sar", "opt"])
    with pytest.raises(SarevalError, match="expected"):
        shapley_array(np.zeros(3), ["sar", "opt"])
    with pytest.raises(SarevalError, match="normalisation"):
        shape_relevance_array(np.zeros(4), ["sar", "opt"], "half")  # type: ignore[arg-type]
