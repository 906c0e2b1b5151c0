"""ResNet18/34/50 in plain torch, laid out like the SEN12MS classification toolbox.

Blocks are torchvision's (``BasicBlock``: conv1/bn1/conv2/bn2; ``Bottleneck``: conv1/bn1/conv2/
bn2/conv3/bn3 with the stride on the 3x3 conv; ``downsample = Sequential(conv1x1, bn)``). Module
layout of the toolbox (``classification/models/ResNet.py``)::

    conv1   = Conv2d(n_in, 64, 7, stride 2, padding 3, bias=False)   # registered twice:
    encoder = Sequential(conv1, bn1, relu, maxpool,                  # encoder.0 is conv1
                         layer1, layer2, layer3, layer4, avgpool)    # encoder.4 .. encoder.7
    FC      = Linear(512 * expansion, n_classes)

so a state dict holds both ``conv1.weight`` and ``encoder.0.weight``. ``forward(x)`` =
``FC(flatten(encoder(x)))``; global average pooling makes any input size >= 32 px work.

The same network in the torchvision / timm key layout (``conv1``, ``bn1``, ``layer1`` ..
``layer4``, ``fc``; timm's ``resnet18``/``resnet50`` use torchvision's names, the reBEN models
among them) maps one to one: :func:`to_timm_layout` / :func:`from_timm_layout`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from sareval.models.weights import kaiming_init


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1-projected) shortcut: ResNet18/34."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), with shortcut: ResNet50."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: depth -> (block type, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """Toolbox-layout ResNet; ``n_classes=None`` builds the encoder only (late-fusion branch)."""

    def __init__(self, depth: int, n_channels: int, n_classes: int | None) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(
                f"ResNet depth {depth} not supported; choose from {list(RESNET_LAYOUTS)}"
            )
        block, counts = RESNET_LAYOUTS[depth]
        self.conv1 = nn.Conv2d(n_channels, 64, 7, stride=2, padding=3, bias=False)
        stages: list[nn.Module] = []
        c_in = 64
        for i, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c_in, width, stride))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.encoder = nn.Sequential(
            self.conv1,
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *stages,
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self.feature_dim = c_in
        if n_classes is not None:
            self.FC = self.make_head(self.feature_dim, n_classes)
        kaiming_init(self)

    @staticmethod
    def make_head(in_features: int, n_classes: int) -> nn.Module:
        return nn.Linear(in_features, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> pooled features (B, feature_dim)."""
        return torch.flatten(self.encoder(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(self.forward_features(x))


#: torchvision / timm key prefix -> this module's prefix (``conv1`` is also ``encoder.0``)
TIMM_PREFIXES: tuple[tuple[str, str], ...] = (
    ("bn1.", "encoder.1."),
    ("layer1.", "encoder.4."),
    ("layer2.", "encoder.5."),
    ("layer3.", "encoder.6."),
    ("layer4.", "encoder.7."),
    ("fc.", "FC."),
)


def is_timm_layout(keys: Iterable[str]) -> bool:
    """Whether state-dict ``keys`` are in the torchvision / timm ResNet layout."""
    keys = set(keys)
    return "fc.weight" in keys and "layer1.0.conv1.weight" in keys


def _rename(key: str, pairs: Iterable[tuple[str, str]]) -> str:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def to_timm_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A :class:`ResNet` state dict with torchvision / timm keys (``encoder.0`` dropped: it is
    ``conv1``)."""
    back = [(new, old) for old, new in TIMM_PREFIXES]
    return {_rename(k, back): v for k, v in state.items() if not k.startswith("encoder.0.")}


def from_timm_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision / timm ResNet state dict with this module's keys."""
    out = {_rename(k, TIMM_PREFIXES): v for k, v in state.items()}
    if "conv1.weight" in out:
        out["encoder.0.weight"] = out["conv1.weight"]
    return out
