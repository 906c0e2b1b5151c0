"""The model-file registry: suffix -> kind -> how its card is read and its network loaded.

- ``onnx`` (.onnx): card in ``metadata_props["sareval_card"]``; runs on onnxruntime;
- ``torchscript`` (.pt, .ts, .torchscript): card in the extra file ``sareval_card.json``;
  network by ``torch.jit.load``;
- ``torch-export`` (.pt2): card in the zip entry ``extra/sareval_card.json``; network by
  :func:`sareval.models.pt2.load_program` (no unrestricted unpickling);
- ``card`` (.json): a model card alone.

``sareval export``, ``info``, ``card``, ``shape`` and the API all ask this module, so a file
that one command writes is a file every other command reads. ``.pth`` is a training checkpoint
(a state dict), not a model file: ``sareval export --checkpoint`` turns it into one. torch and
onnx are imported only inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sareval.errors import CardError, InputFileError


@dataclass(frozen=True)
class ModelFormat:
    """A kind of model file and the suffixes it is written with (the first is the default)."""

    kind: str
    suffixes: tuple[str, ...]
    description: str


FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("onnx", (".onnx",), "ONNX"),
    ModelFormat("torchscript", (".pt", ".ts", ".torchscript"), "TorchScript"),
    ModelFormat("torch-export", (".pt2",), "torch.export program"),
)
CARD_FORMAT = ModelFormat("card", (".json",), "model card JSON")
CHECKPOINT_SUFFIXES = (".pth", ".ckpt", ".safetensors", ".npz")


def all_suffixes(*, cards: bool = False) -> tuple[str, ...]:
    """Every model-file suffix (and ``.json`` with ``cards``)."""
    formats = FORMATS + ((CARD_FORMAT,) if cards else ())
    return tuple(s for f in formats for s in f.suffixes)


def format_of(path: str | Path, *, cards: bool = False) -> ModelFormat:
    """The format of ``path`` by suffix; :class:`InputFileError` lists the known ones."""
    path = Path(path)
    suffix = path.suffix.lower()
    for f in FORMATS + ((CARD_FORMAT,) if cards else ()):
        if suffix in f.suffixes:
            return f
    if suffix in CHECKPOINT_SUFFIXES:
        raise InputFileError(
            path, "a training checkpoint (weights), not a model file; turn it into one with "
            "`sareval export --checkpoint`, or pass the exported model.onnx"
        )  # fmt: skip
    known = ", ".join(f"{s} ({f.description})" for f in FORMATS for s in f.suffixes)
    raise InputFileError(path, f"unknown model file type {suffix or '(none)'}; expected {known}")


def read_model_card(path: str | Path) -> Any:
    """The :class:`~sareval.card.ModelCard` inside a model file, or of a card ``.json``."""
    from sareval.card import ATTACH_HINT, ModelCard, get_onnx_card

    path = Path(path)
    if not path.is_file():
        raise CardError(path, "file not found")
    kind = format_of(path, cards=True).kind
    if kind == "card":
        return ModelCard.from_json(path)
    if kind == "onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and others for non-ONNX bytes
            raise CardError(path, f"not a readable ONNX file ({type(e).__name__})") from None
        return get_onnx_card(model, path)
    text = _torch_card_text(path, kind)
    if not text:
        raise CardError(path, f"model has no sareval model card; {ATTACH_HINT}")
    return ModelCard.from_json(text, path)


def _torch_card_text(path: Path, kind: str) -> str | None:
    from sareval.card import TORCHSCRIPT_EXTRA_FILE

    if kind == "torch-export":
        from sareval.models.pt2 import read_extra_file

        try:
            return read_extra_file(path, TORCHSCRIPT_EXTRA_FILE)
        except InputFileError as e:
            raise CardError(path, e.problem) from None
    import torch

    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise CardError(path, f"not a readable TorchScript file ({type(e).__name__})") from None
    text = extra[TORCHSCRIPT_EXTRA_FILE]
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CardError(path, "the model card is not UTF-8 text") from None
    return text


def load_network(path: str | Path, device: str = "cpu") -> Any:
    """The bare torch network of a TorchScript or torch.export file (no card)."""
    path = Path(path)
    kind = format_of(path).kind
    if kind == "torchscript":
        import warnings

        import torch

        with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.9
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return torch.jit.load(str(path), map_location=device)
            except Exception as e:
                raise InputFileError(
                    path, f"not a readable TorchScript file ({type(e).__name__})"
                ) from None
    if kind == "torch-export":
        from sareval.models.pt2 import load_program

        module = load_program(path).module()
        return module.to(device) if device != "cpu" else module
    raise InputFileError(
        path, "the torch backend runs TorchScript (.pt) or torch.export (.pt2) models; "
        "use the onnxruntime backend for .onnx files"
    )  # fmt: skip
