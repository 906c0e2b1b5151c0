"""Shared computation across coalitions (torch backend): exact up to float rounding.

The unshared coalition graph runs the whole network on ``n_coal * B`` rows. Two structures let
most of that work run once per sample instead of once per coalition:

- **late fusion** (:class:`~sareval.models.fusion.LateFusion`): a modality's encoder sees only
  its own channels, so for coalition S::

      f_m(S) = enc_m(x[:, ch_m])          if m in S     (once per sample)
             = enc_m(baseline[ch_m])      otherwise     (input-independent: once per image size)
      logits(S) = head(cat_m f_m(S))                    (the head alone runs per coalition)

- **early fusion** (ResNet, DenseNet, VGG of :mod:`sareval.models`): the first layer is a
  convolution, linear in its input channels. With the channels partitioned into player groups g,
  ``conv(x_S) = b + sum_g conv_g(x_S[:, g])`` (``conv_g``: the weights of g's channels, no
  bias), so with ``P_g = conv_g(x[:, g])`` (once per sample) and ``Q_g = conv_g(baseline_g)`` on
  a full constant image (once per image size; zero padding makes it vary at the borders)::

      conv(x_S) = b + sum_g Q_g + sum_{g in S} (P_g - Q_g)

  and the rest of the network runs per coalition on that.

:func:`shared_module` returns None for any other network (or a multi-input card): the caller
keeps the unshared graph. A mask override whose rows split a group falls back per call.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from sareval.evaluator.preamble import Preamble, coalition_module

#: the ``share`` record values of a shared run (``unshared``: share=True fell back)
KINDS = ("late-fusion", "first-conv")


def group_mask(mask: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor | None:
    """(n, G) bool: group g present in coalition k; None when a row splits a group."""
    cols = [mask[:, g] for g in groups]
    if not all(bool((c == c[:, :1]).all()) for c in cols):
        return None
    return torch.stack([c[:, 0] for c in cols], 1)


def _first_conv(network: nn.Module) -> tuple[nn.Conv2d, nn.Module] | None:
    """The first convolution of a known early-fusion network and the network without it (the
    conv replaced by identity in a shallow copy; the caller's module is not changed)."""
    from sareval.models.densenet import DenseNet121
    from sareval.models.resnet import ResNet
    from sareval.models.vgg import SlimVGG, TorchvisionVGG

    attr = {ResNet: "encoder", DenseNet121: "encoder", TorchvisionVGG: "features",
            SlimVGG: "features"}.get(type(network))  # fmt: skip
    seq = getattr(network, attr, None) if attr else None
    if not isinstance(seq, nn.Sequential) or not len(seq) or not isinstance(seq[0], nn.Conv2d):
        return None
    conv = seq[0]
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    items = list(seq.named_children())
    rest_seq = nn.Sequential(OrderedDict([(items[0][0], nn.Identity()), *items[1:]]))
    rest = copy.copy(network)
    rest._modules = OrderedDict(network._modules)
    rest._modules[attr] = rest_seq  # type: ignore[index]
    if getattr(network, "conv1", None) is conv:  # ResNet registers conv1 twice; forward skips it
        rest._modules["conv1"] = nn.Identity()
    return conv, rest


class SharedCoalitions(nn.Module):
    """``forward(raw, mask=None) -> (n_coal * B, K)`` like the coalition module, sharing work
    across coalitions (module docstring); ``kind`` is one of :data:`KINDS`."""

    def __init__(self, base: nn.Module, kind: str, groups: list[list[int]], **parts: Any) -> None:
        super().__init__()
        self.base: Any = base  # the coalition module (masks, baseline, normalise)
        self.kind = kind
        self.groups = [torch.tensor(g) for g in groups]
        self.parts = nn.ModuleDict({k: v for k, v in parts.items() if isinstance(v, nn.Module)})
        self._const: dict[tuple[Any, ...], list[torch.Tensor]] = {}

    def _apply(self, fn: Any, recurse: bool = True) -> SharedCoalitions:
        super()._apply(fn, recurse)
        self.groups = [fn(g) for g in self.groups]
        self._const.clear()
        return self

    def baseline_image(self, g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(1, |g|, H, W): group g's channels at their baseline."""
        b = self.base.baseline.reshape(1, -1, 1, 1)[:, g]
        return b.to(like.dtype).expand(1, -1, *like.shape[2:]).contiguous()

    def forward(self, raw: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> Any:
        m = self.base.masks if mask is None else mask
        gm = group_mask(m, self.groups)
        if gm is None:
            return self.base(raw, mask)
        x = self.base.normalise(raw)
        if self.kind == "late-fusion":
            return self._late(x, gm)
        return self._first_conv(x, gm)

    def _constants(self, x: torch.Tensor, make: Any) -> list[torch.Tensor]:
        key = (tuple(x.shape[2:]), x.dtype, x.device, torch.is_autocast_enabled())
        if key not in self._const:
            self._const[key] = make()
        return self._const[key]

    def _late(self, x: torch.Tensor, gm: torch.Tensor) -> torch.Tensor:
        net: Any = self.parts["network"]
        branches = list(net.branches)
        sel = [s.indices for s in net.select]
        real = [b.forward_features(x[:, list(s)]) for b, s in zip(branches, sel, strict=True)]
        base = self._constants(
            x,
            lambda: [b.forward_features(self.baseline_image(torch.tensor(s), x))
                     for b, s in zip(branches, sel, strict=True)],
        )  # fmt: skip
        # branch i belongs to the group holding its first channel
        owner = [next(j for j, g in enumerate(self.groups) if s[0] in g.tolist()) for s in sel]
        feats = [
            torch.where(gm[:, owner[i], None, None], r[None], q[None])  # (n, B, D_i)
            for i, (r, q) in enumerate(zip(real, base, strict=True))
        ]
        z = torch.cat(feats, 2)
        return net.head(z.reshape(-1, z.shape[2]))  # type: ignore[no-any-return]

    def _first_conv(self, x: torch.Tensor, gm: torch.Tensor) -> torch.Tensor:
        conv: Any = self.parts["conv"]
        rest: Any = self.parts["rest"]

        def partial(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            w = conv.weight[:, g]
            return nn.functional.conv2d(t, w, None, conv.stride, conv.padding, conv.dilation)

        q = self._constants(x, lambda: [partial(self.baseline_image(g, x), g) for g in self.groups])
        q_sum = torch.stack(q).sum(0)  # (1, O, H', W')
        if conv.bias is not None:
            q_sum = q_sum + conv.bias.reshape(1, -1, 1, 1)
        d = torch.stack(
            [partial(x[:, g], g) - qg for g, qg in zip(self.groups, q, strict=True)]
        )  # (G, B, O, H', W')
        y = (gm.to(d.dtype) @ d.reshape(d.shape[0], -1)).reshape(-1, *d.shape[1:]) + q_sum
        y = y.reshape(-1, *d.shape[2:])  # (n * B, O, H', W'), row k * B + b
        return rest(y)  # type: ignore[no-any-return]


def share_kind(network: Any, pre: Preamble) -> str | None:
    """Which sharing applies to ``network`` (one of :data:`KINDS`), None when none does."""
    from sareval.models.fusion import LateFusion

    if len(pre.inputs) > 1 or not isinstance(network, nn.Module):
        return None
    groups = pre.channel_groups
    if isinstance(network, LateFusion):
        owner = {c: i for i, g in enumerate(groups) for c in g}
        selects: Any = network.select
        ok = all(len({owner[c] for c in s.indices}) == 1 for s in selects)
        return "late-fusion" if ok else None
    if len(groups) > 1 and _first_conv(network) is not None:
        return "first-conv"
    return None


def shared_module(pre: Preamble, network: Any) -> SharedCoalitions | None:
    """The coalition module of ``network`` with shared computation, or None (unshared)."""
    kind = share_kind(network, pre)
    if kind is None:
        return None
    base = coalition_module(pre, network)
    groups = pre.channel_groups
    if kind == "late-fusion":
        return SharedCoalitions(base, kind, groups, network=network)
    found = _first_conv(network)
    assert found is not None
    conv, rest = found
    return SharedCoalitions(base, kind, groups, conv=conv, rest=rest)
