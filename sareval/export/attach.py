"""Foreign models: check a user's card against an ONNX graph and embed it.

A graph fits a card when it has exactly one float32 input of rank 4 named ``input.name``:
(batch, C, H, W) with a symbolic batch dimension, C = the card's channel count, and H, W equal
to the card's where the graph fixes them; and exactly one float output (batch, K) with K = the
card's class count, or (batch, K, H', W') with H = s H', W = s W' (one integer s >= 1) for a
segmentation card (:mod:`sareval.export.outputs`). Output shapes that shape inference cannot
tell are measured by running the graph once in onnxruntime on zeros.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sareval.atomic import atomic_output, check_output, is_stream
from sareval.card import ModelCard, get_onnx_card, read_model_card, set_onnx_card
from sareval.errors import CardError, InputFileError, SarevalError
from sareval.export.outputs import Dim, output_problem, shape_text
from sareval.formats import check_model_file, load_network, load_onnx


def tensor_dims(value_info: Any) -> list[Dim] | None:
    """Dims of a tensor value info (None when it has no shape)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[Dim] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(str(d.dim_param))
        else:
            out.append(None)
    return out


def graph_inputs(model: Any) -> list[Any]:
    """Graph inputs that are fed at run time (initializers listed as inputs excluded)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _measured_output_shape(path: Path, card: ModelCard, dims: list[Dim]) -> list[Dim] | None:
    """Run the graph on a zero batch of 2 to learn its output shape (None if it cannot run)."""
    import numpy as np

    from sareval.export.parity import onnx_session

    h = dims[2] if isinstance(dims[2], int) else card.height
    w = dims[3] if isinstance(dims[3], int) else card.width
    if h is None or w is None:
        return None
    session = onnx_session(path, "cpu")
    feeds = {
        n: np.zeros((2, sl.stop - sl.start, h, w), np.float32) for n, sl in card.input_slices()
    }
    return [int(d) for d in session.run(None, feeds)[0].shape]


def _check_input(inp: Any, channels: int, card: ModelCard, fail: Any) -> list[Dim]:
    """One graph input against the card: float32 (batch, channels, H, W), dynamic batch."""
    import onnx

    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
        raise fail(f"input {inp.name!r} is {kind}; sareval feeds float32")
    dims = tensor_dims(inp)
    if dims is None or len(dims) != 4:
        raise fail(f"input {inp.name!r} has shape {shape_text(dims)}; expected (batch, C, H, W)")
    if dims[1] != channels:
        hint = ""
        if dims[3] == channels:
            hint = (
                " (it looks channels-last, NHWC: convert with tf2onnx, option "
                f"inputs-as-nchw {inp.name})"
            )
        raise fail(
            f"input {inp.name!r} is {shape_text(dims)}: {dims[1]} channels, the card has "
            f"{channels}{hint}"
        )
    if isinstance(dims[0], int):
        raise fail(
            f"input {inp.name!r} fixes the batch dimension to {dims[0]}; sareval needs a "
            "dynamic (symbolic) batch axis: re-export with one"
        )
    for axis, name, want in ((2, "height", card.height), (3, "width", card.width)):
        got = dims[axis]
        if isinstance(got, int) and want is None:
            raise fail(f"the graph fixes the input {name} to {got}; set input.{name} in the card")
        if isinstance(got, int) and got != want:
            raise fail(f"input {name} is {got} in the graph, {want} in the card")
    return dims


def _check_output(inferred: Any, card: ModelCard, path: Path, dims: list[Dim], fail: Any) -> None:
    """The single float32 (batch, K) output, K = the card's classes."""
    import onnx

    outputs = list(inferred.graph.output)
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise fail(
            f"the graph has {len(outputs)} outputs ({names}); keep only the (batch, K) "
            "scores (tf2onnx, option outputs NAME)"
        )
    out = outputs[0]
    if out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise fail(f"output {out.name!r} is not float32")
    odims = tensor_dims(out)
    if odims is not None:
        problem = output_problem(odims, card, None)
        if problem is not None:
            raise fail(f"output {out.name!r}: {problem}")
    if odims is None or not all(isinstance(d, int) for d in odims[1:]):  # measure it
        measured = _measured_output_shape(path, card, dims)
        if measured is None:
            raise fail(
                f"cannot tell the shape of output {out.name!r}; set input height/width "
                "in the card so sareval can run the graph once"
            )
        problem = output_problem(measured, card, 2)
        if problem is not None:
            raise fail(f"output {out.name!r}, run on a batch of 2: {problem}")
    if odims is not None and isinstance(odims[0], int):
        raise fail(f"output {out.name!r} fixes the batch dimension to {odims[0]}")


