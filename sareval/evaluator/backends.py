"""Execution backends of the coalition graph: onnxruntime and torch.

Both take a raw store batch (``{"s1": float32 (B, 2, H, W), "s2": uint16 (B, C, H, W)}``) and
return the outputs of every non-empty coalition, ``run(raw) -> (n_coal, B, K)`` float32, from
ONE execution of the preamble + model (:mod:`sareval.evaluator.preamble`).
``run(raw, mask)`` evaluates other coalitions: ``mask`` (n, C) bool, e.g. the all-false (1, C)
mask of the empty coalition with a one-row batch.

- :class:`OnnxRuntimeBackend`: the preamble composed with the ONNX model into one graph;
  providers ``cpu`` / ``cuda`` / ``tensorrt``. onnxruntime silently falls back to CPU when a
  provider fails to load; this backend raises :class:`SarevalError` instead. On CUDA, inputs
  and outputs go through IO binding.
- :class:`TorchBackend`: the preamble as an ``nn.Module`` around a TorchScript module, a
  ``torch.export`` program or an in-memory ``nn.Module``; ``torch.inference_mode``; raw batches
  go to the device as stored (uint16 / float32) and are cast there. ``run_tensor`` keeps the
  outputs on the device (for :class:`~sareval.evaluator.counting.CoalitionCounter`). fp32 on
  CPU (unshared) runs a traced, frozen, oneDNN copy of the network
  (:mod:`sareval.evaluator.torch_speed`; ``torch_path`` says what ran); ``bf16-verified`` a bf16
  copy with fp32 re-runs of near-margin rows (:mod:`sareval.evaluator.bf16_verified`;
  ``precision_record`` says what ran). The caller's module is never changed.

``pad_to``: pad a short (last) batch with zero rows to a fixed batch size, so that the GPU sees
one shape (cuDNN / TensorRT do not re-tune); padded rows are dropped before anything is counted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sareval.card import ModelCard, read_card
from sareval.choices import BACKENDS, PRECISIONS, PROVIDERS
from sareval.errors import InputFileError, SarevalError
from sareval.evaluator.config import check_precision, check_provider, parse_device
from sareval.evaluator.onnx_sharing import KIND, share_first_conv
from sareval.evaluator.preamble import MASK_NAME, Preamble, coalition_module, compose_onnx
from sareval.exporter_output import quiet_exporter
from sareval.formats import format_of, load_network, load_onnx

ORT_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROTOBUF_LIMIT = 1_800_000_000  # bytes; larger composed graphs go through external data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A model and its card. ``kind``: onnx | torchscript | torch-export | module."""

    card: ModelCard
    kind: str
    path: Path | None = None
    sha256: str | None = None
    module: Any = field(default=None, repr=False)


def load_model(model: Any, card: ModelCard | None = None) -> LoadedModel:
    """A model file with its card (kinds: :mod:`sareval.formats`; a ``card`` given here
    replaces the file's), or an in-memory ``nn.Module`` / callable on tensors with ``card``."""
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[1], ModelCard):
        model, card = model  # the older (module, card) form
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise InputFileError(path, "model file not found")
        kind = format_of(path).kind
        if card is not None and not isinstance(card, ModelCard):
            raise SarevalError(f"card: expected a sareval.ModelCard, got {type(card).__name__}")
        return LoadedModel(card or read_card(path), kind, path, file_sha256(path))
    if not callable(model):
        raise SarevalError(
            f"model: expected a model file path, a torch.nn.Module or a callable on tensors, "
            f"got {type(model).__name__}"
        )
    if not isinstance(card, ModelCard):
        raise SarevalError(
            "card: an in-memory model needs its card, e.g. "
            "card=sareval.ModelCard.from_preset('sen12ms-s1s2', task='single-label')"
        )
    return LoadedModel(card, "module", module=model)


