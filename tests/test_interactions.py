"""Interaction indices of the coalition table (sareval.evaluator.interactions).

References: shapiq's ExactComputer on the same V table (every index, every order, 1e-12); a
3-player game worked by hand; the sum rules (Möbius, k-SII, Shapley-Taylor efficiency), the
Möbius forms of Shapley / Banzhaf values, exact zeros for a dummy player; Owen values against
the game between groups; intervals from the same bootstrap replicates as relevance; and a
real evaluation with a planted redundancy and a planted synergy.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest
import torch

import sareval
from sareval.errors import SarevalError
from sareval.evaluator import interactions as ix
from sareval.evaluator.bootstrap import bootstrap_intervals, bootstrap_values, percentile_interval
from sareval.evaluator.coalitions import all_coalitions, coalition_name
from sareval.evaluator.estimators import owen_values, quotient_game
from sareval.evaluator.shapley import game_array, shapley_array, shapley_values

shapiq = pytest.importorskip("shapiq")

TOL = 1e-12


def _shapiq_computer(V: np.ndarray, players: tuple[str, ...]):
    """shapiq's ExactComputer on the game given by the table V (looked up by member set)."""
    table = {c: float(v) for c, v in zip(all_coalitions(players), V, strict=True)}

    def game(masks: np.ndarray) -> np.ndarray:
        return np.array(
            [table[frozenset(p for p, on in zip(players, row, strict=True) if on)] for row in masks]
        )

    return shapiq.ExactComputer(game, n_players=len(players))


def _max_difference(ours, theirs) -> float:
    keys = set(ours.interaction_lookup) | set(theirs.interaction_lookup)
    return max(abs(ours[k] - theirs[k]) for k in keys)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_every_index_equals_shapiq(m: int) -> None:
    players = tuple(f"p{i}" for i in range(m))
    V = np.random.default_rng(m).uniform(size=2**m)  # metric values in [0, 1]
    computer = _shapiq_computer(V, players)
    for name in ix.INDICES:
        orders = [m] if name in ("moebius", "banzhaf") else range(1, m + 1)
        for order in orders:
            ours = ix.to_shapiq(V, players, name, order)
            theirs = computer(ix.SHAPIQ_INDEX[name], 1 if name == "banzhaf" else order)
            assert ours.index == theirs.index
            assert _max_difference(ours, theirs) <= TOL, (name, order)
            # the arrays behind the record, looked up by the same interactions
            if name in ("sii", "k_sii", "banzhaf_interaction", "shapley_taylor"):
                array = ix.interaction_arrays(V, players, order)[name]
                for j, t in enumerate(ix.interaction_sets(players, order)):
                    if t:  # shapiq gives the empty set the baseline V(empty) in every index
                        key = tuple(i for i, p in enumerate(players) if p in t)
                        assert abs(array[j] - theirs[key]) <= TOL


# A game worked by hand: players a, b, c.
#   V:  none 0, a 4, b 2, c 0, a+b 8, a+c 4, b+c 6, a+b+c 18
#   Möbius m(T) = sum_{L subset T} (-1)^{|T|-|L|} V(L):
#     a 4, b 2, c 0; a+b 8-4-2+0 = 2; a+c 4-4-0+0 = 0; b+c 6-2-0+0 = 4;
#     a+b+c 18 - (8+4+6) + (4+2+0) - 0 = 6                      (sum 18 = V(N) - V(none))
#   Shapley phi_i = sum_{T contains i} m(T)/|T|: a 4+1+0+2 = 7, b 2+1+2+2 = 7, c 0+0+2+2 = 4
#   SII(ij) = m(ij) + m(abc)/2: a+b 5, a+c 3, b+c 7; direct, a+b: 1/2 (V(ab) - V(a) - V(b) +
#     V(none)) + 1/2 (V(abc) - V(ac) - V(bc) + V(c)) = 1/2 * 2 + 1/2 * 8 = 5
#   2-SII: pairs = SII; singles phi_i - 1/2 sum_j SII(ij): a 7-4 = 3, b 7-6 = 1, c 4-5 = -1
#     (sum with V(none) = 0: 3+1-1+5+3+7 = 18 = V(N))
#   Banzhaf BV_a = 1/4 [(4-0) + (8-2) + (4-0) + (18-6)] = 6.5, b 1/4 [2+4+6+14] = 6.5,
#     c 1/4 [0+0+4+10] = 3.5; BII(ij) = 1/2 (delta at none) + 1/2 (delta at the third): 5, 3, 7
#   Shapley-Taylor order 2: singles = m (4, 2, 0); pairs 2/3 [delta_ij(none) + delta_ij(k)/2]:
#     a+b 2/3 (2 + 8/2) = 4; a+c 2/3 (0 + (18-8-6+2)/2) = 2; b+c 2/3 (4 + (18-8-4+4)/2) = 6
#     (= m(ij) + m(abc)/3; sum with V(none) = 0: 4+2+0+4+2+6 = 18 = V(N))
HAND_PLAYERS = ("a", "b", "c")
HAND_V = {"none": 0, "a": 4, "b": 2, "c": 0, "a+b": 8, "a+c": 4, "b+c": 6, "a+b+c": 18}