def validate_card_against_graph(model: Any, card: ModelCard, path: str | Path) -> None:
    """Raise :class:`CardError` naming the first way ``card`` contradicts ``model``'s graph:
    the graph's inputs are the card's (one, or several named ``input.tensors``), each float32
    (batch, C, H, W) with a dynamic batch, and one (batch, K) output."""
    import onnx

    path = Path(path)

    def fail(problem: str) -> CardError:
        return CardError(path, f"card does not fit the graph: {problem}")

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort; fall back to the declared shapes
        inferred = model
    inputs = {i.name: i for i in graph_inputs(inferred)}
    wanted = card.input_slices()
    if len(inputs) != len(wanted):
        names = ", ".join(inputs)
        raise fail(
            f"the graph has {len(inputs)} inputs ({names}); the card names "
            f"{len(wanted)} ({', '.join(n for n, _ in wanted)})"
        )
    dims: list[Dim] = []
    for name, sl in wanted:
        if name not in inputs:
            if len(wanted) == 1:
                only = next(iter(inputs))
                raise fail(
                    f"the graph's input is named {only!r}, the card's input.name is {name!r}"
                )
            raise fail(f"the card's input {name!r} is not a graph input ({', '.join(inputs)})")
        dims = _check_input(inputs[name], sl.stop - sl.start, card, fail)
    _check_output(inferred, card, path, dims, fail)


def attach_card(
    model_path: str | Path,
    card_path: str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Validate ``card_path``'s card against ``model_path``'s graph and embed it.

    Writes ``out`` (refused if it exists, unless ``overwrite``) or, without ``out``, replaces
    ``model_path`` in place (atomically). Returns the written path.
    """
    import onnx

    model_path = Path(model_path)
    if check_model_file(model_path).kind != "onnx":
        raise InputFileError(model_path, "card attach works on .onnx files")
    model = load_onnx(model_path, check=True)
    card = read_model_card(card_path)
    validate_card_against_graph(model, card, model_path)
    target = Path(out) if out is not None else model_path
    if out is not None:
        if target.suffix.lower() != ".onnx" and not is_stream(target):  # a device: any name
            raise SarevalError(f"{target}: the output must end in .onnx")
        check_output(target, overwrite)
        external = any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
        )
        if external and target.parent.resolve() != model_path.parent.resolve():
            raise SarevalError(
                f"{model_path}: its weights are in external files; write the output into the "
                "same folder (or attach in place)"
            )
    set_onnx_card(model, card)
    with atomic_output(target, overwrite=True) as tmp:
        onnx.save_model(model, str(tmp))
    return target


def check_model(path: str | Path) -> ModelCard:
    """The card of a model file, validated against the model; raises what is wrong.

    ONNX: ``onnx.checker``, then :func:`validate_card_against_graph`. TorchScript /
    ``torch.export`` (.pt2): the module runs on a zero batch of 2 of the card's shape (split
    over the card's inputs) and must return (2, K) (segmentation: (2, K, H', W'), as
    :func:`~sareval.export.outputs.output_problem` says).
    Files are read through :mod:`sareval.formats`.
    """
    path = Path(path)
    kind = check_model_file(path, cards=True).kind
    if kind == "onnx":
        model = load_onnx(path, check=True)
        card = get_onnx_card(model, path)
        validate_card_against_graph(model, card, path)
        return card
    card = read_model_card(path)
    if kind == "card":
        return card
    import torch

    if card.height is None or card.width is None:
        raise CardError(path, "card gives no input height/width; cannot run the module to check")
    module = load_network(path)
    if kind == "torchscript":
        module = module.eval()
    parts = {n: torch.zeros(2, sl.stop - sl.start, card.height, card.width)
             for n, sl in card.input_slices()}  # fmt: skip
    try:
        with torch.no_grad():
            if card.call == "dict" and card.input_tensors:
                y = module(parts)
            else:
                y = module(*parts.values())
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise CardError(
            path,
            f"card does not fit the module: a zero batch of shape (2, {card.n_channels}, "
            f"{card.height}, {card.width}) fails ({first})",
        ) from None
    if card.is_segmentation:
        problem = output_problem(tuple(y.shape), card, 2)
        if problem is not None:
            raise CardError(path, f"card does not fit the module: {problem}")
    elif tuple(y.shape) != (2, card.n_classes):
        raise CardError(
            path,
            f"card does not fit the module: a batch of 2 gives output {tuple(y.shape)}, "
            f"the card has {card.n_classes} classes",
        )
    return card
