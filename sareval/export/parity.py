"""Self-check of an exported model against the torch module it came from.

For each batch size b in (1, 3, 64) (segmentation: (1, 3, 8)) a seeded standard-normal input x
of shape (b, C, H, W) (the card's channels and size; z-scored inputs are of that scale) goes
through the eager module (CPU, eval, fp32) and through the exported file. The eager output must
have the card's shape (:func:`~sareval.export.outputs.output_problem`: (b, K), or (b, K, H', W')
with H = s H', W = s W' for a segmentation card); the check passes when::

    max |exported(x) - torch(x)|  <=  max(tolerance * max(1, max |torch(x)|),
                                          2 * max |torch(x) - torch_fp64(x)|)

The first bound is absolute for outputs of unit scale and relative above (fp32 carries about
7 significant digits; a randomly initialised ResNet's logits reach the hundreds). The second
applies only when the first fails: ``torch_fp64`` is a float64 copy of the module, so
``max |torch - torch_fp64|`` is torch's own fp32 rounding error on this input, and two fp32
implementations of the same function (onnxruntime sums convolutions in another order) may
differ by up to twice that (triangle inequality). Deep nets such as ResNet50 round off by
~1e-4 relative; a real export error (a wrong layer, a wrong channel order) is orders of
magnitude larger. The default tolerance is 1e-4. Also reported: at how many positions
(samples; pixels of a segmentation model) the argmax over classes differs; within the bound
above it can differ only where torch's top two logits are closer than twice the bound (a
near-tie), so it does not decide the check. Every figure is reported; the caller turns a
failure into an error that leaves no output file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sareval.card import PRESENT_INPUT, ModelCard
from sareval.errors import SarevalError
from sareval.export.outputs import output_problem
from sareval.formats import load_torchscript

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 3, 64)
#: segmentation outputs are (b, K, H, W): a batch of 64 at 256 px is gigabytes and minutes on
#: a CPU; 8 still checks a batch axis other than the traced one
SEGMENTATION_BATCH_SIZES: tuple[int, ...] = (1, 3, 8)
DEFAULT_TOLERANCE = 1e-4
#: provider option -> onnxruntime execution provider
PROVIDERS: dict[str, str] = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ParityError(SarevalError):
    """The exported model's outputs differ from the torch module's beyond the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Max abs differences per batch size, the output scale and the bound that applied."""

    backend: str
    batch_sizes: tuple[int, ...]
    max_abs_diff: tuple[float, ...]
    output_scale: tuple[float, ...]
    tolerance: float
    #: max |torch fp32 - torch fp64| per batch, measured only where the first bound failed
    fp32_error: tuple[float | None, ...] = ()
    #: per batch: (positions whose argmax over classes differs, positions) (module docstring)
    argmax_differs: tuple[tuple[int, int], ...] = ()

    def allowed(self, i: int) -> float:
        bound = self.tolerance * max(1.0, self.output_scale[i])
        e = self.fp32_error[i] if i < len(self.fp32_error) else None
        return bound if e is None else max(bound, 2.0 * e)

    @property
    def passed(self) -> bool:
        return all(d <= self.allowed(i) for i, d in enumerate(self.max_abs_diff))

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff)

    def lines(self) -> list[str]:
        out = []
        for i, (b, d, s) in enumerate(
            zip(self.batch_sizes, self.max_abs_diff, self.output_scale, strict=True)
        ):
            e = self.fp32_error[i] if i < len(self.fp32_error) else None
            rounding = "" if e is None else f", torch fp32 rounding {e:.3g}"
            argmax = ""
            if i < len(self.argmax_differs):
                n, total = self.argmax_differs[i]
                argmax = f"; argmax differs at {n} of {total}"
            out.append(
                f"parity {self.backend} batch {b:>2}: max |diff| = {d:.3g} "
                f"(output scale {s:.3g}{rounding}, allowed {self.allowed(i):.3g}){argmax}"
                + ("" if d <= self.allowed(i) else "  FAILED")
            )
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def input_shape(card: ModelCard, batch: int) -> tuple[int, int, int, int]:
    """(batch, C, H, W) of the card; :class:`SarevalError` if the card has no fixed size."""
    if card.height is None or card.width is None:
        raise SarevalError(
            "the card gives no input height/width; set them (sareval export --input-size N)"
        )
    return (batch, card.n_channels, card.height, card.width)


def default_batch_sizes(card: ModelCard) -> tuple[int, ...]:
    """The batch sizes of the check: :data:`SEGMENTATION_BATCH_SIZES` for a segmentation card,
    else :data:`DEFAULT_BATCH_SIZES`."""
    return SEGMENTATION_BATCH_SIZES if card.is_segmentation else DEFAULT_BATCH_SIZES


def check_model_output(model: torch.nn.Module, card: ModelCard, batch: int = 2) -> None:
    """Run the eager ``model`` once on the card's input; :class:`SarevalError` in one line when
    its output does not have the card's shape (e.g. a segmentation net with a scene card)."""
    ref = torch_outputs(model, random_input(card, batch))
    problem = output_problem(ref.shape, card, batch)
    if problem is not None:
        raise SarevalError(f"the model does not fit its card: {problem}")


def random_input(card: ModelCard, batch: int, seed: int = 0) -> torch.Tensor:
    """Seeded N(0, 1) input of the card's shape (the scale of z-scored channels)."""
    g = torch.Generator().manual_seed(seed * 1000 + batch)
    return torch.randn(input_shape(card, batch), generator=g, dtype=torch.float32)