def test_three_players_by_hand() -> None:
    V = game_array(HAND_V, HAND_PLAYERS)
    record = ix.interaction_record(V, HAND_PLAYERS)
    assert record["order"] == 2
    assert record["moebius"] == {"a": 4, "b": 2, "c": 0, "a+b": 2, "a+c": 0, "b+c": 4, "a+b+c": 6}
    assert record["sii"] == {"a+b": 5, "a+c": 3, "b+c": 7}
    assert record["k_sii"] == pytest.approx(
        {"a": 3, "b": 1, "c": -1, "a+b": 5, "a+c": 3, "b+c": 7}, abs=TOL
    )
    assert record["banzhaf"] == {"a": 6.5, "b": 6.5, "c": 3.5}
    assert record["banzhaf_interaction"] == {"a+b": 5, "a+c": 3, "b+c": 7}
    assert record["shapley_taylor"] == pytest.approx(
        {"a": 4, "b": 2, "c": 0, "a+b": 4, "a+c": 2, "b+c": 6}, abs=TOL
    )
    assert ix.sii_array(V, HAND_PLAYERS, 1)[1:] == pytest.approx([7, 7, 4], abs=TOL)
    assert ix.sii_array(V, HAND_PLAYERS)[-1] == 6  # the top-order SII is the dividend


def test_sum_rules_and_moebius_forms() -> None:
    rng = np.random.default_rng(7)
    players = ("sar", "rgb", "nir", "swir")
    n = len(players)
    V = rng.normal(size=(3, 2**n))  # three games at once
    coalitions = all_coalitions(players)
    m = ix.moebius_array(V, players)
    # V(S) = sum_{T subset S} m(T); sum over non-empty T = V(N) - V(empty)
    for j, s in enumerate(coalitions):
        inside = [i for i, t in enumerate(coalitions) if t <= s]
        np.testing.assert_allclose(m[:, inside].sum(axis=1), V[:, j], atol=TOL)
    np.testing.assert_allclose(m[:, 1:].sum(axis=1), V[:, -1] - V[:, 0], atol=TOL)
    # Shapley phi_i = sum m(T)/|T|, Banzhaf = sum m(T)/2^(|T|-1) over T containing i
    for i, p in enumerate(players):
        has = [(j, len(t)) for j, t in enumerate(coalitions) if p in t]
        phi = sum(m[:, j] / size for j, size in has)
        bv = sum(m[:, j] / 2 ** (size - 1) for j, size in has)
        np.testing.assert_allclose(shapley_array(V, players)[:, i], phi, atol=TOL)
        np.testing.assert_allclose(ix.sii_array(V, players, 1)[:, i + 1], phi, atol=TOL)
        np.testing.assert_allclose(ix.banzhaf_array(V, players)[:, i], bv, atol=TOL)
    # efficiency of k-SII and Shapley-Taylor at every order: sum_{|T| <= k} = V(N)
    for k in range(1, n + 1):
        np.testing.assert_allclose(ix.k_sii_array(V, players, k).sum(axis=1), V[:, -1], atol=TOL)
        st = ix.shapley_taylor_array(V, players, k)
        np.testing.assert_allclose(st.sum(axis=1), V[:, -1], atol=TOL)
        # Shapley-Taylor at order k: m(T) + sum_{S superset T, |S| > k} m(S) / C(|S|, k)
        for j, t in enumerate(ix.interaction_sets(players, k)):
            if len(t) == k:
                above = [(i, len(s)) for i, s in enumerate(coalitions) if s > t]
                want = m[:, coalitions.index(t)] + sum(m[:, i] / comb(s, k) for i, s in above)
                np.testing.assert_allclose(st[:, j], want, atol=TOL)
    # vectorised over leading axes: each row is the game alone (up to summation order)
    for name, array in ix.interaction_arrays(V, players).items():
        for r in range(3):
            alone = ix.interaction_arrays(V[r], players)[name]
            np.testing.assert_allclose(array[r], alone, rtol=0, atol=TOL)


