"""Wavelength-conditioned (DOFA-style) classifier with ``omit`` absence.

Calling convention (the evaluator's ``omit`` operator for wavelength-conditioned models)::

    logits = model(x, wavelengths)   # x (B, C', H, W): only the channels given, any subset of
                                     # bands in any order; wavelengths (C',) float tensor, their
                                     # central wavelengths in µm (sareval.bands.central_wavelengths:
                                     # S2 from ESA's table, S1 VV / VH DOFA's placeholder 3.75)

Absent modality = its channels and wavelengths left out. The patch embedding's weights are
generated from the wavelengths (DOFA's dynamic embedding, Xiong et al. 2024; torchgeo
``models/dofa.py``)::

    e_c        = fc(sincos(1000 lambda_c))                 # (C', wv_dim); fc: residual 2-layer MLP
    [.., g_c, .., g_b] = generator([weight_tokens; e_1..e_C'; bias_token])   # transformer
    W[:, c]    = s * fc_weight(g_c + e_c).view(dim, p, p)  # channel c's kernel, (dim, p, p)
    b          = s * fc_bias(g_b)                           # (dim,); s = 0.01
    tokens     = conv2d(x, W, b, stride=p) + pos            # (B, P, dim)
    logits     = head(fc_norm(mean_i blocks([cls; tokens])_i, i > 0))

Channel c's kernel depends on its own wavelength and, through the generator's attention, on the
set of wavelengths given, never on their order: permuting channels and wavelengths together
gives the same output. (DOFA reshapes the generated (C', p p dim) weights with ``view(dim, C', p,
p)``, which mixes channels and makes the output order-dependent; here the reshape is per
channel.) The trunk is :class:`~sareval.models.vit.Block`. Runs on the torch backend (the
wavelengths change the graph's weights), card ``absence`` :attr:`WavelengthViT.absence`.

State-dict keys: ``patch_embed.{wave_fc.w1,wave_fc.w2,weight_tokens,bias_token,generator.<i>,
fc_weight,fc_bias}``, ``cls_token``, ``pos_embed`` (1, 1 + P, dim), ``blocks.<i>.*``,
``fc_norm``, ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sareval.errors import SarevalError
from sareval.models.vit import Block, init_vit

#: DOFA's scale of the generated weights and bias
WEIGHT_SCALE = 0.01


def sincos_embedding(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """positions (N,) -> (N, dim): ``[sin(p w_k), cos(p w_k)]``, ``w_k = 10000^(-2k / dim)``."""
    if dim % 2:
        raise SarevalError(f"wv_dim= {dim} must be even")
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2)
    angles = positions.float().reshape(-1, 1) * (1.0 / 10000**omega)[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class ResidualMlp(nn.Module):
    """``x + relu(w2(relu(w1(x))))`` (DOFA's ``FCResLayer``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class DynamicPatchEmbed(nn.Module):
    """Patch embedding whose conv weights are generated from the channels' wavelengths."""

    def __init__(
        self, dim: int, patch_size: int, wv_dim: int = 64, n_weight_tokens: int = 16, heads: int = 4
    ) -> None:
        super().__init__()
        self.dim = dim
        self.patch_size = patch_size
        self.wv_dim = wv_dim
        self.wave_fc = ResidualMlp(wv_dim)
        self.weight_tokens = nn.Parameter(torch.zeros(n_weight_tokens, wv_dim))
        self.bias_token = nn.Parameter(torch.zeros(1, wv_dim))
        self.generator = nn.ModuleList([Block(wv_dim, heads)])
        self.fc_weight = nn.Linear(wv_dim, dim * patch_size * patch_size)
        self.fc_bias = nn.Linear(wv_dim, dim)

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """x (B, C', H, W), wavelengths (C',) µm -> tokens (B, P, dim)."""
        c, p = wavelengths.shape[0], self.patch_size
        e = self.wave_fc(sincos_embedding(self.wv_dim, wavelengths * 1000))  # (C', wv_dim)
        seq = torch.cat([self.weight_tokens, e, self.bias_token], 0)[None]
        for block in self.generator:
            seq = block(seq)
        n = self.weight_tokens.shape[0]
        g = seq[0, n : n + c]  # (C', wv_dim)
        weight = self.fc_weight(g + e).view(c, self.dim, p, p).transpose(0, 1)
        bias = self.fc_bias(seq[0, -1])
        out = F.conv2d(x, weight * WEIGHT_SCALE, bias * WEIGHT_SCALE, stride=p)
        return out.flatten(2).transpose(1, 2)


class WavelengthViT(nn.Module):
    """DOFA-style classifier: ``forward(x, wavelengths)`` on any subset of bands (module
    docstring)."""

    #: absence operators this model supports (for the card's ``absence``)
    absence: tuple[str, ...] = ("fill", "omit", "marginal")

    def __init__(
        self,
        n_classes: int,
        *,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        wv_dim: int = 64,
        n_weight_tokens: int = 16,
    ) -> None:
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise SarevalError(f"image_size= {h}x{w} is not a multiple of patch_size= {patch_size}")
        if n_classes < 1 or dim < 1 or depth < 0:
            raise SarevalError(
                f"need n_classes >= 1, dim >= 1, depth >= 0; got {n_classes}, {dim}, {depth}"
            )
        self.image_size = (h, w)
        n_patches = (h // patch_size) * (w // patch_size)
        self.patch_embed = DynamicPatchEmbed(dim, patch_size, wv_dim, n_weight_tokens)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_classes)
        init_vit(self)
        for prm in (
            self.cls_token,
            self.pos_embed,
            self.patch_embed.weight_tokens,
            self.patch_embed.bias_token,
        ):
            nn.init.trunc_normal_(prm, std=0.02)
        for lin in (self.patch_embed.fc_weight, self.patch_embed.fc_bias):
            nn.init.xavier_uniform_(lin.weight)  # DOFA's initialisation of the generator heads

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """x (B, C', H, W), wavelengths (C',) µm (a tensor or floats) -> logits (B, n_classes)."""
        h, w = self.image_size
        if not isinstance(wavelengths, torch.Tensor):
            wavelengths = torch.tensor([float(v) for v in wavelengths])
        if x.ndim != 4 or tuple(x.shape[2:]) != self.image_size or x.shape[1] < 1:
            raise SarevalError(f"x: expected (B, C' >= 1, {h}, {w}); got {tuple(x.shape)}")
        if wavelengths.ndim != 1 or wavelengths.shape[0] != x.shape[1]:
            raise SarevalError(
                f"wavelengths: expected ({x.shape[1]},), one per channel of x; got "
                f"{tuple(wavelengths.shape)}"
            )
        wavelengths = wavelengths.to(device=x.device, dtype=x.dtype)
        tokens = self.patch_embed(x, wavelengths) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        t = torch.cat([cls, tokens], 1)
        for block in self.blocks:
            t = block(t)
        return self.head(self.fc_norm(t[:, 1:].mean(1)))  # type: ignore[no-any-return]
