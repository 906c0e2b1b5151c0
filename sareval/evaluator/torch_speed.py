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
optimised trace is what runs, in calls of :data:`CHUNK_ROWS` rows (fewer shapes, rows that stay
in cache; a few per cent faster than one 192-row call). bf16 (``precision="bf16-verified"``): a
bf16 copy of the same trace (:func:`bf16_copy`: the network is traced once for both copies),
frozen and run under oneDNN Graph fusion (:func:`onednn_fusion`, LLGA) in calls of
:data:`CHUNK_ROWS` rows on rows the preamble builds in bf16 channels-last: 289 ms against 495 ms
eager and 428 ms frozen in one call for 192 rows, all with glibc's default heap (``python -m
benchmarks.forward_paths``, ``benchmarks/RESULTS.md``); its error is not smaller than eager
bf16's (``python -m benchmarks.bf16_bounds``: under the bound bf16-verified keeps, 17 %
against 16 % of rows below it on the random-init network, 3.0 % against 3.4 % trained), so
the speed decides. Inside an
evaluation all of these run with large buffers reused from the heap
(:mod:`sareval.evaluator.heap`): 964 against 1126 ms for the fp32 copy, 187 against 210 ms for
the fused bf16 one (``python -m benchmarks.forward_paths [--fresh-heap]``). A new input
shape costs the fused graph two slower calls while it specialises. ``optimize_for_inference``
is not applied to the bf16 copy: the fused graph replaces it.
``torch.jit`` warns that it is deprecated in torch 2.13; it is still the fastest path here
(the warning is silenced where the copy is built).

Inputs with NaN or Inf values run eager: oneDNN's fused ReLU turns NaN into 0, where the
eager network (and the run's non-finite output check) sees NaN. The check is one pass over the
input's sum (:func:`finite`; the element-wise ``isfinite`` mask cost about 14 % of a ResNet18
forward).

