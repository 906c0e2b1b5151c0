"""The streaming runner end to end against a naive loop + scikit-learn, and its counters."""

from __future__ import annotations

import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from shape_testing import evaluate_doc as evaluate_shape
from shape_testing import (
    get_assets,
    naive_decisions,
    naive_inputs,
    naive_outputs,
    shapley_by_orderings,
    sklearn_metrics,
    store_labels,
    tiny_net,
)

from sareval.card import Modality, ModelCard
from sareval.commands.parsing import parse_players
from sareval.errors import SarevalError
from sareval.evaluator.bootstrap import bootstrap_intervals
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.counting import CoalitionCounter, ConstantRows
from sareval.evaluator.metrics import METRIC_NAMES, counts_for
from sareval.store import Store

TASKS = ("single-label", "multi-label")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def naive(assets):
    """task -> (coalitions, outputs (4, N, K)) of the naive loop on subset clear."""
    return {
        task: naive_outputs(assets.onnx[task], assets.store, "clear", assets.cards[task])
        for task in TASKS
    }


def check_against_sklearn(doc: dict, coalitions, outputs, y, task: str, k: int) -> None:
    players = tuple(doc["players"])
    for coalition, out in zip(coalitions, outputs, strict=True):
        name = coalition_name(coalition, players)
        reference = sklearn_metrics(task, y, naive_decisions(out, task), k)
        assert set(reference) == set(METRIC_NAMES[task])
        for metric, value in reference.items():
            assert doc["metrics"][metric]["V"][name] == pytest.approx(value, abs=1e-12), (
                name,
                metric,
            )
    for metric, entry in doc["metrics"].items():
        V = {c: entry["V"][coalition_name(c, players)] for c in coalitions}
        phi = shapley_by_orderings(V, players)
        for p in players:
            assert entry["relevance"][p] == pytest.approx(phi[p], abs=1e-12), (metric, p)


@pytest.mark.parametrize("task", TASKS)
def test_counts_and_metrics_equal_naive_loop(assets, naive, task: str) -> None:
    y = store_labels(assets.store, "clear", task)
    assert (
        (y.sum(axis=1) == 0).any()
        if task == "multi-label"
        else (np.bincount(y, minlength=6)[5] == 0)
    )
    docs = [
        evaluate_shape(assets.onnx[task], assets.store, "clear", batch_size=bs, progress=False)
        for bs in (1, 7, 64)
    ]
    coalitions, outputs = naive[task]
    check_against_sklearn(docs[0], coalitions, outputs, y, task, 6)
    assert docs[0]["counts"] == docs[1]["counts"] == docs[2]["counts"]
    assert docs[0]["n_samples"] == 40 and docs[0]["coalitions"] == ["none", "sar", "opt", "sar+opt"]
    # the coalitions really differ (the test could not pass with a constant model)
    assert len({str(docs[0]["counts"][c]) for c in docs[0]["coalitions"]}) == 4
    # efficiency identity, reported
    oa = docs[0]["metrics"]["f1_micro"]
    assert oa["efficiency_gap"] == pytest.approx(0.0, abs=1e-12)
    assert sum(oa["relevance"].values()) == pytest.approx(oa["V"]["sar+opt"] - oa["V"]["none"])


@pytest.mark.parametrize("task", TASKS)
def test_onnx_and_torch_backends_give_identical_counts(assets, task: str) -> None:
    kw = dict(batch_size=16, progress=False, by=["class", "cloud-cover=0,0.5,1"])
    via_onnx = evaluate_shape(assets.onnx[task], assets.store, "cloudy", **kw)
    via_ts = evaluate_shape(assets.torchscript[task], assets.store, "cloudy", backend="torch", **kw)
    via_module = evaluate_shape(
        (assets.nets[task], assets.cards[task]), assets.store, "cloudy", backend="torch", **kw
    )
    assert via_onnx["ties"]["counts"] == dict.fromkeys(via_onnx["coalitions"], 0)
    assert via_onnx["counts"] == via_ts["counts"] == via_module["counts"]
    assert via_onnx["by"] == via_ts["by"]
    assert via_ts["config"]["backend"] == "torch" and via_ts["config"]["providers"] == ["cpu"]
    assert via_onnx["config"]["providers"] == ["CPUExecutionProvider"]


