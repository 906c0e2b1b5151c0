"""Architecture registry: one call builds any supported fusion network.

Every model takes ONE input (B, C, H, W) in the card's channel order and returns logits
(B, n_classes); a segmentation network (:data:`SEGMENTATION_ARCHITECTURES`, defined in
:mod:`sareval.models.segmentation`) returns logits (B, n_classes, H, W). Classifiers:

=============  ==========================================================================
resnet18/34/50 SEN12MS toolbox layout (``conv1`` + ``encoder`` + ``FC``), any size >= 32 px
densenet121    SEN12MS toolbox layout (``encoder`` + ``classifier`` on 65,536), 256x256 only
vgg16, vgg19   TF-Slim layout of the BigEarthNet-MM models (conv fc6/fc7/fc8, global pool)
vgg16-tv/19-tv torchvision layout (``features`` + ``avgpool`` 7x7 + 3-layer ``classifier``)
=============  ==========================================================================

Segmentation: ``unet`` and ``deeplabv3-resnet18/50`` (H, W multiples of 16), ``resnet18-unet``
(multiples of 32), all >= 32 px.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from sareval.errors import SarevalError
from sareval.models.densenet import DENSENET_INPUT_SIZE, DenseNet121
from sareval.models.fusion import FUSIONS, LateFusion, check_modality_channels
from sareval.models.resnet import ResNet
from sareval.models.segmentation import (
    SEGMENTATION_ARCHITECTURES,
    SIZE_MULTIPLE,
    build_segmenter,
)
from sareval.models.vgg import SlimVGG, TorchvisionVGG
from sareval.models.weights import kaiming_init

#: name -> constructor(n_channels, n_classes or None for a headless encoder)
_BUILDERS: dict[str, Callable[[int, int | None], nn.Module]] = {
    "resnet18": lambda c, k: ResNet(18, c, k),
    "resnet34": lambda c, k: ResNet(34, c, k),
    "resnet50": lambda c, k: ResNet(50, c, k),
    "densenet121": lambda c, k: DenseNet121(c, k),
    "vgg16": lambda c, k: SlimVGG(16, c, k),
    "vgg19": lambda c, k: SlimVGG(19, c, k),
    "vgg16-tv": lambda c, k: TorchvisionVGG(16, c, k),
    "vgg19-tv": lambda c, k: TorchvisionVGG(19, c, k),
}
#: the classifiers (B, K); the segmentation networks are :data:`SEGMENTATION_ARCHITECTURES`
ARCHITECTURES: tuple[str, ...] = tuple(_BUILDERS)
#: smallest input side each architecture accepts (five 2x downsamplings); DenseNet: exactly 256
MIN_INPUT_SIZE = 32
MAX_INPUT_SIZE = 2048  # export and training build (batch x C x size x size) tensors
#: SEN12MS toolbox ``model`` argument -> architecture name
TOOLBOX_MODEL_NAMES: dict[str, str] = {
    "ResNet18": "resnet18",
    "ResNet34": "resnet34",
    "ResNet50": "resnet50",
    "DenseNet121": "densenet121",
}


def check_input_size(arch: str, input_size: int | None) -> None:
    """Raise :class:`SarevalError` when ``arch`` cannot take ``input_size`` x ``input_size``."""
    if input_size is None:
        return
    if arch == "densenet121" and input_size != DENSENET_INPUT_SIZE:
        raise SarevalError(
            f"densenet121 accepts only {DENSENET_INPUT_SIZE}x{DENSENET_INPUT_SIZE} input (its "
            f"classifier reads the 1024x8x8 = 65,536 flattened features); got {input_size}"
        )
    multiple = SIZE_MULTIPLE.get(arch)
    if multiple is not None and input_size % multiple:
        raise SarevalError(
            f"{arch} needs an input height and width that are multiples of {multiple} px "
            f"(its encoder halves them {multiple.bit_length() - 1} times); got {input_size}"
        )
    if input_size < MIN_INPUT_SIZE:
        raise SarevalError(f"{arch} needs input of at least {MIN_INPUT_SIZE} px; got {input_size}")
    if input_size > MAX_INPUT_SIZE:
        raise SarevalError(
            f"input_size= {input_size} px is larger than the {MAX_INPUT_SIZE} px sareval builds"
        )


def build_model(
    arch: str,
    n_channels: int,
    n_classes: int,
    *,
    fusion: str = "early",
    modality_channels: Sequence[Sequence[int]] | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """Build ``arch`` for ``n_channels`` inputs and ``n_classes`` logits, Kaiming-initialised.

    ``fusion="late"`` needs ``modality_channels``: the channel indices of each modality (a
    partition of ``range(n_channels)``, at least two groups), e.g. ``card.channel_indices(m)``
    for ``m`` in the card's modalities. ``input_size`` is checked against the architecture.
    A segmentation ``arch`` returns (B, n_classes, H, W): e.g. the 256 px ResNet18-UNet of the
    counting benchmark is ``build_model("resnet18-unet", 12, 10, input_size=256)``.
    """
    if arch not in _BUILDERS and arch not in SEGMENTATION_ARCHITECTURES:
        known = ", ".join((*ARCHITECTURES, *SEGMENTATION_ARCHITECTURES))
        raise SarevalError(f"arch= unknown architecture {arch!r}; choose from {known}")
    if fusion not in FUSIONS:
        raise SarevalError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    if n_channels < 1 or n_classes < 1:
        raise SarevalError(f"need >= 1 channel and class; got {n_channels} and {n_classes}")
    check_input_size(arch, input_size)
    if fusion == "early":
        if arch in SEGMENTATION_ARCHITECTURES:
            return build_segmenter(arch, n_channels, n_classes)
        return _BUILDERS[arch](n_channels, n_classes)
    if modality_channels is None or len(modality_channels) < 2:
        raise SarevalError("late fusion needs the channels of at least two modalities")
    try:
        groups = check_modality_channels(modality_channels, n_channels)
    except ValueError as e:
        raise SarevalError(f"late fusion: {e}") from None
    if arch in SEGMENTATION_ARCHITECTURES:
        return build_segmenter(arch, n_channels, n_classes, groups)
    build = _BUILDERS[arch]
    branches = [build(len(g), None) for g in groups]
    width = sum(int(b.feature_dim) for b in branches)  # type: ignore[arg-type, misc]
    head = type(branches[0]).make_head(width, n_classes)  # type: ignore[attr-defined]
    kaiming_init(head)
    return LateFusion(branches, head, groups)


def build_model_for_card(arch: str, card: Any, fusion: str = "early") -> nn.Module:
    """:func:`build_model` for a model card: its channels, classes, each modality's channel
    indices (late fusion) and its input size (the smaller side, when the card gives one).
    A segmentation architecture needs a segmentation card and a classifier a scene card."""
    segmentation = arch in SEGMENTATION_ARCHITECTURES
    if segmentation != (card.task == "segmentation"):
        want = "task segmentation" if segmentation else "a scene-classification task"
        raise SarevalError(f"arch= {arch} needs a card with {want}; the card's is {card.task}")
    size = None if card.height is None or card.width is None else min(card.height, card.width)
    return build_model(
        arch,
        card.n_channels,
        card.n_classes,
        fusion=fusion,
        modality_channels=[card.channel_indices(m) for m in card.modality_names],
        input_size=size,
    )
