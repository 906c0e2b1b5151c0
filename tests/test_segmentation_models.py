"""Segmentation networks: shapes, parameter counts, output stride, late fusion, bad input.

Parameter counts are checked against formulas written out here from the layer list of the
U-Net paper (Ronneberger et al. 2015, with BatchNorm and padded convs); late fusion by the
property that defines it (an encoder sees only its modality's channels).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from sareval.card import make_card
from sareval.errors import SarevalError
from sareval.models import (
    ARCHITECTURES,
    FUSIONS,
    SEGMENTATION_ARCHITECTURES,
    Segmenter,
    build_model,
    build_model_for_card,
)
from sareval.models.segmentation import ResNetEncoder, UNetEncoder

#: sar (VV, VH) interleaved with opt: the late-fusion gather, not a slice
GROUPS = [[0, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 2]]


def _build(arch: str, fusion: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, 12, 10, fusion=fusion, modality_channels=GROUPS, input_size=64)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("arch", SEGMENTATION_ARCHITECTURES)
def test_every_architecture_returns_logits_at_the_input_size(arch: str, fusion: str) -> None:
    model = _build(arch, fusion).eval()
    x = torch.randn(2, 12, 64, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10, 64, 64) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # rows are independent in eval mode: a batch equals its rows one by one
    with torch.no_grad():
        scale = float(y.abs().max())  # untrained BatchNorm: logits up to the hundreds
        torch.testing.assert_close(model(x[1:]), y[1:], rtol=0, atol=1e-5 * max(1.0, scale))
    if fusion == "late":
        enc: nn.ModuleList = model.encoders  # type: ignore[assignment]
        assert len(enc) == 2
    # a training step reaches every parameter
    model.train()
    model(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_resnet18_unet_at_256_px() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18-unet", 12, 10, input_size=256).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 12, 256, 256))
    assert y.shape == (2, 10, 256, 256)


def _double_conv(a: int, b: int) -> int:
    return 9 * a * b + 9 * b * b + 4 * b  # two bias-free 3x3 convs, two BatchNorms


def unet_parameters(c: int, k: int, w: int) -> int:
    """U-Net of base width ``w``: 5 double convs down; 4 x (2x2 transposed conv with bias,
    double conv on the concatenation); 1x1 classifier with bias."""
    widths = [w * 2**i for i in range(5)]
    n = _double_conv(c, widths[0])
    n += sum(_double_conv(a, b) for a, b in itertools.pairwise(widths))
    for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True):
        n += 4 * c_in * c_out + c_out + _double_conv(2 * c_out, c_out)
    return n + w * k + k


def test_unet_parameter_count_follows_the_layer_list() -> None:
    model = build_model("unet", 12, 10)
    assert sum(p.numel() for p in model.parameters()) == unet_parameters(12, 10, 32)
    # the paper's width 64 on 1 channel, 2 classes: the 31.0 M of the common PyTorch U-Net
    encoder = UNetEncoder(1, 64)
    n_enc = sum(p.numel() for p in encoder.parameters())
    n_dec = unet_parameters(1, 2, 64) - n_enc
    assert n_enc == _double_conv(1, 64) + sum(_double_conv(a, 2 * a) for a in (64, 128, 256, 512))
    assert 31.0e6 < n_enc + n_dec < 31.1e6


def test_deeplab_encoder_has_output_stride_16_and_dilated_layer4() -> None:
    for depth, width in ((18, 512), (50, 2048)):
        enc = ResNetEncoder(depth, 3, output_stride=16).eval()
        with torch.no_grad():
            feats = enc(torch.randn(1, 3, 64, 64))
        assert [tuple(f.shape[1:]) for f in feats] == [
            (64, 32, 32),
            (width // 8, 16, 16),
            (width // 4, 8, 8),
            (width // 2, 4, 4),
            (width, 4, 4),  # layer4 keeps /16
        ]
        layer4 = enc.backbone.encoder[7]
        for i, block in enumerate(layer4.children()):
            convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
            assert all(m.stride == (1, 1) for m in convs)
            three = [m for m in convs if m.kernel_size == (3, 3)]
            assert all(m.dilation == ((2, 2) if i else (1, 1)) for m in three)
            assert all(m.padding == m.dilation for m in three)
    # undilated (resnet18-unet): /32 at the bottom
    with torch.no_grad():
        assert ResNetEncoder(18, 3)(torch.randn(1, 3, 64, 64))[-1].shape == (1, 512, 2, 2)


def test_resnet_encoder_keeps_the_classifier_key_layout() -> None:
    """A classification ResNet's weights (without its FC) load into the encoder strictly."""
    classifier = build_model("resnet18", 12, 10)
    seg = build_model("resnet18-unet", 12, 10)
    assert isinstance(seg, Segmenter)
    state = {k: v for k, v in classifier.state_dict().items() if not k.startswith("FC.")}
    seg.encoders[0].backbone.load_state_dict(state, strict=True)  # type: ignore[union-attr]