def test_ties_are_reported_and_resolved_alike(assets) -> None:
    """Classes 0 and 1 get identical logits: every sample is a tie, argmax takes class 0."""
    card = assets.cards["single-label"]
    net = tiny_net(seed=3)
    with torch.no_grad():
        net[-1].weight[1] = net[-1].weight[0]
        net[-1].bias[1] = net[-1].bias[0] = 5.0
    onnx_path = assets.root / "tied.onnx"
    if not onnx_path.exists():
        from shape_testing import export_onnx

        export_onnx(net, card, onnx_path)
    a = evaluate_shape(onnx_path, assets.store, "clear", progress=False)
    b = evaluate_shape((net, card), assets.store, "clear", backend="torch", progress=False)
    assert a["ties"]["counts"] == b["ties"]["counts"] == dict.fromkeys(a["coalitions"], 40)
    assert a["counts"] == b["counts"]
    conf = np.array(a["counts"]["sar+opt"]["confusion"])
    assert conf[:, 1].sum() == 0 and conf[:, 0].sum() == 40


def test_empty_coalition_is_evaluated_once(assets) -> None:
    card = assets.cards["single-label"]
    rows: list[int] = []

    class RowCounter(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows.append(int(x.shape[0]))
            return self.net(x)

    net = assets.nets["single-label"]
    counter = RowCounter(net)
    assert counter.training and not net.training
    doc = evaluate_shape(
        (counter, card), assets.store, "clear", backend="torch", batch_size=16,
        progress=False,
    )  # fmt: skip
    assert rows == [1, 48, 48, 24]  # empty once; then 3 coalitions x (16, 16, 8) samples
    with torch.no_grad():
        zero_out = net(torch.zeros(1, 12, 8, 8))[0].numpy()
    np.testing.assert_allclose(doc["empty"]["output"], zero_out, atol=1e-6)
    assert doc["empty"]["decision"] == int(zero_out.argmax())
    conf = np.array(doc["counts"]["none"]["confusion"])
    assert conf[:, int(zero_out.argmax())].sum() == 40  # one constant prediction for everyone
    assert counter.training and not net.training  # the caller's module modes are restored


@pytest.mark.parametrize("task", TASKS)
def test_majority_empty_coalition(assets, task: str) -> None:
    doc = evaluate_shape(
        assets.onnx[task], assets.store, "tail", empty_coalition="majority", progress=False
    )
    y = store_labels(assets.store, "tail", task)
    if task == "single-label":
        majority = np.full(len(y), np.bincount(y).argmax())
    else:
        rows, counts = np.unique(y != 0, axis=0, return_counts=True)  # the modal label set
        majority = np.broadcast_to(rows[counts.argmax()], y.shape)
    reference = sklearn_metrics(task, y, majority, 6)
    for metric, value in reference.items():
        assert doc["metrics"][metric]["V"]["none"] == pytest.approx(value, abs=1e-12)
    assert doc["empty"]["kind"] == "majority" and doc["empty"]["output"] is None


def test_three_players_band_groups(assets) -> None:
    spec = "sar;rgb=B02,B03,B04;rest=B05,B06,B07,B08,B8A,B11,B12"
    players = parse_players(spec, assets.cards["multi-label"])
    assert players == {"sar": ("VV", "VH"), "rgb": ("B02", "B03", "B04"),
                       "rest": ("B05", "B06", "B07", "B08", "B8A", "B11", "B12")}  # fmt: skip
    card = assets.cards["multi-label"].with_modalities(
        tuple(Modality(n, b) for n, b in players.items())
    )
    doc = evaluate_shape(
        assets.onnx["multi-label"], assets.store, "clear", players=spec, batch_size=9,
        progress=False,
    )  # fmt: skip
    assert doc["players"] == ["sar", "rgb", "rest"] and len(doc["coalitions"]) == 8
    coalitions, outputs = naive_outputs(assets.onnx["multi-label"], assets.store, "clear", card)
    y = store_labels(assets.store, "clear", "multi-label")
    check_against_sklearn(doc, coalitions, outputs, y, "multi-label", 6)
    assert doc["config"]["players"] == {k: list(v) for k, v in players.items()}


def test_bootstrap_by_class_and_cloud_cover(assets, naive) -> None:
    task = "single-label"
    doc = evaluate_shape(
        assets.onnx[task], assets.store, "clear", batch_size=11, replicates=30, seed=4,
        by=["class", "cloud-cover=0,0.5,1"], progress=False,
    )  # fmt: skip
    coalitions, outputs = naive[task]
    y = store_labels(assets.store, "clear", task)
    decisions = {c: naive_decisions(o, task) for c, o in zip(coalitions, outputs, strict=True)}
    ci = bootstrap_intervals(y, decisions, ("sar", "opt"), task, 6, n_boot=30, seed=4)
    for metric, entry in doc["metrics"].items():
        assert entry["ci"] == ci[metric]
    # per class: recall of class k = accuracy on the samples of class k
    from sklearn.metrics import recall_score

    names = [coalition_name(c, ("sar", "opt")) for c in coalitions]
    for k, cls in enumerate(doc["class_names"]):
        entry = doc["by"]["class"][cls]
        assert entry["n_samples"] == int((y == k).sum())
        for name, c in zip(names, coalitions, strict=True):
            r = recall_score(y, decisions[c], labels=[k], average=None, zero_division=0)[0]
            assert entry["metrics"]["recall"]["V"][name] == pytest.approx(r, abs=1e-12)
    # per cloud-cover bin: 'clear' reads s2, whose cover the store does not hold (its
    # /cloud_cover is the cloudy twin's), so every sample is unknown and a warning says so;
    # bins of a subset with its own cover: test_cloud_cover_bins_of_the_image_read
    bins = doc["by"]["cloud_cover"]
    assert [b["bin"] for b in bins] == [[0.0, 0.5], [0.5, 1.0]]
    assert [b["n_samples"] for b in bins] == [0, 0]
    assert doc["by"]["cloud_cover_source"] == "none"
    assert any(w.startswith("cloud cover: the data hold no estimate") for w in doc["warnings"])
    unknown = doc["by"]["cloud_cover_unknown"]
    assert unknown["n_samples"] == len(y)
    assert unknown["metrics"]["oa"]["V"] == doc["metrics"]["oa"]["V"]


@pytest.mark.parametrize("task", TASKS)
def test_cloud_cover_bins_of_the_image_read(assets, task: str) -> None:
    """'cloudy' reads s2_cloudy, whose cover the store holds: each bin's metrics are those of
    its samples (sklearn)."""
    card = assets.cards[task]
    doc = evaluate_shape(assets.onnx[task], assets.store, "cloudy", by=["cloud-cover=0,0.5,1"],
                         progress=False)  # fmt: skip
    coalitions, outputs = naive_outputs(assets.onnx[task], assets.store, "cloudy", card)
    y = store_labels(assets.store, "cloudy", task)
    names = [coalition_name(c, ("sar", "opt")) for c in coalitions]
    with Store(assets.store) as st:
        cover = st.cloud_cover(st.subset("cloudy").rows)
    assert not np.isnan(cover).any() and doc["by"]["cloud_cover_source"] == "s2_cloudy"
    assert doc["by"]["cloud_cover_unknown"]["n_samples"] == 0
    assert not [w for w in doc["warnings"] if not w.startswith("map_macro:")]  # class4 absent
    bins = doc["by"]["cloud_cover"]
    for entry, sel in ((bins[0], cover < 0.5), (bins[1], cover >= 0.5)):
        assert entry["n_samples"] == int(sel.sum()) > 0
        for name, c, out in zip(names, coalitions, outputs, strict=True):
            dec = naive_decisions(out, task) if c else np.asarray(doc["empty"]["decision"])
            dec = np.broadcast_to(dec, y.shape)
            ref = sklearn_metrics(task, y[sel], dec[sel], 6)
            for metric in ("oa", "f1_macro"):
                assert entry["metrics"][metric]["V"][name] == pytest.approx(ref[metric], abs=1e-12)


def test_perceptual_score_equals_naive_permutation(assets) -> None:
    import onnxruntime as ort

    task = "single-label"
    card = assets.cards[task]
    doc = evaluate_shape(
        assets.onnx[task], assets.store, "clear", method="perceptual", permutations=3, seed=7,
        batch_size=13, progress=False,
    )  # fmt: skip
    with Store(assets.store) as st:
        x = naive_inputs(st, "clear", card)
    y = store_labels(assets.store, "clear", task)
    session = ort.InferenceSession(str(assets.onnx[task]), providers=["CPUExecutionProvider"])

    def metrics_of(inputs: np.ndarray) -> dict[str, float]:
        out = session.run(None, {"input": inputs})[0]
        return sklearn_metrics(task, y, out.argmax(axis=1), 6)

    full = metrics_of(x)
    for player in ("sar", "opt"):
        chans = card.channel_indices(player)
        permuted = []
        for j in range(3):
            perm = np.random.default_rng([7, j]).permutation(len(x))
            mixed = x.copy()
            mixed[:, chans] = x[perm][:, chans]
            permuted.append(metrics_of(mixed))
        for metric in ("oa", "f1_macro", "kappa"):
            mean = np.mean([p[metric] for p in permuted])
            entry = doc["metrics"][metric]
            assert entry["V"][f"{player}@permuted"] == pytest.approx(mean, abs=1e-12)
            assert entry["relevance"][player] == pytest.approx(
                (full[metric] - mean) / full[metric], abs=1e-12
            )
    assert doc["method"] == "perceptual" and doc["config"]["permutations"] == 3
    # independent of the batch size (global permutation through the store)
    again = evaluate_shape(
        assets.onnx[task], assets.store, "clear", method="perceptual", permutations=3, seed=7,
        batch_size=40, progress=False,
    )  # fmt: skip
    assert again["counts"] == doc["counts"]


@pytest.mark.parametrize("task", TASKS)
def test_save_predictions(assets, naive, tmp_path: Path, task: str) -> None:
    out = tmp_path / "pred.h5"
    evaluate_shape(
        assets.onnx[task], assets.store, "clear", batch_size=9, save_predictions=out,
        progress=False,
    )  # fmt: skip
    _, outputs = naive[task]
    with h5py.File(out) as f, Store(assets.store) as st:
        assert [x.decode() for x in f["ids"][()]] == st.ids(st.subset("clear").rows)
        np.testing.assert_allclose(f["outputs"][()], outputs, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(f["decisions"][()], naive_decisions(outputs, task))
        np.testing.assert_array_equal(f["labels"][()], store_labels(assets.store, "clear", task))
        np.testing.assert_array_equal(f["positions"][()], np.arange(40))
        assert f.attrs["coalitions"] == '["none", "sar", "opt", "sar+opt"]'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.h5"]


def test_nan_outputs_name_the_coalition(assets, tmp_path: Path) -> None:
    """Without nan_to_num / clip for the SAR bands, NaN and Inf pixels reach the network."""
    d = assets.cards["single-label"].to_dict()
    for band in ("VV", "VH"):
        d["normalization"][band] = {"mean": -12.0, "std": 4.0}
    card = ModelCard.from_dict(d)
    with pytest.raises(
        SarevalError,
        match=r"NaN or Inf \(coalition sar: 3 samples, coalition sar\+opt: 3 samples\)",
    ):
        evaluate_shape(
            (assets.nets["single-label"], card), assets.store, "clear", backend="torch",
            save_predictions=tmp_path / "p.h5", progress=False,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_the_reader_and_writes_nothing(
    assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sareval.evaluator.runner as runner

    real = runner.make_backend
    calls = []

    def interrupting(*args, **kwargs):
        backend = real(*args, **kwargs)
        run = backend.run

        def run_then_interrupt(raw, mask=None):
            calls.append(len(next(iter(raw.values()))))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return run(raw, mask)

        backend.run = run_then_interrupt
        return backend

    monkeypatch.setattr(runner, "make_backend", interrupting)
    with pytest.raises(KeyboardInterrupt):
        evaluate_shape(
            assets.onnx["single-label"], assets.store, "clear", batch_size=2, queue_size=1,
            save_predictions=tmp_path / "p.h5", progress=False,
        )  # fmt: skip
    assert calls == [1, 2, 2]  # the empty coalition, then two batches
    assert not [t for t in threading.enumerate() if t.name == "sareval-reader"]
    assert list(tmp_path.iterdir()) == []


def test_unloadable_provider_fails_loudly(assets) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA provider may load")
    with pytest.raises(SarevalError, match="did not load the CUDAExecutionProvider"):
        evaluate_shape(
            assets.onnx["single-label"], assets.store, "clear", device="cuda", progress=False
        )
    with pytest.raises(SarevalError, match="torch sees no CUDA device"):
        evaluate_shape(
            assets.torchscript["single-label"], assets.store, "clear", backend="torch",
            device="cuda", progress=False,
        )  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_torch_counter_equals_host_counter(task: str) -> None:
    rng = np.random.default_rng(5)
    k, n, b = 5, 3, 50
    outputs = rng.normal(size=(n, b, k)).astype(np.float32)
    outputs[0, :10, 1] = outputs[0, :10, 2] = 10.0  # exact ties of the two largest
    outputs[1, 10:15, 3] = 0.0  # on the multi-label threshold
    outputs[2, 20, 0] = np.nan
    if task == "single-label":
        y = rng.integers(0, k - 1, size=b)
        constant = ConstantRows(np.array(2), tie=True)
    else:
        y = rng.random((b, k)) < 0.4
        y[:5] = False
        constant = ConstantRows(np.array([True, False, True, False, False]))
    groups = rng.integers(0, 3, size=b)
    kw = dict(constant=constant, n_groups=3, threshold=0.5)
    host = CoalitionCounter(task, k, n, **kw)
    dev = CoalitionCounter(task, k, n, device="cpu", **kw)
    for a in range(0, b, 20):
        sl = slice(a, a + 20)
        d_host = host.add(outputs[:, sl], y[sl], groups[sl])
        d_dev = dev.add(torch.from_numpy(outputs[:, sl]), torch.from_numpy(y[sl]),
                        torch.from_numpy(groups[sl]))  # fmt: skip
        np.testing.assert_array_equal(d_host, d_dev.numpy())
    r_host, r_dev = host.result(), dev.result()
    assert r_host.counts == r_dev.counts
    np.testing.assert_array_equal(r_host.ties, r_dev.ties)
    np.testing.assert_array_equal(r_host.nonfinite, [0, 0, 0, 1])
    np.testing.assert_array_equal(r_dev.nonfinite, [0, 0, 0, 1])
    if task == "single-label":
        assert r_host.ties[0] == b and r_host.ties[1] >= 10  # constant tie, exact ties
    else:
        assert r_host.ties[0] == 0 and r_host.ties[2] >= 5  # outputs on the threshold
    total = counts_for(task, k)
    for c in r_host.total[1:2]:
        total += c
    assert total.n == b


def test_model_kinds_give_the_same_counts(assets, tmp_path: Path) -> None:
    """An in-memory module exported on the fly for onnxruntime, and a torch.export program."""
    from sareval.card import TORCHSCRIPT_EXTRA_FILE

    task = "multi-label"
    net, card = assets.nets[task], assets.cards[task]
    reference = evaluate_shape(assets.onnx[task], assets.store, "tail", progress=False)
    in_memory = evaluate_shape((net, card), assets.store, "tail", progress=False)
    program = torch.export.export(
        net, (torch.zeros(2, 12, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    pt2 = tmp_path / "net.pt2"
    torch.export.save(program, str(pt2), extra_files={TORCHSCRIPT_EXTRA_FILE: card.to_json()})
    exported = evaluate_shape(pt2, assets.store, "tail", backend="torch", progress=False)
    assert reference["counts"] == in_memory["counts"] == exported["counts"]
    assert exported["provenance"]["model"]["sha256"] is not None
    assert in_memory["provenance"]["model"] == {
        "path": None,
        "sha256": None,
        "card": card.to_dict(),
    }


def test_band_mean_baseline_equals_naive_loop(assets) -> None:
    task = "single-label"
    card = assets.cards[task]
    doc = evaluate_shape(
        assets.onnx[task], assets.store, "cloudy", baseline="band-mean", batch_size=8,
        progress=False,
    )  # fmt: skip
    with Store(assets.store) as st:
        rows = st.subset("cloudy").rows
        s1, s2 = st.file["s1"][()][rows], st.file["s2_cloudy"][()][rows]
        bands = {b: s1[:, i] for i, b in enumerate(st.bands("s1"))}
        bands.update({b: s2[:, i] for i, b in enumerate(st.bands("s2"))})
    baseline = []
    for band in card.channels:
        values = bands[band].astype(np.float64)
        mean = np.float32(values[np.isfinite(values)].mean())
        t = card.transform(band)
        x = np.float32(np.clip(mean, *t.clip)) if t.clip else mean
        baseline.append((x - np.float32(t.mean)) / np.float32(t.std))
    baseline = np.array(baseline, dtype=np.float32)
    coalitions, outputs = naive_outputs(assets.onnx[task], assets.store, "cloudy", card, baseline)
    y = store_labels(assets.store, "cloudy", task)
    check_against_sklearn(doc, coalitions, outputs, y, task, 6)
    np.testing.assert_allclose(doc["empty"]["output"], outputs[0, 0], atol=1e-5)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_padded_last_batch_is_not_counted(assets, backend: str) -> None:
    model = assets.onnx if backend == "onnxruntime" else assets.torchscript
    kw = dict(backend=backend, batch_size=16, progress=False)
    plain = evaluate_shape(model["single-label"], assets.store, "clear", **kw)
    padded = evaluate_shape(model["single-label"], assets.store, "clear", pad_last_batch=True, **kw)
    assert padded["config"]["pad_to"] == 16 and plain["config"]["pad_to"] is None
    assert padded["counts"] == plain["counts"] and padded["n_samples"] == 40
    assert padded["empty"] == plain["empty"]


def test_reduced_precision_runs_the_network_in_bf16_and_is_recorded(assets, tmp_path) -> None:
    """bf16 autocast changes the outputs (the network really ran in bf16) by a small amount;
    the decisions are counted exactly as usual; onnxruntime refuses a precision it cannot run."""
    import h5py

    card, net = assets.cards["single-label"], assets.nets["single-label"]
    runs = {}
    for precision in ("fp32", "bf16"):
        pred = tmp_path / f"{precision}.h5"
        doc = evaluate_shape(
            (net, card),
            assets.store,
            "clear",
            backend="torch",
            precision=precision,
            save_predictions=pred,
            progress=False,
        )
        with h5py.File(pred) as f:
            runs[precision] = (doc, f["outputs"][1:], f["decisions"][1:])
    (doc32, out32, dec32), (doc16, out16, dec16) = runs["fp32"], runs["bf16"]
    assert doc32["config"]["precision"] == "fp32" and doc16["config"]["precision"] == "bf16"
    diff = np.abs(out16 - out32)
    assert 0 < diff.max() < 0.05 * np.abs(out32).max()
    assert (dec16 == dec32).mean() > 0.9
    assert doc16["n_samples"] == doc32["n_samples"]
    needs = "ShapeConfig.execution.precision: 'bf16' needs ShapeConfig.execution.backend 'torch'"
    with pytest.raises(SarevalError, match=needs):
        evaluate_shape(
            assets.onnx["single-label"], assets.store, "clear", precision="bf16", progress=False
        )


def test_bf16_pure_precision_is_close_to_fp32(assets) -> None:
    """A bf16 copy of the network (channels-last): decisions mostly the same as fp32, the
    module given is not changed, the precision is recorded."""
    import sareval

    task = "single-label"
    net, card = assets.nets[task], assets.cards[task]
    before = next(net.parameters()).dtype
    fp32 = sareval.evaluate(net, (assets.store, "clear"), card=card, save_predictions=None)
    bf16 = sareval.evaluate(net, (assets.store, "clear"), card=card, precision="bf16-pure")
    assert next(net.parameters()).dtype == before
    assert bf16.config["precision"] == "bf16-pure"
    for c in fp32.coalitions:
        a = np.array(fp32.counts[c]["confusion"])
        b = np.array(bf16.counts[c]["confusion"])
        assert a.sum() == b.sum() and np.trace(a) == pytest.approx(np.trace(b), abs=4)
