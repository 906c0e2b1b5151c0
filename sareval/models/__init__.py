"""Fusion architectures whose state-dict keys match the published checkpoints; checkpoint import.

``build_model(arch, n_channels, n_classes, fusion=..., modality_channels=...)`` builds any of
:data:`ARCHITECTURES` (classifiers) and :data:`SEGMENTATION_ARCHITECTURES`; models built for
the absence operators take a card instead: :func:`vit_for_card` (``mask``: ``forward(x,
present)``), :func:`vit_inputs_for_card` (the same ViT with one input per modality:
``forward(inputs)`` for ``omit``, ``forward(inputs, present)`` for ``mask``),
:class:`WavelengthViT` (``omit``: ``forward(x, wavelengths)``), and :func:`build_two_branch`
(``omit``: ``forward(s1, s2)`` with ``None`` for an absent branch);
:func:`load_checkpoint` loads weights strictly (``weights_only=True``);
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
from sareval.models.segmentation import (
    LABEL_MATCHING,
    SEGMENTATION_ARCHITECTURES,
    Segmenter,
    build_segmenter,
)
from sareval.models.two_branch import TwoBranchFusion, build_two_branch
from sareval.models.vgg import SlimVGG, TorchvisionVGG, state_dict_from_tf_slim
from sareval.models.vit import MultimodalViT, MultimodalViTInputs, vit_for_card, vit_inputs_for_card
from sareval.models.wavelength import WavelengthViT

__all__ = [
    "ARCHITECTURES",
    "FUSIONS",
    "LABEL_MATCHING",
    "MIN_INPUT_SIZE",
    "SEGMENTATION_ARCHITECTURES",
    "TOOLBOX_MODEL_NAMES",
    "CheckpointInfo",
    "DenseNet121",
    "LateFusion",
    "MultimodalViT",
    "MultimodalViTInputs",
    "ResNet",
    "RunArguments",
    "Segmenter",
    "SlimVGG",
    "TorchvisionVGG",
    "TwoBranchFusion",
    "WavelengthViT",
    "arguments_path",
    "build_model",
    "build_model_for_card",
    "build_segmenter",
    "build_two_branch",
    "check_input_size",
    "check_state_dict",
    "file_sha256",
    "load_checkpoint",
    "read_arguments",
    "read_state_dict",
    "state_dict_from_tf_slim",
    "vit_for_card",
    "vit_inputs_for_card",
]
