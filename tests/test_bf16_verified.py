"""precision="bf16-verified": bf16 network, fp32 decisions (sareval.evaluator.bf16_verified)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from shape_testing import evaluate_doc, make_card, tiny_net, write_store

from sareval.errors import SarevalError
from sareval.evaluator import bf16_verified
from sareval.evaluator.backends import load_model, make_backend
from sareval.evaluator.bf16_verified import (
    CALIBRATION_ROWS,
    SAFETY,
    VerifiedBf16,
    decisions,
    margins,
)
from sareval.evaluator.config import check_precision
from sareval.evaluator.metrics import decision_threshold
from sareval.evaluator.preamble import build_preamble
from sareval.evaluator.torch_speed import LLGA_BF16
from sareval.store import Store

TASKS = ("single-label", "multi-label")
needs_bf16 = pytest.mark.skipif(
    not bf16_verified.native_bf16("cpu"), reason="this CPU has no native bf16"
)


class Offset(torch.nn.Module):
    """``(10 * tiny_net(x) + 128) - 128``: in bf16 the sum rounds to whole numbers (the spacing
    at 128..256), an error up to 0.5 per logit, so bf16 decisions near ties differ."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = tiny_net(seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (10.0 * self.net(x) + 128.0) - 128.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("bf16") / "s.h5", n=96, seed=4)


def batches(store: Path, size: int = 32) -> tuple[list[dict[str, np.ndarray]], dict, Any]:
    with Store(store) as st:
        sub = st.subset("clear")
        raws = [st.read_batch(sub, a, a + size).arrays for a in range(0, len(sub), size)]
        info = {
            "bands": {s: st.bands(s) for s in ("s1", "s2")},
            "dtypes": {s: st.image_spec(sub, s)[1] for s in ("s1", "s2")},
        }
        return raws, info, st.image_size


def backend(net: Any, task: str, store: Path, precision: str) -> Any:
    card = make_card(task)
    _, info, size = batches(store)
    pre = build_preamble(card, info["bands"])
    return make_backend(load_model(net, card), pre, backend="torch", device="cpu",
                        provider=None, input_dtypes=info["dtypes"], image_size=size,
                        precision=precision)  # fmt: skip


def host_decisions(out: np.ndarray, task: str) -> np.ndarray:
    cut = decision_threshold("logits", 0.5)
    return out.argmax(-1) if task == "single-label" else out >= cut


@needs_bf16
@pytest.mark.parametrize("task", TASKS)
def test_every_decision_equals_fp32(store: Path, task: str) -> None:
    net = Offset(seed=0 if task == "single-label" else 1).eval()
    raws, _, _ = batches(store)
    runs = {p: backend(net, task, store, p) for p in ("fp32", "bf16-pure", "bf16-verified")}
    dec = {p: [host_decisions(b.run(raw), task) for raw in raws] for p, b in runs.items()}
    # bf16 alone changes decisions here, so the verified mode has work to do
    assert any((a != b).any() for a, b in zip(dec["bf16-pure"], dec["fp32"], strict=True))
    for a, b in zip(dec["bf16-verified"], dec["fp32"], strict=True):
        np.testing.assert_array_equal(a, b)
    rec = runs["bf16-verified"].precision_record
    assert rec["fallback"] is None and rec["bound"] > 0
    assert rec["rows_total"] == 3 * 96 and rec["rows_calibration"] == CALIBRATION_ROWS
    assert rec["rows_rerun"] > 0 and rec["rows_audited"] >= 2
    assert rec["bf16_path"] == LLGA_BF16  # the fused bf16 copy ran, not an eager fallback
    # some rows kept their bf16 outputs: the network really ran in bf16
    assert rec["rows_rerun"] + rec["rows_audited"] < rec["rows_total"] - rec["rows_calibration"]


@needs_bf16
@pytest.mark.parametrize("task", TASKS)
def test_counts_equal_fp32_end_to_end(store: Path, task: str) -> None:
    net, card = Offset(seed=2).eval(), make_card(task)
    kw: dict[str, Any] = dict(backend="torch", batch_size=24, progress=False)
    fp32 = evaluate_doc((net, card), store, "clear", **kw)
    verified = evaluate_doc((net, card), store, "clear", precision="bf16-verified", **kw)
    pure = evaluate_doc((net, card), store, "clear", precision="bf16-pure", **kw)
    assert verified["counts"] == fp32["counts"]
    assert pure["counts"] != fp32["counts"]  # the test could fail
    assert verified["config"]["precision"] == "bf16-verified"


