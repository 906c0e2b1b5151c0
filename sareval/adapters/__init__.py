"""Adapters at the edge: others' dataset conventions as data, checked, never assumed.

A :class:`DatasetConventions` says what a known dataset class's items hold: which item key
carries which bands in which channel order, where the labels are, their kind and class names
in label order, and how the values were read (size, resampling, dtype). :func:`conventions_for`
finds the conventions of a dataset object from its class name and attributes (one module per
source: :mod:`sareval.adapters.torchgeo`), without importing the library that defines it.
:class:`sareval.TorchData` uses them to map bands and classes to a model card by name.
"""

from __future__ import annotations

from typing import Any

from sareval.adapters.conventions import (
    LABEL_KINDS,
    DatasetConventions,
    mask_labels,
    unwrap_dataset,
)
from sareval.adapters.torchgeo import TORCHGEO_DATASETS, torchgeo_conventions

__all__ = [
    "LABEL_KINDS",
    "TORCHGEO_DATASETS",
    "DatasetConventions",
    "conventions_for",
    "mask_labels",
    "torchgeo_conventions",
    "unwrap_dataset",
]


def conventions_for(dataset: Any) -> DatasetConventions | None:
    """The conventions of ``dataset`` (a ``torch.utils.data.Subset`` is looked through), or
    None for a dataset no adapter knows. Raises :class:`~sareval.errors.SarevalError` for a
    known class whose attributes contradict the conventions sareval knows."""
    return torchgeo_conventions(dataset)
