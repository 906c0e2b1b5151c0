"""sareval: SHAPE modality relevance of SAR+optical fusion classifiers.

The library first (``docs/api.md``)::

    import sareval
    result = sareval.evaluate(model, data, sareval.ShapeConfig(normalization="full"), card=card)
    result.relevance["f1_macro"]["sar"]; result.save("r.json"); print(result)

Stages (data flows one way): ``preprocess`` GeoTIFF trees -> HDF5 store (:mod:`sareval.store`);
``export`` fusion models -> ONNX / TorchScript / torch.export with a model card
(:mod:`sareval.card`, :mod:`sareval.formats`); :func:`evaluate` store or arrays + model ->
coalition metrics, Shapley relevance (:mod:`sareval.evaluator`); ``train`` and ``report`` on top.
Names are imported on first use, so ``import sareval`` (and the CLI) stay fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("sareval")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: public name -> module that defines it
_EXPORTS = {
    "evaluate": "sareval.api",
    "open_store": "sareval.api",
    "write_store": "sareval.api",
    "load_result": "sareval.api",
    "ShapeResult": "sareval.api",
    "ShapeConfig": "sareval.evaluator.config",
    "Game": "sareval.evaluator.config",
    "Reporting": "sareval.evaluator.config",
    "Execution": "sareval.evaluator.config",
    "Estimation": "sareval.evaluator.config",
    "perceptual_score": "sareval.api",
    "compare_absence": "sareval.report.absence",
    "ArrayData": "sareval.evaluator.sources",
    "TorchData": "sareval.evaluator.sources",
    "ModelCard": "sareval.card",
    "DatasetConventions": "sareval.adapters",
    "SarevalError": "sareval.errors",
}

if TYPE_CHECKING:
    from sareval.adapters import DatasetConventions
    from sareval.api import (
        ShapeResult,
        evaluate,
        load_result,
        open_store,
        perceptual_score,
        write_store,
    )
    from sareval.card import ModelCard
    from sareval.errors import SarevalError
    from sareval.evaluator.config import Estimation, Execution, Game, Reporting, ShapeConfig
    from sareval.evaluator.sources import ArrayData, TorchData
    from sareval.report.absence import compare_absence


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sareval' has no attribute {name!r}")


__all__ = [
    "ArrayData",
    "DatasetConventions",
    "Estimation",
    "Execution",
    "Game",
    "ModelCard",
    "Reporting",
    "SarevalError",
    "ShapeConfig",
    "ShapeResult",
    "TorchData",
    "__version__",
    "compare_absence",
    "evaluate",
    "load_result",
    "open_store",
    "perceptual_score",
    "write_store",
]
