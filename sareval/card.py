"""The model card (contract 2): which named band goes to which input channel, and how.

A card travels inside the model file: ONNX ``metadata_props[ONNX_METADATA_KEY]``, TorchScript
extra file ``TORCHSCRIPT_EXTRA_FILE``; a foreign model gets one from a JSON file. JSON layout::

    {
      "card_version": 2,                           # 3 where a version-3 field is used;
                                                   # versions 1 and 2 are read too
      "name": "sen12ms-s1s2 resnet50",
      "task": "single-label" | "multi-label" | "segmentation",
      "class_names": ["Forest", ...],              # in output order
      "output": "logits" | "probabilities",
      "threshold": 0.5,                            # multi-label: positive when p >= threshold
      "input": {"name": "input", "channels": ["B02", ..., "VV", "VH"],
                "height": 256, "width": 256},      # null height/width: any size
      # or, for a model with several inputs (card_version 2): forward(s1, s2), forward(
      # {"s1": .., "s2": ..}) or an ONNX graph with inputs s1, s2 (channels-first each):
      "input": {"tensors": [{"name": "s1", "channels": ["VV", "VH"]},
                            {"name": "s2", "channels": ["B02", ...]}],
                "call": "positional" | "dict", "height": 256, "width": 256},
      "modalities": [{"name": "sar", "bands": ["VV", "VH"]},
                     {"name": "opt", "bands": ["B02", ...]}],   # players, in card order
      "normalization": "none" | {"VV": {"nan": 0.0, "clip": [-25.0, 0.0],
                                        "mean": -11.77, "std": 4.53}, ...},
      "provenance": {"architecture": "resnet50", "fusion": "early", "checkpoint_sha256": ...},
      # card_version 3:
      "segmentation": {"ignore_index": 255,        # label value never counted (null: none)
                       "label_matching": "nearest-labels" | "upsample-logits"},
      "absence": ["fill", "marginal"]              # the absence operators the model supports
    }

A segmentation model outputs ``(N, K, H', W')`` with ``H = s H'`` and ``W = s W'`` for an integer
``s >= 1``; label maps are matched to it as ``segmentation.label_matching`` says (nearest
downsampling of the labels: label pixel ``(s i + s // 2, s j + s // 2)``; or bilinear
upsampling of the logits to ``(H, W)``). ``absence`` defaults to ``["fill", "marginal"]`` (any
model: both only change input values); ``omit`` and ``mask`` need a model built for them.

Per channel with band b the network input is ``(clip(nan_to_num(x, nan_b), lo_b, hi_b) - mean_b)
/ std_b`` (:class:`BandTransform`); bands absent from ``normalization`` pass through unchanged.
Every channel belongs to exactly one modality; the modality order fixes coalition names
(``"sar+opt"``). Band names are the store's: Sentinel-1/2 names (:mod:`sareval.bands`) or any
extra channel a store carries (``DEM``, ``NDVI``, ``VV_VH_ratio``: letters, digits, ``_``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sareval import __version__
from sareval.bands import S1_BANDS, S2_BANDS, default_bands
from sareval.custom_card import compute_normalization
from sareval.errors import CardError, InputFileError, SarevalError
from sareval.formats import check_model_file, load_onnx, load_torchscript
from sareval.normalization import (
    channel_map,
    normalise_numpy,
    normalise_torch,
    torch_constants,
    torch_flags,
)
from sareval.presets import get_preset

log = logging.getLogger(__name__)

CARD_VERSION = 2
#: the version written when a card uses a version-3 field (segmentation, absence)
CARD_VERSION_3 = 3
#: absence operators every model supports (both only change input values)
DEFAULT_ABSENCE: tuple[str, ...] = ("fill", "marginal")
#: the ONNX input of a ``mask`` model's (N, M) bool modality presence (True: present)
PRESENT_INPUT = "present"
#: label value never counted, by default (SEN12MS / DFC2020 / reBEN maps use it for no class)
DEFAULT_IGNORE_INDEX = 255
ONNX_METADATA_KEY = "sareval.card"
TORCHSCRIPT_EXTRA_FILE = "sareval_card.json"
#: types, enums and ranges of a card (sizes <= 65536, |numbers| <= 1e9, std in [1e-9, 1e9])
SCHEMA_PATH = Path(__file__).with_name("card.schema.json")
ATTACH_HINT = (
    "write a card JSON (see `sareval card template`) and embed it with "
    "`sareval card attach MODEL CARD.json`"
)


@dataclass(frozen=True)
class BandTransform:
    """``y = (clip(nan_to_num(x, nan), *clip) - mean) / std``; ``None`` skips a step."""

    nan: float | None = None
    clip: tuple[float, float] | None = None
    mean: float = 0.0
    std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "nan": self.nan,
            "clip": list(self.clip) if self.clip is not None else None,
            "mean": self.mean,
            "std": self.std,
        }


@dataclass(frozen=True)
class Modality:
    """A player of the relevance game: a name and the bands it owns."""

    name: str
    bands: tuple[str, ...]


@dataclass(frozen=True)
class ModelCard:
    """Parsed, validated model card. Build with :meth:`custom`, :meth:`from_preset`,
    :meth:`from_dict`, or read one with :meth:`read`."""

    task: str
    class_names: tuple[str, ...]
    channels: tuple[str, ...]
    modalities: tuple[Modality, ...]
    normalization: dict[str, BandTransform]
    input_name: str = "input"
    height: int | None = None
    width: int | None = None
    output: str = "logits"
    threshold: float = 0.5
    name: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    #: several model inputs: (name, channel count) splitting ``channels`` in order; () = one
    input_tensors: tuple[tuple[str, int], ...] = ()
    call: str = "positional"
    #: segmentation: the label value never counted (None: every value is a class)
    ignore_index: int | None = None
    #: segmentation: how label maps meet outputs of another size (:data:`LABEL_MATCHINGS`)
    label_matching: str = "nearest-labels"
    #: the absence operators the model supports (:data:`~sareval.choices.ABSENCES`)
    absence: tuple[str, ...] = DEFAULT_ABSENCE

    @property
    def is_segmentation(self) -> bool:
        return self.task == "segmentation"

    @property
    def version(self) -> int:
        """The card version this card needs: 3 where it uses a version-3 field, else 2."""
        if self.is_segmentation or self.absence != DEFAULT_ABSENCE:
            return CARD_VERSION_3
        return CARD_VERSION

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's input names, in ``channels`` order."""
        return tuple(n for n, _ in self.input_tensors) or (self.input_name,)

    def input_slices(self) -> list[tuple[str, slice]]:
        """Each model input's name and its slice of ``channels``."""
        if not self.input_tensors:
            return [(self.input_name, slice(0, self.n_channels))]
        out, at = [], 0
        for name, n in self.input_tensors:
            out.append((name, slice(at, at + n)))
            at += n
        return out

    @classmethod
    def from_preset(
        cls, name: str, *, task: str, input_size: int | None = None, **kwargs: Any
    ) -> ModelCard:
        """The card of a preset (``sen12ms-s1s2``, ``bigearthnet-mm``, ...: see
        ``sareval card template --help``); ``kwargs`` as :func:`make_card`
        (architecture, fusion, class_names)."""
        kwargs.setdefault("architecture", "unknown")
        kwargs.setdefault("fusion", "early")
        kwargs.setdefault("checkpoint_sha256", None)
        kwargs.setdefault("random_init", False)
        return make_card(name, task, input_size=input_size, **kwargs)

    @classmethod
    def custom(
        cls,
        modalities: Mapping[str, Sequence[str]],
        *,
        task: str,
        class_names: Sequence[str],
        input_size: int | tuple[int, int] | None = None,
        normalization: Mapping[str, BandTransform | Mapping[str, Any]] | str = "none",
        normalize_from: Any = None,
        statistic: str = "mean-std",
        percentiles: tuple[float, float] = (1.0, 99.0),
        nan: float | None = None,
        channels: Sequence[str] | None = None,
        inputs: Mapping[str, Sequence[str]] | None = None,
        call: str = "positional",
        input_name: str = "input",
        output: str = "logits",
        threshold: float = 0.5,
        name: str = "",
        provenance: Mapping[str, Any] | None = None,
        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
        label_matching: str = "nearest-labels",
        absence: Sequence[str] = DEFAULT_ABSENCE,
    ) -> ModelCard:
        """A card for your own model in one call; validated like any card.

        ``modalities``: player -> its band names (``{"sar": ["VV", "VH"], "opt": [...]}``);
        the network's channels are these bands in this order unless ``channels`` (one input) or
        ``inputs`` (input name -> bands, several inputs, called as ``call``) say otherwise.
        ``input_size``: H = W, or (H, W); None for any size. Normalisation: ``normalization``
        band -> :class:`BandTransform` or ``{"mean", "std", "clip", "nan"}`` (bands left out
        are fed raw), and/or ``normalize_from`` data (a store subset, or arrays by modality or
        band name) whose ``statistic`` (``"mean-std"`` over finite pixels, or ``"percentiles"``
        ``(lo, hi)``: clip and scale to [0, 1]) gives the other bands their transform, with
        ``nan`` as their NaN fill; the statistic is recorded in
        ``provenance["normalization"]`` (:mod:`sareval.custom_card`). ``task="segmentation"``
        uses ``ignore_index`` and ``label_matching``; ``absence``: the operators the model
        supports.
        """
        bands = [b for m in modalities.values() for b in m]
        order = list(channels) if channels is not None else bands
        if inputs is not None:
            order = [b for bs in inputs.values() for b in bs]
        norm: dict[str, Any] = {}
        prov = dict(provenance or {})
        if normalize_from is not None:
            given = set(normalization) if isinstance(normalization, Mapping) else set()
            norm, record = compute_normalization(
                normalize_from,
                modalities,
                [b for b in order if b not in given],
                statistic=statistic,
                percentiles=percentiles,
                nan=nan,
            )
            prov["normalization"] = record
        if isinstance(normalization, Mapping):
            for b, t in normalization.items():
                norm[b] = t.to_dict() if isinstance(t, BandTransform) else dict(t)
        elif normalization != "none":
            raise SarevalError(
                "ModelCard.custom normalization: expected 'none' or a mapping band -> "
                f"transform, got {normalization!r}"
            )
        h, w = (
            (input_size, input_size) if isinstance(input_size, int) else input_size or (None,) * 2
        )
        size = {"height": h, "width": w}
        inp: dict[str, Any] = {"name": input_name, "channels": order, **size}
        if inputs is not None:
            tensors = [{"name": n, "channels": list(bs)} for n, bs in inputs.items()]
            inp = {"tensors": tensors, "call": call, **size}
        d = {
            "card_version": CARD_VERSION,
            "name": name,
            "task": task,
            "class_names": list(class_names),
            "output": output,
            "threshold": threshold,
            "input": inp,
            "modalities": [{"name": m, "bands": list(bs)} for m, bs in modalities.items()],
            "normalization": {b: norm[b] for b in order if b in norm} or "none",
            "provenance": prov,
        }
        if task == "segmentation":
            d["segmentation"] = {"ignore_index": ignore_index, "label_matching": label_matching}
        if tuple(absence) != DEFAULT_ABSENCE:
            d["absence"] = list(absence)
        if "segmentation" in d or "absence" in d:
            d["card_version"] = CARD_VERSION_3
        extra = [b for b in norm if b not in order]
        if extra:
            raise SarevalError(
                f"ModelCard.custom normalization: bands {extra} are not input channels"
            )
        return cls.from_dict(d, source="(ModelCard.custom)")

    def normalize(self, x: Any, bands: Mapping[str, Sequence[str]] | None = None) -> Any:
        """Exactly the transform the evaluator applies before the network (the code its
        coalition preamble runs, :mod:`sareval.normalization`): per channel
        ``(clip(nan_to_num(x, nan), lo, hi) - mean) / std`` in float32, on numpy arrays or torch
        tensors (same device).

        ``x``: (B, C, H, W) or (C, H, W) in the card's ``channels`` order; or raw arrays by
        sensor (``{"s1": .., "s2": ..}``, (B, C_s, H, W)) with ``bands`` naming each one's
        channels (standard ``s1`` / ``s2`` layouts need none), selected and ordered by name.
        Returns float32 (B, C, H, W) (or (C, H, W)) in ``channels`` order; a card with several
        inputs splits it with :meth:`input_slices`.
        """
        where = "ModelCard.normalize"
        raw = dict(x) if isinstance(x, Mapping) else {"x": x}
        if not raw:
            raise SarevalError(f"{where}: x is empty")
        is_torch = any(hasattr(v, "detach") for v in raw.values())
        ndims = {getattr(v, "ndim", None) for v in raw.values()}
        if ndims not in ({3}, {4}):
            shapes = ", ".join(f"{k}: {tuple(getattr(v, 'shape', ()))}" for k, v in raw.items())
            raise SarevalError(f"{where}: x must be (B, C, H, W) or (C, H, W); got {shapes}")
        single = ndims == {3}
        if single:
            raw = {k: v[None] for k, v in raw.items()}
        if not isinstance(x, Mapping):
            names: dict[str, Sequence[str]] = {"x": self.channels}
        else:
            names = {}
            for k, v in raw.items():
                got = (bands or {}).get(k) or default_bands(k, int(v.shape[1]))
                if got is None:
                    raise SarevalError(f"{where}: bands: name the channels of x[{k!r}]")
                names[k] = tuple(got)
        for k, v in raw.items():
            if int(v.shape[1]) != len(names[k]):
                what = "x" if k == "x" else f"x[{k!r}]"
                raise SarevalError(
                    f"{where}: {what} has {int(v.shape[1])} channels, expected {len(names[k])} "
                    f"({', '.join(names[k])}); channels-first (B, C, H, W)"
                )
        cm = channel_map(self, names, source=where)
        if is_torch:
            import torch

            tensors = {
                k: v if hasattr(v, "detach") else torch.from_numpy(v) for k, v in raw.items()
            }
            device = next(v.device for v in tensors.values())
            constants = {k: torch.from_numpy(v).to(device) for k, v in torch_constants(cm).items()}
            out: Any = normalise_torch(tensors, cm.sensors, constants, torch_flags(cm))
        else:
            out = normalise_numpy(cm, {k: np.asarray(v) for k, v in raw.items()})
        return out[0] if single else out

    @classmethod
    def read(cls, model_path: str | Path) -> ModelCard:
        """The card inside a model file (.onnx, .pt, .pt2) or a card .json file
        (:func:`read_model_card`, the one card reader)."""
        return read_model_card(model_path)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> Modality:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"no modality {name!r}; card has {', '.join(self.modality_names)}")

    def channel_indices(self, modality: str) -> list[int]:
        """Input channel indices owned by ``modality``, in channel order."""
        bands = set(self.modality(modality).bands)
        return [i for i, b in enumerate(self.channels) if b in bands]

    def transform(self, band: str) -> BandTransform:
        """The band's transform (identity when the card does not normalise it)."""
        return self.normalization.get(band, BandTransform())

    def with_modalities(self, modalities: tuple[Modality, ...]) -> ModelCard:
        """The same card with other players (e.g. optical split into band groups); validated."""
        d = self.to_dict()
        d["modalities"] = [{"name": m.name, "bands": list(m.bands)} for m in modalities]
        return ModelCard.from_dict(d, source="(derived card)")

    def with_inputs(
        self, tensors: Mapping[str, Sequence[str]], call: str = "positional"
    ) -> ModelCard:
        """The same card for a model with several inputs: ``{"s1": ["VV", "VH"], "s2": [...]}``
        (input name -> its bands, channels-first), called ``forward(s1, s2)`` (``positional``)
        or ``forward({"s1": .., "s2": ..})`` (``dict``); validated."""
        d = self.to_dict()
        d["input"] = {
            "tensors": [{"name": n, "channels": list(b)} for n, b in tensors.items()],
            "call": call,
            "height": self.height,
            "width": self.width,
        }
        return ModelCard.from_dict(d, source="(card.with_inputs)")

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {
            "card_version": self.version,
            "name": self.name,
            "task": self.task,
            "class_names": list(self.class_names),
            "output": self.output,
            "threshold": self.threshold,
            "input": self._input_dict(),
            "modalities": [{"name": m.name, "bands": list(m.bands)} for m in self.modalities],
            "normalization": (
                {b: t.to_dict() for b, t in self.normalization.items()}
                if self.normalization
                else "none"
            ),
            "provenance": self.provenance,
        }
        if self.is_segmentation:
            d["segmentation"] = {
                "ignore_index": self.ignore_index,
                "label_matching": self.label_matching,
            }
        if self.absence != DEFAULT_ABSENCE:
            d["absence"] = list(self.absence)
        return d

    def _input_dict(self) -> dict[str, Any]:
        size = {"height": self.height, "width": self.width}
        if not self.input_tensors:
            return {"name": self.input_name, "channels": list(self.channels), **size}
        tensors = [
            {"name": n, "channels": list(self.channels[sl])} for n, sl in self.input_slices()
        ]
        return {"tensors": tensors, "call": self.call, **size}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Any, source: str | Path = "(card)") -> ModelCard:
        """Validate and parse a card dict; :class:`CardError` names ``source`` and the field.

        Types, enums and ranges come from ``card.schema.json`` (beside this module); NaN and
        infinities, band ownership and normalisation keys are checked here."""

        def fail(problem: str) -> CardError:
            return CardError(source, f"model card: {problem}")

        _check_schema(d, fail)
        _check_finite(d, "", fail)
        inp = d["input"]
        tensors, call = _input_tensors(inp, d.get("card_version", CARD_VERSION), fail)
        channels = (
            inp["channels"] if not tensors else [b for t in inp["tensors"] for b in t["channels"]]
        )
        _check_unique_channels(inp, tensors, channels, fail)
        seg = _segmentation(d, fail)
        return cls(
            task=d["task"],
            class_names=tuple(d["class_names"]),
            channels=tuple(channels),
            modalities=_modalities(d["modalities"], channels, fail),
            normalization=_normalization(d.get("normalization", "none"), channels, fail),
            input_name=str(inp.get("name", "input")),
            height=inp.get("height"),
            width=inp.get("width"),
            output=d.get("output", "logits"),
            threshold=float(d.get("threshold", 0.5)),
            name=str(d.get("name", "")),
            provenance=dict(d.get("provenance", {})),
            input_tensors=tensors,
            call=call,
            ignore_index=seg.get("ignore_index"),
            label_matching=seg.get("label_matching", "nearest-labels"),
            absence=_absence(d, fail),
        )

    @classmethod
    def from_json(cls, text: str | Path, source: str | Path = "(card)") -> ModelCard:
        """A card from JSON text, or from a ``.json`` file when ``text`` is a path (a
        :class:`~pathlib.Path`, or a one-line string that does not start with ``{`` or ``[``)."""
        is_path = isinstance(text, Path) or (
            not text.lstrip().startswith(("{", "[")) and "\n" not in text and len(text) < 4096
        )
        if is_path:
            path = Path(text)
            if not path.is_file():
                raise CardError(path, "card file not found")
            try:
                text, source = path.read_bytes().decode("utf-8"), path
            except UnicodeDecodeError as e:
                raise CardError(path, f"model card is not UTF-8 text (byte {e.start})") from None
            except OSError as e:
                raise CardError(path, f"card file is unreadable ({e.strerror})") from None
        try:
            d = json.loads(str(text))
        except json.JSONDecodeError as e:
            raise CardError(
                source, f"model card is not valid JSON ({e.msg} at line {e.lineno})"
            ) from None
        except RecursionError:
            raise CardError(source, "model card is nested too deeply") from None
        return cls.from_dict(d, source)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator(schema)


