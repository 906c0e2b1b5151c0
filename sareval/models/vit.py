"""Multimodal ViT fusion classifier with ``mask`` absence (attention key masking).

Calling convention (the evaluator's ``mask`` operator)::

    logits = model(x, present)      # x (B, C, H, W) in the card's channel order
                                    # present (B, M) bool, M = card modalities in card order,
                                    # True = present; None = every modality present (``fill``)

Tokens, T = 1 + M P with P = (H / p)(W / p) patches of side p::

    t_0      = cls                                              (never masked)
    t_{m,i}  = where(present_m, E_m(x[:, channels_m])_i, 0) + pos_i + mod_m
    keep     = [1, present_0 (P times), ..., present_{M-1} (P times)]
    h        = blocks(t, keep)        # pre-norm transformer; attention logits to keys with
                                      # keep = 0 are -inf: a present token never sees them
    pooled   = norm(h)_0 (pool="cls")  or  mean of norm(h)_j over keep_j = 1 (pool="mean")
    logits   = head(pooled)

``E_m`` is a ``Conv2d(len(channels_m), dim, p, stride=p)``. Absent modalities' channels are
replaced before anything reads them (``where``, so NaN / inf there change nothing), so a masked
row equals the same row with the absent tokens physically removed
(:meth:`MultimodalViT.forward_modalities`), to float rounding. A row with no modality present
is defined (the CLS token attends to itself): a finite, input-independent output. No
data-dependent Python control flow: ``torch.onnx.export`` with inputs ``(x, present)`` and a
dynamic batch axis gives one graph with the mask as an input.

State-dict keys (timm's ViT names for the shared trunk): ``cls_token`` (1, 1, dim),
``pos_embed`` (1, P, dim), ``modality_embed`` (M, dim), ``patch_embed.<m>.weight|bias``,
``blocks.<i>.norm1|attn.qkv|attn.proj|norm2|mlp.fc1|mlp.fc2``, ``norm``, ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sareval.errors import SarevalError
from sareval.models.fusion import ChannelSelect, check_modality_channels

POOLS = ("mean", "cls")


class Attention(nn.Module):
    """Multi-head self-attention; keys with ``keep`` False get weight exactly 0."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise SarevalError(f"dim= {dim} is not divisible by heads= {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), keep (B, T) bool or None (all kept) -> (B, T, D)."""
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, T, D / heads)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if keep is not None:
            logits = logits.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))  # type: ignore[no-any-return]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x), keep)``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))  # type: ignore[no-any-return]


def init_vit(module: nn.Module) -> None:
    """timm's ViT initialisation: linear weights trunc-normal(0.02), biases 0, norms 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MultimodalViT(nn.Module):
    """Per-modality patch embeddings, modality + position embeddings, a shared transformer,
    pooling over present tokens; ``forward(x, present)`` (module docstring)."""

    #: absence operators this model supports (for the card's ``absence``)
    absence: tuple[str, ...] = ("fill", "mask", "marginal")

    def __init__(
        self,
        modality_channels: Sequence[Sequence[int]],
        n_classes: int,
        *,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        n_channels = sum(len(g) for g in modality_channels)
        try:
            groups = check_modality_channels(modality_channels, n_channels)
        except ValueError as e:
            raise SarevalError(f"modality_channels= {e}") from None
        if not groups:
            raise SarevalError("modality_channels= needs at least one modality")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise SarevalError(f"image_size= {h}x{w} is not a multiple of patch_size= {patch_size}")
        if pool not in POOLS:
            raise SarevalError(f"pool= {pool!r}; choose from {', '.join(POOLS)}")
        if n_classes < 1 or dim < 1 or depth < 0:
            raise SarevalError(
                f"need n_classes >= 1, dim >= 1, depth >= 0; got {n_classes}, {dim}, {depth}"
            )
        self.image_size = (h, w)
        self.patch_size = patch_size
        self.n_channels = n_channels
        self.n_modalities = len(groups)
        self.n_patches = (h // patch_size) * (w // patch_size)
        self.pool = pool
        self.select = nn.ModuleList(ChannelSelect(g) for g in groups)
        self.patch_embed = nn.ModuleList(
            nn.Conv2d(len(g), dim, patch_size, stride=patch_size) for g in groups
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_patches, dim))
        self.modality_embed = nn.Parameter(torch.zeros(self.n_modalities, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_classes)
        init_vit(self)
        for p in (self.cls_token, self.pos_embed, self.modality_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.n_channels or tuple(x.shape[2:]) != self.image_size:
            h, w = self.image_size
            raise SarevalError(
                f"x: expected (B, {self.n_channels}, {h}, {w}); got {tuple(x.shape)}"
            )

    def _tokens(self, x: torch.Tensor, m: int, present: torch.Tensor | None) -> torch.Tensor:
        """Modality ``m``'s patch tokens (B, P, dim) from the full input ``x``."""
        select: Any = self.select[m]
        return self._embed(select(x), m, present)

    def _embed(self, xm: torch.Tensor, m: int, present: torch.Tensor | None) -> torch.Tensor:
        """Patch tokens (B, P, dim) of modality ``m``'s channels ``xm``, zero where ``present``
        (B,) is False."""
        t = self.patch_embed[m](xm).flatten(2).transpose(1, 2)
        if present is not None:
            t = torch.where(present[:, None, None], t, torch.zeros_like(t))
        return t + self.pos_embed + self.modality_embed[m]  # type: ignore[no-any-return]

    def _trunk(self, tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """CLS + ``tokens`` through the blocks, pooled over kept tokens, through the head."""
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], 1)
        if keep is not None:
            keep = torch.cat([torch.ones_like(keep[:, :1]), keep], 1)
        for block in self.blocks:
            h = block(h, keep)
        h = self.norm(h)
        if self.pool == "cls":
            pooled = h[:, 0]
        elif keep is None:
            pooled = h.mean(1)
        else:
            kept = torch.where(keep[..., None], h, torch.zeros_like(h)).sum(1)
            pooled = kept / keep.sum(1, keepdim=True).to(h.dtype)
        return self.head(pooled)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), present (B, M) bool (None: all present) -> logits (B, n_classes)."""
        self._check_x(x)
        if present is None:
            tokens = [self._tokens(x, m, None) for m in range(self.n_modalities)]
            return self._trunk(torch.cat(tokens, 1), None)
        if present.ndim != 2 or present.shape[1] != self.n_modalities:
            raise SarevalError(
                f"present: expected (B, {self.n_modalities}) bool; got {tuple(present.shape)}"
            )
        if present.dtype != torch.bool:
            present = present != 0
        tokens = [self._tokens(x, m, present[:, m]) for m in range(self.n_modalities)]
        b, p = x.shape[0], self.n_patches
        keep = present[:, :, None].expand(b, self.n_modalities, p).reshape(b, -1)
        return self._trunk(torch.cat(tokens, 1), keep)

    def forward_modalities(self, x: torch.Tensor, modalities: Sequence[int]) -> torch.Tensor:
        """The tokens of ``modalities`` (card order indices) only, no mask: the reference
        computation a masked row equals. ``x``'s other channels are never read."""
        self._check_x(x)
        if not modalities:
            return self._trunk(self.cls_token[:, :0].expand(x.shape[0], 0, -1), None)
        bad = [m for m in modalities if not 0 <= m < self.n_modalities]
        if bad or len(set(modalities)) != len(modalities):
            raise SarevalError(
                f"modalities= {list(modalities)}: need distinct indices in "
                f"0..{self.n_modalities - 1}"
            )
        return self._trunk(torch.cat([self._tokens(x, m, None) for m in modalities], 1), None)


class MultimodalViTInputs(MultimodalViT):
    """The same ViT with one input per modality, so that it takes every absence operator::

        logits = model({name: x_m, ...})            # omit: the inputs given are the modalities
                                                    # present (a missing key = its tokens
                                                    # removed); all given = fill / marginal
        logits = model({name: x_m, ...}, present)   # mask: every input given, present (B, M)

    ``x_m`` (B, C_m, H, W): modality m's channels (the card's ``inputs``, one per modality, in
    the card's modality order; the evaluator calls ``forward(dict)`` for a card with
    ``call: "dict"``). Without ``present`` the tokens of the inputs given are the only tokens
    (:meth:`MultimodalViT.forward_modalities`), so ``omit`` is token removal, and ``mask``
    equals it to float rounding. Input names must be the card's, every other key is refused.
    """

    absence: tuple[str, ...] = ("fill", "omit", "mask", "marginal")

    def __init__(self, inputs: Sequence[tuple[str, int]], n_classes: int, **kwargs: Any) -> None:
        """``inputs``: (input name, channels) per modality in the card's modality order."""
        sizes = [c for _, c in inputs]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        groups = [list(range(s, s + c)) for s, c in zip(starts, sizes, strict=True)]
        super().__init__(groups, n_classes, **kwargs)
        self.input_names = [n for n, _ in inputs]
        self.input_channels = sizes

    def _check_inputs(self, inputs: Any) -> list[int]:
        """The modalities given (indices in card order), each input's shape checked."""
        if not isinstance(inputs, dict):
            raise SarevalError(
                f"inputs: expected a dict of {', '.join(self.input_names)}; got "
                f"{type(inputs).__name__}"
            )
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise SarevalError(
                f"inputs: unknown input(s) {', '.join(unknown)}; the model takes "
                f"{', '.join(self.input_names)}"
            )
        h, w = self.image_size
        given = []
        for m, (name, c) in enumerate(zip(self.input_names, self.input_channels, strict=True)):
            if name not in inputs:
                continue
            x = inputs[name]
            if x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != (h, w):
                raise SarevalError(
                    f"inputs[{name!r}]: expected (B, {c}, {h}, {w}); got {tuple(x.shape)}"
                )
            given.append(m)
        return given

    def forward(  # type: ignore[override]
        self, inputs: dict[str, torch.Tensor], present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``inputs`` {name: (B, C_m, H, W)}, present (B, M) bool or None -> (B, n_classes)."""
        given = self._check_inputs(inputs)
        if present is None:
            if not given:
                raise SarevalError("inputs: no input given (at least one modality is needed)")
            tokens = [self._embed(inputs[self.input_names[m]], m, None) for m in given]
            return self._trunk(torch.cat(tokens, 1), None)
        if len(given) != self.n_modalities:
            raise SarevalError("inputs: with present, every input must be given (mask)")
        x = torch.cat([inputs[n] for n in self.input_names], 1)
        return super().forward(x, present)


def vit_inputs_for_card(card: Any, **kwargs: Any) -> MultimodalViTInputs:
    """A :class:`MultimodalViTInputs` for a card whose ``inputs`` are its modalities, one
    input per modality in the same order (each input holding exactly that modality's bands)."""
    if card.height is None or card.width is None:
        raise SarevalError("the card's input height and width must be set for a ViT")
    slices = card.input_slices()
    bands = [list(card.channels[sl]) for _, sl in slices]
    want = [list(m.bands) for m in card.modalities]
    if len(slices) < 2 or bands != want:
        raise SarevalError(
            "the card's inputs must be its modalities, one input per modality in card order "
            f"(inputs hold {bands}; modalities {want})"
        )
    return MultimodalViTInputs(
        [(name, sl.stop - sl.start) for name, sl in slices],
        card.n_classes,
        image_size=(card.height, card.width),
        **kwargs,
    )


def vit_for_card(card: Any, **kwargs: Any) -> MultimodalViT:
    """A :class:`MultimodalViT` for a model card: its modalities' channel indices in card order,
    its classes and its input size (``card.height`` x ``card.width``, which must be set)."""
    if card.height is None or card.width is None:
        raise SarevalError("the card's input height and width must be set for a ViT")
    return MultimodalViT(
        [card.channel_indices(m) for m in card.modality_names],
        card.n_classes,
        image_size=(card.height, card.width),
        **kwargs,
    )
