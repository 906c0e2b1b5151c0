"""What a model returns is validated once, in the backends (issue 19): every kind of wrong
return is one SarevalError naming the model and what it returned; float64 / half outputs and
float64 / half modules run, equal to doing the cast by hand; ONNX integer outputs are refused."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import sareval
from sareval.card import set_onnx_card
from sareval.errors import SarevalError

CLASSES = ("water", "forest", "urban", "crop")  # a 4-class card


@pytest.fixture(scope="module")
def card() -> sareval.ModelCard:
    base = sareval.ModelCard.from_preset("sen12ms-s1s2", task="single-label", input_size=8)
    return dataclasses.replace(base, class_names=CLASSES)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(19)
    n = 10
    return {
        "s1": rng.normal(-12, 4, size=(n, 2, 8, 8)).astype(np.float32),
        "s2": rng.integers(0, 4000, size=(n, 13, 8, 8)).astype(np.uint16),
        "label": rng.integers(0, len(CLASSES), n),
    }


class Net(torch.nn.Module):
    """Pooled channels -> linear; ``ret`` changes what forward returns."""

    def __init__(self, n_in: int, k: int, ret: Any = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(n_in, k).to(dtype)
        self.ret = ret

    def forward(self, x: torch.Tensor) -> Any:
        out = self.lin(x.mean((2, 3)))
        return out if self.ret is None else self.ret(out)


RETURNS = {
    "tuple": (lambda o: (o, o), "returned a tuple of 2 (a torch.Tensor of shape"),
    "dict": (lambda o: {"logits": o}, "returned a dict with keys 'logits'"),
    "list": (lambda o: [o], "returned a list of 1 (a torch.Tensor"),
    "numpy": (lambda o: o.numpy(), "returned a numpy.ndarray of shape"),
    "none": (lambda o: None, "returned None"),
    "1-d": (lambda o: o[:, 0], "(1-D); expected (batch, 4)"),
    "batch-size": (lambda o: o[:-1], "rows of outputs for a batch of"),
    "int64": (lambda o: o.long(), "returned int64 outputs"),
    "complex": (lambda o: o.to(torch.complex64), "returned complex64 outputs"),
}


@pytest.mark.parametrize("kind", sorted(RETURNS))
def test_a_wrong_return_is_one_error_naming_it(kind: str, card, data) -> None:
    ret, fragment = RETURNS[kind]
    with pytest.raises(SarevalError) as e:
        sareval.evaluate(Net(card.n_channels, 4, ret), data, card=card, batch_size=4)
    message = str(e.value)
    assert message.startswith("model: ") and fragment in message, message
    assert "\n" not in message


def test_three_columns_for_a_four_class_card(card, data) -> None:
    with pytest.raises(SarevalError, match=r"^model: returned 3 output columns, but its card "
                       r"has 4 classes$"):  # fmt: skip
        sareval.evaluate(Net(card.n_channels, 3), data, card=card)


def test_a_batch_size_error_after_the_first_batch_is_caught(card, data) -> None:
    """Cheap checks run on every execution, not only the first: a model that drops a row from
    its third call on is refused."""
    calls = []

    def ret(o: torch.Tensor) -> torch.Tensor:
        calls.append(len(o))
        return o if len(calls) < 3 else o[:-1]

    with pytest.raises(SarevalError, match="rows of outputs for a batch of"):
        sareval.evaluate(Net(card.n_channels, 4, ret), data, card=card, batch_size=4)
    assert len(calls) == 3


@pytest.mark.parametrize("cast", [torch.float64, torch.float16])
def test_float64_and_half_outputs_are_cast(cast: torch.dtype, card, data) -> None:
    plain = sareval.evaluate(Net(card.n_channels, 4), data, card=card)
    other = sareval.evaluate(Net(card.n_channels, 4, lambda o: o.to(cast)), data, card=card)
    if cast == torch.float64:  # float32 -> float64 -> float32 is exact: the same result
        assert other.counts == plain.counts
    # half: the reference casts by hand, float32(float16(o))
    ref = sareval.evaluate(Net(card.n_channels, 4, lambda o: o.to(cast).float()), data, card=card)
    assert other.counts == ref.counts


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_float64_and_half_modules_run_on_inputs_cast_to_their_dtype(dtype, card, data) -> None:
    """The policy: inputs are cast to the module's parameter dtype; the reference does that
    cast by hand in a plain callable around the same module."""
    net = Net(card.n_channels, 4, dtype=dtype)
    got = sareval.evaluate(net, data, card=card)

    def by_hand(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(dtype))  # type: ignore[no-any-return]

    ref = sareval.evaluate(by_hand, data, card=card)
    assert got.counts == ref.counts
    assert next(net.parameters()).dtype == dtype  # the caller's module is not converted


def test_wrong_arity_is_one_line(card, data) -> None:
    class TwoInputs(torch.nn.Module):
        def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
            return s1.mean((1, 2, 3))

    with pytest.raises(SarevalError, match=r"^model: forward takes 2 input\(s\), but its card "
                       r"gives it 1 \(ModelCard input tensors\)$"):  # fmt: skip
        sareval.evaluate(TwoInputs(), data, card=card)
    two = card.with_inputs({"s1": ["VV", "VH"], "s2": list(card.modality("opt").bands)})
    with pytest.raises(SarevalError, match=r"^model: forward takes 1 input\(s\), but its card "
                       r"gives it 2"):  # fmt: skip
        sareval.evaluate(Net(card.n_channels, 4), data, card=two)
    with pytest.raises(SarevalError, match="forward takes 3 input"):
        sareval.evaluate(lambda a, b, c: a, data, card=two)


def test_nan_outputs_are_counted_and_refused_with_the_counts(card, data) -> None:
    """Finiteness policy: NaN / Inf outputs are counted per coalition over the whole pass and
    refused at its end with the counts (the all-baseline input is finite here)."""
    n = len(data["label"])

    def ret(o: torch.Tensor) -> torch.Tensor:
        return torch.where(o.abs().sum(1, keepdim=True) > 0, torch.nan, o)

    net = Net(card.n_channels, 4, ret)
    with torch.no_grad():
        net.lin.bias.zero_()  # all-zero (baseline) input -> zero output -> finite
    counts = ", ".join(f"coalition {c}: {n} samples" for c in ("sar", "opt", "sar+opt"))
    with pytest.raises(
        SarevalError, match=rf"^model outputs are NaN or Inf \({re.escape(counts)}\)$"
    ):
        sareval.evaluate(net, data, card=card, baseline="input-zero")


# --- ONNX ---------------------------------------------------------------------------------------
def onnx_model(card: sareval.ModelCard, out_type: int, k: int, path: Path) -> Path:
    """``input`` (N, C, 8, 8) -> mean over pixels -> MatMul -> [Cast to ``out_type``]."""
    c = card.n_channels
    w = np.random.default_rng(0).normal(size=(c, k)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    out = "logits"
    if out_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["logits"], ["out"], to=out_type))
        out = "out"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, 8, 8])],
        [helper.make_tensor_value_info(out, out_type, ["N", k])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([2, 3]), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    set_onnx_card(model, card)
    onnx.save(model, str(path))
    return path


def test_onnx_int64_outputs_are_refused(card, data, tmp_path: Path) -> None:
    path = onnx_model(card, TensorProto.INT64, 4, tmp_path / "int64.onnx")
    with pytest.raises(SarevalError, match=rf"^{tmp_path}/int64.onnx: returns int64 outputs "
                       r"\('out'\); expected floating-point"):  # fmt: skip
        sareval.evaluate(path, data)


def test_onnx_class_count_and_float64_outputs(card, data, tmp_path: Path) -> None:
    narrow = onnx_model(card, TensorProto.FLOAT, 3, tmp_path / "narrow.onnx")
    with pytest.raises(SarevalError, match="returned 3 output columns, but its card has 4"):
        sareval.evaluate(narrow, data)
    f32 = sareval.evaluate(onnx_model(card, TensorProto.FLOAT, 4, tmp_path / "f32.onnx"), data)
    f64 = sareval.evaluate(onnx_model(card, TensorProto.DOUBLE, 4, tmp_path / "f64.onnx"), data)
    assert f64.counts == f32.counts  # float32 logits cast to double and back: the same


class OptionalSecond(torch.nn.Module):
    def __init__(self, n_in: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(n_in, 4)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        return self.lin(x.mean((2, 3)))


def test_torchscript_arity_counts_defaults(card, data) -> None:
    """A TorchScript schema's defaulted arguments are optional: forward(x, y=None) runs on a
    one-input card (equal to the eager module); a two-input card with forward(x) is refused."""
    eager = OptionalSecond(card.n_channels)
    scripted = torch.jit.script(eager)
    assert sareval.evaluate(scripted, data, card=card).counts == (
        sareval.evaluate(eager, data, card=card).counts
    )
    two = card.with_inputs({"s1": ["VV", "VH"], "s2": list(card.modality("opt").bands)})
    with pytest.raises(
        SarevalError, match=r"^model: forward takes 1 input\(s\), but its card gives it 2"
    ):
        sareval.evaluate(torch.jit.script(Net(card.n_channels, 4)), data, card=two)