def _check_schema(d: Any, fail: Any) -> None:
    """One-line error for the first schema violation: ``<field path>: <what is wrong>``."""
    import jsonschema

    if not isinstance(d, dict):
        raise fail("expected a JSON object")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(d))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "card"
    what = error.message if len(error.message) < 160 else error.message[:157] + "..."
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        what = f"{_first_repeat(error.instance)} is given twice; non-unique elements are refused"
    if error.validator in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        what = f"{json.dumps(error.instance)[:40]} is not a valid value ({error.message[-60:]})"
    raise fail(f"{where}: {what}")


def _segmentation(d: dict[str, Any], fail: Any) -> dict[str, Any]:
    """The ``segmentation`` section: required by (and only allowed with) task segmentation;
    ``ignore_index`` defaults to :data:`DEFAULT_IGNORE_INDEX` and must not be a class."""
    version = d.get("card_version", CARD_VERSION)
    seg = d.get("segmentation")
    if d["task"] != "segmentation":
        if seg is not None:
            raise fail(f"segmentation: only for task segmentation, not {d['task']!r}")
        return {}
    if version < CARD_VERSION_3:
        raise fail("task segmentation needs card_version 3")
    seg = {"ignore_index": DEFAULT_IGNORE_INDEX, **(seg or {})}
    ignore = seg["ignore_index"]
    if ignore is not None and ignore < len(d["class_names"]):
        raise fail(
            f"segmentation.ignore_index: {ignore} is a class index "
            f"(class {d['class_names'][ignore]!r}); use a value >= {len(d['class_names'])}"
        )
    return seg


