"""VGG16/19 in two layouts: TF-Slim's (BigEarthNet-MM models) and torchvision's.

**TF-Slim** (``nets/vgg.py`` called with ``fc_conv_padding='SAME', global_pool=True``, as the
BigEarthNet models do)::

    features: conv{b}_{i} = Conv2d(3x3, padding SAME = 1) + ReLU, then pool{b} = 2x2 max, stride 2
              VGG16 blocks 64x2, 128x2, 256x3, 512x3, 512x3; VGG19 64x2, 128x2, 256x4, 512x4, 512x4
    fc6 = Conv2d(512, 4096, 7, padding SAME = 3) + ReLU, dropout6
    fc7 = Conv2d(4096, 4096, 1) + ReLU
    global average pool over H, W, dropout7
    fc8 = Conv2d(4096, n_classes, 1) -> logits (B, n_classes)

120x120 input gives 3x3 at pool5; any input >= 32 px works. Module names follow the TF variable
scopes (``vgg_16/conv3/conv3_2/weights`` -> ``features.conv3_2.weight``), so
:func:`state_dict_from_tf_slim` maps a checkpoint's arrays (HWIO) onto this model (OIHW).
Dropout is active in training mode only.

**torchvision** (``vgg16-tv``): ``features`` (conv+ReLU, 'M' max pools; indices as torchvision),
``avgpool = AdaptiveAvgPool2d(7, 7)``, ``classifier = [Linear(25088, 4096), ReLU, Dropout,
Linear(4096, 4096), ReLU, Dropout, Linear(4096, n_classes)]``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from sareval.errors import SarevalError
from sareval.models.weights import kaiming_init

#: depth -> convs per block (widths 64, 128, 256, 512, 512)
VGG_BLOCKS: dict[int, tuple[int, ...]] = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)
FC_WIDTH = 4096


class PointwiseClassifier(nn.Conv2d):
    """TF-Slim's ``fc8``: a 1x1 conv applied to pooled features, (B, F) -> (B, n_classes)."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__(in_features, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.flatten(super().forward(x[:, :, None, None]), 1)


class SlimVGG(nn.Module):
    """TF-Slim VGG16/19 with conv fc6/fc7 and global average pooling (BigEarthNet-MM)."""

    def __init__(self, depth: int, n_channels: int, n_classes: int | None) -> None:
        super().__init__()
        if depth not in VGG_BLOCKS:
            raise ValueError(f"VGG depth {depth} not supported; choose from {list(VGG_BLOCKS)}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = n_channels
        for b, (width, n_convs) in enumerate(
            zip(VGG_WIDTHS, VGG_BLOCKS[depth], strict=True), start=1
        ):
            for i in range(1, n_convs + 1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(c_in, width, 3, padding=1)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=True)
                c_in = width
            layers[f"pool{b}"] = nn.MaxPool2d(kernel_size=2, stride=2)
        self.features = nn.Sequential(layers)
        self.fc6 = nn.Conv2d(c_in, FC_WIDTH, 7, padding=3)
        self.dropout6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(FC_WIDTH, FC_WIDTH, 1)
        self.dropout7 = nn.Dropout(0.5)
        self.relu = nn.ReLU(inplace=True)
        self.feature_dim = FC_WIDTH
        if n_classes is not None:
            self.fc8 = self.make_head(FC_WIDTH, n_classes)
        kaiming_init(self)

    @staticmethod
    def make_head(in_features: int, n_classes: int) -> nn.Module:
        return PointwiseClassifier(in_features, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> globally pooled fc7 activations (B, 4096)."""
        x = self.dropout6(self.relu(self.fc6(self.features(x))))
        x = self.relu(self.fc7(x))
        return self.dropout7(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.forward_features(x))


class TorchvisionVGG(nn.Module):
    """torchvision's VGG16/19 (no batch norm) for any number of input channels."""

    def __init__(self, depth: int, n_channels: int, n_classes: int | None) -> None:
        super().__init__()
        if depth not in VGG_BLOCKS:
            raise ValueError(f"VGG depth {depth} not supported; choose from {list(VGG_BLOCKS)}")
        layers: list[nn.Module] = []
        c_in = n_channels
        for width, n_convs in zip(VGG_WIDTHS, VGG_BLOCKS[depth], strict=True):
            for _ in range(n_convs):
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.feature_dim = c_in * 7 * 7
        if n_classes is not None:
            self.classifier = self.make_head(self.feature_dim, n_classes)
        kaiming_init(self)

    @staticmethod
    def make_head(in_features: int, n_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(in_features, FC_WIDTH),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(FC_WIDTH, FC_WIDTH),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(FC_WIDTH, n_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> flattened 7x7 pooled features (B, 25088)."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


# --- TF-Slim checkpoint arrays -> state dict ----------------------------------------------------
_TF_VAR = re.compile(r"(?:^|/)(conv\d_\d|fc[678])/(weights|biases)$")


def state_dict_from_tf_slim(
    arrays: Mapping[str, np.ndarray], model: SlimVGG, source: str = "(arrays)"
) -> dict[str, torch.Tensor]:
    """Map TF-Slim VGG variables to ``model``'s state-dict keys.

    ``arrays`` maps TF variable names (any scope prefix, e.g. ``vgg_16/conv1/conv1_1/weights``)
    to values; conv kernels are HWIO and become OIHW, biases are copied. Optimizer slots
    (``.../weights/Adam``), ``global_step`` and other non-model variables are ignored.
    Raises :class:`SarevalError` when a model weight has no variable or two.
    """
    wanted = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, value in arrays.items():
        m = _TF_VAR.search(name)
        if m is None:
            continue
        layer, kind = m.groups()
        key = (f"features.{layer}" if layer.startswith("conv") else layer) + (
            ".weight" if kind == "weights" else ".bias"
        )
        if key not in wanted:
            raise SarevalError(f"{source}: variable {name!r} has no place in the model ({key})")
        if key in out:
            raise SarevalError(f"{source}: two variables map to {key} (one is {name!r})")
        a = np.asarray(value, dtype=np.float32)
        if kind == "weights":
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        t = torch.from_numpy(np.ascontiguousarray(a))
        if tuple(t.shape) != tuple(wanted[key].shape):
            raise SarevalError(
                f"{source}: variable {name!r} has shape {tuple(value.shape)}; the model needs "
                f"{tuple(wanted[key].shape)} for {key} (in OIHW)"
            )
        out[key] = t
    missing = [k for k in wanted if k not in out]
    if missing:
        raise SarevalError(
            f"{source}: no TF-Slim variable for {len(missing)} model weights, e.g. "
            f"{', '.join(missing[:5])}"
        )
    return out