def pad_rows(raw: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """``raw`` with zero rows appended up to ``rows`` (no copy when already that long)."""
    out = {}
    for name, a in raw.items():
        if len(a) >= rows:
            out[name] = a
            continue
        padded = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
        padded[: len(a)] = a
        out[name] = padded
    return out


# --- what a model returns ---------------------------------------------------------------------
def describe_value(value: Any) -> str:
    """A short account of a Python value a model returned (for error messages)."""
    if value is None:
        return "None"
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:5])
        return f"a {type(value).__name__} with keys {keys}" + (", ..." if len(value) > 5 else "")
    if isinstance(value, (tuple, list)):
        items = ", ".join(describe_value(v) for v in value[:3]) + (
            ", ..." if len(value) > 3 else ""
        )
        return f"a {type(value).__name__} of {len(value)} ({items})"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
        return f"a {kind} of shape {tuple(shape)} ({str(dtype).removeprefix('torch.')})"
    return f"a {type(value).__name__}"


def check_outputs(out: Any, rows: int, n_classes: int | None, source: str, *,
                  array_type: type, spatial: tuple[int, int] | None = None) -> None:  # fmt: skip
    """The one validation of what a model returned for an execution of ``rows`` input rows:
    one ``array_type`` (a torch tensor, or a numpy array from onnxruntime) of shape
    (``rows``, ``n_classes``) with floating-point values (float16 / bfloat16 / float64 are
    cast to float32 afterwards). Anything else (a tuple, dict, list, None, another array type,
    1-D, another batch size or class count, integer or complex values) is a one-line
    :class:`SarevalError` naming ``source`` and what was returned. Metadata only, so it runs
    on every execution; NaN / Inf outputs are counted per coalition instead and refused at
    the end of the pass with their counts (:meth:`~sareval.evaluator.counting.CountResult.
    check_finite`)."""
    if not isinstance(out, array_type):
        want = "a torch.Tensor" if array_type is not np.ndarray else "one array"
        raise SarevalError(
            f"{source}: returned {describe_value(out)}; expected {want} of shape "
            f"(batch, {n_classes or 'classes'})"
        )
    value: Any = out
    shape, dtype = tuple(value.shape), value.dtype
    floating = value.is_floating_point() if array_type is not np.ndarray else dtype.kind == "f"
    if not floating:
        raise SarevalError(
            f"{source}: returned {str(dtype).removeprefix('torch.')} outputs; expected "
            "floating-point logits or probabilities"
        )
    want = f"(batch, {n_classes or 'classes'}{', height, width' if spatial else ''})"
    if len(shape) != (4 if spatial else 2):
        raise SarevalError(
            f"{source}: returned outputs of shape {shape} ({len(shape)}-D); expected {want}"
        )
    if spatial is not None:
        (h, w), (oh, ow) = spatial, shape[2:]
        if not (oh and ow and h % oh == 0 and w % ow == 0 and h // oh == w // ow):
            raise SarevalError(
                f"{source}: returned label maps of {oh} x {ow} for inputs of {h} x {w}; "
                "a segmentation model's output must be its input size divided by one integer"
            )
    if shape[0] != rows:
        raise SarevalError(
            f"{source}: returned {shape[0]} rows of outputs for a batch of {rows} input rows"
        )
    if n_classes is not None and shape[1] != n_classes:
        raise SarevalError(
            f"{source}: returned {shape[1]} output columns, but its card has {n_classes} classes"
        )


ORT_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")


# --- onnxruntime ----------------------------------------------------------------------------
class OnnxRuntimeBackend:
    """The composed coalition graph in an onnxruntime session (see module docstring)."""

    name = "onnxruntime"

    def __init__(
        self,
        model: str | Path | bytes | Any,
        providers: str = "cpu",
        *,
        device_id: int = 0,
        threads: int = 0,
        graph_optimization: str = "all",
        pad_to: int | None = None,
        source: str = "model",
        groups: list[list[int]] | None = None,
        share: str | None = None,
        n_classes: int | None = None,
        n_coalitions: int | None = None,
        spatial: tuple[int, int] | None = None,
    ) -> None:
        import onnxruntime as ort

        if providers not in PROVIDERS:
            raise SarevalError(f"unknown provider {providers!r}; choose one of {PROVIDERS}")
        self.provider = providers
        self.device_id = device_id
        self.pad_to = pad_to
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the overridable coalition mask warns at level 2
        # Memory patterns pre-plan one arena per input shape: same speed here, but peak RSS
        # 1215 -> 915 MiB without them (benchmarks/RESULTS.md, ResNet18 at 128 px, batch 64).
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options.graph_optimization_level = levels[graph_optimization]
        chain: list[Any] = []
        if providers == "tensorrt":
            chain.append(
                (
                    "TensorrtExecutionProvider",
                    {
                        "device_id": device_id,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(Path(tempfile.gettempdir()) / "sareval-trt"),
                    },
                )
            )
        if providers in ("tensorrt", "cuda"):
            # EXHAUSTIVE benchmarks each conv once per input shape; pad_to keeps one shape
            chain.append(
                (
                    "CUDAExecutionProvider",
                    {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"},
                )
            )
        chain.append("CPUExecutionProvider")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        payload = self._payload(model)
        try:
            self.session = ort.InferenceSession(payload, options, providers=chain)
        except Exception as e:  # onnxruntime raises its own exception types
            raise SarevalError(f"{source}: onnxruntime cannot load the model ({e})") from None
        wanted = ORT_PROVIDER_NAMES[providers]
        self.providers = list(self.session.get_providers())
        if wanted not in self.providers:
            raise SarevalError(
                f"onnxruntime did not load the {wanted} (session has "
                f"{', '.join(self.providers)}): check the onnxruntime-gpu build and that its "
                "CUDA / cuDNN / TensorRT libraries are on the library path"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]
        output = self.session.get_outputs()[0]
        if output.type not in ORT_FLOAT_TYPES:
            raise SarevalError(
                f"{source}: returns {output.type.removeprefix('tensor(').rstrip(')')} outputs "
                f"({output.name!r}); expected floating-point logits or probabilities"
            )
        self.output_name = output.name
        self.source, self.n_classes, self.n_coalitions = source, n_classes, n_coalitions
        self.spatial = spatial
        self.overridable = {i.name for i in self.session.get_overridable_initializers()}
        self.use_io_binding = providers != "cpu"
        # a graph with a shared first conv (evaluator.onnx_sharing) reads the mask per group;
        # share: what ran, recorded in the results (ShapeConfig.execution.share)
        self.groups = groups
        self.share = share

    def _payload(self, model: str | Path | bytes | Any) -> str | bytes:
        if isinstance(model, (str, Path)):
            return str(model)
        if isinstance(model, bytes):
            return model
        if model.ByteSize() < PROTOBUF_LIMIT:
            return model.SerializeToString()
        import onnx

        self._tmp = tempfile.TemporaryDirectory(prefix="sareval-onnx-")
        path = Path(self._tmp.name) / "coalitions.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin")
        return str(path)

    def run(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        """Outputs (n, B, K) of every coalition (``mask`` rows; default all non-empty);
        (n, B, K, H', W') for a segmentation model."""
        b = len(next(iter(raw.values())))
        feeds = {
            name: np.ascontiguousarray(raw[name]) for name in self.input_names if name != MASK_NAME
        }
        if self.pad_to is not None and b < self.pad_to:
            feeds = pad_rows(feeds, self.pad_to)
        if mask is not None:
            if MASK_NAME not in self.overridable and MASK_NAME not in self.input_names:
                raise SarevalError("this ONNX graph has no overridable coalition mask")
            if self.groups and any((mask[:, g] != mask[:, g[:1]]).any() for g in self.groups):
                raise SarevalError("a coalition mask row splits a player of the shared graph")
            feeds[MASK_NAME] = np.ascontiguousarray(mask, dtype=bool)
        if self.use_io_binding:
            binding = self.session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output(self.output_name, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run([self.output_name], feeds)[0]
        rows = len(next(iter(feeds.values())))
        n = len(mask) if mask is not None else self.n_coalitions
        if n is not None:
            check_outputs(out, n * rows, self.n_classes, self.source, array_type=np.ndarray,
                          spatial=self.spatial)  # fmt: skip
        out = np.asarray(out, dtype=np.float32).reshape(-1, rows, *out.shape[1:])
        return out[:, :b]

    def close(self) -> None:
        self.session = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- torch --------------------------------------------------------------------------------------
def load_torch_module(loaded: LoadedModel, device: str) -> Any:
    """The bare network: a model file's (:func:`sareval.formats.load_network`), or an in-memory
    module / callable, copied when running it would change it (another device, training mode),
    so the caller's object is never moved or mutated."""
    import copy

    import torch

    if loaded.kind != "module":
        assert loaded.path is not None
        return load_network(loaded.path, device)
    module = loaded.module
    if not isinstance(module, torch.nn.Module):
        return _CallableModule(module)
    params = [p.device for p in module.parameters()] + [b.device for b in module.buffers()]
    moved = any(d != torch.device(device) for d in params)
    training = any(m.training for m in module.modules())
    return copy.deepcopy(module) if moved or training else module


@functools.cache
def _callable_module_class() -> type:
    import torch

    class CallableModule(torch.nn.Module):
        """A plain callable on tensors as a module (no parameters)."""

        def __init__(self, fn: Any) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, *args: Any) -> Any:
            return self.fn(*args)

    return CallableModule


def _CallableModule(fn: Any) -> Any:
    return _callable_module_class()(fn)


class TorchBackend:
    """The coalition graph as a torch module (see module docstring)."""

    name = "torch"

    def __init__(
        self,
        network: Any,
        pre: Preamble,
        device: str = "cpu",
        *,
        pad_to: int | None = None,
        precision: str = "fp32",
        share: bool = False,
        n_classes: int | None = None,
        source: str = "model",
        spatial: tuple[int, int] | None = None,
        task: str = "single-label",
        output_kind: str = "logits",
        threshold: float = 0.5,
    ) -> None:
        import torch

        from sareval.evaluator.bf16_verified import VerifiedBf16, native_bf16
        from sareval.evaluator.sharing import shared_module
        from sareval.evaluator.torch_speed import CHUNK_ROWS, FROZEN_BF16, LLGA_BF16, FastNetwork

        if precision not in PRECISIONS:
            raise SarevalError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        self.precision = precision
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SarevalError(
                f"ShapeConfig.execution.device {device!r}: torch sees no CUDA device"
            )
        check_arity(network, len(pre.inputs) if pre.call != "dict" else 1, source)
        #: bf16-verified: what ran (evaluator.bf16_verified), for the run's provenance
        self.precision_record: dict[str, Any] | None = None
        verified = precision == "bf16-verified"
        if verified and not native_bf16(self.device.type):
            warnings.warn(
                f"ShapeConfig.execution.precision 'bf16-verified': {self.device.type} has no "
                "native bf16 (avx512_bf16 / amx_bf16, or CUDA bf16); running fp32",
                RuntimeWarning,
                stacklevel=2,
            )
            self.precision_record = {"precision": "bf16-verified", "native_bf16": False,
                                     "ran": "fp32"}  # fmt: skip
            verified = False
        bare = network
        # bf16-pure: a bf16 copy; a float64 / half network: inputs cast to its dtype
        cast = _pure_bf16 if precision == "bf16-pure" else _in_parameter_dtype
        self.network = network = cast(network)
        self.source, self.n_classes, self.n_coalitions = source, n_classes, pre.n_coalitions
        self.spatial = spatial
        # eval() below switches every submodule; close() restores each one's mode
        self._modes = (
            [(m, m.training) for m in network.modules()] if hasattr(network, "modules") else []
        )
        # share: work shared across coalitions (evaluator.sharing); an unrecognised network
        # falls back to the plain graph, warned and recorded as "unshared"
        shared = shared_module(pre, network) if share else None
        if share and shared is None:
            warn_unshared("late fusion, or the first conv of a sareval ResNet / DenseNet / VGG")
        self.share: str | None = (
            shared.kind if shared is not None else ("unshared" if share else None)
        )
        # fp32 on CPU, unshared: a traced, frozen, oneDNN copy (evaluator.torch_speed)
        fp32 = precision in ("fp32", "bf16-verified")
        fast = shared is None and self.device.type == "cpu" and fp32
        with contextlib.suppress(NotImplementedError):  # torch.export programs: no eval()
            network.eval()
        runs = FastNetwork(network, rows=CHUNK_ROWS) if fast else network
        module = (
            coalition_module(pre, runs, bf16_channels_last=precision == "bf16-pure")
            if shared is None
            else shared
        )
        self.module = module.to(self.device)
        self.module.training = False
        self._fast = runs if fast else None
        self._verified: Any = None
        if verified:
            cpu = self.device.type == "cpu"  # oneDNN Graph fusion and 64-row calls: CPU only
            bf16 = FastNetwork(
                _pure_bf16(bare), mkldnn=False, label=LLGA_BF16 if cpu else FROZEN_BF16,
                llga=cpu, rows=CHUNK_ROWS if cpu else None,
                bf16_of=self._fast,  # the fp32 copy's trace, made once (CPU)
            )  # fmt: skip
            fast_module = coalition_module(pre, bf16, bf16_channels_last=True).to(self.device)
            fast_module.training = False
            # the coalition module's mask buffer, on the device (a shared module: its base's)
            masks: Any = getattr(self.module, "base", self.module).masks
            self._verified = VerifiedBf16(
                fast_module, self.module, masks, task=task, output_kind=output_kind,
                threshold=threshold, paired=shared is None,
                normalise=getattr(fast_module, "normalise") if shared is None else None,  # noqa: B009
            )  # fmt: skip
            self.precision_record = self._verified.record
            self._bf16 = bf16
        self.pad_to = pad_to
        self.providers = [str(self.device)]
        self.cuda = self.device.type == "cuda"
        self._copied: Any = None  # CUDA event: the last host->device copy finished

    @property
    def torch_path(self) -> str:
        """What runs the fp32 network: the optimised copy (:mod:`sareval.evaluator.torch_speed`,
        or why it fell back to eager), or ``eager`` (CUDA, shared computation, autocast)."""
        return "eager" if self._fast is None else str(self._fast.how)

    def to_device(self, raw: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Raw arrays as tensors on the device, as stored (uint16 stays uint16 in transit)."""
        import torch

        if self._copied is not None:  # the previous batch's host buffers may be reused now
            self._copied.synchronize()
        out = {s: torch.from_numpy(np.ascontiguousarray(a)) for s, a in raw.items()}
        if not self.cuda:
            return out
        out = {s: t.to(self.device, non_blocking=True) for s, t in out.items()}
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out

    def run_tensor(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> Any:
        """Outputs (n, B, K) (segmentation: (n, B, K, H', W')) as a tensor on the device."""
        import torch

        b = len(next(iter(raw.values())))
        if self.pad_to is not None and b < self.pad_to:
            raw = pad_rows(raw, self.pad_to)
        inputs = self.to_device(raw)
        # fp16/bf16: the network runs under autocast; the preamble's masking and the decisions
        # stay exact (autocast leaves indexing and comparisons alone), outputs come back fp32.
        autocast = torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        )
        with torch.inference_mode(), autocast:
            m = None if mask is None else torch.as_tensor(mask, device=self.device)
            if self._verified is None:
                out = self.module(inputs, m)
            else:
                out = self._verified(inputs, m)
                self._verified.record["bf16_path"] = self._bf16.how  # what ran the bf16 rows
        rows = len(next(iter(raw.values())))
        n = self.n_coalitions if mask is None else len(mask)
        check_outputs(out, n * rows, self.n_classes, self.source, array_type=torch.Tensor,
                      spatial=self.spatial)  # fmt: skip
        return out.float().reshape(-1, rows, *out.shape[1:])[:, :b]

    def run(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        """Outputs (n, B, K) float32 on the host."""
        return self.run_tensor(raw, mask).cpu().numpy()

    def close(self) -> None:
        for module, training in self._modes:
            module.training = training


def check_arity(network: Any, n_inputs: int, source: str) -> None:
    """Refuse a network whose ``forward`` cannot take the card's ``n_inputs`` tensors
    (positional parameters of a Python module or callable, or a TorchScript schema)."""
    import inspect

    import torch

    fn = network.forward if isinstance(network, torch.nn.Module) else network
    if isinstance(network, _callable_module_class()):  # a plain callable wrapped as a module
        fn = network.fn  # type: ignore[attr-defined]
    if isinstance(network, torch.jit.ScriptModule):
        try:
            args = network.forward.schema.arguments[1:]  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):
            return
        low = sum(1 for a in args if not a.has_default_value() and not a.kwarg_only)
        high: float = sum(1 for a in args if not a.kwarg_only)
    else:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            return
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        positional = [p for p in params if p.kind in kinds]
        low = sum(1 for p in positional if p.default is inspect.Parameter.empty)
        high = len(positional)
        if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
            high = float("inf")
    if not low <= n_inputs <= high:
        takes = f"{low}" if low == high else f"at least {low}" if high > 99 else f"{low} to {high}"
        raise SarevalError(
            f"{source}: forward takes {takes} input(s), but its card gives it {n_inputs} "
            "(ModelCard input tensors)"
        )


def _in_parameter_dtype(network: Any) -> Any:
    """``network`` as is when its floating-point parameters are float32 (or it has none);
    a float64 / float16 / bfloat16 network wrapped so that its inputs are cast to that dtype
    (outputs are cast back to float32 by the backend). Mixed dtypes: as is (it casts itself)."""
    import torch

    if not hasattr(network, "parameters"):
        return network
    try:
        dtypes = {p.dtype for p in network.parameters() if p.is_floating_point()}
    except (AttributeError, RuntimeError, TypeError):
        return network
    if len(dtypes) != 1 or dtypes == {torch.float32}:
        return network
    (dtype,) = dtypes

    class InParameterDtype(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = network

        def forward(self, *xs: Any) -> Any:
            cast = [
                x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                for x in xs
            ]
            if len(cast) == 1 and isinstance(cast[0], dict):  # call="dict"
                cast = [{k: v.to(dtype) for k, v in cast[0].items()}]
            return self.net(*cast)

    return InParameterDtype()


def _pure_bf16(network: Any) -> Any:
    """A bf16, channels-last copy of ``network`` whose inputs are cast to bf16 (channels-last)
    and outputs back to fp32: on CPUs with AVX-512 BF16 / AMX the convolutions run ~3x faster
    than fp32 (``benchmarks/RESULTS.md``); decisions can change near ties (measured there)."""
    import copy

    import torch

    if not isinstance(network, torch.nn.Module):
        raise SarevalError(
            "ShapeConfig.execution.precision 'bf16-pure' / 'bf16-verified': needs a "
            "torch.nn.Module network"
        )
    net = copy.deepcopy(network).to(torch.bfloat16).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    class PureBf16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *xs: Any) -> Any:
            cast = [
                x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
                if isinstance(x, torch.Tensor) and x.dim() == 4
                else x
                for x in xs
            ]
            return self.net(*cast).float()

    return PureBf16()


def make_backend(
    loaded: LoadedModel,
    pre: Preamble,
    *,
    backend: str,
    device: str,
    provider: str | None,
    input_dtypes: Mapping[str, np.dtype],
    image_size: tuple[int, int],
    pad_to: int | None = None,
    threads: int = 0,
    precision: str = "fp32",
    share: bool = False,
) -> OnnxRuntimeBackend | TorchBackend:
    """The backend for ``loaded`` (in-memory modules are exported to ONNX for onnxruntime).

    ``precision`` fp16/bf16 runs the torch backend under autocast; onnxruntime runs the graph's
    own precision (fp32 exports), so it accepts fp32 only."""
    if backend not in BACKENDS:
        raise SarevalError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device_type, device_id = parse_device(device)
    check_precision(precision, backend)  # the rules of ShapeConfig.execution, on the backend
    check_provider(provider, device, backend)  # chosen from the model when it was None
    source = str(loaded.path) if loaded.path else "model"
    if backend == "torch":
        import torch

        if device_type == "cuda" and not torch.cuda.is_available():
            raise SarevalError(
                f"ShapeConfig.execution.device {device!r}: torch sees no CUDA device"
            )
        return TorchBackend(
            load_torch_module(loaded, device),
            pre,
            device,
            pad_to=pad_to,
            precision=precision,
            share=share,
            n_classes=loaded.card.n_classes,
            source=source,
            spatial=image_size if loaded.card.is_segmentation else None,
            task=loaded.card.task,
            output_kind=loaded.card.output,
            threshold=loaded.card.threshold,
        )
    provider = provider or ("cuda" if device_type == "cuda" else "cpu")
    if loaded.kind == "onnx":
        assert loaded.path is not None
        model = load_onnx(loaded.path, external_data=True, check=True)
    elif loaded.kind == "module":
        model = _module_to_onnx(loaded, image_size)
    else:
        raise SarevalError(f"{source}: the onnxruntime backend needs an .onnx model")
    composed = compose_onnx(
        pre,
        model,
        input_dtypes=input_dtypes,
        image_size=image_size,
        source=source,
    )
    groups, kind = None, None
    if share:
        shared = share_first_conv(composed, pre)
        if shared is None:
            warn_unshared("a first Conv on the whole input with constant weights")
            kind = "unshared"
        else:
            composed, groups, kind = shared, pre.channel_groups, KIND
    return OnnxRuntimeBackend(
        composed, provider, device_id=device_id, threads=threads, pad_to=pad_to, source=source,
        groups=groups, share=kind, n_classes=loaded.card.n_classes,
        n_coalitions=pre.n_coalitions,
        spatial=image_size if loaded.card.is_segmentation else None,
    )  # fmt: skip


def warn_unshared(recognised: str) -> None:
    """The warning of ``share=True`` on a network without a recognised shared structure."""
    warnings.warn(
        f"share=True: this network has no recognised shared structure ({recognised}); "
        "running the unshared coalition graph",
        RuntimeWarning,
        stacklevel=3,
    )


def _module_to_onnx(loaded: LoadedModel, image_size: tuple[int, int]) -> Any:
    """Export an in-memory module (a CPU copy, eval mode) with a dynamic batch axis; its inputs
    are named as the card's (one tensor, or several for ``forward(s1, s2)``)."""
    import copy

    import torch

    card = loaded.card
    net = loaded.module
    net = copy.deepcopy(net).cpu().eval() if isinstance(net, torch.nn.Module) else net
    slices = card.input_slices()
    xs = tuple(torch.zeros(2, sl.stop - sl.start, *image_size) for _, sl in slices)
    if len(slices) > 1 and card.call == "dict":
        raise SarevalError(
            "model: a dict-input module runs on the torch backend (backend='torch'); "
            "export it with named inputs for onnxruntime"
        )
    batch = torch.export.Dim("batch")
    with quiet_exporter():
        program = torch.onnx.export(
            net if isinstance(net, torch.nn.Module) else _CallableModule(net),
            xs,
            dynamo=True,
            input_names=[n for n, _ in slices],
            output_names=["output"],
            dynamic_shapes=tuple({0: batch} for _ in xs),
        )
    if program is None:
        raise SarevalError("model: the ONNX export of the in-memory module produced nothing")
    return program.model_proto