@needs_bf16
def test_the_audit_catches_a_widened_bf16_error(store: Path) -> None:
    """Noise far above the bound injected into the bf16 outputs after calibration: an
    audited row differs, everything from there on runs fp32, decisions stay fp32's."""
    task = "single-label"
    net = Offset(seed=0).eval()
    raws, _, _ = batches(store)
    exact = backend(net, task, store, "fp32")
    verified = backend(net, task, store, "bf16-verified")
    gen = torch.Generator().manual_seed(0)

    def widen(out: torch.Tensor) -> torch.Tensor:
        bound = verified.precision_record["bound"]
        return out + 50 * bound * torch.randn(out.shape, generator=gen)

    verified._verified.perturb = widen
    for raw in raws:
        np.testing.assert_array_equal(
            host_decisions(verified.run(raw), task), host_decisions(exact.run(raw), task)
        )
    rec = verified.precision_record
    assert rec["fallback"] is not None and "ran in fp32" in rec["fallback"]
    assert rec["rows_total"] == 3 * 96


@needs_bf16
def test_fp32_rows_in_one_paired_call_equal_one_call_per_coalition(store: Path) -> None:
    """The re-run rows of an execution, (sample, coalition) pairs in any order, run in one
    paired call of the fp32 module: the outputs of one call per coalition (the path a shared
    module keeps), and of the whole execution's rows, within float rounding."""
    net = Offset(seed=3).eval()
    raws, _, _ = batches(store)
    verified = backend(net, "single-label", store, "bf16-verified")._verified
    raw = {s: torch.from_numpy(a) for s, a in raws[0].items()}
    b = len(raws[0]["s1"])
    rows = np.array([5, 3 * b - 1, b, 2, 2 * b + 7, b + 1, 0])  # mixed coalitions, unsorted
    calls: list[int] = []
    exact = verified.exact

    def counted(*args: Any, **kw: Any) -> torch.Tensor:
        calls.append(len(args[1]))
        return exact(*args, **kw)

    verified.exact = counted
    with torch.inference_mode():
        verified._x = verified.normalise(raw)
        paired = verified._rows(raw, verified.masks, rows, b=b)
        assert calls == [len(rows)]
        verified.paired = False
        per_coalition = verified._rows(raw, verified.masks, rows, b=b)
        whole = exact(raw, verified.masks)[torch.from_numpy(rows)]
    assert calls[1:] == [1, 1, 1]  # one (1, C) mask per coalition
    torch.testing.assert_close(paired, per_coalition, rtol=0, atol=1e-5)
    torch.testing.assert_close(paired, whole, rtol=0, atol=1e-5)


