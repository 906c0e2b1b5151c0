"""Marginal imputation's predictions files (D donor-draw rows per sample) and comparisons paired
by SAMPLE: the writer's row order against the documented donors, compare_predictions against a
hand-written paired cluster bootstrap, and compare_absence with marginal as the reference."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

import sareval
from sareval.card import ModelCard
from sareval.errors import InputFileError
from sareval.evaluator.absence import MARGINAL_DRAWS, donor_rows, read_donors
from sareval.evaluator.predictions import PredictionsWriter, read_predictions
from sareval.evaluator.sources import ArrayData
from sareval.report.compare import compare_predictions

N, SIZE, K, D = 24, 16, 3, MARGINAL_DRAWS
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04"]
NORM = {b: {"mean": -15.0, "std": 4.0} for b in SAR} | {
    b: {"mean": 1000.0, "std": 500.0} for b in OPT
}
NAMES = ["none", "sar", "opt", "sar+opt"]
PRESENT = {"none": (), "sar": ("sar",), "opt": ("opt",), "sar+opt": ("sar", "opt")}
ATTRS = {"players": ["sar", "opt"], "class_names": ["a", "b", "c"], "subset": "test",
         "baseline": "input-zero", "empty": "baseline", "store_content_digest": "x"}  # fmt: skip


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, K, N)
    s1 = rng.normal(-15, 4, (N, 2, SIZE, SIZE)).astype(np.float32)
    s1 += 3.0 * (y == 1)[:, None, None, None]
    s2 = rng.integers(0, 2000, (N, 13, SIZE, SIZE)).astype(np.uint16)
    s2[:, 2] += (800 * (y == 2)).astype(np.uint16)[:, None, None]
    return {"s1": s1, "s2": s2, "y": y}


def card() -> ModelCard:
    return ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task="single-label", class_names=["a", "b", "c"],
        input_size=SIZE, normalization=NORM, absence=["fill", "marginal"],
    )  # fmt: skip


def network() -> torch.nn.Module:
    torch.manual_seed(2)
    return torch.nn.Sequential(
        torch.nn.Conv2d(5, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, K),
    ).eval()  # fmt: skip


def source(data: dict[str, np.ndarray]) -> ArrayData:
    return ArrayData({"s1": data["s1"], "s2": data["s2"]}, data["y"])


def normalised(data: dict[str, np.ndarray]) -> torch.Tensor:
    x = np.concatenate([data["s1"], data["s2"][:, [1, 2, 3]].astype(np.float32)], 1)
    means = np.array([NORM[b]["mean"] for b in SAR + OPT], np.float32)[None, :, None, None]
    stds = np.array([NORM[b]["std"] for b in SAR + OPT], np.float32)[None, :, None, None]
    return torch.from_numpy(((x - means) / stds).astype(np.float32))


@pytest.mark.parametrize("empty", ["baseline", "majority"])
def test_marginal_predictions_file_holds_every_draw_in_the_documented_rows(
    data: dict[str, np.ndarray], tmp_path: Path, empty: str
) -> None:
    net, c, seed = network(), card(), 4
    path = tmp_path / "marginal.h5"
    r = sareval.evaluate(
        net, source(data), card=c, batch_size=5, absence="marginal", seed=seed, replicates=0,
        save_predictions=path, empty_coalition=empty,
    )  # fmt: skip
    run = read_predictions(path)
    assert run.draws == D and run.attrs["draws"] == D and len(run.ids) == N
    np.testing.assert_array_equal(run.labels, data["y"])
    np.testing.assert_array_equal(run.clusters, np.tile(np.arange(N), D))
    # row d N + i = draw d of sample i: the naive donor loop (batches of 5 do not divide N)
    pool_raw, _ = read_donors(source(data), source(data).labels_for(c), ["s1", "s2"], seed=seed)
    x, pool = normalised(data), normalised({**pool_raw, "y": data["y"]})
    rows = donor_rows(np.arange(N), len(pool), D, seed)  # (D, N)
    with h5py.File(path) as f:
        outputs = f["outputs"][()]
    assert outputs.shape == (4, D * N, K)
    with torch.no_grad():
        for j, name in enumerate(NAMES):
            if name == "none" and empty == "majority":
                assert np.isnan(outputs[0]).all()  # the majority-class predictor: no output
                assert (run.decisions["none"] == np.bincount(data["y"]).argmax()).all()
                continue
            on = torch.zeros(5, dtype=torch.bool)
            on[:2], on[2:] = "sar" in PRESENT[name], "opt" in PRESENT[name]
            want = torch.cat([
                net(torch.where(on[None, :, None, None], x, pool[torch.from_numpy(rows[d])]))
                for d in range(D)
            ]).numpy()  # fmt: skip
            np.testing.assert_allclose(outputs[j], want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(run.decisions[name], want.argmax(1))
            counts = confusion_matrix(run.row_labels, run.decisions[name], labels=range(K))
            assert r.counts[name]["confusion"] == counts.tolist(), name


def test_a_file_without_draws_keeps_its_layout(tmp_path: Path) -> None:
    w = PredictionsWriter(tmp_path / "p.h5", n=3, first_position=0, coalitions=NAMES,
                          n_classes=K, task="single-label", attrs=ATTRS)  # fmt: skip
    w.write(slice(0, 3), np.arange(3), ["a", "b", "c"], np.zeros(3, np.int64),
            np.zeros((4, 3, K), np.float32), np.zeros((4, 3), np.int64))  # fmt: skip
    w.finish()
    with h5py.File(tmp_path / "p.h5") as f:
        assert "draws" not in f.attrs and f["decisions"].shape == (4, 3)
    run = read_predictions(tmp_path / "p.h5")
    assert run.draws == 1 and run.clusters is None


@pytest.mark.parametrize("draws", [0, 2.5, 3])
def test_reader_refuses_a_draws_attribute_that_does_not_fit(tmp_path: Path, draws: float) -> None:
    path = tmp_path / "p.h5"
    write_run(path, np.zeros(4, np.int64), np.zeros((4, 2, 4), np.int64), [4])  # 2 draws
    with h5py.File(path, "r+") as f:
        f.attrs["draws"] = draws
    what = "/outputs has shape" if draws == 3 else "attribute draws"
    with pytest.raises(InputFileError, match=what):
        read_predictions(path)


def write_run(path: Path, labels: np.ndarray, dec: np.ndarray, cuts: list[int]) -> None:
    """A predictions file of decisions ``dec`` (J, D, N) (draw d of sample i), written in
    batches ending at ``cuts``, each batch in the evaluator's row order d B + b."""
    j, draws, n = dec.shape
    w = PredictionsWriter(path, n=n, first_position=100, coalitions=NAMES, n_classes=K,
                          task="single-label", attrs=ATTRS, draws=draws)  # fmt: skip
    for a, b in zip([0, *cuts[:-1]], cuts, strict=True):
        batch = dec[:, :, a:b].reshape(j, draws * (b - a))
        outputs = np.eye(K, dtype=np.float32)[batch]  # one-hot: argmax gives the decision
        w.write(slice(100 + a, 100 + b), np.arange(a, b), [f"s{i}" for i in range(a, b)],
                labels[a:b], outputs, batch)  # fmt: skip
    w.finish()


