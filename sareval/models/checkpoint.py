"""Checkpoint import: weights-only loading, strict key matching, toolbox run arguments.

A SEN12MS toolbox checkpoint is ``torch.save(dict)`` (torch 1.4, legacy format) with keys
``epoch``, ``arch``, ``model_state_dict``, ``optimizer_state_dict``, ``best_prec``, named like
``<YYYYMMDD_HHMMSS>_model_best.pth``; beside it ``<YYYYMMDD_HHMMSS>_arguments.txt`` holds one
``key: value`` a line (``use_s1``, ``use_s2``, ``use_RGB``, ``IGBP_simple``, ``label_type``,
``threshold``, ``model``). A plain state dict or ``{"state_dict": ...}`` loads too. Keys are
matched exactly (no prefix stripping). A ``.npz`` of TF-Slim VGG variables (dumped from a
BigEarthNet-MM TensorFlow checkpoint) loads into ``vgg16``/``vgg19``.

ResNets also load from the torchvision / timm key layout (``conv1``, ``bn1``, ``layer1.0...``,
``fc``; e.g. the reBEN models, which are timm ResNets), from ``.safetensors``
(``safetensors.torch.load_file``: no pickle at all) or ``.pth``: keys and shapes are checked
strictly in that layout, then renamed (:mod:`sareval.models.resnet`). Two leniencies, both only
in that layout: a single wrapper prefix :data:`TIMM_WRAPPER_PREFIXES` is stripped (the
ConfigILM module reBEN saves its timm model in; *unverified* against the released files), and
BatchNorm ``num_batches_tracked`` counters may be absent (they do not change the output).

Checkpoints are untrusted: ``torch.load(..., weights_only=True)`` only, never plain pickle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sareval.errors import InputFileError, SarevalError
from sareval.models.registry import TOOLBOX_MODEL_NAMES

#: keys under which a checkpoint dict may wrap its state dict (first found wins)
STATE_DICT_KEYS = ("model_state_dict", "state_dict")
#: prefixes wrapping a timm-layout state dict (stripped when every key has one of them)
TIMM_WRAPPER_PREFIXES = ("model.vision_encoder.",)
ARGUMENTS_SUFFIX = "_arguments.txt"
_TIMESTAMP = re.compile(r"^(\d{8}_\d{6})_")
_SHOW = 5  # keys listed in a mismatch message


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`load_checkpoint` found: file hash and the wrapper's metadata."""

    path: Path
    sha256: str
    wrapper_keys: tuple[str, ...] = ()
    epoch: int | None = None
    arch: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (provenance of an exported model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint with ``weights_only=True`` and unwrap its state dict.

    Returns ``(state_dict, metadata)`` where metadata holds the wrapper's other entries
    (``epoch``, ``arch``, ...; the optimizer state is dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for disallowed globals; others for non-checkpoints
        reason = " ".join(str(e).split())
        m = re.search(r"Unsupported (?:global|class):? (?:GLOBAL )?([\w.]+)", reason)
        if m:
            raise InputFileError(
                path,
                "refused: the checkpoint needs more than weights_only=True loading (it pickles "
                f"{m.group(1)}, which could run code); untrusted pickles are never executed. "
                "Re-save only the state dict (torch.save(model.state_dict(), path)) in a "
                "trusted environment",
            ) from None
        detail = re.search(r"WeightsUnpickler error: ([^.]*)", reason)
        why = detail.group(1).strip() if detail else type(e).__name__
        raise InputFileError(path, f"not a readable torch checkpoint ({why})") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                meta = {k: v for k, v in obj.items() if k != key and k != "optimizer_state_dict"}
                meta["wrapper_keys"] = tuple(str(k) for k in obj)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise InputFileError(
            path,
            "holds no state dict (expected a dict of tensors, or one under "
            f"{' / '.join(STATE_DICT_KEYS)})",
        )
    return dict(obj), meta


def _npz_state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """TF-Slim VGG variables saved with ``numpy.savez`` -> ``model``'s state dict."""
    import numpy as np

    from sareval.models.vgg import SlimVGG, state_dict_from_tf_slim

    if not isinstance(model, SlimVGG):
        raise InputFileError(path, "a .npz checkpoint (TF-Slim variables) fits only vgg16/vgg19")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputFileError(path, f"not a readable .npz file ({e})") from None
    return state_dict_from_tf_slim(arrays, model, source=str(path))


def check_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | Path,
    wanted: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Raise :class:`InputFileError` unless ``state`` has exactly ``model``'s keys and shapes
    (``wanted``: the model's state dict in another key layout)."""
    wanted = model.state_dict() if wanted is None else wanted
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    if missing or unexpected:
        parts = []
        if all(k.startswith("module.") for k in state):
            parts.append(
                "every key starts with 'module.' (saved from DataParallel); strip that prefix "
                "and save again"
            )
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
                head = f"1 {what} key:" if len(keys) == 1 else f"{len(keys)} {what} keys, e.g."
                parts.append(f"{head} {', '.join(keys[:_SHOW])}{more}")
        raise InputFileError(
            source, "checkpoint does not match the architecture: " + "; ".join(parts)
        )
    bad = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in wanted.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        k, got, need = bad[0]
        hint = ""
        if k == _head_weight_key(wanted) and got[0] != need[0]:
            hint = f" (the checkpoint has {got[0]} classes, the card has {need[0]})"
        elif len(got) == 4 and len(need) == 4 and got[0] == need[0] and got[1] != need[1]:
            hint = f" (the checkpoint takes {got[1]} input channels, the card has {need[1]})"
        raise InputFileError(
            source,
            f"checkpoint shapes do not match: {k} is {got}, the model needs {need}{hint}"
            + (f"; {len(bad) - 1} more mismatches" if len(bad) > 1 else ""),
        )


def _head_weight_key(state: Mapping[str, torch.Tensor]) -> str:
    keys = [k for k in state if k.endswith("weight")]
    return keys[-1] if keys else ""


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        return dict(load_file(path, device="cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputFileError(path, f"not a readable .safetensors file ({first})") from None


def _timm_state(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor] | None:
    """For a :class:`ResNet` and a torchvision / timm layout ``state`` (after stripping one of
    :data:`TIMM_WRAPPER_PREFIXES`): the state checked strictly in that layout and renamed to
    the model's keys; None when this does not apply."""
    from sareval.models.resnet import ResNet, from_timm_layout, is_timm_layout, to_timm_layout

    if not isinstance(model, ResNet):
        return None
    for prefix in TIMM_WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    wanted = to_timm_layout(model.state_dict())
    # the layout the keys match best (a file missing fc.weight is still in the timm layout)
    native = len(state.keys() & model.state_dict().keys())
    if not is_timm_layout(state) and len(state.keys() & wanted.keys()) <= native:
        return None
    for k, v in wanted.items():  # BatchNorm counters: absent in some exports, no effect
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = v
    check_state_dict(model, state, path, wanted=wanted)
    return from_timm_layout(state)


def load_checkpoint(model: nn.Module, path: str | Path) -> CheckpointInfo:
    """Load ``path`` (``.pth``/``.pt``, ``.safetensors``, or TF-Slim ``.npz``) into ``model``
    strictly (keys and shapes); return its hash and metadata."""
    path = Path(path)
    suffix = path.suffix.lower()
    meta: dict[str, Any]
    if suffix == ".npz":
        state, meta = _npz_state_dict(path, model), {}
    elif suffix == ".safetensors":
        state, meta = read_safetensors(path), {}
    else:
        state, meta = read_state_dict(path)
    renamed = _timm_state(model, state, path)
    if renamed is None:
        check_state_dict(model, state, path)
    model.load_state_dict(state if renamed is None else renamed, strict=True)
    epoch = meta.get("epoch")
    arch = meta.get("arch")
    return CheckpointInfo(
        path=path,
        sha256=file_sha256(path),
        wrapper_keys=tuple(meta.get("wrapper_keys", ())),
        epoch=int(epoch) if isinstance(epoch, int) else None,
        arch=str(arch) if arch is not None else None,
        extra={k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))},
    )


# --- the toolbox's <timestamp>_arguments.txt ----------------------------------------------------
@dataclass(frozen=True)
class RunArguments:
    """What a toolbox run's arguments file says about the model it trained."""

    path: Path
    values: dict[str, str]
    preset: str
    task: str
    arch: str | None
    igbp_simple: bool
    threshold: float | None


def arguments_path(checkpoint: str | Path) -> Path | None:
    """``<timestamp>_arguments.txt`` beside ``checkpoint``, else the folder's only one, or None."""
    checkpoint = Path(checkpoint)
    m = _TIMESTAMP.match(checkpoint.name)
    if m:
        candidate = checkpoint.with_name(m.group(1) + ARGUMENTS_SUFFIX)
        if candidate.is_file():
            return candidate
    found = sorted(checkpoint.parent.glob("*" + ARGUMENTS_SUFFIX))
    return found[0] if len(found) == 1 else None


def _flag(values: dict[str, str], key: str, path: Path) -> bool:
    v = values.get(key, "False")
    if v not in ("True", "False"):
        raise InputFileError(path, f"{key}: expected True or False, got {v!r}")
    return v == "True"


def _threshold(text: str | None, path: Path) -> float | None:
    """The ``threshold`` entry: a number in (0, 1), or None when absent."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(path, f"threshold: {text!r} is not a number in (0, 1)") from None
    if not 0.0 < value < 1.0:
        raise InputFileError(path, f"threshold: {value} is outside (0, 1)")
    return value


def read_arguments(path: str | Path) -> RunArguments:
    """Parse a toolbox arguments file into preset, task and architecture."""
    path = Path(path)
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            values[key.strip()] = value.strip()
    use_s1 = _flag(values, "use_s1", path)
    use_s2 = _flag(values, "use_s2", path)
    if _flag(values, "use_RGB", path) and not use_s2:
        raise InputFileError(
            path, "use_RGB (B02,B03,B04 only) has no preset; write a card and pass it as card_path="
        )
    if use_s1 and use_s2:
        preset = "sen12ms-s1s2"
    elif use_s2:
        preset = "sen12ms-s2"
    elif use_s1:
        preset = "sen12ms-s1"
    else:
        raise InputFileError(path, "neither use_s1 nor use_s2 is True")
    label_type = values.get("label_type", "")
    tasks = {"single_label": "single-label", "multi_label": "multi-label"}
    if label_type not in tasks:
        raise InputFileError(path, f"label_type {label_type!r} is not single_label or multi_label")
    model = values.get("model")
    arch = TOOLBOX_MODEL_NAMES.get(model) if model else None
    if model and arch is None:
        raise SarevalError(
            f"{path}: model {model!r} has no sareval architecture "
            f"(supported: {', '.join(TOOLBOX_MODEL_NAMES)})"
        )
    threshold = _threshold(values.get("threshold"), path)
    return RunArguments(
        path=path,
        values=values,
        preset=preset,
        task=tasks[label_type],
        arch=arch,
        igbp_simple=_flag(values, "IGBP_simple", path) if "IGBP_simple" in values else True,
        threshold=threshold,
    )
