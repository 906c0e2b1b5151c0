"""Segmentation SHAPE games against a naive loop: mask by hand, forward, scikit-learn's pixel
confusion matrix and metrics; intervals against a hand-written image bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
)

import sareval
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.shapley import shape_relevance_array

K, N, SIZE = 3, 7, 16
PLAYERS = {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]}
S2_COLUMNS = [1, 2, 3]  # B02, B03, B04 in the 13-band S2 order
NORM = {
    "VV": {"mean": -12.0, "std": 3.0},
    "VH": {"mean": -18.0, "std": 3.0},
    "B02": {"mean": 1000.0, "std": 500.0},
    "B03": {"mean": 1000.0, "std": 500.0},
    "B04": {"mean": 1000.0, "std": 500.0},
}
COALITIONS = {"none": (), "sar": ("sar",), "opt": ("opt",), "sar+opt": ("sar", "opt")}


class StridedNet(torch.nn.Module):
    """A small fully convolutional net whose output is the input size / ``stride``."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        torch.manual_seed(stride)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(5, 8, 3, padding=1, stride=stride),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, K, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, K, (N, SIZE, SIZE)).astype(np.uint8)
    y[rng.random((N, SIZE, SIZE)) < 0.1] = 255  # ignored pixels
    s1 = rng.normal(-15, 3, (N, 2, SIZE, SIZE)).astype(np.float32)
    s2 = rng.integers(0, 3000, (N, 13, SIZE, SIZE)).astype(np.uint16)
    s1[:, 0] += 4.0 * (y == 1)  # SAR says class 1, optical class 2: learnable signal
    s2[:, 2] += (1500 * (y == 2)).astype(np.uint16)
    mask = (rng.random((N, SIZE, SIZE)) < 0.4).astype(np.uint8)
    mask[0] = 255  # one image with an unknown mask
    return {"s1": s1, "s2": s2, "y": y, "mask": mask}


def card_for(matching: str = "nearest-labels") -> ModelCard:
    return ModelCard.custom(
        PLAYERS, task="segmentation", class_names=["a", "b", "c"], input_size=SIZE,
        normalization=NORM, label_matching=matching,
    )  # fmt: skip


def naive_outputs(
    net: torch.nn.Module, arrays: dict[str, np.ndarray], present: tuple
) -> np.ndarray:
    """The network's logits with the absent modalities' channels 0 after normalisation."""
    x = np.concatenate([arrays["s1"], arrays["s2"][:, S2_COLUMNS].astype(np.float32)], axis=1)
    names = ["VV", "VH", "B02", "B03", "B04"]
    x = np.stack([(x[:, i] - NORM[b]["mean"]) / NORM[b]["std"] for i, b in enumerate(names)], 1)
    for player, bands in PLAYERS.items():
        if player not in present:
            x[:, [names.index(b) for b in bands]] = 0.0
    with torch.no_grad():
        return net(torch.from_numpy(x.astype(np.float32))).numpy()  # type: ignore[no-any-return]


