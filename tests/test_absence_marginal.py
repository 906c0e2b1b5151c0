"""Marginal imputation (``absence="marginal"``) with map_* metrics, per-sample values and
segmentation, against naive loops that build each draw's inputs by hand from the documented
donors (:func:`donor_rows`, :func:`read_donors`) and score them with scikit-learn."""

from __future__ import annotations

from itertools import permutations
from math import factorial

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, confusion_matrix

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.absence import MARGINAL_DRAWS, donor_rows, read_donors
from sareval.evaluator.sources import ArrayData

D = MARGINAL_DRAWS
N, SIZE, K = 18, 16, 4
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04"]
NORM = {b: {"mean": -15.0, "std": 4.0} for b in SAR} | {
    b: {"mean": 1000.0, "std": 500.0} for b in OPT
}
COALITIONS = {"none": (), "sar": ("sar",), "opt": ("opt",), "sar+opt": ("sar", "opt")}
SEED = 3


def make_card(task: str, **kwargs: object) -> ModelCard:
    names = [f"c{i}" for i in range(K)]
    return ModelCard.custom(
        {"sar": SAR, "opt": OPT}, task=task, class_names=names, input_size=SIZE,  # type: ignore[arg-type]
        normalization=NORM, absence=["fill", "marginal"], **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def make_inputs(rng: np.random.Generator, signal: np.ndarray) -> dict[str, np.ndarray]:
    """s1 / s2 arrays whose channels carry ``signal`` (N, ...) broadcast over the image."""
    s1 = rng.normal(-15, 4, (N, 2, SIZE, SIZE)).astype(np.float32)
    s2 = rng.integers(0, 2000, (N, 13, SIZE, SIZE)).astype(np.uint16)
    s1[:, 0] += 3.0 * signal
    s2[:, 2] += (600 * signal).astype(np.uint16)
    return {"s1": s1, "s2": s2}


def normalised(arrays: dict[str, np.ndarray]) -> torch.Tensor:
    """The card's channels (VV, VH, B02, B03, B04) normalised by hand."""
    x = np.concatenate([arrays["s1"], arrays["s2"][:, [1, 2, 3]].astype(np.float32)], 1)
    means = np.array([NORM[b]["mean"] for b in SAR + OPT], np.float32)[None, :, None, None]
    stds = np.array([NORM[b]["std"] for b in SAR + OPT], np.float32)[None, :, None, None]
    return torch.from_numpy(((x - means) / stds).astype(np.float32))


def draw_outputs(net: torch.nn.Module, arrays: dict[str, np.ndarray], labels: np.ndarray,
                 c: ModelCard) -> dict[str, np.ndarray]:  # fmt: skip
    """Coalition name -> outputs (D, N, ...) of each donor draw, the inputs built by hand."""
    source = ArrayData({"s1": arrays["s1"], "s2": arrays["s2"]}, labels)
    pool_raw, positions = read_donors(source, source.labels_for(c), ["s1", "s2"], seed=SEED)
    x, pool = normalised(arrays), normalised(pool_raw)
    rows = donor_rows(np.arange(N), len(positions), D, SEED)  # (D, N)
    out = {}
    with torch.no_grad():
        for name, present in COALITIONS.items():
            on = torch.zeros(5, dtype=torch.bool)
            on[:2] = "sar" in present
            on[2:] = "opt" in present
            per_draw = []
            for d in range(D):
                xin = torch.where(on[None, :, None, None], x, pool[torch.from_numpy(rows[d])])
                per_draw.append(net(xin).numpy().astype(np.float64))
            out[name] = np.stack(per_draw)
    return out


def classifier() -> torch.nn.Module:
    torch.manual_seed(5)
    return torch.nn.Sequential(
        torch.nn.Conv2d(5, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, K),
    ).eval()  # fmt: skip


def shapley_two(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The two players' Shapley values, averaged over both orderings by hand."""
    index = {(): "none", ("sar",): "sar", ("opt",): "opt", ("opt", "sar"): "sar+opt"}
    phi = {"sar": np.zeros_like(v["none"]), "opt": np.zeros_like(v["none"])}
    for order in permutations(("sar", "opt")):
        before: tuple[str, ...] = ()
        for p in order:
            after = tuple(sorted((*before, p)))
            phi[p] = phi[p] + v[index[after]] - v[index[before]]
            before = after
    return {p: f / factorial(2) for p, f in phi.items()}


# --- 1. map_* metrics ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi_label() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    y = (rng.random((N, K)) < 0.45).astype(np.uint8)
    y[:, 3] = 0  # a class without positives: skipped by map_macro's default policy
    y[0, 0] = 1
    return {**make_inputs(rng, y[:, 1, None, None].astype(np.float32)), "y": y}


def test_map_metrics_are_average_precision_over_every_draw(multi_label) -> None:
    c = make_card("multi-label")
    net = classifier()
    cover = np.linspace(0.0, 1.0, N)
    source = ArrayData({"s1": multi_label["s1"], "s2": multi_label["s2"]}, multi_label["y"],
                       cloud_cover=cover)  # fmt: skip
    r = sareval.evaluate(net, source, card=c, batch_size=5, absence="marginal", seed=SEED,
                         replicates=30, cloud_cover_bins=[0.0, 0.5, 1.0])  # fmt: skip
    low = np.tile(cover < 0.5, D)  # the rows of the first bin's samples
    outputs = draw_outputs(net, multi_label, multi_label["y"], c)
    y = np.tile(multi_label["y"], (D, 1))  # every draw a sample
    present = y.sum(0) > 0
    assert not present.all()
    sample = np.tile(np.arange(N), D)
    for name in COALITIONS:
        scores = outputs[name].reshape(D * N, K)
        macro = average_precision_score(y[:, present], scores[:, present], average="macro")
        micro = average_precision_score(y, scores, average="micro")
        assert r.values["map_macro"][name] == pytest.approx(macro, abs=1e-12), name
        assert r.values["map_micro"][name] == pytest.approx(micro, abs=1e-12), name
        keep = y[low].sum(0) > 0
        in_bin = average_precision_score(y[low][:, keep], scores[low][:, keep], average="macro")
        got = r.by_cloud_cover[0]["metrics"]["map_macro"]["V"][name]
        assert got == pytest.approx(in_bin, abs=1e-12), name
    # intervals resample SAMPLES, each with its D draws (rows d N + i belong to sample i)
    reps = []
    scores = outputs["sar"].reshape(D * N, K)
    for g in np.random.default_rng(SEED).spawn(30):
        w = np.bincount(g.integers(0, N, size=N), minlength=N)[sample]
        keep = (w[:, None] * y).sum(0) > 0
        reps.append(average_precision_score(y[:, keep], scores[:, keep], average="macro",
                                            sample_weight=w))  # fmt: skip
    want = np.percentile(reps, [2.5, 97.5])
    assert r.intervals["map_macro"]["V"]["sar"] == pytest.approx(want.tolist(), abs=1e-12)
    assert r.doc["n_samples"] == N


def test_map_metrics_of_marginal_are_refused_with_shards(multi_label) -> None:
    source = ArrayData({"s1": multi_label["s1"], "s2": multi_label["s2"]}, multi_label["y"])
    with pytest.raises(SarevalError, match=r"^ShapeConfig.execution.shard: map_\*") as e:
        sareval.evaluate(classifier(), source, card=make_card("multi-label"), absence="marginal",
                         shard=(0, 2))  # fmt: skip
    assert "\n" not in str(e.value)


# --- 2. per-sample values ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single_label() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    y = rng.integers(0, K, N)
    return {**make_inputs(rng, (y == 1)[:, None, None].astype(np.float32)), "y": y}


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)  # type: ignore[no-any-return]


def test_per_sample_values_are_the_mean_over_the_draws(single_label) -> None:
    c = make_card("single-label")
    net = classifier()
    source = ArrayData({"s1": single_label["s1"], "s2": single_label["s2"]}, single_label["y"])
    r = sareval.evaluate(net, source, card=c, batch_size=5, absence="marginal", seed=SEED,
                         per_sample=True)  # fmt: skip
    outputs = draw_outputs(net, single_label, single_label["y"], c)
    y = single_label["y"]
    probs = {name: softmax(o) for name, o in outputs.items()}  # (D, N, K)
    full = outputs["sar+opt"].argmax(-1)  # (D, N): the same input in every draw
    assert (full == full[0]).all()
    pred = full[0]
    games = {
        "prob_true": {n: p[:, np.arange(N), y] for n, p in probs.items()},
        "prob_pred": {n: p[:, np.arange(N), pred] for n, p in probs.items()},
        "accuracy": {n: (o.argmax(-1) == y).astype(float) for n, o in outputs.items()},
    }
    section = r.doc["per_sample"]
    for quantity, v in games.items():
        phi = shapley_two(v)  # player -> (D, N): each draw's per-sample values
        per_sample = {p: f.mean(0) for p, f in phi.items()}  # the mean over the draws
        got = section[quantity]
        assert got["n_samples"] == N
        for p, values in per_sample.items():
            assert got["mean"][p] == pytest.approx(values.mean(), abs=1e-6), (quantity, p)
            for q, at in got["quantiles"].items():
                want = np.quantile(values, float(q))
                assert at[p] == pytest.approx(want, abs=1e-6), (quantity, p, q)
            for k, name in enumerate(c.class_names):
                entry = got["by_class"][name]
                assert entry["n_samples"] == (y == k).sum()
                if entry["n_samples"]:
                    assert entry["mean"][p] == pytest.approx(values[y == k].mean(), abs=1e-6)
    for p in ("sar", "opt"):  # the mean per-sample correctness value = SHAPE's OA relevance
        assert section["accuracy"]["mean"][p] == pytest.approx(r.relevance["oa"][p], abs=1e-12)
    det = r.doc["detection"]
    assert det["n"] == N and det["n_wrong"] == int((pred != y).sum())


def test_the_collector_averages_each_draws_values_and_detectors() -> None:
    from sareval.evaluator.in_pass import PerSampleCollector

    rng = np.random.default_rng(4)
    b = 6
    names = ["none", "sar", "opt", "sar+opt"]  # coalition order of the outputs
    outputs = rng.normal(size=(4, D * b, K))
    outputs[3] = np.tile(outputs[3, :b], (D, 1))  # the full coalition: no donor part
    y = rng.integers(0, K, b)
    collector = PerSampleCollector(
        ("sar", "opt"), kind="logits", task="single-label", threshold=0.5,
        class_names=[f"c{i}" for i in range(K)], bin_edges=None, n_boot=10, seed=0,
    )  # fmt: skip
    collector.add(outputs, y, np.full(b, np.nan), draws=D)
    state = collector.state()
    per_draw = {n: outputs[j].reshape(D, b, K) for j, n in enumerate(names)}
    prob = {n: softmax(o)[:, np.arange(b), y] for n, o in per_draw.items()}
    phi = shapley_two(prob)
    want = np.stack([phi["sar"].mean(0), phi["opt"].mean(0)], 1)
    np.testing.assert_allclose(state.values["prob_true"], want, rtol=0, atol=1e-12)
    full = per_draw["sar+opt"].argmax(-1)
    assert np.array_equal(state.correct, full[0] == y)
    differs = [(per_draw[n].argmax(-1) != full).astype(float) for n in ("sar", "opt")]
    np.testing.assert_allclose(state.detectors["disagreement"], np.mean(differs, 0).mean(0),
                               rtol=0, atol=1e-12)  # fmt: skip
    msp = 1 - softmax(per_draw["sar+opt"][0]).max(-1)
    np.testing.assert_allclose(state.detectors["msp"], msp, rtol=0, atol=1e-12)
    assert state.n == b


# --- 3. segmentation -----------------------------------------------------------------------------
class Segmenter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(5, 8, 3, padding=1, stride=2), torch.nn.ReLU(),
            torch.nn.Conv2d(8, K, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def segmentation() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    y = rng.integers(0, K, (N, SIZE, SIZE)).astype(np.uint8)
    y[rng.random((N, SIZE, SIZE)) < 0.1] = 255  # ignored pixels
    mask = (rng.random((N, SIZE, SIZE)) < 0.4).astype(np.uint8)
    mask[0] = 255
    return {**make_inputs(rng, (y == 1).astype(np.float32)), "y": y, "mask": mask}


def test_segmentation_sums_pixel_confusion_over_every_draw(segmentation) -> None:
    c = make_card("segmentation", ignore_index=255)
    net = Segmenter().eval()
    cover = np.linspace(0.0, 1.0, N)
    cover[2] = np.nan  # an image in the unknown bin
    data = ArrayData({"s1": segmentation["s1"], "s2": segmentation["s2"]}, segmentation["y"],
                     cloud_mask=segmentation["mask"], cloud_cover=cover)  # fmt: skip
    n_boot = 30
    r = sareval.evaluate(net, data, card=c, batch_size=4, absence="marginal", seed=SEED,
                         replicates=n_boot, cloud_cover_bins=[0.0, 0.5, 1.0])  # fmt: skip
    low = cover < 0.5  # the first bin [0, 0.5)
    outputs = draw_outputs(net, segmentation, segmentation["y"], c)  # (D, N, K, h, w)
    s = SIZE // outputs["none"].shape[-1]
    y = segmentation["y"][:, s // 2 :: s, s // 2 :: s]  # nearest-labels matching
    mask = segmentation["mask"][:, s // 2 :: s, s // 2 :: s]
    valid = y != 255
    per_image = {}
    for name in COALITIONS:
        pred = outputs[name].argmax(2)  # (D, N, h, w)
        per_image[name] = np.stack([
            sum(confusion_matrix(y[i][valid[i]], pred[d, i][valid[i]], labels=range(K))
                for d in range(D))
            for i in range(N)
        ])  # fmt: skip
        assert r.counts[name]["confusion"] == per_image[name].sum(0).tolist(), name
        cloudy = (mask == 1) & valid
        want = sum(confusion_matrix(y[cloudy], pred[d][cloudy], labels=range(K)) for d in range(D))
        parts = {e["label"]: e for e in r.by_cloud_pixels}
        assert parts["cloudy"]["counts"][name]["confusion"] == want.tolist(), name
        bins = r.by_cloud_cover
        assert bins[0]["counts"][name]["confusion"] == per_image[name][low].sum(0).tolist()
        assert bins[-1]["counts"][name]["confusion"] == per_image[name][2].tolist()
    assert r.doc["n_samples"] == N
    assert r.doc["n_pixels"] == D * int(valid.sum())
    assert r.doc["marginal_draws"]["draws"] == D
    # intervals resample IMAGES, each with its D draws (its matrices summed over them)
    values = []
    for g in np.random.default_rng(SEED).spawn(n_boot):
        w = np.bincount(g.integers(0, N, size=N), minlength=N)
        cm = (per_image["sar"] * w[:, None, None]).sum(0)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        values.append((tp[union > 0] / union[union > 0]).mean())
    want_ci = np.percentile(values, [2.5, 97.5])
    assert r.intervals["miou"]["V"]["sar"] == pytest.approx(want_ci.tolist(), abs=1e-12)


def test_segmentation_maps_are_refused_with_marginal(segmentation, tmp_path) -> None:
    c = make_card("segmentation", ignore_index=255)
    data = ArrayData({"s1": segmentation["s1"], "s2": segmentation["s2"]}, segmentation["y"])
    with pytest.raises(SarevalError, match=r"^ShapeConfig.reporting.per_sample: ") as e:
        sareval.evaluate(Segmenter().eval(), data, card=c, absence="marginal", per_sample=True)
    assert "\n" not in str(e.value)
    with pytest.raises(SarevalError, match=r"^save_predictions: ") as e:
        sareval.evaluate(Segmenter().eval(), data, card=c, absence="marginal",
                         save_predictions=tmp_path / "maps.h5")  # fmt: skip
    assert "\n" not in str(e.value)
    assert not (tmp_path / "maps.h5").exists()