def test_dummy_player_gets_exact_zeros() -> None:
    players = ("sar", "opt", "dem")
    rng = np.random.default_rng(3)
    base = {c: rng.normal() for c in all_coalitions(("sar", "opt"))}
    V = np.array([base[c - {"dem"}] for c in all_coalitions(players)]) / 7.0
    record = ix.interaction_record(V, players, order=3)
    for name in ("moebius", "sii", "k_sii", "banzhaf_interaction", "shapley_taylor"):
        for key, value in record[name].items():
            if "dem" in key.split("+"):
                assert value == 0.0, (name, key)
    assert record["banzhaf"]["dem"] == 0.0


def test_owen_group_totals_equal_the_game_between_groups() -> None:
    players = ("VV", "VH", "rgb", "nir", "swir")
    groups = [("VV", "VH"), ("rgb", "nir", "swir")]
    names = ("sar", "opt")
    V = np.random.default_rng(11).normal(size=2 ** len(players))
    game = dict(zip(all_coalitions(players), V.tolist(), strict=True))
    owen = owen_values(game, groups)
    between = shapley_values(quotient_game(game, groups, names), names)
    by_dividends = ix.group_shapley_array(V, players, groups)
    for g, name in enumerate(names):
        total = sum(owen[p] for p in groups[g])
        assert total == pytest.approx(between[name], abs=TOL)
        assert by_dividends[g] == pytest.approx(between[name], abs=TOL)
    with pytest.raises(SarevalError, match="groups: expected a partition"):
        ix.group_shapley_array(V, players, [("VV",), ("rgb",)])


def test_errors_name_the_argument() -> None:
    V = np.zeros(4)
    with pytest.raises(SarevalError, match=r"order: expected an integer in 1\.\.2"):
        ix.sii_array(V, ("sar", "opt"), 3)
    with pytest.raises(SarevalError, match=r"V has shape \(3,\); expected \(\.\.\., 4\)"):
        ix.moebius_array(np.zeros(3), ("sar", "opt"))
    with pytest.raises(SarevalError, match="index: 'shap' is not one of"):
        ix.to_shapiq(V, ("sar", "opt"), "shap")


def _bootstrap_data(n: int = 300, k: int = 4):
    rng = np.random.default_rng(5)
    y = rng.integers(0, k, n)
    players = ("sar", "opt")
    predictions = {}
    for c in all_coalitions(players):
        keep = rng.random(n) < 0.3 + 0.3 * len(c)
        predictions[c] = np.where(keep, y, rng.integers(0, k, n))
    return y, predictions, players, k


def test_intervals_come_from_the_same_replicates() -> None:
    y, predictions, players, k = _bootstrap_data()
    ci = bootstrap_intervals(y, predictions, players, "single-label", k, n_boot=60, seed=2)
    V = bootstrap_values(y, predictions, players, "single-label", k, n_boot=60, seed=2)["oa"]
    arrays = ix.interaction_arrays(V, players)
    record = ci["oa"]["interactions"]
    sets = ix.interaction_sets(players, 2)
    for name, key in [("sii", "sar+opt"), ("k_sii", "opt"), ("shapley_taylor", "sar+opt")]:
        j = [coalition_name(t, players) for t in sets].index(key)
        assert record[name][key] == percentile_interval(arrays[name][:, j]).tolist()
    assert record["moebius"]["sar+opt"] == percentile_interval(arrays["moebius"][:, 3]).tolist()
    # with two players, the pair's dividend is the study's cooperation (z = "one")
    assert record["moebius"]["sar+opt"] == ci["oa"]["cooperation"]
    assert record["banzhaf"]["sar"] == percentile_interval(arrays["banzhaf"][:, 0]).tolist()


