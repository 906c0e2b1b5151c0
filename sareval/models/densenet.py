"""DenseNet121 in plain torch, laid out like the SEN12MS classification toolbox.

Toolbox (``classification/models/DenseNet.py``)::

    encoder    = Sequential(Conv2d(n_in, 64, 7, stride 2, padding 3, bias=False),  # 0
                            *torchvision densenet121.features[1:])  # 1 norm0, 2 relu0, 3 pool0,
                            # 4 denseblock1, 5 transition1, 6 denseblock2, 7 transition2,
                            # 8 denseblock3, 9 transition3, 10 denseblock4, 11 norm5
    classifier = Linear(65536, n_classes)      # on flatten(norm5 output (B, 1024, 8, 8))

There is no final ReLU and no global pooling, so only 256x256 input fits the classifier.
Inside blocks the names are torchvision's: ``denselayer{i}.{norm1,relu1,conv1,norm2,relu2,
conv2}`` (growth 32, bottleneck 4 x 32) and ``transition{i}.{norm,relu,conv,pool}``.
"""

from __future__ import annotations

import torch
from torch import nn

from sareval.models.weights import kaiming_init

DENSENET121_BLOCKS = (6, 12, 24, 16)
GROWTH_RATE = 32
BOTTLENECK_SIZE = 4
INIT_FEATURES = 64
#: the only input size whose norm5 output (1024 x 8 x 8) matches the 65,536-wide classifier
DENSENET_INPUT_SIZE = 256


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k) -> BN-ReLU-3x3 conv (k) on the concatenation of all inputs."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        width = BOTTLENECK_SIZE * GROWTH_RATE
        self.norm1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, GROWTH_RATE, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    """``denselayer1`` .. ``denselayerN``; output = all inputs and new features concatenated."""

    def __init__(self, n_layers: int, c_in: int) -> None:
        super().__init__()
        for i in range(n_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * GROWTH_RATE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (halving channels) - 2x2 average pool."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(c_in))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(c_in, c_out, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet121(nn.Module):
    """Toolbox-layout DenseNet121 for 256x256 input; ``n_classes=None``: encoder only."""

    def __init__(self, n_channels: int, n_classes: int | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(n_channels, INIT_FEATURES, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(INIT_FEATURES),  # norm0
            nn.ReLU(inplace=True),  # relu0
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # pool0
        ]
        c = INIT_FEATURES
        for i, n_layers in enumerate(DENSENET121_BLOCKS):
            layers.append(DenseBlock(n_layers, c))
            c += n_layers * GROWTH_RATE
            if i < len(DENSENET121_BLOCKS) - 1:
                layers.append(Transition(c, c // 2))
                c //= 2
        layers.append(nn.BatchNorm2d(c))  # norm5
        self.encoder = nn.Sequential(*layers)
        spatial = DENSENET_INPUT_SIZE // 32
        self.feature_dim = c * spatial * spatial  # 1024 * 8 * 8 = 65,536
        if n_classes is not None:
            self.classifier = self.make_head(self.feature_dim, n_classes)
        kaiming_init(self)

    @staticmethod
    def make_head(in_features: int, n_classes: int) -> nn.Module:
        return nn.Linear(in_features, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 256, 256) -> flattened norm5 output (B, 65536)."""
        return torch.flatten(self.encoder(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
