"""Weight initialisation shared by the architectures (the SEN12MS toolbox's scheme).

The toolbox builds each network from torchvision and then applies ``weights_init_kaiming`` and
``fc_init_weights``: every ``Conv2d`` and ``Linear`` weight is redrawn with
``kaiming_normal_`` (fan_in, gain sqrt(2): std = sqrt(2 / fan_in)); batch norms keep weight 1,
bias 0; linear biases keep PyTorch's default; conv biases (VGG only) start at 0, as TF-Slim's
``zeros_initializer``.
"""

from __future__ import annotations

from torch import nn


def kaiming_init(module: nn.Module) -> None:
    """Initialise every conv / linear / batch-norm layer inside ``module`` in place."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
