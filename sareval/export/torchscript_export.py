"""torch module -> TorchScript file (or ``torch.export`` program) with the card as an extra file.

``torch.jit.trace`` on a batch of ``batch`` examples (the architectures have no data-dependent
control flow; the traced graph takes any batch size); ``torch.jit.save(..., _extra_files=
{TORCHSCRIPT_EXTRA_FILE: card JSON})``, read back by :func:`sareval.card.read_card`. Written
under a temporary name; renamed after the reloaded module matches the eager one
(:func:`~sareval.export.parity.check_torchscript_parity`). :func:`export_program` writes a
``torch.export`` program (``.pt2``) the same way (the evaluator's torch backend runs both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sareval.atomic import atomic_output, check_output, is_stream
from sareval.card import TORCHSCRIPT_EXTRA_FILE, ModelCard
from sareval.errors import SarevalError
from sareval.export.parity import (
    DEFAULT_TOLERANCE,
    ParityReport,
    check_model_output,
    check_torchscript_parity,
    compare,
    raise_on_failure,
    random_input,
)
from sareval.exporter_output import quiet_exporter
from sareval.formats import load_program, suffixes_of


def export_torchscript(
    model: torch.nn.Module,
    card: ModelCard,
    out: str | Path,
    *,
    batch: int = 2,
    overwrite: bool = False,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_sizes: Sequence[int] | None = None,
) -> ParityReport | None:
    """Trace ``model`` (CPU, eval) and save it to ``out`` with ``card``; the parity report."""
    out = Path(out)
    suffixes = suffixes_of("torchscript")
    if out.suffix.lower() not in suffixes and not is_stream(out):
        raise SarevalError(f"{out}: a TorchScript output must end in {' / '.join(suffixes)}")
    check_output(out, overwrite)
    model = model.cpu().eval()
    check_model_output(model, card)  # one line, before the slow export
    x = random_input(card, max(batch, 2))
    try:
        with quiet_exporter(), torch.no_grad():
            traced = torch.jit.trace(model, (x,), check_trace=False)
    except Exception as e:
        first = " ".join(str(e).split())[:300]
        raise SarevalError(f"TorchScript tracing failed ({type(e).__name__}: {first})") from None
    report = None
    with atomic_output(out, overwrite=overwrite) as tmp:
        # a Python file, not a path: torch's own file writer aborts the process on a full disk
        with quiet_exporter(), tmp.open("wb") as f:  # torch 2.9+ deprecates TorchScript
            torch.jit.save(traced, f, _extra_files={TORCHSCRIPT_EXTRA_FILE: card.to_json()})
        if check:
            report = check_torchscript_parity(
                model, tmp, card, batch_sizes=batch_sizes, tolerance=tolerance, name=out
            )
    return report


def export_program(
    model: torch.nn.Module,
    card: ModelCard,
    out: str | Path,
    *,
    batch: int = 2,
    overwrite: bool = False,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_sizes: Sequence[int] | None = None,
) -> ParityReport | None:
    """``torch.export`` program (.pt2) with a dynamic batch axis; the card as an extra file.

    ``torch.export.save(..., extra_files={TORCHSCRIPT_EXTRA_FILE: card JSON})``; the reloaded
    program (:func:`sareval.formats.load_program`, ``.module()``) must match the eager module.
    """
    out = Path(out)
    suffixes = suffixes_of("torch-export")
    if out.suffix.lower() not in suffixes and not is_stream(out):
        raise SarevalError(f"{out}: a torch.export program must end in {' / '.join(suffixes)}")
    check_output(out, overwrite)
    model = model.cpu().eval()
    check_model_output(model, card)  # one line, before the slow export
    if batch < 2:
        raise SarevalError("export with a batch of at least 2 (a batch of 1 fixes the batch axis)")
    x = random_input(card, batch)
    try:
        with quiet_exporter():
            program = torch.export.export(
                model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
            )
    except Exception as e:
        first = " ".join(str(e).split())[:300]
        raise SarevalError(f"torch.export failed ({type(e).__name__}: {first})") from None
    report = None
    with atomic_output(out, overwrite=overwrite) as tmp:
        with tmp.open("wb") as f:  # not a path: torch's file writer aborts on a full disk
            torch.export.save(program, f, extra_files={TORCHSCRIPT_EXTRA_FILE: card.to_json()})
        if check:
            loaded = load_program(tmp).module()

            def run(a: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return loaded(torch.from_numpy(a)).numpy()

            report = compare(
                model, run, card, "torch.export", batch_sizes=batch_sizes, tolerance=tolerance
            )
            raise_on_failure(report, out)
    return report