def test_segmentation_rows_keep_their_fp32_label_maps() -> None:
    """Outputs (rows, K, H', W'), bf16 emulated by bounded noise: re-runs and audits select
    rows by their smallest pixel margin; every pixel's argmax equals the exact one."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(2, 80, 4, 5, 5, generator=gen)  # (coalitions, samples, K, H', W')

    def exact(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        m = masks if mask is None else mask
        rows = raw["idx"]
        return torch.cat([base[int(k)][rows] for k in m[:, 0].long()])

    def fast(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        out = exact(raw, mask)
        return out + 0.005 * (torch.rand(out.shape, generator=gen) * 2 - 1)

    masks = torch.tensor([[0], [1]])
    v = VerifiedBf16(fast, exact, masks, task="segmentation")
    for a in range(0, 80, 10):
        raw = {"idx": torch.arange(a, a + 10)}
        out = v(raw, None)
        want = torch.cat([base[0][a : a + 10], base[1][a : a + 10]])
        assert torch.equal(out.argmax(1), want.argmax(1))
    rec = v.record
    assert rec["rows_calibration"] == CALIBRATION_ROWS and rec["rows_total"] == 160
    assert 0 < rec["bound"] <= SAFETY * 0.01 and rec["rows_rerun"] > 0 and rec["rows_audited"] >= 4
    assert rec["fallback"] is None and 0 < rec["worst_error_to_bound"] <= 1


def test_an_error_above_the_bound_falls_back_even_without_a_changed_decision() -> None:
    """Only the top class of each row is pushed up, far beyond the bound, after calibration:
    no decision changes (the audit's decision check alone would pass), but the re-run and
    audited rows show an error above their bound, so the run falls back to fp32."""
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(3, 60, 5, generator=gen)  # (coalitions, samples, K)

    def exact(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        m = masks if mask is None else mask
        return torch.cat([base[int(k)][raw["idx"]] for k in m[:, 0].long()])

    def fast(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        out = exact(raw, mask)
        return out + 0.001 * (torch.rand(out.shape, generator=gen) * 2 - 1)

    def push_top_class(out: torch.Tensor) -> torch.Tensor:
        assert v.bound is not None
        top = torch.nn.functional.one_hot(out.argmax(1), out.shape[1])
        return out + 50 * v.bound * top

    masks = torch.tensor([[0], [1], [2]])
    v = VerifiedBf16(fast, exact, masks, task="single-label")
    v.perturb = push_top_class
    for a in range(0, 60, 20):
        out = v({"idx": torch.arange(a, a + 20)}, None)
        want = torch.cat([base[k][a : a + 20] for k in range(3)])
        assert torch.equal(out.argmax(1), want.argmax(1))
    rec = v.record
    assert rec["fallback"] is not None and "exceeded its bound" in rec["fallback"]
    assert rec["worst_error_to_bound"] > 1


def test_margins_equal_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    out = rng.normal(size=(7, 5)).astype(np.float32)
    single = [sorted(r)[-1] - sorted(r)[-2] for r in out.astype(np.float64)]
    np.testing.assert_allclose(margins(torch.from_numpy(out), "single-label", 0.0), single)
    cut = 0.3
    multi = [min(abs(v - cut) for v in r) for r in out.astype(np.float64)]
    np.testing.assert_allclose(margins(torch.from_numpy(out), "multi-label", cut), multi)
    seg = rng.normal(size=(3, 4, 2, 2))
    naive = [min(sorted(seg[i, :, y, x])[-1] - sorted(seg[i, :, y, x])[-2]
                 for y in range(2) for x in range(2)) for i in range(3)]  # fmt: skip
    np.testing.assert_allclose(margins(torch.from_numpy(seg), "segmentation", 0.0), naive)
    assert decisions(torch.from_numpy(seg), "segmentation", 0.0).shape == (3, 4)


def test_without_native_bf16_it_warns_and_runs_fp32(store: Path, monkeypatch) -> None:
    monkeypatch.setattr(bf16_verified, "native_bf16", lambda device_type="cpu": False)
    net = Offset(seed=0).eval()
    raws, _, _ = batches(store)
    with pytest.warns(RuntimeWarning, match="no native bf16.*running fp32"):
        b = backend(net, "single-label", store, "bf16-verified")
    exact = backend(net, "single-label", store, "fp32")
    np.testing.assert_array_equal(b.run(raws[0]), exact.run(raws[0]))
    assert b.precision_record == {"precision": "bf16-verified", "native_bf16": False,
                                  "ran": "fp32"}  # fmt: skip


def test_refusals_name_the_option() -> None:
    with pytest.raises(
        SarevalError, match=r"'bf16-verified' needs ShapeConfig\.execution\.backend"
    ):
        check_precision("bf16-verified", "onnxruntime")
    with pytest.raises(SarevalError, match=r"^ShapeConfig.execution.precision: .*map_macro"):
        check_precision("bf16-verified", "torch", ["metric map_macro"])
    check_precision("bf16-verified", "torch")
    check_precision("fp32", "torch", ["save_predictions"])


@pytest.mark.slow
@needs_bf16
def test_torchscript_files_and_shared_computation(store: Path, tmp_path: Path) -> None:
    """A TorchScript file, and a sareval ResNet with share=True: counts equal fp32's."""
    from shape_testing import export_torchscript

    from sareval.models import build_model

    card = make_card("single-label")
    path = export_torchscript(Offset(seed=3).eval(), card, tmp_path / "net.pt")
    kw: dict[str, Any] = dict(backend="torch", batch_size=32, progress=False)
    fp32 = evaluate_doc(path, store, "clear", **kw)
    assert (
        evaluate_doc(path, store, "clear", precision="bf16-verified", **kw)["counts"]
        == (fp32["counts"])
    )
    torch.manual_seed(0)
    resnet = build_model("resnet18", card.n_channels, card.n_classes, fusion="early").eval()
    shared = evaluate_doc((resnet, card), store, "clear", share=True, **kw)
    verified = evaluate_doc(
        (resnet, card), store, "clear", share=True, precision="bf16-verified", **kw
    )
    assert shared["config"]["share"] == verified["config"]["share"] == "first-conv"
    assert verified["counts"] == shared["counts"]


def test_an_error_relative_to_the_output_size_keeps_the_relative_bound() -> None:
    """bf16 emulated by a relative error (1 % of each row's largest |logit|) on rows whose
    logits range over 0.1 .. 100: the relative rule is kept, it re-runs far fewer rows than
    one absolute bound would, and every decision equals the exact one."""
    gen = torch.Generator().manual_seed(3)
    size = 10 ** (torch.rand(2, 200, 1, generator=gen) * 3 - 1)  # 0.1 .. 100 per row
    base = torch.randn(2, 200, 6, generator=gen) * size

    def exact(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        m = masks if mask is None else mask
        return torch.cat([base[int(k)][raw["idx"]] for k in m[:, 0].long()])

    def fast(raw: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        out = exact(raw, mask)
        scale = out.abs().amax(1, keepdim=True)
        return out + 0.01 * scale * (torch.rand(out.shape, generator=gen) * 2 - 1)

    masks = torch.tensor([[0], [1]])
    v = VerifiedBf16(fast, exact, masks, task="single-label")
    for a in range(0, 200, 40):
        out = v({"idx": torch.arange(a, a + 40)}, None)
        want = torch.cat([base[0][a : a + 40], base[1][a : a + 40]])
        assert torch.equal(out.argmax(1), want.argmax(1))
    rec = v.record
    assert rec["bound_rule"] == "relative" and rec["fallback"] is None
    # the absolute rule on the same outputs: SAFETY x the largest error seen
    gaps = base.topk(2, dim=2).values
    margin = (gaps[..., 0] - gaps[..., 1]).flatten()
    absolute = int((margin < 2 * rec["bf16_max_error"]).sum())
    assert rec["rows_rerun"] < absolute / 2
