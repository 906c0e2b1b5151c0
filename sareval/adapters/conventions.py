"""What a dataset class's items hold, as data (:class:`DatasetConventions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sareval.classes import igbp_fractions
from sareval.errors import SarevalError

#: ``multi_hot``: (K,) 0/1 per class in ``class_names`` order; ``index``: a class index;
#: ``igbp_mask``: a per-pixel IGBP layer (1..17), turned into SEN12MS scene labels exactly as
#: ``sareval preprocess sen12ms`` does without ``--labels`` (:func:`mask_labels`)
LABEL_KINDS = ("multi_hot", "index", "igbp_mask")

#: the SEN12MS multi-hot threshold on the 10 simplified IGBP fractions (the toolbox's and the
#: store's default)
IGBP_MULTI_HOT_THRESHOLD = 0.1
#: per-pixel maps: ``igbp`` IGBP codes 1..17 (-> the simplified 10 classes; others no class);
#: ``ordinal`` class ordinals 0..K-1 in ``class_names`` order, any other value no class
#: (torchgeo's BigEarthNetV2 leaves CORINE codes outside the 19 classes as they are)
MAP_KINDS = ("igbp", "ordinal")


@dataclass(frozen=True)
class DatasetConventions:
    """A known dataset class's items (see the module docstring).

    ``images``: item key -> band names in the channel order the dataset produces;
    ``label_key`` / ``label_kind`` (:data:`LABEL_KINDS`) / ``class_names`` (label order; for
    ``igbp_mask`` the simplified IGBP classes the mask is turned into); ``image_size`` (H, W) the
    items have; ``reading``: how the values were read; ``altered``: band -> why its values are
    not the file's (resampled, rounded), so that a model using it may score differently than
    on a store; ``attributes``: the dataset attributes that chose these conventions.
    ``map_key`` / ``map_kind``: where the items hold a per-pixel map for segmentation models
    and how it reads (:data:`MAP_KINDS`; None: no map).
    """

    source: str
    images: dict[str, tuple[str, ...]]
    label_key: str
    label_kind: str
    class_names: tuple[str, ...]
    image_size: tuple[int, int] | None
    reading: str
    altered: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    map_key: str | None = None
    map_kind: str | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        """Every band of every image key, in item key then channel order."""
        return tuple(b for names in self.images.values() for b in names)

    def to_record(self) -> dict[str, Any]:
        """JSON-able record for a result's provenance."""
        return {
            "name": self.source,
            "version": self.version,
            "attributes": {k: _jsonable(v) for k, v in self.attributes.items()},
            "images": {k: list(v) for k, v in self.images.items()},
            "label_key": self.label_key,
            "label_kind": self.label_kind,
            "class_names": list(self.class_names),
            "image_size": None if self.image_size is None else list(self.image_size),
            "reading": self.reading,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return repr(value)


def unwrap_dataset(dataset: Any) -> tuple[Any, list[int] | None]:
    """``(dataset, None)``; through a ``torch.utils.data.DataLoader`` (its batches hold the same
    keys) and ``Subset`` (nested too) the innermost dataset and, for a subset, the indices into
    it. Checked by class name and attribute: torch is not imported."""
    indices: list[int] | None = None
    while True:
        name = type(dataset).__name__
        if name == "DataLoader" and hasattr(dataset, "dataset"):
            dataset = dataset.dataset
        elif name == "Subset" and hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
            outer = [int(i) for i in dataset.indices]
            indices = outer if indices is None else [outer[i] for i in indices]
            dataset = dataset.dataset
        else:
            return dataset, indices


def mask_labels(mask: np.ndarray, what: str) -> np.ndarray:
    """(B, H, W) or (B, 1, H, W) IGBP layers -> (B, 17) IGBP fractions (float64), those of
    ``sareval preprocess sen12ms`` without ``--labels`` (pixels valued 1..17 only)."""
    m = np.asarray(mask)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise SarevalError(f"{what}: expected (H, W) IGBP layers, got shape {m.shape[1:]}")
    try:
        return np.stack([igbp_fractions(layer, what) for layer in m])
    except SarevalError as e:
        raise SarevalError(str(e).replace("\n", " ")) from None
