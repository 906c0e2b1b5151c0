"""Segmentation networks: encoder(s) -> per-level features -> decoder -> logits (B, K, H, W).

Every network takes ONE input (B, C, H, W) in the card's channel order and returns logits at
the input size (H' = H, W' = W: the card's ``label_matching`` then changes nothing).

=====================  ===========================================================  ========
architecture           encoder -> decoder                                           H, W
=====================  ===========================================================  ========
unet                   U-Net (Ronneberger et al. 2015): 4 x (max-pool 2, double     x 16
                       conv), widths 32-64-128-256-512; 4 x (2x2 transposed conv,
                       concat skip, double conv); padded 3x3 convs with BatchNorm
resnet18-unet          the project's ResNet18 (features at /2 /4 /8 /16 /32) and a   x 32
                       U-Net decoder of widths 256-128-64-32-16 (the last up-step,
                       /2 -> /1, has no skip)
deeplabv3-resnet18/50  the project's ResNet18/50 at output stride 16 (layer4: stride  x 16
                       1, dilation 2), ASPP (1x1, 3x3 at rates 6/12/18, image
                       pooling; 256 each), 3x3 conv, 1x1 classifier, then bilinear
                       upsampling x16 inside the net (as torchvision's DeepLabV3)
=====================  ===========================================================  ========

The U-Net's base width is 32, not the paper's 64: a quarter of the FLOPs and parameters
(7.8 M instead of 31 M at 12 channels) for 10-19 classes, which keeps a 256 px pass affordable
on the CPU (tests, the demo, the counting benchmark). DeepLabv3 uses output stride 16 with rates
6/12/18 (the DeepLabv3 paper's training setting; torchvision uses stride 8 with 12/24/36, 4x
the layer4 cost). A dilated stage (torchvision's ``replace_stride_with_dilation``): its first
block's strides become 1 (its convs keep dilation 1), the 3x3 convs of later blocks get
dilation 2.

**Fusion.** Early: one encoder on all channels. Late: one encoder per modality on its own
channels (:class:`~sareval.models.fusion.ChannelSelect`), features concatenated at every level
the decoder reads (each U-Net skip and the bottleneck; DeepLab: the ASPP input), one decoder::

    feats_l = cat([enc_m(x[:, channels_m])[l] for m in modalities], 1)   for each level l
    logits  = decoder(feats_0, ..., feats_L)

ResNet encoders keep the toolbox key layout (``backbone.conv1``, ``backbone.encoder.*``), so a
classification ResNet's encoder weights load into them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from sareval.models.fusion import ChannelSelect
from sareval.models.resnet import ResNet
from sareval.models.weights import kaiming_init

#: U-Net base width (channels of the first level; doubled at each of the 4 levels below)
UNET_WIDTH = 32
#: decoder widths of resnet18-unet, from the /16 level up to full resolution
RESNET_UNET_WIDTHS = (256, 128, 64, 32, 16)
ASPP_RATES = (6, 12, 18)
ASPP_WIDTH = 256
DEEPLAB_OUTPUT_STRIDE = 16


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """(3x3 conv, BatchNorm, ReLU) x 2, padded: the size is kept."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


# --- encoders: (B, C, H, W) -> features [f_0, ..., f_L], shallow to deep ----------------------
class UNetEncoder(nn.Module):
    """U-Net contracting path: features at /1 /2 /4 /8 /16 of widths w, 2w, 4w, 8w, 16w."""

    def __init__(self, n_channels: int, width: int = UNET_WIDTH) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(5)]
        self.inc = double_conv(n_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), double_conv(a, b)) for a, b in itertools.pairwise(widths)
        )
        self.channels: tuple[int, ...] = tuple(widths)
        self.reduction = 16

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        return feats


def dilate_stage(stage: nn.Module, dilation: int) -> None:
    """Turn a strided ResNet stage (its blocks) into a dilated one in place (module docstring)."""
    for i, block in enumerate(stage.children()):
        for m in block.modules():
            if not isinstance(m, nn.Conv2d):
                continue
            m.stride = (1, 1)
            if i > 0 and m.kernel_size == (3, 3):
                m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