def naive_game(labels: np.ndarray, dec: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """V (oa, aa) per coalition with sample weights w (N,), every draw row of a sample weighing
    as its sample: OA = sum w [right] / sum w over rows; AA = mean over classes of the weighted
    recall."""
    right = dec == labels  # (J, D, N)
    wr = np.broadcast_to(w, right.shape)
    oa = (wr * right).sum((1, 2)) / wr.sum((1, 2))
    recalls = [(wr * right)[:, :, labels == k].sum((1, 2)) / wr[:, :, labels == k].sum((1, 2))
               for k in range(K)]  # fmt: skip
    return {"oa": oa, "aa": np.mean(recalls, axis=0)}


def quantities(v: np.ndarray) -> np.ndarray:
    """(V(none), V(sar), V(opt), V(all)) -> relevance(sar), relevance(opt), cooperation (Z=1)."""
    none, sar, opt, full = v
    return np.array([0.5 * (sar - none + full - opt), 0.5 * (opt - none + full - sar),
                     full - sar - opt + none])  # fmt: skip


def test_compare_predictions_pairs_samples_with_all_their_draws(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, draws, reps, seed = 40, 5, 300, 9
    labels = rng.integers(0, K, n)

    def noisy(p: float, d: int) -> np.ndarray:  # (J, d, n): right with probability >= p
        return np.where(rng.random((4, d, n)) < p, labels, rng.integers(0, K, (4, d, n)))

    dec_a = noisy(0.6, 1)  # one row per sample (fill, mask, omit)
    dec_b = noisy(0.7, draws)  # donor draws
    write_run(tmp_path / "a.h5", labels, dec_a, [7, 8, 30, n])
    write_run(tmp_path / "b.h5", labels, dec_b, [13, n])
    got = compare_predictions([tmp_path / "a.h5"], [tmp_path / "b.h5"], metrics=["oa", "aa"],
                              replicates=reps, seed=seed)  # fmt: skip
    # by hand: replicate r draws n sample indices; both files weigh each sample by its count
    ones = np.ones(n)
    point = {m: quantities(naive_game(labels, dec_b, ones)[m])
             - quantities(naive_game(labels, dec_a, ones)[m]) for m in ("oa", "aa")}  # fmt: skip
    boot: dict[str, list[np.ndarray]] = {"oa": [], "aa": []}
    for g in np.random.default_rng(seed).spawn(reps):
        w = np.bincount(g.integers(0, n, size=n), minlength=n).astype(np.float64)
        va, vb = naive_game(labels, dec_a, w), naive_game(labels, dec_b, w)
        for m in boot:
            boot[m].append(quantities(vb[m]) - quantities(va[m]))
    for m in ("oa", "aa"):
        d = np.array(boot[m])  # (R, 3)
        lo, hi = np.percentile(d, [2.5, 97.5], axis=0)
        entry = got.differences[m]
        cells = [entry["relevance"]["sar"], entry["relevance"]["opt"], entry["cooperation"]]
        for q, cell in enumerate(cells):
            assert cell.estimate == pytest.approx(point[m][q], abs=1e-12)
            assert [cell.lo, cell.hi] == pytest.approx([lo[q], hi[q]], abs=1e-12)
            other = (d[:, q] <= 0) if point[m][q] > 0 else (d[:, q] >= 0)
            p = 1.0 if point[m][q] == 0 else min(1.0, 2 * (other.sum() + 1) / (reps + 1))
            assert cell.p_value == pytest.approx(p, abs=1e-12)
            assert cell.n_boot == reps
    # and with the files swapped, the same replicates with the sign flipped
    back = compare_predictions([tmp_path / "b.h5"], [tmp_path / "a.h5"], metrics=["oa"],
                               replicates=reps, seed=seed)  # fmt: skip
    d_ab = got.relevance("oa", "sar")
    d_ba = back.relevance("oa", "sar")
    assert d_ba.estimate == pytest.approx(-d_ab.estimate, abs=1e-12)
    assert [d_ba.lo, d_ba.hi] == pytest.approx([-d_ab.hi, -d_ab.lo], abs=1e-12)


def test_compare_absence_pairs_marginal_as_the_reference(
    data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    cmp = sareval.compare_absence(
        network(), source(data), ["marginal", "fill"], card=card(), metrics=["oa"],
        replicates=50, workdir=tmp_path, batch_size=5,
    )  # fmt: skip
    marginal, fill = cmp.results["marginal"], cmp.results["fill"]
    assert set(marginal.intervals["oa"]["relevance"]) == {"sar", "opt"}  # its own intervals
    diff = cmp.differences["fill"]
    for p in ("sar", "opt"):
        d = diff.relevance("oa", p)
        want = fill.relevance["oa"][p] - marginal.relevance["oa"][p]
        assert d.estimate == pytest.approx(want, abs=1e-12)
        assert d.lo <= d.estimate <= d.hi and d.n_boot == 50
    assert read_predictions(tmp_path / "predictions-marginal.h5").draws == D
    table = cmp.table("oa")
    assert "no pairing" not in table and "[" in table.splitlines()[-1]


def test_several_runs_with_draws_use_the_two_level_bootstrap(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    n, reps, seed = 30, 200, 3
    labels = rng.integers(0, K, n)

    def noisy(p: float, d: int) -> np.ndarray:
        return np.where(rng.random((4, d, n)) < p, labels, rng.integers(0, K, (4, d, n)))

    runs_a = [noisy(0.6, 1), noisy(0.5, 1)]
    runs_b = [noisy(0.7, 4), noisy(0.8, 4), noisy(0.6, 4)]
    paths = {}
    for side, runs in (("a", runs_a), ("b", runs_b)):
        paths[side] = [tmp_path / f"{side}{i}.h5" for i in range(len(runs))]
        for path, dec in zip(paths[side], runs, strict=True):
            write_run(path, labels, dec, [11, n])
    got = compare_predictions(paths["a"], paths["b"], metrics=["oa"], replicates=reps,
                              seed=seed)  # fmt: skip
    # by hand: runs drawn per setup (default_rng([seed, 1]): A's (R, n_A), then B's), one
    # draw of n samples per replicate shared by every run; a setup = mean over its drawn runs
    run_rng = np.random.default_rng([seed, 1])
    pick_a = run_rng.integers(0, len(runs_a), (reps, len(runs_a)))
    pick_b = run_rng.integers(0, len(runs_b), (reps, len(runs_b)))
    ones = np.ones(n)

    def rel(dec: np.ndarray, w: np.ndarray) -> float:
        return float(quantities(naive_game(labels, dec, w)["oa"])[1])  # relevance of opt

    estimate = np.mean([rel(d, ones) for d in runs_b]) - np.mean([rel(d, ones) for d in runs_a])
    d = []
    for r, g in enumerate(np.random.default_rng(seed).spawn(reps)):
        w = np.bincount(g.integers(0, n, size=n), minlength=n).astype(np.float64)
        va = np.mean([rel(runs_a[i], w) for i in pick_a[r]])
        vb = np.mean([rel(runs_b[i], w) for i in pick_b[r]])
        d.append(vb - va)
    cell = got.relevance("oa", "opt")
    assert got.runs_a == 2 and got.runs_b == 3
    assert cell.estimate == pytest.approx(estimate, abs=1e-12)
    assert [cell.lo, cell.hi] == pytest.approx(np.percentile(d, [2.5, 97.5]).tolist(), abs=1e-12)