def torch_outputs(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The eager module's output (no grad) as a float32 array."""
    with torch.no_grad():
        return model(x).detach().float().numpy()


def compare(
    model: torch.nn.Module,
    candidate: Callable[[np.ndarray], np.ndarray],
    card: ModelCard,
    backend: str,
    *,
    batch_sizes: Sequence[int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> ParityReport:
    """Run ``model`` and ``candidate`` on the same random inputs; the report of their gaps.

    ``batch_sizes`` default: :func:`default_batch_sizes`."""
    if not tolerance >= 0:
        raise SarevalError(f"tolerance must be >= 0, got {tolerance}")
    batch_sizes = tuple(batch_sizes or default_batch_sizes(card))
    diffs, scales, errors, argmax = [], [], [], []
    model64: torch.nn.Module | None = None
    for b in batch_sizes:
        x = random_input(card, b, seed)
        ref = torch_outputs(model, x)
        problem = output_problem(ref.shape, card, b)
        if problem is not None:
            raise SarevalError(f"{backend}: the torch model does not fit its card: {problem}")
        got = np.asarray(candidate(x.numpy()), dtype=np.float32)
        if got.shape != ref.shape:
            raise ParityError(
                f"{backend}: output shape {got.shape} at batch {b}; torch gives {ref.shape}"
            )
        if not np.isfinite(got).all():
            raise ParityError(f"{backend}: non-finite outputs at batch {b}")
        diff, scale = float(np.max(np.abs(got - ref))), float(np.max(np.abs(ref)))
        error = None
        if diff > tolerance * max(1.0, scale):  # is it more than fp32 rounding? measure it
            if model64 is None:
                model64 = copy.deepcopy(model).double()
            with torch.no_grad():
                exact = model64(x.double()).numpy()
            error = float(np.max(np.abs(ref.astype(np.float64) - exact)))
        diffs.append(diff)
        scales.append(scale)
        errors.append(error)
        differ = got.argmax(1) != ref.argmax(1)
        argmax.append((int(differ.sum()), int(differ.size)))
    return ParityReport(
        backend,
        batch_sizes,
        tuple(diffs),
        tuple(scales),
        float(tolerance),
        tuple(errors),
        tuple(argmax),
    )


def raise_on_failure(report: ParityReport, path: str | Path) -> None:
    if not report.passed:
        worst = max(
            range(len(report.max_abs_diff)),
            key=lambda i: report.max_abs_diff[i] / max(report.allowed(i), 1e-30),
        )
        raise ParityError(
            f"{path}: exported model does not match torch: max |diff| "
            f"{report.max_abs_diff[worst]:.3g} at batch {report.batch_sizes[worst]} exceeds "
            f"{report.allowed(worst):.3g} (tolerance {report.tolerance:g} x output scale, or "
            "twice torch's own fp32 rounding); nothing was written"
        )


# --- ONNX -------------------------------------------------------------------------------------
def check_onnx_file(path: str | Path, name: str | Path | None = None) -> None:
    """``onnx.checker.check_model`` with full shape inference; :class:`SarevalError` on failure.

    ``name`` is the path shown in messages (the final name of a file written under a
    temporary one)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # ValidationError, InferenceError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SarevalError(f"{name or path}: onnx.checker rejects the model: {first}") from None


def onnx_session(path: str | Path, provider: str = "cpu") -> Any:
    """An onnxruntime session on ``provider`` (``cpu``/``cuda``); fails loudly if not loaded."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise SarevalError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    providers = [wanted] if provider == "cpu" else [wanted, "CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: a failed CUDA load is reported below
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if session.get_providers()[0] != wanted:
        raise SarevalError(
            f"{wanted} was requested but onnxruntime did not load it (available: "
            f"{', '.join(ort.get_available_providers())}; session uses "
            f"{', '.join(session.get_providers())}); check the CUDA/cuDNN libraries"
        )
    return session


def check_onnx_parity(
    model: torch.nn.Module,
    path: str | Path,
    card: ModelCard,
    *,
    provider: str = "cpu",
    batch_sizes: Sequence[int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    name: str | Path | None = None,
) -> ParityReport:
    """onnx.checker, then onnxruntime vs torch; raises :class:`ParityError` beyond tolerance."""
    name = name or path
    check_onnx_file(path, name)
    session = onnx_session(path, provider)
    names = [i.name for i in session.get_inputs()]
    mask = "mask" in card.absence  # forward(x, present): parity with every modality present
    want = [card.input_name, PRESENT_INPUT] if mask else [card.input_name]
    if names != want:
        raise SarevalError(f"{name}: graph inputs {names}, the card says {want}")

    def run(x: np.ndarray) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {card.input_name: x}
        if mask:
            feeds[PRESENT_INPUT] = np.ones((len(x), len(card.modalities)), bool)
        return session.run(None, feeds)[0]

    report = compare(
        model,
        run,
        card,
        f"onnxruntime {PROVIDERS[provider]}",
        batch_sizes=batch_sizes,
        tolerance=tolerance,
        seed=seed,
    )
    raise_on_failure(report, name)
    return report


# --- TorchScript ------------------------------------------------------------------------------
def check_torchscript_parity(
    model: torch.nn.Module,
    path: str | Path,
    card: ModelCard,
    *,
    batch_sizes: Sequence[int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    name: str | Path | None = None,
) -> ParityReport:
    """The saved TorchScript module, reloaded, vs the eager module."""
    loaded, _ = load_torchscript(path)  # the registry's loader, as every reader
    loaded.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    report = compare(
        model, run, card, "torchscript", batch_sizes=batch_sizes, tolerance=tolerance, seed=seed
    )
    raise_on_failure(report, name or path)
    return report
