"""sareval: SHAPE modality relevance of SAR+optical fusion classifiers.

Stages (data flows one way): ``preprocess`` GeoTIFF trees -> HDF5 store (:mod:`sareval.store`);
``export`` fusion models -> ONNX / TorchScript with a model card (:mod:`sareval.card`);
``shape`` store + model -> coalition metrics, Shapley relevance (:mod:`sareval.evaluator`);
``train`` and ``report`` on top.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sareval")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
