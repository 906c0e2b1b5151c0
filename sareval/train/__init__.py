"""Training with clear/cloudy optical mixing and SHAPE relevance after every epoch.

- :mod:`~sareval.train.mixing`: :class:`CloudMixingDataset`, the study's cloud mixing (a sample
  with a cloudy optical version is read cloudy with probability ``p`` each time it is drawn).
- :mod:`~sareval.train.loop`: :func:`train` (one run: Adam, per-epoch validation metrics and
  relevance in ``metrics.jsonl``, checkpoints, resume, export to ONNX with a model card).
"""

from __future__ import annotations

from sareval.train.loop import TrainConfig, TrainResult, load_training_state, train
from sareval.train.mixing import CloudMixingDataset, cloudy_draws

__all__ = [
    "CloudMixingDataset",
    "TrainConfig",
    "TrainResult",
    "cloudy_draws",
    "load_training_state",
    "train",
]
