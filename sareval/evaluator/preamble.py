"""The coalition preamble: raw store batch -> every non-empty coalition's network input.

For a raw batch (``s1`` float32 (B, 2, H, W) dB, ``s2`` uint16 (B, C_s2, H, W) DN, any extra
sensor such as ``dem``; each in its source's band order) the preamble computes, for every input
channel c of the model card::

    x_c    = float32(raw[sensor(c)][:, store_index(c)])            select + order + cast
    x_c    = where(isnan(x_c), nan_c, x_c)        if the card sets nan_c (nan_to_num)
    x_c    = min(max(x_c, lo_c), hi_c)            clip (nan_to_num maps +-inf to +-float32 max)
    x_c    = (x_c - mean_c) / std_c                                 z-score
    out[k] = where(mask[k, c], x_c, baseline_c)   for each non-empty coalition k
    out    = concat_k out[k]                      (n_coal * B, C, H, W): row k * B + b

``mask[k, c]`` is true when channel c's player is in coalition k; coalitions are in
:func:`~sareval.evaluator.coalitions.all_coalitions` order without the empty one. Baselines
(values an absent channel takes, in the network's input space):

- ``input-zero``: 0 after normalisation (the study's default; the training mean for z-scored
  channels);
- ``raw-zero``: the transformed raw value 0 (zero before normalisation);
- ``band-mean``: the transformed per-band raw mean (finite pixels, :meth:`Store.band_mean`) of
  the data ``ShapeConfig.game.baseline_statistics`` names (:func:`baseline_band_means`): the
  evaluated data itself (``evaluated``, the default: a cloudy subset's mean includes its
  clouds), the card's normalisation means (``card``: for a z-scored, unclipped channel the same
  input as ``input-zero``), or another store's subset (``(path, name)``, e.g. the clear
  training split). The results record the source and the raw values used.

Three implementations of the same function: :func:`apply_numpy` (the readable reference),
:func:`onnx_preamble` / :func:`compose_onnx` (an ONNX graph composed with an ONNX model into
one graph ``(s1, s2) -> (n_coal * B, K)``) and :class:`CoalitionModule` (a torch wrapper).
The coalition mask is an *overridable* initializer of the composed ONNX graph (and an optional
argument of the torch module): fed nothing, the graph evaluates every non-empty coalition;
fed an all-false (1, C) mask and a one-row batch, it evaluates the empty coalition once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sareval.choices import BASELINES
from sareval.errors import SarevalError
from sareval.evaluator.coalitions import all_coalitions
from sareval.normalization import (
    channel_map,
    normalise_numpy,
    normalise_torch,
    torch_constants,
    torch_flags,
)
from sareval.store import Store

if TYPE_CHECKING:
    import onnx
    import torch

    # annotations only: ModelCard.normalize runs this module's preamble
    from sareval.card import ModelCard

MASK_NAME = "sareval_coalition_mask"
PREFIX = "sareval_pre_"
#: the composed graph's normalised input (B, C, H, W) and the coalition batch fed to the network
NORMALISED = PREFIX + "normalised"
NETWORK_INPUT = PREFIX + "network_input"


@dataclass(frozen=True)
class Preamble:
    """Constants of the preamble for one (card, store, baseline, players) combination.

    ``sensors``: store sensors read, in input order; ``select[s]``: store channel indices of
    sensor ``s`` read, so that ``concat_s raw[s][:, select[s]]`` followed by ``order`` gives the
    card's channel order. Per-channel float32 vectors ``nan_fill`` (NaN where not replaced),
    ``lo``/``hi`` (+-inf where not clipped), ``mean``/``std`` and ``baseline``; ``masks``
    (n_coal, C) bool over the non-empty ``coalitions`` of ``players``.
    """

    channels: tuple[str, ...]
    players: tuple[str, ...]
    coalitions: tuple[frozenset[str], ...]
    sensors: tuple[str, ...]
    select: dict[str, np.ndarray]
    order: np.ndarray
    nan_fill: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    baseline: np.ndarray
    masks: np.ndarray
    #: model inputs: name and slice of the channels (one entry for a single-input model)
    inputs: tuple[tuple[str, slice], ...] = ()
    call: str = "positional"

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_coalitions(self) -> int:
        return len(self.coalitions)

    @property
    def replaces_nan(self) -> np.ndarray:
        return ~np.isnan(self.nan_fill)

    @property
    def identity_order(self) -> bool:
        return bool(np.array_equal(self.order, np.arange(self.n_channels)))

    @property
    def channel_groups(self) -> list[list[int]]:
        """Channels whose mask columns are identical (one group per player, or per players that
        are always together in ``coalitions``), in first-channel order."""
        groups: dict[bytes, list[int]] = {}
        for c in range(self.n_channels):
            groups.setdefault(self.masks[:, c].tobytes(), []).append(c)
        return list(groups.values())

    def empty_mask(self) -> np.ndarray:
        """The (1, C) all-false mask of the empty coalition."""
        return np.zeros((1, self.n_channels), dtype=bool)


def transform_values(values: np.ndarray, pre: Preamble) -> np.ndarray:
    """Apply the per-channel transforms to ``values`` broadcast as (..., C), in float32."""
    x = np.asarray(values, dtype=np.float32)
    x = np.where(pre.replaces_nan & np.isnan(x), pre.nan_fill, x)
    x = np.where(x < pre.lo, pre.lo, x)
    x = np.where(x > pre.hi, pre.hi, x)
    return ((x - pre.mean) / pre.std).astype(np.float32)


def build_preamble(
    card: ModelCard,
    store_bands: Mapping[str, Sequence[str]],
    *,
    baseline: str = "input-zero",
    band_means: Mapping[str, float] | None = None,
    source: str = "store",
    coalitions: Sequence[frozenset[str]] | None = None,
) -> Preamble:
    """The preamble for ``card`` reading data whose sensors hold ``store_bands`` (in input
    order: ``s1``, ``s2``, extras).

    ``band_means`` (raw per-band means of the evaluated subset) is needed for ``band-mean``;
    ``coalitions`` (default: all of the card's modalities) the ones to evaluate (the empty one is
    skipped: it is evaluated once, apart). Raises :class:`SarevalError` when a card band is not
    in the data.
    """
    if baseline not in BASELINES:
        raise SarevalError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    cm = channel_map(card, store_bands, source=source)
    c = card.n_channels
    players = card.modality_names
    chosen = all_coalitions(players) if coalitions is None else coalitions
    coalitions = tuple(co for co in chosen if co)
    owner = {b: m.name for m in card.modalities for b in m.bands}
    masks = np.array(
        [[owner[b] in co for b in card.channels] for co in coalitions], dtype=bool
    ).reshape(len(coalitions), c)
    pre = Preamble(
        channels=card.channels,
        players=players,
        coalitions=coalitions,
        sensors=cm.sensors,
        select=cm.select,
        order=cm.order,
        nan_fill=cm.nan_fill,
        lo=cm.lo,
        hi=cm.hi,
        mean=cm.mean,
        std=cm.std,
        baseline=np.zeros(c, dtype=np.float32),
        masks=masks,
        inputs=tuple(card.input_slices()),
        call=card.call,
    )
    if baseline == "input-zero":
        return pre
    if baseline == "raw-zero":
        raw = np.zeros(c, dtype=np.float32)
    else:
        if band_means is None:
            raise SarevalError("baseline band-mean needs the subset's band means")
        raw = np.array([band_means[b] for b in card.channels], dtype=np.float32)
    base = transform_values(raw, pre)
    return Preamble(**{**pre.__dict__, "baseline": base})


def baseline_band_means(
    statistics: str | tuple[str, str],
    card: ModelCard,
    source: Any,
    sensors: Sequence[str],
) -> tuple[dict[str, float], str | dict[str, Any]]:
    """Raw per-band means for the ``band-mean`` baseline from ``statistics``
    (``ShapeConfig.game.baseline_statistics``, module docstring) and its record for the results.

    ``source``: the evaluated data (its ``band_means(sensors)`` for ``evaluated``, the
    sensors that hold card bands). A store subset is read from its stored per-row sums (no
    image is read); its bands must include every card channel.
    """
    if statistics == "evaluated":
        return source.band_means(sensors), "evaluated"
    if statistics == "card":
        return {b: float(card.transform(b).mean) for b in card.channels}, "card"
    path, name = tuple(statistics)  # (store path, subset name), checked by ShapeConfig
    with Store(path) as store:
        sub = store.subset(name)
        if not len(sub):
            raise SarevalError(
                f"ShapeConfig.game.baseline_statistics: subset {name!r} of {path} has no samples"
            )
        held = store.all_bands
        missing = [b for b in card.channels if b not in held]
        if missing:
            raise SarevalError(
                f"ShapeConfig.game.baseline_statistics: {path} has no band(s) {', '.join(missing)} "
                f"of the model card (it has: {', '.join(held)})"
            )
        means: dict[str, float] = {}
        for sensor in store.sensors:
            if set(store.bands(sensor)) & set(card.channels):
                m = store.band_mean(store.source_of(sub, sensor), sub.rows)
                means.update(zip(store.bands(sensor), (float(v) for v in m), strict=True))
        record = {"store": str(Path(path).resolve()), "subset": name, "n_samples": len(sub),
                  "content_digest": store.content_digest}  # fmt: skip
    return means, record


# --- numpy reference ---------------------------------------------------------------------------
def apply_numpy(
    pre: Preamble, raw: Mapping[str, np.ndarray], masks: np.ndarray | None = None
) -> np.ndarray:
    """The coalition batch (n_coal * B, C, H, W) of ``raw`` (reference implementation)."""
    masks = pre.masks if masks is None else masks
    x = normalise_numpy(pre, raw)
    base = pre.baseline.reshape(1, 1, -1, 1, 1)
    stacked = np.where(masks[:, None, :, None, None], x[None], base)
    return stacked.reshape(-1, *x.shape[1:]).astype(np.float32)


# --- ONNX ---------------------------------------------------------------------------------------
class _Graph:
    """Nodes and initializers of an ONNX graph under construction (names get :data:`PREFIX`)."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    @staticmethod
    def name(s: str) -> str:
        return PREFIX + s

    def const(self, n: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), self.name(n)))
        return self.name(n)

    def node(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def unsqueeze0(self, x: str, out: str) -> str:
        if self.opset >= 13:
            return self.node("Unsqueeze", [x, self.const("axis0", np.array([0], np.int64))], out)
        return self.node("Unsqueeze", [x], out, axes=[0])


def _select(
    g: _Graph, pre: Preamble, input_dtypes: Mapping[str, np.dtype], hw: tuple[Any, Any]
) -> tuple[list[Any], list[tuple[str, str]]]:
    """Graph inputs (one per sensor) and each sensor's selected float32 channels (B, C_s, H, W)
    with its name, in concat order."""
    from onnx import TensorProto, helper

    inputs, parts = [], []
    for s in pre.sensors:
        dtype = np.dtype(input_dtypes[s])
        kind = helper.np_dtype_to_tensor_dtype(dtype)
        inputs.append(
            helper.make_tensor_value_info(s, kind, [PREFIX + "batch", f"{s}_channels", *hw])
        )
        x = g.node("Gather", [s, g.const(f"{s}_select", pre.select[s])], g.name(f"{s}_sel"), axis=1)
        if dtype != np.float32:
            x = g.node("Cast", [x], g.name(f"{s}_f32"), to=TensorProto.FLOAT)
        parts.append((x, s))
    return inputs, parts


def _normalise(g: _Graph, pre: Preamble, x: str, channels: np.ndarray, tag: str) -> str:
    """nan_to_num, clip, z-score (module docstring) of the card channels ``channels`` held by
    ``x``; the steps no channel of ``x`` needs are left out."""
    shape = (1, len(channels), 1, 1)

    def param(n: str, values: np.ndarray) -> str:
        return g.const(f"{n}_{tag}", values[channels].astype(np.float32).reshape(shape))

    replaces = pre.replaces_nan[channels]
    if replaces.any():
        isnan = g.node("IsNaN", [x], g.name(f"isnan_{tag}"))
        if not replaces.all():
            sel = g.const(f"nan_channels_{tag}", replaces.reshape(shape))
            isnan = g.node("And", [isnan, sel], g.name(f"isnan_sel_{tag}"))
        fill = np.where(pre.replaces_nan, pre.nan_fill, 0).astype(np.float32)
        x = g.node("Where", [isnan, param("nan_fill", fill), x], g.name(f"nan_to_num_{tag}"))
    # with every NaN replaced, Max / Min clip (faster than Where in onnxruntime on CPU:
    # python -m benchmarks.graph_profile); otherwise Where, which keeps a NaN as NaN on every
    # execution provider
    for n, bound, ops in (("lo", pre.lo, ("Max", "Less")), ("hi", pre.hi, ("Min", "Greater"))):
        if not np.isfinite(bound[channels]).any():
            continue
        b = param(n, bound)
        if replaces.all():
            x = g.node(ops[0], [x, b], g.name(f"clip_{n}_{tag}"))
        else:
            beyond = g.node(ops[1], [x, b], g.name(f"beyond_{n}_{tag}"))
            x = g.node("Where", [beyond, b, x], g.name(f"clip_{n}_{tag}"))
    x = g.node("Sub", [x, param("mean", pre.mean)], g.name(f"centred_{tag}"))
    return g.node("Div", [x, param("std", pre.std)], g.name(f"normalised_{tag}"))


def _normalised_input(g: _Graph, pre: Preamble, parts: list[tuple[str, str]]) -> str:
    """The card's channels (B, C, H, W), normalised per sensor before the concat and the
    reorder (elementwise per channel, so the order does not change the values): a sensor's
    channels skip the steps none of them needs."""
    concat_to_card = np.argsort(pre.order)  # concat channel j holds card channel order^-1[j]
    blocks, start = [], 0
    for x, s in parts:
        stop = start + len(pre.select[s])
        blocks.append(_normalise(g, pre, x, concat_to_card[start:stop], s))
        start = stop
    out = NORMALISED
    if pre.identity_order:
        if len(blocks) == 1:
            return g.node("Identity", blocks, out)
        return g.node("Concat", blocks, out, axis=1)
    x = blocks[0] if len(blocks) == 1 else g.node("Concat", blocks, g.name("concat"), axis=1)
    return g.node("Gather", [x, g.const("order", pre.order)], out, axis=1)


def _stack(g: _Graph, pre: Preamble, x: str, output_name: str) -> None:
    """(n_coal, 1, C, 1, 1) mask -> where(mask, x[None], baseline) -> (n_coal * B, C, H, W)."""
    c = pre.n_channels
    mask5 = g.node(
        "Reshape",
        [MASK_NAME, g.const("mask_shape", np.array([-1, 1, c, 1, 1], np.int64))],
        g.name("mask5"),
    )
    base = g.const("baseline", pre.baseline.reshape(1, 1, c, 1, 1))
    stacked = g.node("Where", [mask5, g.unsqueeze0(x, g.name("x5")), base], g.name("stacked"))
    if g.opset >= 15:
        tail = g.node("Shape", [x], g.name("chw"), start=1)
    else:
        full = g.node("Shape", [x], g.name("shape"))
        one, four = (
            g.const("one", np.array([1], np.int64)),
            g.const("four", np.array([4], np.int64)),
        )
        tail = g.node("Slice", [full, one, four], g.name("chw"))
    minus1 = g.const("minus1", np.array([-1], np.int64))
    out_shape = g.node("Concat", [minus1, tail], g.name("out_shape"), axis=0)
    g.node("Reshape", [stacked, out_shape], output_name)


def onnx_preamble(
    pre: Preamble,
    *,
    input_dtypes: Mapping[str, np.dtype],
    image_size: tuple[int, int] | None,
    output_name: str,
    opset: int,
    ir_version: int,
) -> onnx.ModelProto:
    """The preamble as an ONNX model ``(s1, s2) -> output_name`` (n_coal * B, C, H, W); for a
    model with several inputs, one output ``<output_name>_<input>`` per input (its channels)."""
    from onnx import TensorProto, helper, numpy_helper

    if opset < 9:
        raise SarevalError(f"ONNX opset {opset} is too old for the coalition preamble (need >= 9)")
    c = pre.n_channels
    g = _Graph(opset)
    hw: tuple[Any, Any] = image_size if image_size is not None else ("H", "W")
    inputs, parts = _select(g, pre, input_dtypes, hw)
    _stack(g, pre, _normalised_input(g, pre, parts), output_name)
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["rows", c, *hw])]
    if len(pre.inputs) > 1:  # one output per model input: its channels of the coalition batch
        outputs = []
        for input_name, sl in pre.inputs:
            idx = g.const(f"channels_{input_name}", np.arange(sl.start, sl.stop, dtype=np.int64))
            out = g.node("Gather", [output_name, idx], f"{output_name}_{input_name}", axis=1)
            outputs.append(
                helper.make_tensor_value_info(
                    out, TensorProto.FLOAT, ["rows", sl.stop - sl.start, *hw]
                )
            )
    g.inits.append(numpy_helper.from_array(pre.masks, MASK_NAME))
    inputs.append(helper.make_tensor_value_info(MASK_NAME, TensorProto.BOOL, ["n_coal", c]))
    graph = helper.make_graph(
        g.nodes, "sareval_coalition_preamble", inputs, outputs, initializer=g.inits
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    model.producer_name = "sareval"
    return model


def default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise SarevalError("ONNX model imports no default-domain opset")


def compose_onnx(
    pre: Preamble,
    model: onnx.ModelProto,
    *,
    input_dtypes: Mapping[str, np.dtype],
    image_size: tuple[int, int] | None,
    source: str = "model",
) -> onnx.ModelProto:
    """One graph ``(s1, s2[, mask]) -> (n_coal * B, K)``: the preamble feeding ``model``
    (each of the model's inputs named in ``pre.inputs`` gets its channels)."""
    import onnx

    graph_inputs = [i.name for i in model.graph.input]
    initializer_names = {t.name for t in model.graph.initializer}
    real_inputs = [n for n in graph_inputs if n not in initializer_names]
    names = [n for n, _ in pre.inputs]
    if sorted(names) != sorted(real_inputs):
        raise SarevalError(
            f"{source}: the model card's inputs ({', '.join(names)}) are not the model's "
            f"inputs ({', '.join(real_inputs)})"
        )
    if len(model.graph.output) != 1:
        outs = ", ".join(o.name for o in model.graph.output)
        raise SarevalError(f"{source}: expected one model output, got {outs}")
    for name in names:
        dims = model.graph.input[graph_inputs.index(name)].type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            raise SarevalError(
                f"{source}: the model input {name!r} has a fixed batch size "
                f"{dims[0].dim_value}; export it with a dynamic batch axis (sareval export does)"
            )
    preamble = onnx_preamble(
        pre,
        input_dtypes=input_dtypes,
        image_size=image_size,
        output_name=NETWORK_INPUT,
        opset=default_opset(model),
        ir_version=model.ir_version,
    )
    # the preamble only imports the default domain; give it the model's other imports too
    for entry in model.opset_import:
        if entry.domain not in ("", "ai.onnx"):
            preamble.opset_import.append(entry)
    merged = onnx.compose.merge_models(
        preamble,
        model,
        io_map=(
            [(NETWORK_INPUT, names[0])]
            if len(names) == 1
            else [(f"{NETWORK_INPUT}_{n}", n) for n in names]
        ),
        producer_name="sareval",
        doc_string="sareval coalition preamble + model",
    )
    del merged.metadata_props[:]
    merged.metadata_props.extend(model.metadata_props)
    return merged


# --- torch ------------------------------------------------------------------------------------
def absent_runs(present: Sequence[bool]) -> list[tuple[int, int]]:
    """``[a, b)`` channel runs where ``present`` is False, in order."""
    runs: list[tuple[int, int]] = []
    for c, p in enumerate(present):
        if p:
            continue
        if runs and runs[-1][1] == c:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    return runs


def _torch_module_class() -> type:
    import torch

    class CoalitionModule(torch.nn.Module):
        """``forward(s1, s2, mask=None) -> (n_coal * B, K)``: the preamble, then ``model``.

        Inputs are raw store tensors (any dtype; uint16 is cast on the device). ``mask``
        (n, C) bool overrides the coalitions (an all-false (1, C) mask gives the empty one).
        ``bf16_channels_last``: the rows are built in bf16, channels-last, the layout of a
        bf16 copy of the network (:func:`~sareval.evaluator.backends._pure_bf16`), which then
        casts nothing: one cast of the B samples instead of one of the n * B rows, the same
        values.
        """

        order: torch.Tensor
        nan_fill: torch.Tensor
        lo: torch.Tensor
        hi: torch.Tensor
        mean: torch.Tensor
        std: torch.Tensor
        baseline: torch.Tensor
        masks: torch.Tensor

        def __init__(
            self, pre: Preamble, model: torch.nn.Module, bf16_channels_last: bool = False
        ) -> None:
            super().__init__()
            self.bf16_channels_last = bf16_channels_last
            self.sensors = pre.sensors
            self.model = model

            def buf(n: str, a: np.ndarray) -> None:
                self.register_buffer(n, torch.from_numpy(np.ascontiguousarray(a)), False)

            self.constants = list(torch_constants(pre).items())
            for name, value in self.constants:
                buf(name, value)
            self.flags = torch_flags(pre)
            buf("baseline", pre.baseline.reshape(1, 1, -1, 1, 1))
            buf("masks", pre.masks)
            self.inputs = [(n, sl.start, sl.stop) for n, sl in pre.inputs]
            self.call = pre.call

        def normalise(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
            k = {name: getattr(self, name) for name, _ in self.constants}
            return normalise_torch(raw, self.sensors, k, self.flags)

        def forward(
            self,
            raw: dict[str, torch.Tensor],
            mask: torch.Tensor | None = None,
            normalised: torch.Tensor | None = None,
            paired: bool = False,
        ) -> torch.Tensor:
            """Outputs of the coalitions of ``mask`` (default every one) on ``raw``, row
            k * B + i = sample i under coalition k; ``paired``: ``mask`` (B, C) holds one
            coalition per sample, row i = sample i under ``mask[i]``. ``normalised``:
            ``self.normalise(raw)`` when the caller has it already."""
            x = self.normalise(raw) if normalised is None else normalised
            m = self.masks if mask is None else mask
            flat = self.rows(x, m, paired)
            if len(self.inputs) == 1:
                return self.model(flat)
            parts = {n: flat[:, a:b] for n, a, b in self.inputs}
            if self.call == "dict":
                return self.model(parts)
            return self.model(*parts.values())

        def rows(self, x: torch.Tensor, m: torch.Tensor, paired: bool) -> torch.Tensor:
            """The network's input rows: ``x`` where the coalition holds a channel, the
            baseline elsewhere (``forward`` gives the row order). Coalition by coalition,
            ``x`` is copied whole and each run of absent channels overwritten (contiguous
            copies; faster than a broadcast ``where`` over every row in a one-off probe, no
            command in the repo times it alone); paired rows (a few re-run rows) take the
            ``where``."""
            if self.bf16_channels_last and x.dim() == 4:
                # (B, H, W, C) bf16, contiguous: the memory of a channels-last (B, C, H, W)
                x = x.to(torch.bfloat16, memory_format=torch.channels_last).permute(0, 2, 3, 1)
                channel = -1
            else:
                channel = 1
            shape = [1] * x.dim()
            shape[channel] = -1
            base = self.baseline.reshape(shape).to(x.dtype)
            keep = m[:, None, None, :] if channel == -1 else m.reshape(*m.shape, *shape[2:])
            if paired:
                out = torch.where(keep, x, base)
            else:
                out = torch.empty((len(m), *x.shape), dtype=x.dtype, device=x.device)
                for k, present in enumerate(m.tolist()):
                    out[k].copy_(x)
                    for a, b in absent_runs(present):
                        out[k].narrow(channel, a, b - a).copy_(base.narrow(channel, a, b - a))
                out = out.reshape(-1, *x.shape[1:])
            return out.permute(0, 3, 1, 2) if channel == -1 else out

    return CoalitionModule


def coalition_module(
    pre: Preamble, model: torch.nn.Module, *, bf16_channels_last: bool = False
) -> torch.nn.Module:
    """The torch preamble wrapped around ``model`` (an nn.Module or a TorchScript module);
    ``bf16_channels_last``: rows built in bf16, channels-last (a bf16 copy's layout)."""
    return _torch_module_class()(pre, model, bf16_channels_last)
