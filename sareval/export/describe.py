"""Human-readable summary of a model file: the graph's inputs/outputs and its model card.

Used by ``sareval info MODEL``: every kind of :mod:`sareval.formats` (the one registry: ONNX,
TorchScript, ``torch.export``, a card ``.json``); weights files are refused there by name.
A model without a card is described anyway, with the hint how to attach one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sareval.card import (
    ATTACH_HINT,
    TORCHSCRIPT_EXTRA_FILE,
    ModelCard,
    get_onnx_card,
    read_model_card,
)
from sareval.errors import CardError, InputFileError
from sareval.export.attach import graph_inputs, shape_text, tensor_dims
from sareval.formats import (
    check_model_file,
    load_onnx,
    load_program,
    load_torchscript,
)


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def describe_card(card: ModelCard) -> str:
    """The card as an indented block: task, input, players, per-channel transforms, classes."""
    rule = "argmax" if card.task == "single-label" else f"sigmoid >= {card.threshold:g}"
    if card.output == "probabilities":
        rule = "argmax" if card.task == "single-label" else f"p >= {card.threshold:g}"
    size = "any size" if card.height is None else f"{card.height} x {card.width}"
    inputs = f"input: {card.input_name!r}, {card.n_channels} channels, {size}"
    if card.input_tensors:
        parts = ", ".join(
            f"{n!r} (channels {_ranges(list(range(sl.start, sl.stop)))})"
            for n, sl in card.input_slices()
        )
        inputs = f"inputs ({card.call}): {parts}; {size}"
    lines = [
        f"model card: {card.name or '(unnamed)'}",
        f"  task: {card.task}; output: {card.output} ({rule})",
        f"  {inputs}",
        "  players (card order): "
        + "; ".join(
            f"{m.name} = {', '.join(m.bands)} (channels {_ranges(card.channel_indices(m.name))})"
            for m in card.modalities
        ),
        "  channels:",
        f"    {'#':>3}  {'band':<4}  {'player':<6}  {'nan->':>6}  {'clip':<17}  "
        f"{'mean':>11}  {'std':>11}",
    ]
    owner = {b: m.name for m in card.modalities for b in m.bands}
    for i, b in enumerate(card.channels):
        t = card.transform(b)
        clip = "-" if t.clip is None else f"[{t.clip[0]:g}, {t.clip[1]:g}]"
        lines.append(
            f"    {i:>3}  {b:<4}  {owner[b]:<6}  {_num(t.nan):>6}  {clip:<17}  "
            f"{t.mean:>11.6g}  {t.std:>11.6g}"
        )
    if not card.normalization:
        lines.append("    (normalization: none; channels are fed raw)")
    lines.append(f"  classes ({card.n_classes}):")
    lines += [f"    {k:>3}  {c}" for k, c in enumerate(card.class_names)]
    if card.provenance:
        lines.append("  provenance:")
        lines += [f"    {k}: {v}" for k, v in card.provenance.items()]
    return "\n".join(lines)


def _onnx_graph(path: Path) -> tuple[list[str], ModelCard | None, str | None]:
    import onnx

    model = load_onnx(path)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown"
    lines = [f"  format: ONNX (IR {model.ir_version}; opset {opsets}; producer {producer})"]

    def io(values: list, title: str) -> None:
        lines.append(f"  {title}:")
        for v in values:
            elem = v.type.tensor_type.elem_type
            try:
                kind = str(onnx.helper.tensor_dtype_to_np_dtype(elem))
            except (KeyError, ValueError, TypeError):
                kind = onnx.TensorProto.DataType.Name(elem).lower()
            lines.append(f"    {v.name}  {kind}  {shape_text(tensor_dims(v))}")

    io(graph_inputs(model), "inputs")
    io(list(model.graph.output), "outputs")
    try:
        return lines, get_onnx_card(model, path), None
    except CardError as e:
        return lines, None, e.problem


def _torchscript(path: Path) -> tuple[list[str], ModelCard | None, str | None]:
    module, text = load_torchscript(path, extra_file=TORCHSCRIPT_EXTRA_FILE)
    lines = [
        "  format: TorchScript (input shapes are not declared in the file)",
        f"  forward: {module.forward.schema}",
    ]
    if not text:
        return lines, None, None
    try:
        return lines, ModelCard.from_json(text, path), None
    except CardError as e:
        return lines, None, e.problem


def _program(path: Path) -> tuple[list[str], ModelCard | None, str | None]:
    program = load_program(path)
    lines = ["  format: torch.export program"]
    user_inputs = set(program.graph_signature.user_inputs)

    def shape(node: Any) -> str:
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            return "(unknown shape)"
        dtype = str(val.dtype).removeprefix("torch.")
        return f"{dtype}  ({', '.join(str(d) for d in val.shape)})"

    lines.append("  inputs:")
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            lines.append(f"    {node.name}  {shape(node)}")
        if node.op == "output":
            lines.append("  outputs:")
            lines += [f"    {o.name}  {shape(o)}" for o in node.args[0] if hasattr(o, "meta")]
    try:
        return lines, read_model_card(path), None
    except CardError as e:
        return lines, None, e.problem


def describe_model(path: str | Path) -> str:
    """Summary of ``path``: format, graph inputs/outputs with shapes, and the card."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    kind = check_model_file(path, cards=True).kind
    size = path.stat().st_size / 1e6
    head = [f"model: {path} ({size:.1f} MB)"]
    if kind == "card":
        return "\n".join([*head, "  format: model card JSON", describe_card(read_model_card(path))])
    describe = {"onnx": _onnx_graph, "torchscript": _torchscript, "torch-export": _program}
    lines, card, problem = describe[kind](path)
    if card is None:
        tail = (
            f"model card: none ({problem})"
            if problem and "no sareval" not in problem
            else (f"model card: none; {ATTACH_HINT}")
        )
        return "\n".join([*head, *lines, tail])
    return "\n".join([*head, *lines, describe_card(card)])