def _absence(d: dict[str, Any], fail: Any) -> tuple[str, ...]:
    if "absence" not in d:
        return DEFAULT_ABSENCE
    if d.get("card_version", CARD_VERSION) < CARD_VERSION_3:
        raise fail("absence needs card_version 3")
    return tuple(d["absence"])


def _first_repeat(items: list[Any]) -> str:
    """The first item of ``items`` that repeats an earlier one, as JSON."""
    seen: set[str] = set()
    for v in items:
        key = json.dumps(v, sort_keys=True)
        if key in seen:
            return key
        seen.add(key)
    return "an item"


def _check_finite(value: Any, where: str, fail: Any) -> None:
    """NaN and infinities are refused anywhere in the card (JSON Schema lets them through)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(f"{where or 'card'}: {value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}" if where else str(k), fail)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}.{i}", fail)


def _input_tensors(
    inp: dict[str, Any], version: int, fail: Any
) -> tuple[tuple[tuple[str, int], ...], str]:
    """``input.tensors`` of a version-2 card -> ((name, channel count), ...), call style."""
    if "tensors" not in inp:
        return (), "positional"
    if version < 2:
        raise fail("input.tensors needs card_version 2")
    out = tuple((t["name"], len(t["channels"])) for t in inp["tensors"])
    if len({n for n, _ in out}) != len(out):
        raise fail("input.tensors names must be unique")
    return out, inp.get("call", "positional")


def _check_unique_channels(
    inp: dict[str, Any], tensors: tuple[tuple[str, int], ...], channels: list[str], fail: Any
) -> None:
    """Each band feeds one channel: name the first band given twice and where."""
    seen: dict[str, str] = {}
    places = (
        [(f"input {t['name']!r}", b) for t in inp["tensors"] for b in t["channels"]]
        if tensors
        else [("input.channels", b) for b in channels]
    )
    for place, b in places:
        if b in seen:
            where = place if seen[b] == place else f"{seen[b]} and {place}"
            raise fail(f"band {b!r} is given twice ({where}); each band feeds one channel")
        seen[b] = place


def _modalities(raw: list[Any], channels: list[str], fail: Any) -> tuple[Modality, ...]:
    """The players: every input channel in exactly one modality."""
    owner: dict[str, str] = {}
    for m in raw:
        for b in m["bands"]:
            if b not in channels:
                raise fail(f"modality {m['name']!r} band {b!r} is not an input channel")
            if b in owner:
                raise fail(f"band {b!r} is in modalities {owner[b]!r} and {m['name']!r}")
            owner[b] = m["name"]
    if len({m["name"] for m in raw}) != len(raw):
        raise fail("modality names must be unique")
    orphans = [b for b in channels if b not in owner]
    if orphans:
        raise fail(f"input channels {orphans} belong to no modality")
    return tuple(Modality(m["name"], tuple(m["bands"])) for m in raw)


def _normalization(raw: Any, channels: list[str], fail: Any) -> dict[str, BandTransform]:
    """Band -> transform ("none": no normalisation)."""
    if raw == "none":
        return {}
    out = {}
    for b, t in raw.items():
        if b not in channels:
            raise fail(f"normalization band {b!r} is not an input channel")
        clip = t.get("clip")
        bt = BandTransform(
            nan=None if t.get("nan") is None else float(t["nan"]),
            clip=None if clip is None else (float(clip[0]), float(clip[1])),
            mean=float(t.get("mean", 0.0)),
            std=float(t.get("std", 1.0)),
        )
        if bt.clip is not None and bt.clip[0] > bt.clip[1]:
            raise fail(f"normalization of {b!r}: clip low > high")
        out[b] = bt
    return out


# --- cards inside model files -----------------------------------------------------------------
def set_onnx_card(model: Any, card: ModelCard) -> None:
    """Store ``card`` in an ``onnx.ModelProto``'s ``metadata_props`` (replacing an old one)."""
    props = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = card.to_json()


