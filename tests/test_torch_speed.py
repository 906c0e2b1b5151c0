"""The fast fp32 torch path (sareval.evaluator.torch_speed): same counts as onnxruntime and the
eager graph, the caller's module untouched, eager fallback when tracing fails."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from shape_testing import evaluate_doc, get_assets, make_card, tiny_net

from sareval.evaluator.backends import LoadedModel, load_model, make_backend
from sareval.evaluator.preamble import build_preamble, coalition_module
from sareval.evaluator.torch_speed import FAST, FastNetwork
from sareval.store import Store

TASKS = ("single-label", "multi-label")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def batch(assets) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    """A raw batch of 24 samples, the store's bands and dtypes, the image size."""
    with Store(assets.store) as st:
        sub = st.subset("clear")
        raw = st.read_batch(sub, 0, 24).arrays
        bands = {s: st.bands(s) for s in ("s1", "s2")}
        dtypes = {s: st.image_spec(sub, s)[1] for s in ("s1", "s2")}
        return raw, {"bands": bands, "dtypes": dtypes}, st.image_size


def backend_for(model: Any, card: Any, batch: Any, **kw: Any) -> Any:
    _, info, size = batch
    loaded = model if isinstance(model, LoadedModel) else load_model(model, card)
    pre = build_preamble(loaded.card, info["bands"])
    return make_backend(loaded, pre, backend="torch", device="cpu", provider=None,
                        input_dtypes=info["dtypes"], image_size=size, **kw)  # fmt: skip


def eager_outputs(net: Any, card: Any, batch: Any) -> np.ndarray:
    """The coalition graph as before this path: the eager module, inference mode."""
    raw, info, _ = batch
    module = coalition_module(build_preamble(card, info["bands"]), net)
    with torch.inference_mode():
        out = module({s: torch.from_numpy(np.ascontiguousarray(a)) for s, a in raw.items()})
    return out.numpy().reshape(3, len(raw["s1"]), -1)


@pytest.mark.parametrize("task", TASKS)
def test_counts_equal_onnxruntime_and_the_eager_graph(assets, batch, task: str) -> None:
    net, card = assets.nets[task], assets.cards[task]
    backend = backend_for(net, card, batch)
    out = backend.run(batch[0])
    assert backend.torch_path == FAST
    np.testing.assert_allclose(out, eager_outputs(net, card, batch), atol=1e-4)
    kw: dict[str, Any] = dict(batch_size=16, progress=False)
    fast = evaluate_doc((net, card), assets.store, "clear", backend="torch", **kw)
    ts = evaluate_doc(assets.torchscript[task], assets.store, "clear", backend="torch", **kw)
    ort = evaluate_doc(assets.onnx[task], assets.store, "clear", **kw)
    assert fast["counts"] == ts["counts"] == ort["counts"]
    # the coalitions differ: equal counts are not those of a constant model
    assert len({str(fast["counts"][c]) for c in fast["coalitions"]}) == 4


def test_torchscript_file_runs_frozen(assets, batch) -> None:
    task = "single-label"
    backend = backend_for(assets.torchscript[task], None, batch)
    out = backend.run(batch[0])
    assert backend.torch_path == FAST
    np.testing.assert_allclose(
        out, eager_outputs(assets.nets[task], assets.cards[task], batch), atol=1e-4
    )


