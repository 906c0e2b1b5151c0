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