def naive_pixels(net: torch.nn.Module, arrays: dict[str, np.ndarray], present: tuple,
                 matching: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(truth, prediction, pixel mask state) of every labelled pixel, per image (N, P) lists."""
    out = naive_outputs(net, arrays, present)
    y, mask = arrays["y"], arrays["mask"]
    if not present:  # the empty coalition: the all-baseline input, one constant map
        out = np.broadcast_to(naive_outputs(net, zero_like(arrays), ())[:1], out.shape)
    s = SIZE // out.shape[-1]
    if matching == "upsample-logits":
        t = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(out)), size=(SIZE, SIZE), mode="bilinear",
            align_corners=False,
        )  # fmt: skip
        pred = t.argmax(1).numpy()
    else:
        pred = out.argmax(1)
        y, mask = y[:, s // 2 :: s, s // 2 :: s], mask[:, s // 2 :: s, s // 2 :: s]
    return y, pred, mask


def zero_like(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw values whose normalised input is 0 everywhere (so ``present=()`` gives the
    baseline input)."""
    s1 = np.zeros_like(arrays["s1"])
    s1[:, 0], s1[:, 1] = NORM["VV"]["mean"], NORM["VH"]["mean"]
    s2 = np.zeros_like(arrays["s2"])
    s2[:, S2_COLUMNS] = 1000
    return {**arrays, "s1": s1, "s2": s2}


def confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    valid = y != 255
    return confusion_matrix(y[valid], pred[valid], labels=range(K))  # type: ignore[no-any-return]


def evaluate(net: torch.nn.Module, arrays: dict[str, np.ndarray], matching: str = "nearest-labels",
             **kwargs: object) -> sareval.ShapeResult:  # fmt: skip
    data = sareval.ArrayData(
        {"s1": arrays["s1"], "s2": arrays["s2"]}, arrays["y"], cloud_mask=arrays["mask"]
    )
    return sareval.evaluate(net, data, card=card_for(matching), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stride", "matching", "backend"),
    [
        (1, "nearest-labels", "torch"),
        (2, "nearest-labels", "torch"),
        (2, "nearest-labels", "onnxruntime"),
        (4, "upsample-logits", "torch"),
    ],
)
def test_every_coalition_equals_the_naive_loop(arrays, stride, matching, backend) -> None:
    net = StridedNet(stride).eval()
    r = evaluate(net, arrays, matching, batch_size=3, backend=backend)
    assert r.doc["n_samples"] == N
    for name, present in COALITIONS.items():
        y, pred, _ = naive_pixels(net, arrays, present, matching)
        want = confusion(y, pred)
        assert np.array_equal(np.asarray(r.counts[name]["confusion"]), want), name
        valid = y != 255
        t, p = y[valid], pred[valid]
        v = {m: r.values[m][name] for m in r.values}
        assert v["miou"] == pytest.approx(jaccard_score(t, p, average="macro"), abs=1e-12)
        assert v["f1_macro"] == pytest.approx(f1_score(t, p, average="macro"), abs=1e-12)
        assert v["oa"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
        assert v["aa"] == pytest.approx(balanced_accuracy_score(t, p), abs=1e-12)
        iou = jaccard_score(t, p, average=None, labels=range(K), zero_division=0)
        fw = (np.bincount(t, minlength=K) / len(t) * iou).sum()
        assert v["fwiou"] == pytest.approx(fw, abs=1e-12)
    assert r.doc["n_pixels"] == int((naive_pixels(net, arrays, (), matching)[0] != 255).sum())


def test_relevance_is_the_shapley_value_of_miou(arrays) -> None:
    r = evaluate(StridedNet(2).eval(), arrays, batch_size=4)
    v = r.values["miou"]
    assert r.relevance["miou"]["sar"] == pytest.approx(
        0.5 * (v["sar"] - v["none"]) + 0.5 * (v["sar+opt"] - v["opt"]), abs=1e-15
    )


def test_counts_do_not_depend_on_the_batch_size(arrays) -> None:
    net = StridedNet(2).eval()
    runs = [evaluate(net, arrays, batch_size=b).counts for b in (1, 4, N)]
    assert runs[0] == runs[1] == runs[2]


def test_cloudy_and_clear_pixels_split_every_count(arrays) -> None:
    net = StridedNet(2).eval()
    r = evaluate(net, arrays, batch_size=4)
    parts = {e["label"]: e for e in r.by_cloud_pixels}
    assert list(parts) == ["clear", "cloudy", "unknown"]
    for name, present in COALITIONS.items():
        y, pred, mask = naive_pixels(net, arrays, present, "nearest-labels")
        for label, keep in (("clear", mask == 0), ("cloudy", mask == 1), ("unknown", mask == 255)):
            got = np.asarray(parts[label]["counts"][name]["confusion"])
            assert np.array_equal(got, confusion(np.where(keep, y, 255), pred)), (label, name)
    assert sum(e["n_pixels"] for e in parts.values()) == r.doc["n_pixels"]
    clear = parts["clear"]["metrics"]["miou"]["V"]["sar+opt"]
    y, pred, mask = naive_pixels(net, arrays, ("sar", "opt"), "nearest-labels")
    keep = (mask == 0) & (y != 255)
    assert clear == pytest.approx(jaccard_score(y[keep], pred[keep], average="macro"), abs=1e-12)


def test_intervals_resample_images_as_a_hand_written_bootstrap(arrays) -> None:
    net = StridedNet(2).eval()
    n_boot, seed = 40, 3
    r = evaluate(net, arrays, batch_size=4, replicates=n_boot, seed=seed)
    per_image = {}
    for name, present in COALITIONS.items():
        y, pred, _ = naive_pixels(net, arrays, present, "nearest-labels")
        per_image[name] = np.stack([confusion(y[i], pred[i]) for i in range(N)])
    generators = np.random.default_rng(seed).spawn(n_boot)
    values = []
    for g in generators:
        w = np.bincount(g.integers(0, N, size=N), minlength=N)
        row = []
        for name in COALITIONS:
            c = (per_image[name] * w[:, None, None]).sum(0)
            tp = np.diag(c)
            union = c.sum(0) + c.sum(1) - tp
            seen = union > 0
            row.append((tp[seen] / union[seen]).mean())
        values.append(row)
    rel = shape_relevance_array(np.array(values), ("sar", "opt"), "one")["relevance"]
    want = np.percentile(rel, [2.5, 97.5], axis=0)
    got = r.intervals["miou"]["relevance"]
    for i, p in enumerate(("sar", "opt")):
        assert got[p] == pytest.approx(want[:, i].tolist(), abs=1e-12)


def test_bad_label_maps_are_one_line_errors(arrays) -> None:
    net = StridedNet(1).eval()
    bad = arrays["y"].copy()
    bad[2, 3, 4] = 7
    data = sareval.ArrayData({"s1": arrays["s1"], "s2": arrays["s2"]}, bad)
    with pytest.raises(SarevalError, match="value 7, outside the 3 classes") as e:
        sareval.evaluate(net, data, card=card_for())
    assert "\n" not in str(e.value)
    wrong_size = np.zeros((N, SIZE // 2, SIZE // 2), np.uint8)
    with pytest.raises(SarevalError, match="label maps with N"):
        sareval.ArrayData({"s1": arrays["s1"], "s2": arrays["s2"]}, wrong_size)


def test_a_classification_card_on_label_maps_and_the_reverse_are_refused(arrays) -> None:
    maps = sareval.ArrayData({"s1": arrays["s1"], "s2": arrays["s2"]}, arrays["y"])
    classifier = ModelCard.custom(PLAYERS, task="single-label", class_names=["a", "b", "c"])
    with pytest.raises(SarevalError, match=r"label maps .*task is single-label"):
        sareval.evaluate(torch.nn.Identity(), maps, card=classifier)
    scenes = sareval.ArrayData({"s1": arrays["s1"], "s2": arrays["s2"]}, np.zeros(N, np.int64))
    with pytest.raises(SarevalError, match=r"class indices .*task is segmentation"):
        sareval.evaluate(StridedNet(1).eval(), scenes, card=card_for())


def test_an_output_size_that_is_not_an_integer_fraction_is_refused(arrays) -> None:
    class Odd(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], K, 5, 5)

    with pytest.raises(SarevalError, match="5 x 5 for inputs of 16 x 16"):
        evaluate(Odd(), arrays)


def test_the_majority_empty_coalition_is_the_most_frequent_labelled_class(arrays) -> None:
    r = evaluate(StridedNet(1).eval(), arrays, empty_coalition="majority")
    y = arrays["y"][arrays["y"] != 255]
    majority = np.bincount(y, minlength=K).argmax()
    want = confusion(arrays["y"], np.full_like(arrays["y"], majority))
    assert np.array_equal(np.asarray(r.counts["none"]["confusion"]), want)


def test_per_class_iou_is_scikit_learns(arrays) -> None:
    net = StridedNet(1).eval()
    r = evaluate(net, arrays, by_class=True)
    y, pred, _ = naive_pixels(net, arrays, ("sar", "opt"), "nearest-labels")
    valid = y != 255
    iou = jaccard_score(y[valid], pred[valid], average=None, labels=range(K), zero_division=0)
    for i, name in enumerate(("a", "b", "c")):
        got = r.by_class[name]["metrics"]["iou"]["V"]["sar+opt"]
        assert got == pytest.approx(iou[i], abs=1e-12)


def test_relevance_maps_are_per_pixel_shapley_values_with_efficiency(arrays, tmp_path) -> None:
    from sareval.evaluator.relevance_maps import read_maps

    net = StridedNet(2).eval()
    out = tmp_path / "maps.h5"
    r = evaluate(net, arrays, batch_size=3, per_sample=True, save_predictions=out)
    maps = read_maps(out)
    y = maps["labels"].astype(np.int64)
    valid = y != 255
    values = {}
    for name, present in COALITIONS.items():
        logits = naive_outputs(net, arrays if present else zero_like(arrays), present)
        if not present:
            logits = np.broadcast_to(logits[:1], logits.shape)
        p = torch.softmax(torch.from_numpy(np.ascontiguousarray(logits)).double(), 1).numpy()
        values[name] = np.take_along_axis(p, np.clip(y, 0, K - 1)[:, None], 1)[:, 0]
        assert np.array_equal(maps["decisions"][list(COALITIONS).index(name)], logits.argmax(1))
    phi = maps["relevance"]["true_probability"]  # (N, M, h, w)
    sar = 0.5 * (values["sar"] - values["none"]) + 0.5 * (values["sar+opt"] - values["opt"])
    assert np.allclose(phi[:, 0][valid], sar[valid], atol=1e-6)
    efficiency = phi.sum(1) - (values["sar+opt"] - values["none"])
    assert np.abs(efficiency[valid]).max() < 1e-6
    assert np.isnan(phi[:, 0][~valid]).all()
    means = r.doc["pixel_relevance"]["true_probability"]
    assert means["all"]["sar"] == pytest.approx(float(sar[valid].mean()), abs=1e-6)
    for i, cls in enumerate(("a", "b", "c")):
        keep = valid & (y == i)
        want = float(sar[keep].mean())
        assert means["by_class"][cls]["sar"] == pytest.approx(want, abs=1e-6)


def test_a_segmentation_result_saves_and_reads_back(arrays, tmp_path) -> None:
    net = StridedNet(2).eval()
    r = evaluate(net, arrays, batch_size=4, per_sample=True, replicates=5, by_class=True)
    path = r.save(tmp_path / "r.json", csv=tmp_path / "r.csv")
    back = sareval.load_result(path)
    assert back.values == r.values and back.by_cloud_pixels == r.by_cloud_pixels
    assert back.doc["pixel_relevance"] == r.doc["pixel_relevance"]
    assert back.doc["task"] == "segmentation"


def test_shards_merge_to_the_whole_run(arrays, tmp_path) -> None:
    from sareval.evaluator.merge import merge_documents

    net = StridedNet(2).eval()
    whole = evaluate(net, arrays, batch_size=2)
    docs = [evaluate(net, arrays, batch_size=2, shard=(i, 3)).doc for i in range(3)]
    merged = merge_documents(docs, ["a", "b", "c"])
    assert merged["counts"] == whole.counts
    assert merged["n_samples"] == N and merged["n_pixels"] == whole.doc["n_pixels"]
    for a, b in zip(merged["by"]["cloud_pixels"], whole.by_cloud_pixels, strict=True):
        assert a["counts"] == b["counts"] and a["n_pixels"] == b["n_pixels"]
        assert a["metrics"].keys() == b["metrics"].keys()


def test_a_store_with_label_maps_and_a_cloud_mask_gives_the_array_counts(arrays, tmp_path) -> None:
    net = StridedNet(2).eval()
    mask = arrays["mask"].copy()
    mask[0] = 0  # a store's mask is 255 only on rows of unknown cover
    cover = mask.reshape(N, -1).mean(1)
    path = sareval.write_store(
        tmp_path / "seg.h5", {"s1": arrays["s1"], "s2": arrays["s2"]},
        {"lc": (arrays["y"], ["a", "b", "c"])}, cloud_cover=cover, cloud_mask=mask,
    )  # fmt: skip
    got = sareval.evaluate(net, sareval.open_store(path).subset("all"), card=card_for())
    want = evaluate(net, {**arrays, "mask": mask}, batch_size=3)
    assert got.counts == want.counts
    assert got.by_cloud_pixels == want.by_cloud_pixels
    assert got.doc["config"]["label_set"] == "lc"


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(arrays, tmp_path) -> None:
    """Counts, intervals over images, the pixel split and per-pixel relevance means are
    gathered from the ranks of a real torchrun (gloo, CPU)."""
    from test_distributed import torchrun

    from sareval.evaluator.results import read_results, to_json_value
    from sareval.export import export_onnx

    net = StridedNet(2).eval()
    model = tmp_path / "seg.onnx"
    export_onnx(net, card_for(), model)
    mask = arrays["mask"].copy()
    mask[0] = 0
    store = sareval.write_store(
        tmp_path / "seg.h5", {"s1": arrays["s1"], "s2": arrays["s2"]},
        {"lc": (arrays["y"], ["a", "b", "c"])}, cloud_cover=mask.reshape(N, -1).mean(1),
        cloud_mask=mask,
    )  # fmt: skip
    args = ["-m", str(model), "-d", str(store), "-s", "all", "--batch-size", "2", "--by",
            "class", "--replicates", "20", "--seed", "3", "--per-sample",
            "-o", str(tmp_path / "r.json")]  # fmt: skip
    done = torchrun(["-m", "sareval"], args, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = read_results(tmp_path / "r.json")
    single = to_json_value(
        sareval.evaluate(
            model, sareval.open_store(store).subset("all"), batch_size=3, by_class=True,
            replicates=20, seed=3, per_sample=True,
        ).doc
    )  # fmt: skip
    assert doc["config"]["world_size"] == 2
    for key in ("counts", "metrics", "by", "n_samples", "n_pixels"):
        assert doc[key] == single[key], key
    for q in ("true_probability", "correct"):
        got, want = doc["pixel_relevance"][q], single["pixel_relevance"][q]
        assert got["n_pixels"] == want["n_pixels"]
        for player, value in want["all"].items():
            assert got["all"][player] == pytest.approx(value, abs=1e-12)