def get_onnx_card(model: Any, source: str | Path = "(onnx model)") -> ModelCard:
    """Read the card from an ``onnx.ModelProto``; :class:`CardError` if it has none."""
    for p in model.metadata_props:
        if p.key == ONNX_METADATA_KEY:
            return ModelCard.from_json(p.value, source)
    raise CardError(source, f"model has no sareval model card; {ATTACH_HINT}")


# --- cards of the presets (:mod:`sareval.presets`) ---------------------------------------------
def _players_of_channels(channels: Sequence[str]) -> tuple[Modality, ...]:
    """Players in card order [sar, opt], each with its bands in channel order (empty dropped)."""
    sar = tuple(b for b in channels if b in S1_BANDS)
    opt = tuple(b for b in channels if b in S2_BANDS)
    return tuple(Modality(n, bands) for n, bands in (("sar", sar), ("opt", opt)) if bands)


def make_card(
    preset: str,
    task: str,
    *,
    architecture: str,
    fusion: str,
    checkpoint_sha256: str | None,
    random_init: bool,
    input_size: int | None = None,
    class_names: Sequence[str] | None = None,
    label_matching: str = "nearest-labels",
) -> ModelCard:
    """The model card of ``preset`` for ``task``, with provenance.

    ``input_size`` overrides the preset's H = W (e.g. a ResNet trained on crops);
    ``class_names`` overrides its classes (e.g. the 17 IGBP classes of a toolbox run with
    ``IGBP_simple: False``). Task ``segmentation``: the preset's map classes
    (``Preset.classes_for``), ignore index :data:`DEFAULT_IGNORE_INDEX` and ``label_matching``
    (what the network's output is: :data:`sareval.models.LABEL_MATCHING`).
    """
    p = get_preset(preset)
    if task not in p.tasks:
        raise SarevalError(f"preset {preset} supports task {' / '.join(p.tasks)}, not {task!r}")
    size = p.size if input_size is None else int(input_size)
    name = f"{preset} {architecture}" + (" late fusion" if fusion == "late" else "")
    provenance = {
        "preset": preset,
        "architecture": architecture,
        "fusion": fusion,
        "checkpoint_sha256": checkpoint_sha256,
        "random_init": bool(random_init),
        "statistics": p.statistics,
        "sareval_version": __version__,
        **p.notes,
    }
    card = ModelCard(
        task=task,
        class_names=tuple(class_names) if class_names is not None else p.classes_for(task),
        channels=p.channels,
        modalities=_players_of_channels(p.channels),
        normalization={b: BandTransform(**t) for b, t in p.normalization.items()},
        height=size,
        width=size,
        name=name,
        provenance=provenance,
        ignore_index=DEFAULT_IGNORE_INDEX if task == "segmentation" else None,
        label_matching=label_matching,
    )
    return ModelCard.from_dict(card.to_dict(), source=f"(preset {preset})")  # validated