# --- a real evaluation: planted redundancy and planted synergy ----------------------------------
def _planted_card() -> sareval.ModelCard:
    return sareval.ModelCard.from_dict(
        {
            "name": "planted",
            "task": "single-label",
            "class_names": ["same", "different"],
            "output": "logits",
            "input": {"name": "input", "channels": ["VV", "B02", "B08"]},
            "modalities": [
                {"name": "sar", "bands": ["VV"]},
                {"name": "opt", "bands": ["B02", "B08"]},
            ],
            "normalization": "none",
        }
    )


def _planted_model(x: torch.Tensor) -> torch.Tensor:
    """Class 'different' when the SAR and optical signs differ: SAR x (B02 + B08). Without SAR
    or without both optical bands the logit is 0 (a tie: class 0)."""
    s, rgb, nir = x[:, 0].mean((1, 2)), x[:, 1].mean((1, 2)), x[:, 2].mean((1, 2))
    logit = -s * (rgb + nir)
    return torch.stack([-logit, logit], 1)


def test_planted_redundancy_and_synergy(tmp_path) -> None:
    """B02 and B08 carry the same optical signal (redundant); the class is the XOR of the SAR
    and optical signs (synergy: neither alone says anything)."""
    rng = np.random.default_rng(0)
    n = 240
    sar = rng.choice([-1.0, 1.0], n) * rng.uniform(1, 2, n)
    opt = rng.choice([-1.0, 1.0], n) * rng.uniform(1, 2, n)
    y = (np.sign(sar) != np.sign(opt)).astype(np.int64)
    s1 = np.broadcast_to(sar[:, None, None, None], (n, 1, 4, 4)).astype(np.float32)
    s2 = np.broadcast_to(opt[:, None, None, None], (n, 2, 4, 4)).astype(np.float32)
    players = {"sar": ["VV"], "rgb": ["B02"], "nir": ["B08"]}
    r = sareval.evaluate(
        _planted_model, {"s1": s1, "s2": s2, "label": y}, card=_planted_card(),
        bands={"s1": ["VV"], "s2": ["B02", "B08"]}, players=players, replicates=200,
        metrics=["oa"],
    )  # fmt: skip
    sii, ci = r.interactions["oa"]["sii"], r.intervals["oa"]["interactions"]["sii"]
    assert sii["rgb+nir"] < 0 and ci["rgb+nir"][1] < 0  # redundancy
    assert sii["sar+rgb"] > 0 and ci["sar+rgb"][0] > 0  # synergy
    assert sii["sar+nir"] > 0 and ci["sar+nir"][0] > 0
    for name in ("banzhaf_interaction", "k_sii", "shapley_taylor"):
        record, interval = r.interactions["oa"][name], r.intervals["oa"]["interactions"][name]
        assert record["rgb+nir"] < 0 < record["sar+rgb"]
        assert interval["rgb+nir"][1] < 0 < interval["sar+rgb"][0]
    # the point values are the table's; the saved file reads back the same
    V = game_array(r.values["oa"], r.players)
    assert r.interactions["oa"] == ix.interaction_record(V, r.players)
    loaded = sareval.load_result(r.save(tmp_path / "r.json"))
    assert loaded.interactions == r.interactions
    # to_shapiq: shapiq's own computation on the same table
    theirs = _shapiq_computer(V, tuple(r.players))("k-SII", 2)
    assert _max_difference(r.to_shapiq("oa", "k_sii", 2), theirs) <= TOL
    for size in (1, 2):
        for t in combinations(range(3), size):
            name = "+".join(r.players[i] for i in t)
            assert r.interactions["oa"]["k_sii"][name] == pytest.approx(theirs[t], abs=TOL)