@pytest.mark.parametrize("arch", ["unet", "deeplabv3-resnet18"])
def test_late_fusion_encoders_see_only_their_modality(arch: str) -> None:
    model = _build(arch, "late").eval()
    assert isinstance(model, Segmenter)
    sar_enc, opt_enc = model.encoders[1], model.encoders[0]
    seen: dict[str, list[torch.Tensor]] = {}
    for name, enc in (("sar", sar_enc), ("opt", opt_enc)):
        enc.register_forward_hook(
            lambda _m, _i, out, name=name: seen.setdefault(name, []).append(out)
        )
    x = torch.randn(2, 12, 64, 64)
    x_opt_changed = x.clone()
    x_opt_changed[:, GROUPS[0]] = torch.randn(2, 10, 64, 64)
    with torch.no_grad():
        y0, y1 = model(x), model(x_opt_changed)
    assert not torch.equal(y0, y1)
    for a, b in zip(seen["sar"][0], seen["sar"][1], strict=True):
        assert torch.equal(a, b)  # the SAR encoder never saw the optical channels
    assert not torch.equal(seen["opt"][0][-1], seen["opt"][1][-1])
    # gradients: the SAR encoder's deepest features depend on the SAR channels only
    xg = x.clone().requires_grad_(True)
    model(xg)
    seen["sar"][-1][-1].sum().backward()
    assert xg.grad is not None
    assert (xg.grad[:, GROUPS[0]] == 0).all() and (xg.grad[:, GROUPS[1]] != 0).any()
    first = next(m for m in sar_enc.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 2


def test_input_sizes_not_allowed_are_one_line_errors() -> None:
    cases = {
        ("unet", 40): "unet needs an input height and width that are multiples of 16 px",
        ("resnet18-unet", 48): "multiples of 32 px",
        ("deeplabv3-resnet50", 72): "multiples of 16 px",
        ("unet", 16): "at least 32 px",
    }
    for (arch, size), message in cases.items():
        with pytest.raises(SarevalError, match=message) as e:
            build_model(arch, 12, 10, input_size=size)
        assert "\n" not in str(e.value)
    with pytest.raises(SarevalError, match=r"unknown architecture 'unet3'.*deeplabv3-resnet50"):
        build_model("unet3", 12, 10)
    with pytest.raises(SarevalError, match="late fusion needs the channels"):
        build_model("unet", 12, 10, fusion="late")


def test_card_task_must_fit_the_architecture() -> None:
    def card(task: str, arch: str):
        return make_card(
            "sen12ms-s1s2",
            task,
            architecture=arch,
            fusion="early",
            checkpoint_sha256=None,
            random_init=True,
            input_size=64,
        )

    with pytest.raises(SarevalError, match="arch= unet needs a card with task segmentation"):
        build_model_for_card("unet", card("single-label", "unet"))
    with pytest.raises(SarevalError, match="resnet18 needs a card with a scene-classification"):
        build_model_for_card("resnet18", card("segmentation", "resnet18"))
    model = build_model_for_card("resnet18-unet", card("segmentation", "resnet18-unet"), "late")
    assert isinstance(model, Segmenter) and len(model.encoders) == 2
    assert set(ARCHITECTURES).isdisjoint(SEGMENTATION_ARCHITECTURES)
