"""Fusion stage: where the modalities meet.

- **early** fusion: the plain network on all channels concatenated (every published model).
- **late** fusion: one encoder per modality on its own channels, pooled features concatenated,
  one head::

      logits = head(cat([branch_m.forward_features(x[:, channels_m]) for m in modalities], 1))

  ``channels_m`` are the card's channel indices of modality ``m`` (a partition of the input
  channels); each branch is the architecture without its head, the head is the
  architecture's own head type on the summed feature width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

FUSIONS = ("early", "late")


def _is_contiguous(indices: Sequence[int]) -> bool:
    return list(indices) == list(range(indices[0], indices[0] + len(indices)))


class ChannelSelect(nn.Module):
    """``x[:, indices]``: a slice when contiguous, else a gather on a fixed index buffer."""

    index: torch.Tensor

    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__()
        self.indices = tuple(int(i) for i in indices)
        self.contiguous = _is_contiguous(self.indices)
        self.register_buffer("index", torch.tensor(self.indices), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.contiguous:
            return x[:, self.indices[0] : self.indices[-1] + 1]
        return torch.index_select(x, 1, self.index)

    def extra_repr(self) -> str:
        return f"channels={list(self.indices)}"


class LateFusion(nn.Module):
    """One encoder per modality; their features concatenated before a shared head."""

    def __init__(
        self,
        branches: Sequence[nn.Module],
        head: nn.Module,
        modality_channels: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        if len(branches) != len(modality_channels):
            raise ValueError(f"{len(branches)} branches for {len(modality_channels)} modalities")
        self.select = nn.ModuleList(ChannelSelect(c) for c in modality_channels)
        self.branches = nn.ModuleList(branches)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches: list[Any] = list(self.branches)
        feats = [b.forward_features(s(x)) for s, b in zip(self.select, branches, strict=True)]
        head: Any = self.head
        return head(torch.cat(feats, 1))  # type: ignore[no-any-return]


def check_modality_channels(groups: Sequence[Sequence[int]], n_channels: int) -> list[list[int]]:
    """Validate that ``groups`` partition ``range(n_channels)``; ValueError says what is wrong."""
    out = [sorted(int(i) for i in g) for g in groups]
    seen: dict[int, int] = {}
    for gi, g in enumerate(out):
        if not g:
            raise ValueError(f"modality group {gi} has no channels")
        for i in g:
            if not 0 <= i < n_channels:
                raise ValueError(f"channel index {i} outside 0..{n_channels - 1}")
            if i in seen:
                raise ValueError(f"channel {i} is in modality groups {seen[i]} and {gi}")
            seen[i] = gi
    orphans = [i for i in range(n_channels) if i not in seen]
    if orphans:
        raise ValueError(f"channels {orphans} belong to no modality group")
    return out