Fallback: when tracing, freezing or running the copy fails (data-dependent control flow is a
``TracerWarning`` here, treated as a failure; dict inputs or outputs; an op the JIT cannot
run), the eager network runs and :attr:`FastNetwork.how` says why. CUDA devices and shared
computation (:mod:`sareval.evaluator.sharing`, which needs the network's own layers) run
eager as before.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: what :attr:`FastNetwork.how` reports for the optimised copy
FAST = "traced, frozen, oneDNN (torch.jit.optimize_for_inference)"
FROZEN_BF16 = "traced, frozen (bf16)"
#: rows per call of the optimised copies (fp32 and bf16): faster than 192-row calls on the
#: benchmark's ResNet18 (benchmarks/forward_paths.py)
CHUNK_ROWS = 64
LLGA_BF16 = f"traced, frozen, oneDNN Graph fusion (bf16), {CHUNK_ROWS}-row chunks"


@contextlib.contextmanager
def onednn_fusion(on: bool = True) -> Iterator[None]:
    """torch.jit's oneDNN Graph fusion (LLGA) switched to ``on`` inside the block and restored
    after; the switch is process-wide, so it is held only around sareval's own calls."""
    was = bool(torch._C._jit_llga_enabled())
    torch.jit.enable_onednn_fusion(on)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(was)


@contextlib.contextmanager
def _jit_building(llga: bool) -> Iterator[None]:
    """Where a copy is traced or frozen: a ``TracerWarning`` raises, grad is off, and oneDNN
    Graph fusion is ``llga``."""
    with warnings.catch_warnings(), onednn_fusion(llga):
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: still the fastest here
        with torch.inference_mode(False), torch.no_grad():
            yield


def traced_copy(network: Any, xs: tuple[torch.Tensor, ...]) -> Any:
    """A traced copy of ``network`` for inputs like ``xs`` (a TorchScript module: itself).
    Raises on any failure, a ``TracerWarning`` included."""
    if isinstance(network, torch.jit.ScriptModule):
        return network
    with _jit_building(False):
        example = tuple(x[:2].clone() for x in xs)
        return torch.jit.trace(copy.deepcopy(network), example, check_trace=False, strict=True)


def frozen_copy(traced: Any, *, mkldnn: bool = True, llga: bool = False) -> Any:
    """A frozen copy of ``traced`` (:func:`traced_copy`); ``mkldnn``: also
    :func:`torch.jit.optimize_for_inference` (fp32 only); ``llga``: built for oneDNN Graph
    fusion instead (run it inside :func:`onednn_fusion`). Raises on any failure."""
    with _jit_building(llga):
        frozen = torch.jit.freeze(traced.eval())
        return torch.jit.optimize_for_inference(frozen) if mkldnn and not llga else frozen


def bf16_copy(traced: Any) -> Any:
    """A bf16 copy of a traced fp32 network, frozen for oneDNN Graph fusion: the trace is
    shared with the fp32 copy (tracing was ~110 of a ResNet18's ~150 ms build in a one-off
    probe; no command in the repo times it); its outputs
    are bit for bit those of tracing a bf16 copy (checked in tests). Inputs must be bf16."""
    with _jit_building(True):
        return torch.jit.freeze(copy.deepcopy(traced).to(torch.bfloat16).eval())


def finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite, from its sum (one pass, no mask tensor): NaN or
    inf anywhere makes the sum non-finite; a finite sum that overflows says False too, which
    only sends the batch to the eager network."""
    return bool(torch.isfinite(x.sum()))


class FastNetwork(nn.Module):
    """``forward(*xs)``: the network's outputs, from the optimised copy (module docstring)
    built on the first call; ``how`` names what runs (``eager: <why>`` after a fallback).
    ``bf16_of``: the fp32 FastNetwork of the same network; this one is then the
    :func:`bf16_copy` of its trace (bf16 inputs, bf16 outputs), ``network`` its eager bf16
    fallback."""

    def __init__(self, network: Any, *, mkldnn: bool = True, label: str = FAST,
                 llga: bool = False, rows: int | None = None,
                 bf16_of: FastNetwork | None = None) -> None:  # fmt: skip
        super().__init__()
        self.network = network
        self.mkldnn, self.label = mkldnn, label
        self.llga, self.rows = llga, rows
        self.bf16_of = bf16_of
        self.fast: Any = None
        self._traced: Any = None
        self.how = "not built yet"

    def traced(self, xs: tuple[torch.Tensor, ...]) -> Any:
        """The network's :func:`traced_copy` (made once, shared with a bf16 copy)."""
        if self._traced is None:
            self._traced = traced_copy(self.network, xs)
        return self._traced

    def _fall_back(self, what: str, error: BaseException) -> None:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        self.fast = self.network
        self.how = f"eager: {what} failed ({type(error).__name__}: {reason})"

    def forward(self, *xs: Any) -> Any:
        if self.fast is None:
            self._build(xs)
        fast: Any = self.fast
        if fast is self.network or not all(finite(x) for x in xs):
            return self.network(*xs)  # NaN / Inf inputs: oneDNN's fused ReLU maps NaN to 0
        try:
            with onednn_fusion(self.llga):
                return self._run(fast, xs)
        except Exception as e:  # e.g. a shape the trace baked in: eager from now on
            self._fall_back("running the traced copy", e)
            return self.network(*xs)

    def _run(self, fast: Any, xs: tuple[Any, ...]) -> Any:
        """``fast`` on ``xs``, in chunks of ``rows`` rows when set (fewer input shapes for
        the fused graph to specialise on, and rows that stay in cache)."""
        n = len(xs[0])
        if self.rows is None or n <= self.rows:
            return fast(*xs)
        parts = [fast(*(x[a : a + self.rows] for x in xs)) for a in range(0, n, self.rows)]
        return torch.cat(parts)

    def _build(self, xs: tuple[Any, ...]) -> None:
        if not all(isinstance(x, torch.Tensor) for x in xs):
            self.fast, self.how = self.network, "eager: inputs are not tensors"
            return
        try:
            if self.bf16_of is not None:  # the trace takes two rows: cast only those
                fp32 = tuple(x[:2].float().contiguous() for x in xs)
                self.fast = bf16_copy(self.bf16_of.traced(fp32))
            else:
                self.fast = frozen_copy(self.traced(xs), mkldnn=self.mkldnn, llga=self.llga)
            self.how = self.label
        except Exception as e:  # the JIT raises many types; the eager network still runs
            self._fall_back("tracing", e)