def card_with_statistics(
    card: ModelCard, mean: Mapping[str, float], std: Mapping[str, float]
) -> ModelCard:
    """``card`` with each channel's z-score set to ``mean[band]`` / ``std[band]``.

    NaN replacement and clipping stay as they are; bands of ``mean``/``std`` that are not
    channels are ignored. A band with std 0 (constant in the training data) gets std 1 (its
    normalised value is then 0 everywhere), with a warning. Raises :class:`SarevalError` for a
    channel without statistics or a non-finite value.
    """
    missing = [b for b in card.channels if b not in mean or b not in std]
    if missing:
        raise SarevalError(f"no training statistics for channels {missing}")
    d = card.to_dict()
    norm = d["normalization"] if isinstance(d["normalization"], dict) else {}
    for b in card.channels:
        m, s = float(mean[b]), float(std[b])
        if not (math.isfinite(m) and math.isfinite(s)) or s < 0:
            raise SarevalError(f"training statistics of {b} are not usable (mean {m}, std {s})")
        if s == 0.0:
            log.warning("band %s is constant in the training data; its std is set to 1", b)
            s = 1.0
        t = card.transform(b)
        norm[b] = BandTransform(nan=t.nan, clip=t.clip, mean=m, std=s).to_dict()
    d["normalization"] = norm
    d["provenance"] = {**d.get("provenance", {}), "statistics": "training store"}
    return ModelCard.from_dict(d, source="(card with training statistics)")