class ResNetEncoder(nn.Module):
    """The project's :class:`~sareval.models.resnet.ResNet` without its head: features after
    the stem's ReLU (/2, 64) and after layer1..layer4 (/4 /8 /16 /32, or layer4 at /16 with
    ``output_stride=16``)."""

    def __init__(self, depth: int, n_channels: int, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride {output_stride}: choose 16 or 32")
        self.backbone = ResNet(depth, n_channels, None)
        if output_stride == 16:
            dilate_stage(self.backbone.encoder[7], 2)
        e = self.backbone.feature_dim // 512
        self.channels = (64, 64 * e, 128 * e, 256 * e, 512 * e)
        self.reduction = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        seq = self.backbone.encoder  # conv1, bn1, relu, maxpool, layer1..4, avgpool (unused)
        feats = [seq[2](seq[1](seq[0](x)))]
        y = seq[3](feats[0])
        for i in range(4, 8):
            y = seq[i](y)
            feats.append(y)
        return feats


# --- decoders: features -> logits at the input size --------------------------------------------
class UpBlock(nn.Module):
    """2x2 transposed conv (stride 2) to ``c_out``, concat the skip (if any), double conv."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        self.conv = double_conv(c_out + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.up(x)
        if skip is not None:
            y = torch.cat([skip, y], 1)
        return self.conv(y)  # type: ignore[no-any-return]


class UNetDecoder(nn.Module):
    """Expanding path: up-step ``i`` goes from the deepest feature one level up and reads the
    skip ``feats[-2 - i]`` while one is left; a 1x1 conv gives the ``n_classes`` logits."""

    def __init__(self, channels: Sequence[int], widths: Sequence[int], n_classes: int) -> None:
        super().__init__()
        skips = list(channels[:-1])[::-1]
        self.n_skips = min(len(skips), len(widths))
        c_in, blocks = channels[-1], []
        for i, w in enumerate(widths):
            blocks.append(UpBlock(c_in, skips[i] if i < self.n_skips else 0, w))
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(c_in, n_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = feats[-1]
        for i, block in enumerate(self.blocks):
            y = block(y, feats[-2 - i] if i < self.n_skips else None)
        return self.classifier(y)  # type: ignore[no-any-return]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 conv, one 3x3 conv per rate, and image pooling
    (global mean, 1x1 conv, broadcast back), each conv + BN + ReLU; concatenated, projected
    by 1x1 conv + BN + ReLU + dropout 0.5 (torchvision's ``ASPP``)."""

    def __init__(self, c_in: int, rates: Sequence[int] = ASPP_RATES, c_out: int = ASPP_WIDTH):
        super().__init__()

        def cbr(k: int, dilation: int = 1) -> list[nn.Module]:
            pad = dilation * (k // 2)
            conv = nn.Conv2d(c_in, c_out, k, padding=pad, dilation=dilation, bias=False)
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.convs = nn.ModuleList(
            [nn.Sequential(*cbr(1)), *(nn.Sequential(*cbr(3, r)) for r in rates)]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *cbr(1))
        self.project = nn.Sequential(
            nn.Conv2d(c_out * (len(rates) + 2), c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x) for conv in self.convs]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, 1))  # type: ignore[no-any-return]


class DeepLabDecoder(nn.Module):
    """DeepLabv3 head on the deepest feature (ASPP, 3x3 conv + BN + ReLU, 1x1 conv), logits
    upsampled bilinearly (``align_corners=False``) by ``scale`` to the input size."""

    def __init__(self, channels: Sequence[int], n_classes: int, scale: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            ASPP(channels[-1]),
            nn.Conv2d(ASPP_WIDTH, ASPP_WIDTH, 3, padding=1, bias=False),
            nn.BatchNorm2d(ASPP_WIDTH),
            nn.ReLU(inplace=True),
            nn.Conv2d(ASPP_WIDTH, n_classes, 1),
        )
        self.scale = scale

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.head(feats[-1])
        # a scale factor, not the input's size: the input's only consumer stays the first conv
        return F.interpolate(
            y, scale_factor=float(self.scale), mode="bilinear", align_corners=False
        )


