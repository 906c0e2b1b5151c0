"""torch module -> ONNX file with the model card, checked before it is declared written.

``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter) traces the module
on a batch of ``batch`` > 1 examples with a symbolic batch dimension ``batch``, so the graph
accepts any batch size; H and W are static (the card's). Input name: the card's
``input.name``; output name ``logits``. The card goes into ``metadata_props`` (:func:`~sareval.
card.set_onnx_card`); the file is self-contained (weights inside) unless the weights exceed
protobuf's 2 GB, then they go to ``<out>.data`` beside it. The file is written under a temporary
name and renamed only after ``onnx.checker`` and the parity check
(:mod:`sareval.export.parity`) pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sareval.atomic import atomic_output, check_output, is_stream
from sareval.card import PRESENT_INPUT, ModelCard, set_onnx_card
from sareval.errors import SarevalError
from sareval.export.parity import (
    DEFAULT_TOLERANCE,
    ParityReport,
    check_model_output,
    check_onnx_parity,
    random_input,
)
from sareval.exporter_output import quiet_exporter

OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
PROTOBUF_LIMIT = 2**31 - 1 - (64 << 20)  # 2 GB less a margin for the graph itself


MIN_OPSET = 18  # the dynamo exporter's lowest


def check_opset(opset: int | None) -> None:
    """Refuse an opset outside ``MIN_OPSET`` .. the installed onnx's newest (the exporter would
    silently fall back to opset 18)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise SarevalError(f"opset= {opset} is outside {MIN_OPSET}..{newest} (installed onnx)")


def to_onnx_proto(
    model: torch.nn.Module, card: ModelCard, *, opset: int | None = None, batch: int = 2
) -> Any:  # onnx.ModelProto
    """Export ``model`` (CPU, eval) with a dynamic batch axis; the card is set on the proto.
    A model whose card lists the ``mask`` absence is exported as ``forward(x, present)`` with
    ``present`` (batch, M) bool a second graph input (:data:`~sareval.card.PRESENT_INPUT`)."""
    if batch < 2:
        raise SarevalError("export with a batch of at least 2 (a batch of 1 fixes the batch axis)")
    check_opset(opset)
    x = random_input(card, batch)
    dim = torch.export.Dim(BATCH_DIM, min=1)
    args: tuple[torch.Tensor, ...] = (x,)
    names = [card.input_name]
    if "mask" in card.absence:  # forward(x, present): the mask is a graph input (one graph)
        g = torch.Generator().manual_seed(0)
        present = torch.rand(batch, len(card.modalities), generator=g) > 0.3
        args, names = (x, present), [card.input_name, PRESENT_INPUT]
    try:
        with quiet_exporter():
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_shapes=tuple({0: dim} for _ in args),
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as e:
        first = " ".join(str(e).split())[:300]
        raise SarevalError(f"ONNX export failed ({type(e).__name__}: {first})") from None
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise SarevalError("ONNX export returned no program")
    proto = program.model_proto
    got = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if opset is not None and got != [opset]:
        raise SarevalError(f"opset= asked for {opset}, the exporter wrote opset {got}")
    set_onnx_card(proto, card)
    return proto


def _weights_bytes(proto: Any) -> int:
    return sum(len(t.raw_data) for t in proto.graph.initializer)


def export_onnx(
    model: torch.nn.Module,
    card: ModelCard,
    out: str | Path,
    *,
    opset: int | None = None,
    batch: int = 2,
    overwrite: bool = False,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    provider: str = "cpu",
    batch_sizes: Sequence[int] | None = None,
) -> ParityReport | None:
    """Export ``model`` to ``out`` (.onnx) with ``card``; returns the parity report.

    The module is put in eval mode on the CPU. With ``check`` (default) the written file must
    pass ``onnx.checker`` and match torch at ``batch_sizes`` within ``tolerance`` on onnxruntime's
    ``provider`` (``cpu``; ``cuda`` fails unless onnxruntime loads CUDA), else
    :class:`~sareval.export.parity.ParityError` and no file. Returns None without ``check``.
    """
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx" and not is_stream(out):  # a device or FIFO: any name
        raise SarevalError(f"{out}: an ONNX output must end in .onnx")
    check_output(out, overwrite)  # fail before the (slow) export
    if card.n_channels < 1:
        raise SarevalError("the card has no channels")
    model = model.cpu().eval()
    if card.input_tensors:
        raise SarevalError(
            f"ONNX export takes one-input models; this card has inputs "
            f"{', '.join(card.input_names)} (evaluate the module itself: the torch backend)"
        )
    check_model_output(model, card)  # one line, before the slow export
    proto = to_onnx_proto(model, card, opset=opset, batch=batch)
    report = None
    external = _weights_bytes(proto) > PROTOBUF_LIMIT
    data_file = out.with_name(out.name + ".data")
    try:
        with atomic_output(out, overwrite=overwrite) as tmp:
            if external:
                onnx.save_model(
                    proto,
                    str(tmp),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_file.name,
                )
            else:
                onnx.save_model(proto, str(tmp))
            if check:
                report = check_onnx_parity(
                    model,
                    tmp,
                    card,
                    provider=provider,
                    batch_sizes=batch_sizes,
                    tolerance=tolerance,
                    name=out,
                )
    except BaseException:
        if external:
            data_file.unlink(missing_ok=True)
        raise
    return report
