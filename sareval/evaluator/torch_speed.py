"""The fast fp32 torch path on CPU: a traced, frozen, oneDNN-optimised copy of the network.

:class:`FastNetwork` wraps the bare network inside the coalition module
(:func:`~sareval.evaluator.preamble.coalition_module`). On its first call it builds, from a
COPY of the network (the caller's module, its parameters, ``training`` flags and memory format
are never changed)::

    fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy, x[:2])))

(a TorchScript file's module is frozen as it is, without tracing): ``freeze`` inlines the
weights and folds BatchNorm into the convolutions, ``optimize_for_inference`` moves the
convolutions to oneDNN (mkldnn) with pre-packed weights. Outputs agree with the eager network
within float rounding (max |d| 1.7e-5 on the benchmark's ResNet18 logits).

What was measured (the benchmark's ResNet18, 192 x 12 x 128 x 128 rows, 2 threads,
forward only, best of 3, a loaded 2-core Xeon with AMX, 2026-12-07): eager 1813 ms,
channels-last 1355 ms, trace + freeze 1622 ms, channels-last + trace + freeze 1235 ms,
**trace + freeze + optimize_for_inference 1190 ms**, ``torch.compile`` (channels-last) 1242 ms
after a 28 s compile; onnxruntime on the same rows 896-1064 ms. ``torch.compile`` does not pay
for its compile time on a 400-sample split, channels-last adds nothing once oneDNN owns the
layout (channels-last + trace + freeze + optimize_for_inference: 1272 ms), so the frozen,
optimised trace is what runs. bf16 (``precision="bf16-verified"``): a bf16 channels-last copy,
traced and frozen (``FROZEN_BF16``: 392 ms; eager 446 ms, autocast 497 ms on the same rows).
``torch.jit`` warns that it is deprecated in torch 2.13; it is still the fastest path here
(the warning is silenced where the copy is built).

Inputs with NaN or Inf values run eager: oneDNN's fused ReLU turns NaN into 0, where the
eager network (and the run's non-finite output check) sees NaN. The check is one pass over the
input (about 1 % of a ResNet18 forward).

Fallback: when tracing, freezing or running the copy fails (data-dependent control flow is a
``TracerWarning`` here, treated as a failure; dict inputs or outputs; an op the JIT cannot
run), the eager network runs and :attr:`FastNetwork.how` says why. CUDA devices and shared
computation (:mod:`sareval.evaluator.sharing`, which needs the network's own layers) run
eager as before.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

#: what :attr:`FastNetwork.how` reports for the optimised copy
FAST = "traced, frozen, oneDNN (torch.jit.optimize_for_inference)"
FROZEN_BF16 = "traced, frozen (bf16)"


def optimised_copy(network: Any, xs: tuple[torch.Tensor, ...], *, mkldnn: bool = True) -> Any:
    """A traced (TorchScript modules: as is), frozen copy of ``network`` for inputs like
    ``xs``; ``mkldnn``: also :func:`torch.jit.optimize_for_inference` (fp32 only). Raises on
    any failure, a ``TracerWarning`` included."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: still the fastest here
        with torch.inference_mode(False), torch.no_grad():
            if isinstance(network, torch.jit.ScriptModule):
                scripted = network
            else:
                net = copy.deepcopy(network)
                example = tuple(x[:2].clone() for x in xs)
                scripted = torch.jit.trace(net, example, check_trace=False, strict=True)
            frozen = torch.jit.freeze(scripted.eval())
            return torch.jit.optimize_for_inference(frozen) if mkldnn else frozen


class FastNetwork(nn.Module):
    """``forward(*xs)``: the network's outputs, from the optimised copy (module docstring)
    built on the first call; ``how`` names what runs (``eager: <why>`` after a fallback)."""

    def __init__(self, network: Any, *, mkldnn: bool = True, label: str = FAST) -> None:
        super().__init__()
        self.network = network
        self.mkldnn, self.label = mkldnn, label
        self.fast: Any = None
        self.how = "not built yet"

    def _fall_back(self, what: str, error: BaseException) -> None:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        self.fast = self.network
        self.how = f"eager: {what} failed ({type(error).__name__}: {reason})"

    def forward(self, *xs: Any) -> Any:
        if self.fast is None:
            self._build(xs)
        fast: Any = self.fast
        if fast is self.network or not all(bool(torch.isfinite(x).all()) for x in xs):
            return self.network(*xs)  # NaN / Inf inputs: oneDNN's fused ReLU maps NaN to 0
        try:
            return fast(*xs)
        except Exception as e:  # e.g. a shape the trace baked in: eager from now on
            self._fall_back("running the traced copy", e)
            return self.network(*xs)

    def _build(self, xs: tuple[Any, ...]) -> None:
        if not all(isinstance(x, torch.Tensor) for x in xs):
            self.fast, self.how = self.network, "eager: inputs are not tensors"
            return
        try:
            self.fast = optimised_copy(self.network, xs, mkldnn=self.mkldnn)
            self.how = self.label
        except Exception as e:  # the JIT raises many types; the eager network still runs
            self._fall_back("tracing", e)