# --- the network ------------------------------------------------------------------------------
class Segmenter(nn.Module):
    """Encoder(s) and a decoder; early fusion with one encoder, late fusion with one per
    modality (``modality_channels``: each encoder's input channels), features concatenated per
    level (module docstring)."""

    def __init__(
        self,
        encoders: Sequence[nn.Module],
        decoder: nn.Module,
        modality_channels: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        if modality_channels is not None and len(modality_channels) != len(encoders):
            raise ValueError(f"{len(encoders)} encoders for {len(modality_channels)} modalities")
        if modality_channels is None and len(encoders) != 1:
            raise ValueError("several encoders need their modality_channels")
        self.encoders = nn.ModuleList(encoders)
        self.select = nn.ModuleList(ChannelSelect(c) for c in modality_channels or ())
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.select):
            return self.decoder(self.encoders[0](x))  # type: ignore[no-any-return]
        per_branch = [e(s(x)) for s, e in zip(self.select, self.encoders, strict=True)]
        feats = [torch.cat(level, 1) for level in zip(*per_branch, strict=True)]
        return self.decoder(feats)  # type: ignore[no-any-return]


#: architecture -> (encoder(n_channels) constructor, input side multiple)
_ENCODERS = {
    "unet": (lambda c: UNetEncoder(c), 16),
    "resnet18-unet": (lambda c: ResNetEncoder(18, c), 32),
    "deeplabv3-resnet18": (lambda c: ResNetEncoder(18, c, DEEPLAB_OUTPUT_STRIDE), 16),
    "deeplabv3-resnet50": (lambda c: ResNetEncoder(50, c, DEEPLAB_OUTPUT_STRIDE), 16),
}
SEGMENTATION_ARCHITECTURES: tuple[str, ...] = tuple(_ENCODERS)
#: architecture -> the multiple of 16 / 32 px that H and W must be
SIZE_MULTIPLE: dict[str, int] = {a: m for a, (_, m) in _ENCODERS.items()}
#: architecture -> the card's ``label_matching``: every network returns logits at the input
#: size; DeepLab's are bilinearly upsampled logits, so its card says so
LABEL_MATCHING: dict[str, str] = {
    "unet": "nearest-labels",
    "resnet18-unet": "nearest-labels",
    "deeplabv3-resnet18": "upsample-logits",
    "deeplabv3-resnet50": "upsample-logits",
}


def build_segmenter(
    arch: str,
    n_channels: int,
    n_classes: int,
    modality_channels: Sequence[Sequence[int]] | None = None,
) -> Segmenter:
    """``arch`` (:data:`SEGMENTATION_ARCHITECTURES`), Kaiming-initialised; early fusion
    without ``modality_channels``, else one encoder per group (validated by the caller)."""
    make, _ = _ENCODERS[arch]
    groups = [list(g) for g in modality_channels] if modality_channels else None
    encoders = [make(len(g)) for g in groups] if groups else [make(n_channels)]
    channels = [sum(level) for level in zip(*(e.channels for e in encoders), strict=True)]
    decoder: nn.Module
    if arch == "unet":  # the decoder's widths do not grow with the number of encoders
        decoder = UNetDecoder(channels, [UNET_WIDTH * 2**i for i in (3, 2, 1, 0)], n_classes)
    elif arch == "resnet18-unet":
        decoder = UNetDecoder(channels, RESNET_UNET_WIDTHS, n_classes)
    else:
        decoder = DeepLabDecoder(channels, n_classes, DEEPLAB_OUTPUT_STRIDE)
    kaiming_init(decoder)
    for e in encoders:  # ResNet initialises itself; the U-Net encoder is initialised here
        if isinstance(e, UNetEncoder):
            kaiming_init(e)
    return Segmenter(encoders, decoder, groups)
