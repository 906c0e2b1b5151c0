"""Export: torch -> ONNX / TorchScript with the model card, parity self-check, and cards for
foreign ONNX models (the presets' cards: :mod:`sareval.presets`).

Heavy dependencies (torch, onnx, onnxruntime) load with the submodule that needs them; import
from the submodules (``sareval.export.onnx_export`` etc.) or lazily through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule
_EXPORTS = {
    "export_onnx": "onnx_export",
    "export_torchscript": "torchscript_export",
    "ParityReport": "parity",
    "ParityError": "parity",
    "check_onnx_parity": "parity",
    "check_torchscript_parity": "parity",
    "attach_card": "attach",
    "check_model": "attach",
    "validate_card_against_graph": "attach",
    "describe_model": "describe",
    "describe_card": "describe",
    "output_problem": "outputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sareval.export.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sareval.export' has no attribute {name!r}")
