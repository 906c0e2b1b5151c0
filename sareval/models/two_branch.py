"""Two-branch late-fusion classifier with ``omit`` absence: the head sees the branches present.

Calling convention (the evaluator's ``omit`` operator; card inputs ``s1``, ``s2``, call
``positional`` or ``dict``)::

    logits = model(s1, s2)                     # s1 (B, C1, H, W) or None, s2 (B, C2, H, W) or None
    logits = model({"s1": s1, "s2": s2})       # absent keys left out

with at least one input given (the empty coalition is evaluated elsewhere). Formula::

    f_b     = encoder_b.forward_features(x_b)          # (B, F) per present branch b
    logits  = head(mean_{b present} f_b)

so ``model(s1, None) = head(encoder_s1.forward_features(s1))``: an absent branch is never run
and its input never read. Encoders are any modules with ``forward_features`` and
``feature_dim`` (equal for both); :func:`build_two_branch` makes toolbox-layout ResNets
(:mod:`sareval.models.resnet`). Runs on the torch backend (the call structure changes per
coalition), card ``absence`` :attr:`TwoBranchFusion.absence`.

State-dict keys: ``branches.s1.*``, ``branches.s2.*`` (the encoder's own keys), ``head.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sareval.errors import SarevalError
from sareval.models.resnet import RESNET_LAYOUTS, ResNet
from sareval.models.weights import kaiming_init

#: the inputs, in positional order
BRANCHES: tuple[str, ...] = ("s1", "s2")


class TwoBranchFusion(nn.Module):
    """One encoder per sensor; the head on the mean of the present branches' features."""

    #: absence operators this model supports (for the card's ``absence``)
    absence: tuple[str, ...] = ("fill", "omit", "marginal")

    def __init__(self, s1_encoder: nn.Module, s2_encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        dims = {int(getattr(e, "feature_dim", -1)) for e in (s1_encoder, s2_encoder)}
        if len(dims) != 1 or min(dims) < 1:
            raise SarevalError(
                "s1_encoder, s2_encoder: need forward_features and an equal feature_dim; got "
                f"{sorted(dims)}"
            )
        if n_classes < 1:
            raise SarevalError(f"n_classes= {n_classes}; need >= 1")
        self.branches = nn.ModuleDict({"s1": s1_encoder, "s2": s2_encoder})
        self.head = nn.Linear(dims.pop(), n_classes)
        kaiming_init(self.head)

    def forward(
        self,
        s1: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        s2: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(s1, s2) with either None, or one dict without the absent keys -> (B, n_classes)."""
        if isinstance(s1, Mapping):
            if s2 is not None:
                raise SarevalError("forward: pass a dict alone, or s1 and s2 positionally")
            inputs = dict(s1)
            extra = sorted(set(inputs) - set(BRANCHES))
            if extra:
                raise SarevalError(f"forward: unknown inputs {extra}; expected {list(BRANCHES)}")
            s1, s2 = inputs.get("s1"), inputs.get("s2")
        given = {k: v for k, v in zip(BRANCHES, (s1, s2), strict=True) if v is not None}
        if not given:
            raise SarevalError("forward: s1 and s2 are both absent; give at least one")
        branches: Any = self.branches
        feats = [branches[k].forward_features(v) for k, v in given.items()]
        return self.head(torch.stack(feats).mean(0))  # type: ignore[no-any-return]


def build_two_branch(
    s1_channels: int, s2_channels: int, n_classes: int, depth: int = 18
) -> TwoBranchFusion:
    """:class:`TwoBranchFusion` with ResNet ``depth`` (18, 34, 50) encoders, Kaiming init."""
    if depth not in RESNET_LAYOUTS:
        raise SarevalError(f"depth= {depth}; choose from {list(RESNET_LAYOUTS)}")
    if s1_channels < 1 or s2_channels < 1:
        raise SarevalError(f"need >= 1 channel per branch; got {s1_channels}, {s2_channels}")
    return TwoBranchFusion(
        ResNet(depth, s1_channels, None), ResNet(depth, s2_channels, None), n_classes
    )
