"""Fusion architectures whose state-dict keys match the published checkpoints; checkpoint import.

``build_model(arch, n_channels, n_classes, fusion=..., modality_channels=...)`` builds any of
:data:`ARCHITECTURES`; :func:`load_checkpoint` loads weights strictly (``weights_only=True``);
:func:`read_arguments` reads a SEN12MS toolbox run's ``<timestamp>_arguments.txt``.
"""

from __future__ import annotations

from sareval.models.checkpoint import (
    CheckpointInfo,
    RunArguments,
    arguments_path,
    check_state_dict,
    file_sha256,
    load_checkpoint,
    read_arguments,
    read_state_dict,
)
from sareval.models.densenet import DenseNet121
from sareval.models.fusion import FUSIONS, LateFusion
from sareval.models.registry import (
    ARCHITECTURES,
    MIN_INPUT_SIZE,
    TOOLBOX_MODEL_NAMES,
    build_model,
    build_model_for_card,
    check_input_size,
)
from sareval.models.resnet import ResNet
from sareval.models.vgg import SlimVGG, TorchvisionVGG, state_dict_from_tf_slim

__all__ = [
    "ARCHITECTURES",
    "FUSIONS",
    "MIN_INPUT_SIZE",
    "TOOLBOX_MODEL_NAMES",
    "CheckpointInfo",
    "DenseNet121",
    "LateFusion",
    "ResNet",
    "RunArguments",
    "SlimVGG",
    "TorchvisionVGG",
    "arguments_path",
    "build_model",
    "build_model_for_card",
    "check_input_size",
    "check_state_dict",
    "file_sha256",
    "load_checkpoint",
    "read_arguments",
    "read_state_dict",
    "state_dict_from_tf_slim",
]