def test_the_callers_module_is_unchanged(assets, batch) -> None:
    """Parameters, buffers, training flags and memory format stay as the caller left them."""
    card = assets.cards["single-label"]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(12, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 6),
    ).eval()  # fmt: skip
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
    net[2].training = True  # a flag the caller set (ReLU ignores it): mixed modes
    before = copy.deepcopy(net.state_dict())
    flags = [m.training for m in net.modules()]
    for precision in ("fp32", "bf16-verified"):
        backend = backend_for(net, card, batch, precision=precision)
        backend.run(batch[0])
        backend.close()
        after = net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert [m.training for m in net.modules()] == flags
        assert net[0].weight.is_contiguous()
        assert not net[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert all(p.dtype == torch.float32 for p in net.parameters())


class Branchy(torch.nn.Module):
    """Data-dependent control flow: a trace would freeze one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if float(out.sum()) > 0:
            return out
        return -out


def test_data_dependent_control_flow_runs_eager(assets, batch) -> None:
    card = assets.cards["single-label"]
    net = Branchy().eval()
    backend = backend_for(net, card, batch)
    out = backend.run(batch[0])
    assert backend.torch_path.startswith("eager: tracing failed")
    np.testing.assert_allclose(out, eager_outputs(net, card, batch), atol=1e-5)


def test_dict_inputs_run_eager(batch) -> None:
    """A two-input module called with a dict: traced modules take tensors only."""
    base = make_card()
    card = base.with_inputs({"s2": base.channels[:10], "s1": ("VV", "VH")}, call="dict")

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = tiny_net(n_in=10), tiny_net(n_in=2, seed=1)

        def forward(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.a(d["s2"]) + self.b(d["s1"])

    backend = backend_for(TwoInputs().eval(), card, batch)
    out = backend.run(batch[0])
    assert backend.torch_path.startswith("eager:")
    assert out.shape == (3, 24, 6) and np.isfinite(out).all()


def test_a_trace_failing_at_another_shape_falls_back() -> None:
    """A traced copy that raises on a later shape (here: a trace that baked in its example
    shape): that call and all later ones run the eager network, recorded."""

    class BakedShape(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():
                return x.reshape(2, 12) * 1.0
            return x * 1.0

    fast = FastNetwork(BakedShape())
    with torch.inference_mode():
        fast(torch.ones(2, 12))  # traced on its first two rows
        assert fast.how == FAST
        x = torch.arange(36.0).reshape(3, 12)
        out = fast(x)
    assert fast.how.startswith("eager: running the traced copy failed (RuntimeError")
    assert torch.equal(out, x)


def test_calls_in_chunks_of_rows_equal_one_call() -> None:
    """``rows``: 150 rows in calls of 64, 64 and 22 give the outputs of one call (each row's
    computation does not depend on the others in eval mode), a NaN row still runs eager."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).eval()  # fmt: skip
    x = torch.randn(150, 3, 12, 12)
    whole, chunked = FastNetwork(net), FastNetwork(net, rows=64)
    with torch.inference_mode():
        want = whole(x)
        chunked(x[:2])  # builds the copy (a hook on the module below is not in it)
    calls: list[int] = []
    handle = net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.inference_mode():
        assert torch.allclose(chunked(x), want, atol=1e-5)
        assert chunked.how == FAST and calls == []  # the optimised copy ran, not the module
        x[7, 0, 0, 0] = float("nan")
        assert torch.isnan(chunked(x)[7]).all() and calls == [150]  # eager, in one call
    handle.remove()


def test_onednn_fusion_is_restored_and_the_fused_bf16_copy_matches() -> None:
    from sareval.evaluator.backends import _pure_bf16
    from sareval.evaluator.torch_speed import LLGA_BF16, onednn_fusion

    before = bool(torch._C._jit_llga_enabled())
    with onednn_fusion(True):
        assert torch._C._jit_llga_enabled()
    assert bool(torch._C._jit_llga_enabled()) == before
    with pytest.raises(RuntimeError), onednn_fusion(True):
        raise RuntimeError("restored on errors too")
    assert bool(torch._C._jit_llga_enabled()) == before
    torch.manual_seed(1)
    net = tiny_net(seed=1).eval()
    x = torch.randn(80, 12, 16, 16)
    bf16 = _pure_bf16(net)
    fused = FastNetwork(bf16, mkldnn=False, llga=True, rows=32, label=LLGA_BF16)
    with torch.inference_mode():
        want = bf16(x)
        for _ in range(3):  # the fused graph specialises over its first calls
            got = fused(x)
        exact = net(x)
    assert fused.how == LLGA_BF16
    assert bool(torch._C._jit_llga_enabled()) == before
    # bf16 either way: the fused copy is as close to fp32 as the eager bf16 copy, give or take
    assert (got - exact).abs().max() <= 4 * (want - exact).abs().max() + 1e-2


def test_the_bf16_copy_shares_the_fp32_trace_and_equals_a_traced_bf16_copy() -> None:
    """``bf16_of``: the bf16 copy is made from the fp32 copy's trace (traced once), and its
    outputs on bf16 channels-last rows are bit for bit those of tracing a bf16 copy of the
    network (the path before the trace was shared)."""
    from sareval.evaluator import torch_speed
    from sareval.evaluator.backends import _pure_bf16
    from sareval.evaluator.torch_speed import LLGA_BF16, frozen_copy, onednn_fusion

    net = tiny_net(seed=2).eval()
    x = torch.randn(80, 12, 16, 16).to(torch.bfloat16, memory_format=torch.channels_last)
    traces: list[int] = []
    trace = torch_speed.traced_copy

    def counted(network: Any, xs: Any) -> Any:
        traces.append(len(xs[0]))
        return trace(network, xs)

    fp32 = FastNetwork(net, rows=32)
    bf16 = FastNetwork(_pure_bf16(net), mkldnn=False, llga=True, rows=32, label=LLGA_BF16,
                       bf16_of=fp32)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp, torch.inference_mode():
        mp.setattr(torch_speed, "traced_copy", counted)
        for _ in range(3):  # the fused graph specialises over its first calls
            got = bf16(x)
        fp32(x.float())
        old = frozen_copy(torch_speed.traced_copy(_pure_bf16(net), (x,)), mkldnn=False, llga=True)
        with onednn_fusion(True):
            want = torch.cat([old(x[a : a + 32]) for a in range(0, 80, 32)])
    assert bf16.how == LLGA_BF16 and fp32.how == FAST
    assert len(traces) == 2  # the fp32 trace, once; then the old path's own trace
    assert got.dtype == torch.bfloat16
    assert torch.equal(got.float(), want)
