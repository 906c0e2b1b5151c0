"""The benchmark harness: the naive baseline computes the same SHAPE as sareval (the fairness
check of the comparison), model FLOPs, peak-memory measurement, and a smoke run of every mode."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from shape_testing import evaluate_doc as evaluate_shape

from benchmarks.common import (
    BenchInputs,
    calibrate_batchnorm,
    machine_description,
    model_macs,
    prepare_data,
    prepare_inputs,
    run_measured,
)
from benchmarks.naive_shape import load_split, run_naive, sen12ms_paths, shapley
from sareval.card import make_card
from sareval.models import build_model

PATCHES, SIZE = 12, 32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return prepare_data(tmp_path_factory.mktemp("bench"), PATCHES, SIZE)


def calibrated_resnet18(store: Path) -> tuple[torch.nn.Module, object]:
    card = make_card(
        "sen12ms-s1s2", "single-label", architecture="resnet18", fusion="early",
        checkpoint_sha256=None, random_init=True, input_size=SIZE,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model("resnet18", card.n_channels, card.n_classes)
    calibrate_batchnorm(model, card, store)
    return model, card


def assert_same_shape(naive: dict, doc: dict, ties: int = 0) -> None:
    """Counts per coalition identical (up to ``ties`` near-tied samples) and every shared
    metric, relevance and cooperation equal to 1e-12."""
    assert naive["n_samples"] == doc["n_samples"]
    assert naive["coalitions"] == doc["coalitions"]
    for name in doc["coalitions"]:
        diff = np.abs(np.asarray(doc["counts"][name]["confusion"]) - naive["confusion"][name])
        assert diff.sum() <= 2 * ties, f"coalition {name}: confusion differs by {diff.sum()}"
    if ties:
        return
    shared = set(naive["metrics"]) & set(doc["metrics"])
    assert {"oa", "aa", "balanced_accuracy", "f1_macro", "f2_samples"} <= shared
    for metric in shared:
        ours, theirs = naive["metrics"][metric], doc["metrics"][metric]
        for c in doc["coalitions"]:
            assert theirs["V"][c] == pytest.approx(ours["V"][c], abs=1e-12), (metric, c)
        for p in doc["players"]:
            assert theirs["relevance"][p] == pytest.approx(ours["relevance"][p], abs=1e-12)
        assert theirs["cooperation"] == pytest.approx(ours["cooperation"], abs=1e-12)


def test_naive_equals_sareval_torch_backend(data: dict[str, Path]) -> None:
    names, labels = load_split(data["tree"], data["split_list"], data["labels_pkl"])
    assert len(names) == PATCHES
    model, card = calibrated_resnet18(data["store"])
    naive = run_naive(data["tree"], names, labels, model, card, batch_size=5)
    doc = evaluate_shape(
        (model, card), data["store"], "clear", backend="torch", batch_size=5, progress=False
    )
    full = naive["predictions"]["sar+opt"]
    assert len(np.unique(full)) > 1, "the calibrated model should not predict one class"
    assert_same_shape(naive, doc, ties=sum(doc["ties"]["counts"].values()))


def test_naive_paths_and_shapley() -> None:
    s1, s2 = sen12ms_paths(Path("/r"), "ROIs1158_spring_s2_124_p100.tif")
    assert s2 == Path("/r/ROIs1158_spring/s2_124/ROIs1158_spring_s2_124_p100.tif")
    assert s1 == Path("/r/ROIs1158_spring/s1_124/ROIs1158_spring_s1_124_p100.tif")
    # SHAPE paper, two players: S_sar = [V(s,o) - V(o) + V(s) - V(0)] / 2
    v = {(): 0.1, ("sar",): 0.3, ("opt",): 0.6, ("sar", "opt"): 0.7}
    phi = shapley(v, ["sar", "opt"])
    assert phi["sar"] == pytest.approx((0.7 - 0.6 + 0.3 - 0.1) / 2)
    assert phi["opt"] == pytest.approx((0.7 - 0.3 + 0.6 - 0.1) / 2)


def test_model_macs_by_hand() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8*16*16 outputs x 3*9
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),  # 8*8*8 x (2*9)
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 5),  # 5 x 512
    )
    expected = 8 * 16 * 16 * 27 + 8 * 8 * 8 * 18 + 5 * 512
    assert model_macs(net, (3, 16, 16)) == expected
    assert net.training  # restored


def test_run_measured_reports_the_childs_own_peak() -> None:
    """The child's peak, not this (large: torch is imported) process's RSS carried over fork."""
    ballast = np.ones(200 * 2**20, np.uint8)  # this process holds >= 200 MiB more
    small = [sys.executable, "-c", "pass"]
    big = [sys.executable, "-c", "import numpy as np; a = np.ones(300 * 2**20, np.uint8)"]
    rc0, rss0, _ = run_measured(small)
    rc1, rss1, _ = run_measured(big)
    assert rc0 == rc1 == 0
    assert rss0 < 100 * 2**20 < 300 * 2**20 < rss1 < 450 * 2**20
    assert run_measured([sys.executable, "-c", "raise SystemExit(3)"])[0] == 3
    assert ballast[-1] == 1


@pytest.mark.slow
def test_harness_modes_smoke(tmp_path: Path) -> None:
    """Every mode of the harness on a tiny split (ONNX + TorchScript export: slow)."""
    from benchmarks.shape_throughput import (
        format_summary,
        run_compute_bound_mode,
        run_naive_mode,
        run_read_mode,
        run_sareval_mode,
        summarise,
    )

    inp = prepare_inputs(tmp_path, patches=PATCHES, size=SIZE, arch="resnet18")
    assert BenchInputs.from_json(inp.to_json()) == inp
    kw = {"batch_size": 5, "repeats": 1}
    runs = {
        "naive": run_naive_mode(inp, **kw),
        "sareval-onnxruntime": run_sareval_mode(inp, "onnxruntime", threads=1, **kw),
        "sareval-torch": run_sareval_mode(inp, "torch", threads=1, **kw),
        "compute-bound": run_compute_bound_mode(inp, threads=1, **kw),
        "read": run_read_mode(inp, **kw),
        "sareval-torch-shared": run_sareval_mode(inp, "torch", share=True, threads=1, **kw),
        "sareval-onnxruntime-shared": run_sareval_mode(
            inp, "onnxruntime", share=True, threads=1, **kw
        ),
        "compute-bound-shared": run_compute_bound_mode(inp, threads=1, share=True, **kw),
        "compute-late-shared": run_compute_bound_mode(
            inp, threads=1, backend_name="torch", fusion="late", share=True, **kw
        ),
        "naive-late": run_naive_mode(inp, fusion="late", **kw),
        "sareval-torch-late": run_sareval_mode(inp, "torch", fusion="late", threads=1, **kw),
        "sareval-torch-late-shared": run_sareval_mode(
            inp, "torch", share=True, fusion="late", threads=1, **kw
        ),
    }
    for r in runs.values():
        r["peak_rss"] = 1 << 20
        assert r["n_samples"] == PATCHES and len(r["times"]) == 1
    # the three full evaluations agree with each other, coalition by coalition
    assert (
        runs["naive"]["V_check"]
        == runs["sareval-onnxruntime"]["V_check"]
        == runs["sareval-torch"]["V_check"]
        == runs["sareval-torch-shared"]["V_check"]
        == runs["sareval-onnxruntime-shared"]["V_check"]
    )
    shared = runs["compute-bound-shared"]  # onnxruntime's shared first conv
    assert shared["share"] == "first-conv" and shared["checked_decisions"]
    assert shared["flop_per_sample"] < shared["flop_per_sample_unshared"]
    assert shared["flop_per_sample"] == runs["sareval-onnxruntime-shared"]["flop_per_sample"]
    # the late-fusion network: the naive script and sareval (shared or not) agree on it
    assert (
        runs["naive-late"]["V_check"]
        == runs["sareval-torch-late"]["V_check"]
        == runs["sareval-torch-late-shared"]["V_check"]
        != runs["naive"]["V_check"]
    )
    shared_flops = runs["sareval-torch-late-shared"]["flop_per_sample"]
    assert shared_flops == runs["compute-late-shared"]["flop_per_sample"]
    assert runs["naive-late"]["flop_per_sample"] > runs["sareval-torch-late"]["flop_per_sample"]
    late = runs["compute-late-shared"]
    assert late["share"] == "late-fusion" and late["flips"] == 0 and late["checked_decisions"]
    assert late["flop_per_sample"] < late["flop_per_sample_unshared"] / 2
    summary = summarise([runs], inp, machine_description(1), gemm_peaks={"fp32": 1.0, "bf16": 2.0})
    summary.update(command="test", load_before="0", load_after="0", batch_size=5, threads=1)
    assert set(summary["ratios"]) == {
        "sareval-onnxruntime / naive", "sareval-onnxruntime / compute-bound",
        "sareval-torch / naive", "sareval-torch / compute-bound",
        "sareval-torch-shared / naive", "sareval-torch-shared / sareval-torch",
        "sareval-torch-late / naive-late", "sareval-torch-late-shared / naive-late",
        "sareval-torch-late-shared / sareval-torch-late",
        "sareval-onnxruntime-shared / naive", "sareval-onnxruntime-shared / sareval-onnxruntime",
        "sareval-onnxruntime-shared / compute-bound-shared",
        "compute-bound-shared / compute-bound", "compute-bound-shared / naive",
    }  # fmt: skip
    assert summary["agreement"]["equal"] and len(summary["agreement"]["modes"]) == 5
    assert summary["agreement_late"]["equal"] and len(summary["agreement_late"]["modes"]) == 3
    assert summary["modes"]["compute-late-shared"]["of_gemm_peak"] > 0
    assert "samples/s" in format_summary(summary)


def test_preprocess_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preprocess benchmark end to end on a tiny tree: every reader of the store and the
    GeoTIFF side read the same samples, and the figures it records are consistent."""
    import json

    from benchmarks import preprocess_throughput as bench

    argv = ["preprocess_throughput.py", "--workdir", str(tmp_path), "--patches", "10",
            "--size", "32", "--compressions", "none", "--repeats", "2",
            "--bigearthnet-patches", "8", "--bigearthnet-compressions", "none"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["none"]
    assert run["read_samples"] == results["tree"]["patches"] == 10  # the whole clear subset
    assert run["sample_bytes"] == 2 * 32 * 32 * 4 + 13 * 32 * 32 * 2
    for state in ("warm", "cold"):
        for how in bench.STORE_READERS:
            assert len(run[f"{state}_store_{how}_samples_per_s_all"]) == 2
            speedup = run[f"{state}_speedup_{how}"]
            assert speedup == pytest.approx(
                run[f"{state}_store_{how}_samples_per_s"] / run[f"{state}_geotiff_samples_per_s"]
            )
    assert results["bigearthnet"]["none"]["read_samples"] == results["bigearthnet"]["patches"]


def test_graph_profile_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """The per-node profile of both graphs: the shared one has sharing nodes and no coalition
    stacking, and the two agree to float rounding."""
    from benchmarks.graph_profile import main

    assert main(["--batch", "2", "--size", "32", "--runs", "1", "--top", "40"]) == 0
    out = capsys.readouterr().out
    unshared, shared = out.split("\nshared: ")
    assert "sharing" not in unshared.split("\n\n")[1] and "sareval_pre_stacked" in unshared
    assert "sharing " in shared.splitlines()[0] and "sareval_pre_stacked" not in shared
    diff = float(out.split("max |d output| ")[1].split(",")[0])
    assert diff < 1e-4


def test_segmentation_counting_smoke(tmp_path: Path) -> None:
    """The counting benchmark runs and reports counting as a share of the pass."""
    from benchmarks.segmentation_counting import main

    out = main(["--images", "2", "--size", "64", "--batch-size", "1", "--repeats", "1",
                "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert out["counting_share_of_pass"] == pytest.approx(
        out["counting_s_per_batch"] / out["pass_s_per_batch"]
    )
    assert (tmp_path / "r.json").is_file()


def test_absence_mask_smoke() -> None:
    """One masked call and the per-coalition loop give timings for every coalition."""
    from benchmarks.absence_mask import main

    out = main(["--batch-size", "2", "--size", "16", "--dim", "32", "--depth", "1",
                "--repeats", "1", "--players", "3"])  # fmt: skip
    assert out["coalitions"] == 7 and out["one_call_s"] > 0 and out["per_coalition_s"] > 0


def test_forward_paths_smoke() -> None:
    """Every torch execution path of the forward probe runs and is timed."""
    from benchmarks.forward_paths import main

    out = main(["--rows", "2", "--size", "32", "--repeats", "1", "--threads", "1"])
    assert len(out) == 8 and all(seconds > 0 for seconds in out.values())


@pytest.mark.slow
def test_bf16_bounds_smoke_on_a_trained_network(tmp_path: Path) -> None:
    """The bound benchmark on a tiny split with the harness's trained network (the
    ``--train-epochs`` path of prepare_inputs): both bf16 copies measured, shares in [0, 1]."""
    from benchmarks.bf16_bounds import main

    out = main(["--workdir", str(tmp_path), "--patches", str(PATCHES), "--size", str(SIZE),
                "--train-epochs", "1", "--batch-size", "5", "--threads", "1"])  # fmt: skip
    assert set(out) == {"frozen, fused (bf16-verified)", "eager"}
    for stats in out.values():
        assert 0 <= stats["median error"] <= stats["max error"]
        assert 0 <= stats["re-run, absolute bound"] <= 1
        assert 0 <= stats["re-run, relative bound"] <= 1
    trained = list(tmp_path.glob("model-resnet18-*/train/model.onnx"))
    assert len(trained) == 1  # the network was trained, not randomly initialised
