"""Shared first convolution in the composed ONNX graph (onnxruntime backend).

The ONNX form of :mod:`sareval.evaluator.sharing`'s early-fusion rule. When the network's
first node is a ``Conv`` (group 1, explicit or no padding, constant weights) on the whole
coalition batch, it is replaced by, for player channel groups g (``pre.channel_groups``)::

    P_g = conv_g(x[:, g])                  (B, O, H', W')  once per sample, no bias
    Q_g = conv_g(baseline_g image)         (1, O, H', W')  once per batch (one row)
    y   = present @ P + (absent @ Q + b)   (n_coal * B, O, H', W'), row k * B + b

where ``present`` (n_coal, G) is the coalition mask at each group's first channel and
``absent = 1 - present`` (the second term is one row per coalition), so the mask
override (sampled coalitions, the empty coalition on one row) keeps working. A
``BatchNormalization`` that alone consumes the conv is folded into ``W`` and ``b`` first (what
onnxruntime does to the unshared graph). The rest of the network runs per coalition as before;
outputs equal the unshared graph's up to float summation order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sareval.evaluator.preamble import MASK_NAME, NETWORK_INPUT, NORMALISED, PREFIX, Preamble

if TYPE_CHECKING:
    import onnx

#: the ``config.share`` record of a graph this module rewrote (as the torch backend's)
KIND = "first-conv"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: Any, name: str) -> list[Any]:
    return [n for n in graph.node if name in n.input]


def _shareable_conv(graph: Any, inits: dict[str, np.ndarray]) -> Any | None:
    """The single Conv consuming the network input, when the rewrite applies to it."""
    users = _consumers(graph, NETWORK_INPUT)
    if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != NETWORK_INPUT:
        return None
    conv = users[0]
    a = _attrs(conv)
    auto_pad = a.get("auto_pad", b"NOTSET")
    if a.get("group", 1) != 1 or auto_pad not in (b"NOTSET", "NOTSET"):
        return None
    if conv.input[1] not in inits or (len(conv.input) > 2 and conv.input[2] not in inits):
        return None
    return conv


def _fold_batch_norm(
    graph: Any, conv: Any, inits: dict[str, np.ndarray], w: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str, Any | None]:
    """(w, b, output name, folded node): a BatchNormalization alone on the conv folded in."""
    users = _consumers(graph, conv.output[0])
    bn = users[0] if len(users) == 1 else None
    outs = [o.name for o in graph.output]
    if (
        bn is None
        or bn.op_type != "BatchNormalization"
        or len(bn.output) != 1
        or conv.output[0] in outs
        or not all(n in inits for n in bn.input[1:5])
    ):
        return w, b, conv.output[0], None
    scale, shift, mean, var = (inits[n].astype(np.float64) for n in bn.input[1:5])
    k = scale / np.sqrt(var + float(_attrs(bn).get("epsilon", 1e-5)))
    w = (w.astype(np.float64) * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
    b = ((b.astype(np.float64) - mean) * k + shift).astype(np.float32)
    return w, b, bn.output[0], bn


def share_first_conv(model: onnx.ModelProto, pre: Preamble) -> onnx.ModelProto | None:
    """``model`` (a :func:`~sareval.evaluator.preamble.compose_onnx` graph) with its first conv
    shared across coalitions (module docstring), or None when the rewrite does not apply."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    groups = pre.channel_groups
    if len(pre.inputs) != 1 or len(groups) < 2:
        return None
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    conv = _shareable_conv(graph, inits)
    if conv is None:
        return None
    w = inits[conv.input[1]]
    bias = inits[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(len(w))
    w, bias, out_name, folded = _fold_batch_norm(graph, conv, inits, w, bias.astype(np.float32))
    keys = ("dilations", "kernel_shape", "pads", "strides")
    conv_attrs = {k: v for k, v in _attrs(conv).items() if k in keys}

    nodes: list[Any] = []
    new_inits: dict[str, Any] = {}

    def const(n: str, value: Any) -> str:
        name = PREFIX + "share_" + n
        new_inits.setdefault(name, numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(*values: int) -> str:
        return const("i64_" + "_".join(map(str, values)).replace("-", "m"), np.array(values))

    def node(op: str, inputs: list[str], n: str, **attrs: Any) -> str:
        out = PREFIX + "share_" + n
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def dims(x: str, start: int, end: int, n: str) -> str:
        """Shape(x)[start:end] as an int64 vector."""
        return node("Slice", [node("Shape", [x], n + "_full"), ints(start), ints(end)], n)

    # per group: P_g (1, B, O, H', W') once per sample, Q_g (1, O, H', W') on the baseline image
    hw = dims(NORMALISED, 2, 4, "hw")
    parts, bases = [], []
    for j, g in enumerate(groups):
        wg = const(f"w{j}", np.ascontiguousarray(w[:, g]))
        xg = node("Gather", [NORMALISED, const(f"ch{j}", np.array(g, np.int64))], f"x{j}", axis=1)
        p = node("Conv", [xg, wg], f"p{j}", **conv_attrs)
        parts.append(node("Unsqueeze", [p, ints(0)], f"p{j}_5"))
        img_shape = node("Concat", [ints(1, len(g)), hw], f"img{j}_shape", axis=0)
        base = pre.baseline[g].astype(np.float32).reshape(1, len(g), 1, 1)
        img = node("Expand", [const(f"base{j}", base), img_shape], f"img{j}")
        bases.append(node("Conv", [img, wg], f"q{j}", **conv_attrs))
    p = node("Concat", parts, "p", axis=0)  # (G, B, O, H', W')
    q = node("Concat", bases, "q", axis=0)  # (G, O, H', W')
    first = const("first_channels", np.array([g[0] for g in groups], np.int64))
    present = node("Gather", [MASK_NAME, first], "present_bool", axis=1)
    present = node("Cast", [present], "present", to=TensorProto.FLOAT)  # (n, G)
    absent = node("Sub", [const("one", np.ones((1, 1), np.float32)), present], "absent")
    # y[k] = sum_{g in S_k} P_g  +  (b + sum_{g not in S_k} Q_g), the second term on one row
    flat = ints(len(groups), -1)
    y = node("MatMul", [present, node("Reshape", [p, flat], "p_flat")], "y_flat")
    y_shape = node("Concat", [ints(-1), dims(p, 1, 5, "bohw")], "y_shape", axis=0)
    y = node("Reshape", [y, y_shape], "y")  # (n, B, O, H', W')
    c = node("MatMul", [absent, node("Reshape", [q, flat], "q_flat")], "c_flat")
    c_shape = node("Concat", [ints(-1, 1), dims(q, 1, 4, "ohw")], "c_shape", axis=0)
    c = node("Reshape", [c, c_shape], "c")  # (n, 1, O, H', W')
    c = node("Add", [c, const("bias", bias.reshape(1, 1, -1, 1, 1))], "offset")
    y = node("Add", [y, c], "y_offset")
    rows = node("Concat", [ints(-1), dims(p, 2, 5, "ohw_rows")], "rows_shape", axis=0)
    nodes.append(helper.make_node("Reshape", [y, rows], [out_name], name=PREFIX + "share_out"))

    # splice: the new nodes where the conv was (they read only the preamble), the folded BN out
    spliced: list[Any] = []
    for n in graph.node:
        if n is conv:
            spliced.extend(nodes)
        elif n is not folded:
            spliced.append(n)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(spliced)
    out.graph.initializer.extend(new_inits.values())
    _prune(out.graph)
    return out


def _prune(graph: Any) -> None:
    """Remove nodes whose outputs nothing uses, and initializers no node uses."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used or t.name == MASK_NAME]
    del graph.initializer[:]
    graph.initializer.extend(keep)