# --- reading a card from any model file ------------------------------------------------------
def read_model_card(path: str | Path) -> ModelCard:
    """The :class:`ModelCard` inside a model file (the kinds of :mod:`sareval.formats`), or of a
    card ``.json``: the one card reader (``ModelCard.read`` and :func:`read_card` are this
    function). Every problem is a :class:`~sareval.errors.CardError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CardError(path, "file not found")
    try:
        kind = check_model_file(path, cards=True).kind
        if kind == "card":
            return ModelCard.from_json(path)
        if kind == "onnx":
            return get_onnx_card(load_onnx(path), path)
        text = _torch_card_text(path, kind)
    except CardError:
        raise
    except InputFileError as e:
        raise CardError(path, e.problem) from None
    if not text:
        raise CardError(path, f"model has no sareval model card; {ATTACH_HINT}")
    return ModelCard.from_json(text, path)


def _torch_card_text(path: Path, kind: str) -> str | None:
    if kind == "torch-export":
        from sareval.models.pt2 import read_extra_file  # sareval.models imports torch

        return read_extra_file(path, TORCHSCRIPT_EXTRA_FILE)
    return load_torchscript(path, extra_file=TORCHSCRIPT_EXTRA_FILE)[1]


#: the one card reader under its short name
read_card = read_model_card
