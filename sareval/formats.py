"""The model-file registry: the ONE place that knows model-file kinds and loads networks.

- ``onnx`` (.onnx): card in ``metadata_props["sareval.card"]``; runs on onnxruntime;
- ``torchscript`` (.pt, .ts, .torchscript): card in the extra file ``sareval_card.json``;
  network by ``torch.jit.load``;
- ``torch-export`` (.pt2): card in the zip entry ``extra/sareval_card.json``; network by
  :func:`sareval.models.pt2.load_program` (no unrestricted unpickling);
- ``card`` (.json): a model card alone.

``sareval export``, ``info``, ``card``, ``shape``, the evaluator and the API all ask this module
(:func:`format_of`, :func:`load_onnx`, :func:`load_torchscript`, :func:`load_network`; the card
of any kind through :func:`sareval.card.read_model_card`, which reads it with these), so a file
that one command writes is a file every other command reads.

Weights are not model files: ``.pth`` / ``.ckpt`` (torch checkpoints), ``.safetensors``,
``.npz``, and any ``torch.save`` file under a model suffix (a zip with ``data.pkl`` and no
TorchScript ``code/``, or a bare pickle) are refused with :func:`weights_problem`'s message,
which says what the file is and how to turn it into a model file. Nothing is unpickled to tell:
the zip listing and the first bytes decide. torch and onnx are imported only where needed.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sareval.errors import InputFileError


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
#: weights, not model files (each is refused naming what it is; see :func:`weights_problem`)
CHECKPOINT_SUFFIXES = (".pth", ".ckpt", ".safetensors", ".npz")
EXPORT_HINT = (
    "build the model, load the weights and export it (`sareval export`, or "
    "sareval.export.build.write_model)"
)


def all_suffixes(*, cards: bool = False) -> tuple[str, ...]:
    """Every model-file suffix (and ``.json`` with ``cards``)."""
    formats = FORMATS + ((CARD_FORMAT,) if cards else ())
    return tuple(s for f in formats for s in f.suffixes)


def suffixes_of(kind: str) -> tuple[str, ...]:
    """The suffixes of the model-file kind ``kind`` (``onnx``, ``torchscript``, ...)."""
    for f in (*FORMATS, CARD_FORMAT):
        if f.kind == kind:
            return f.suffixes
    raise KeyError(kind)


def is_model_path(path: str | Path, *, cards: bool = True) -> bool:
    """True when ``path``'s suffix is a model file's (or a card's) or a weights file's: the
    files :func:`sareval.card.read_model_card` reads or refuses by name."""
    suffix = Path(path).suffix.lower()
    return suffix in all_suffixes(cards=cards) or suffix in CHECKPOINT_SUFFIXES


def format_of(path: str | Path, *, cards: bool = False) -> ModelFormat:
    """The format of ``path`` by suffix; :class:`InputFileError` for weights or an unknown one."""
    path = Path(path)
    suffix = path.suffix.lower()
    for f in FORMATS + ((CARD_FORMAT,) if cards else ()):
        if suffix in f.suffixes:
            return f
    if suffix in CHECKPOINT_SUFFIXES:
        raise InputFileError(path, _weights_by_suffix(suffix))
    known = ", ".join(f"{s} ({f.description})" for f in FORMATS for s in f.suffixes)
    raise InputFileError(path, f"unknown model file type {suffix or '(none)'}; expected {known}")


def _weights_by_suffix(suffix: str) -> str:
    what = {
        ".pth": "a torch checkpoint (a state dict of weights)",
        ".ckpt": "a training checkpoint (a state dict of weights)",
        ".safetensors": "a .safetensors file of weights (a state dict)",
        ".npz": "a .npz of weights (TF-Slim variables)",
    }[suffix]
    return f"{what}, not a model file; {EXPORT_HINT}"


def _zip_names(path: Path) -> list[str] | None:
    """The zip listing of ``path`` (None when it is not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


def is_torch_save_archive(path: str | Path) -> bool:
    """True for a ``torch.save`` zip (a pickled object such as a state dict: ``data.pkl``, no
    TorchScript ``code/``), read from the zip listing only (nothing is unpickled)."""
    names = _zip_names(Path(path))
    if names is None:
        return False
    parts = [n.split("/", 1)[-1] for n in names]
    return "data.pkl" in parts and not any(p.startswith("code/") for p in parts)


def _is_pickle(path: Path) -> bool:
    """A bare pickle (the legacy ``torch.save`` format): PROTO opcode, protocol 2..5."""
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def weights_problem(path: str | Path) -> str | None:
    """What is wrong when ``path`` holds weights rather than a model: a weights suffix, a
    ``torch.save`` zip (``data.pkl``, no ``code/``) or a bare pickle; None otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return _weights_by_suffix(suffix)
    if is_torch_save_archive(path):
        what = "a state dict or other torch.save object (data.pkl, no TorchScript code)"
    elif _is_pickle(path):
        what = "a pickled object (legacy torch.save format, e.g. a state dict)"
    else:
        return None
    return f"{what}, not a model file; {EXPORT_HINT}"


def check_model_file(path: str | Path, *, cards: bool = False) -> ModelFormat:
    """The format of an existing model file, refusing weights and a missing file by name."""
    path = Path(path)
    fmt = format_of(path, cards=cards)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    problem = weights_problem(path)  # the zip listing and two bytes: cheap for any file
    if problem:
        raise InputFileError(path, problem)
    return fmt


# --- networks ---------------------------------------------------------------------------------
def load_onnx(path: str | Path, *, external_data: bool = False, check: bool = False) -> Any:
    """The ``onnx.ModelProto`` of ``path`` (its external weights too with ``external_data``),
    then with ``check`` :func:`check_onnx`. :class:`InputFileError` for weights or a file that
    is not (valid) ONNX."""
    import onnx

    path = Path(path)
    check_model_file(path)
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # onnx raises DecodeError and others for non-ONNX bytes
        raise InputFileError(path, f"not a readable ONNX file ({type(e).__name__})") from None
    if check:
        check_onnx(path)
    return model


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` on the file (external weights and > 2 GB models included; no full shape
    inference): one :class:`InputFileError` line naming ``path`` and the first complaint."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # ValidationError, and others on malformed protos
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputFileError(path, f"not a valid ONNX model (onnx.checker: {first})") from None


def load_torchscript(
    path: str | Path, device: str = "cpu", *, extra_file: str | None = None
) -> tuple[Any, str | None]:
    """``(module, text of extra_file or None)`` of a TorchScript file; weights (a state dict)
    and unreadable files are :class:`InputFileError`."""
    import torch

    path = Path(path)
    problem = weights_problem(path)
    if problem:
        raise InputFileError(path, problem)
    if _is_pt2_archive(path):
        raise InputFileError(path, "a torch.export program, not TorchScript: name it .pt2")
    extra = {extra_file: ""} if extra_file else {}
    with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.9
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location=device, _extra_files=extra
            )
        except Exception as e:
            raise InputFileError(
                path, f"not a readable TorchScript file ({type(e).__name__})"
            ) from None
    if not extra_file:
        return module, None
    text = extra[extra_file]
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputFileError(path, "the model card is not UTF-8 text") from None
    return module, text or None


def _is_pt2_archive(path: Path) -> bool:
    names = _zip_names(path)
    return bool(names) and any(n.endswith("/archive_format") for n in names or ())


def load_program(path: str | Path) -> Any:
    """The ``torch.export`` program of a ``.pt2`` file (weights refused by name first)."""
    from sareval.models.pt2 import load_program as load  # sareval.models imports torch

    path = Path(path)
    problem = weights_problem(path)
    if problem:
        raise InputFileError(path, problem)
    return load(path)


def load_network(path: str | Path, device: str = "cpu") -> Any:
    """The bare torch network of a TorchScript or torch.export file (no card)."""
    path = Path(path)
    kind = check_model_file(path).kind
    if kind == "torchscript":
        return load_torchscript(path, device)[0]
    if kind == "torch-export":
        module = load_program(path).module()
        return module.to(device) if device != "cpu" else module
    raise InputFileError(
        path, "the torch backend runs TorchScript (.pt) or torch.export (.pt2) models; "
        "use the onnxruntime backend for .onnx files"
    )  # fmt: skip
