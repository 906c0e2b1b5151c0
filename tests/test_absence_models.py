"""Model families built for the ``mask`` and ``omit`` absence operators (issue 22).

- :class:`~sareval.models.vit.MultimodalViT` (``mask``): a masked batched run (all coalitions
  stacked on the batch axis) equals, row by row, a run with the absent tokens physically removed;
  its attention equals ``torch.nn.MultiheadAttention`` with ``key_padding_mask``; absent channels
  are never read; the ONNX export keeps one graph with the mask as an input (onnxruntime).
- :class:`~sareval.models.wavelength.WavelengthViT` (``omit``): invariant to permuting channels
  with their wavelengths, dependent on which channels are given, runs on any subset.
- :class:`~sareval.models.two_branch.TwoBranchFusion` (``omit``): one branch equals the head on
  that branch's features by hand, and the absent branch is never run.
Tiny models (dim 32, depth 2, 32 px), seeded, eval mode.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sareval.bands import S2_BANDS, S2_WAVELENGTH_UM, central_wavelengths
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.models.two_branch import TwoBranchFusion, build_two_branch
from sareval.models.vit import Attention, MultimodalViT, vit_for_card
from sareval.models.wavelength import WavelengthViT

SIZE, PATCH, DIM, DEPTH, HEADS, K = 32, 8, 32, 2, 4, 5
#: three modalities (SAR; optical split in two band groups), channels interleaved on purpose
GROUPS = [[0, 3], [1, 4, 5], [2]]
N_CHANNELS = 6


def make_vit(pool: str = "mean", seed: int = 0) -> MultimodalViT:
    torch.manual_seed(seed)
    vit = MultimodalViT(
        GROUPS, K, image_size=SIZE, patch_size=PATCH, dim=DIM, depth=DEPTH, heads=HEADS, pool=pool
    )
    return vit.eval()


def coalitions(m: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of range(m), by size."""
    return [s for r in range(1, m + 1) for s in itertools.combinations(range(m), r)]


def stacked(x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, ...]]]:
    """All coalitions stacked on the batch axis: rows (coalition j, sample i), mask per row."""
    subsets = coalitions(m)
    xs = x.repeat(len(subsets), 1, 1, 1)
    present = torch.tensor(
        [[k in s for k in range(m)] for s in subsets for _ in range(x.shape[0])], dtype=torch.bool
    )
    return xs, present, subsets


# --- multimodal ViT: mask -----------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_masked_batch_equals_token_removal(pool: str) -> None:
    vit = make_vit(pool)
    x = torch.randn(3, N_CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    xs, present, subsets = stacked(x, len(GROUPS))
    with torch.no_grad():
        masked = vit(xs, present)
        for j, s in enumerate(subsets):
            removed = vit.forward_modalities(x, s)  # only the present modalities' tokens
            got = masked[j * len(x) : (j + 1) * len(x)]
            torch.testing.assert_close(got, removed, rtol=0, atol=1e-5)
        # the coalitions do differ: a model that ignored the mask would fail the loop above
        assert not torch.allclose(masked[: len(x)], masked[-len(x) :], atol=1e-3)


def test_vit_all_present_equals_no_mask_and_mask_may_be_integer() -> None:
    vit = make_vit()
    x = torch.randn(2, N_CHANNELS, SIZE, SIZE)
    with torch.no_grad():
        full = vit(x)
        torch.testing.assert_close(
            vit(x, torch.ones(2, 3, dtype=torch.bool)), full, atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            vit(x, torch.ones(2, 3, dtype=torch.int64)), full, atol=1e-6, rtol=0
        )


def test_attention_matches_multihead_attention_with_key_padding_mask() -> None:
    torch.manual_seed(2)
    ours = Attention(DIM, HEADS).eval()
    ref = torch.nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(4, 7, DIM)
        keep = torch.rand(4, 7) > 0.5
        keep[:, 0] = True  # every row keeps a key (the ViT's CLS token)
        want, _ = ref(x, x, x, key_padding_mask=~keep, need_weights=False)
        torch.testing.assert_close(ours(x, keep), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("garbage", [math.nan, math.inf, 1e30, "random"])
def test_vit_never_reads_absent_channels(garbage: float | str) -> None:
    vit = make_vit()
    x = torch.randn(2, N_CHANNELS, SIZE, SIZE)
    present = torch.tensor([[True, False, True], [False, True, False]])
    dirty = x.clone()
    for row in range(2):
        for m, channels in enumerate(GROUPS):
            if not present[row, m]:
                fill = (
                    torch.randn(len(channels), SIZE, SIZE) * 1e6 if garbage == "random" else garbage
                )
                dirty[row, channels] = fill
    with torch.no_grad():
        clean_out, dirty_out = vit(x, present), vit(dirty, present)
    assert torch.isfinite(dirty_out).all()
    assert torch.equal(clean_out, dirty_out)


def test_vit_empty_row_is_finite_and_input_independent() -> None:
    vit = make_vit()
    x = torch.randn(3, N_CHANNELS, SIZE, SIZE)
    x[1] = math.nan
    with torch.no_grad():
        out = vit(x, torch.zeros(3, 3, dtype=torch.bool))
        ref = vit.forward_modalities(x[:1], [])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref.expand(3, -1), atol=1e-6, rtol=0)


def test_vit_for_card_uses_card_channel_order() -> None:
    card = ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]},
        task="single-label",
        class_names=["a", "b", "c"],
        input_size=SIZE,
        channels=["B02", "VV", "B03", "VH", "B04"],
        absence=MultimodalViT.absence,
    )
    assert card.absence == ("fill", "mask", "marginal")
    torch.manual_seed(3)
    vit = vit_for_card(card, patch_size=PATCH, dim=DIM, depth=1, heads=HEADS).eval()
    assert (vit.n_modalities, vit.n_channels, vit.head.out_features) == (2, 5, 3)
    x = torch.randn(2, 5, SIZE, SIZE)
    sar_only = torch.tensor([[True, False]] * 2)
    poisoned = x.clone()
    poisoned[:, [0, 2, 4]] = math.nan  # the optical channels of this card
    with torch.no_grad():
        assert torch.equal(vit(x, sar_only), vit(poisoned, sar_only))
        assert not torch.isfinite(vit(poisoned)).all()  # with optical present they are read


def test_vit_state_dict_keys_are_plain() -> None:
    torch.manual_seed(0)
    vit = MultimodalViT([[0], [1]], 2, image_size=16, patch_size=8, dim=8, depth=1, heads=2)
    block = [f"blocks.0.{k}" for k in (
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias",
    )]  # fmt: skip
    assert list(vit.state_dict()) == [
        "cls_token", "pos_embed", "modality_embed",
        "patch_embed.0.weight", "patch_embed.0.bias", "patch_embed.1.weight", "patch_embed.1.bias",
        *block, "norm.weight", "norm.bias", "head.weight", "head.bias",
    ]  # fmt: skip
    assert vit.state_dict()["pos_embed"].shape == (1, 4, 8)


def test_vit_bad_input() -> None:
    vit = make_vit()
    x = torch.randn(2, N_CHANNELS, SIZE, SIZE)
    with pytest.raises(SarevalError, match=r"^x: expected \(B, 6, 32, 32\)"):
        vit(x[:, :5])
    with pytest.raises(SarevalError, match=r"^present: expected \(B, 3\)"):
        vit(x, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(SarevalError, match=r"modalities= \[0, 3\]: need distinct"):
        vit.forward_modalities(x, [0, 3])
    with pytest.raises(SarevalError, match=r"modalities= \[1, 1\]: need distinct"):
        vit.forward_modalities(x, [1, 1])
    with pytest.raises(SarevalError, match="not a multiple of patch_size"):
        MultimodalViT(GROUPS, K, image_size=30, patch_size=8)
    with pytest.raises(SarevalError, match=r"modality_channels=.*channel 1 is in"):
        MultimodalViT([[0, 1], [1]], K, image_size=SIZE, patch_size=PATCH)
    with pytest.raises(SarevalError, match="heads="):
        MultimodalViT(GROUPS, K, image_size=SIZE, patch_size=PATCH, dim=30, heads=4)


@pytest.mark.slow
def test_vit_onnx_export_one_graph_with_mask_input() -> None:
    import onnx
    import onnxruntime as ort

    from sareval.exporter_output import quiet_exporter

    vit = make_vit()
    x = torch.randn(3, N_CHANNELS, SIZE, SIZE)
    present = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    batch = torch.export.Dim("batch", min=1)
    with quiet_exporter():
        program = torch.onnx.export(
            vit,
            (x, present),
            dynamo=True,
            input_names=["input", "present"],
            output_names=["logits"],
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=18,
            external_data=False,
        )
    assert program is not None
    proto = program.model_proto
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input", "present"]
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    # another batch size than the export's, every coalition and the empty row in one call
    x5 = torch.randn(2, N_CHANNELS, SIZE, SIZE)
    xs, masks, _ = stacked(x5, 3)
    xs = torch.cat([xs, x5[:1]])
    masks = torch.cat([masks, torch.zeros(1, 3, dtype=torch.bool)])
    (got,) = session.run(None, {"input": xs.numpy(), "present": masks.numpy()})
    with torch.no_grad():
        want = vit(xs, masks).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


# --- wavelength-conditioned: omit ---------------------------------------------------------------
BANDS = ("VV", "VH", "B02", "B04", "B08", "B11")


def make_wavelength_model() -> WavelengthViT:
    torch.manual_seed(4)
    model = WavelengthViT(K, image_size=SIZE, patch_size=PATCH, dim=DIM, depth=DEPTH, heads=HEADS)
    return model.eval()


def test_central_wavelengths_table() -> None:
    assert central_wavelengths(["B02", "B8A", "VV", "VH"]) == (0.49, 0.865, 3.75, 3.75)
    s2 = central_wavelengths(S2_BANDS)  # ESA's band numbering follows wavelength
    assert len(s2) == 13 and all(a < b for a, b in itertools.pairwise(s2))
    assert set(S2_WAVELENGTH_UM) == set(S2_BANDS)
    with pytest.raises(SarevalError, match=r"bands= \['B13'\] have no central wavelength"):
        central_wavelengths(["B02", "B13"])


def test_wavelength_model_is_invariant_to_channel_order() -> None:
    model = make_wavelength_model()
    x = torch.randn(3, len(BANDS), SIZE, SIZE)
    waves = torch.tensor(central_wavelengths(BANDS))
    perm = torch.tensor([4, 2, 5, 0, 3, 1])
    with torch.no_grad():
        out = model(x, waves)
        torch.testing.assert_close(model(x, list(central_wavelengths(BANDS))), out)
        torch.testing.assert_close(model(x[:, perm], waves[perm]), out, atol=1e-5, rtol=0)
        # permuting the channels alone (wavelengths kept) is another input
        assert not torch.allclose(model(x[:, perm], waves), out, atol=1e-3)


def test_wavelength_model_depends_on_channels_given() -> None:
    model = make_wavelength_model()
    x = torch.randn(2, len(BANDS), SIZE, SIZE)
    waves = torch.tensor(central_wavelengths(BANDS))
    with torch.no_grad():
        both = model(x, waves)
        opt_only = model(x[:, 2:], waves[2:])  # omit SAR: S2 channels and their wavelengths
        sar_only = model(x[:, :2], waves[:2])
        zero_sar = model(torch.cat([torch.zeros_like(x[:, :2]), x[:, 2:]], 1), waves)
    for a, b in [(both, opt_only), (both, sar_only), (opt_only, sar_only)]:
        assert not torch.allclose(a, b, atol=1e-2)
    # omit != fill: zero SAR pixels add nothing to the conv, but the SAR wavelengths still shape
    # the generated weights of the optical channels (small with random weights; rounding ~1e-7)
    assert (opt_only - zero_sar).abs().max() > 1e-5
    # the wavelengths condition the embedding: same pixels, other wavelengths, other output
    with torch.no_grad():
        assert not torch.allclose(model(x[:, 2:], waves[2:] + 0.1), opt_only, atol=1e-2)


def test_wavelength_model_runs_on_any_subset_of_bands() -> None:
    model = make_wavelength_model()
    x = torch.randn(2, len(BANDS), SIZE, SIZE)
    waves = torch.tensor(central_wavelengths(BANDS))
    outs = []
    with torch.no_grad():
        for r in range(1, len(BANDS) + 1):
            for s in itertools.combinations(range(len(BANDS)), r):
                idx = torch.tensor(s)
                out = model(x[:, idx], waves[idx])
                assert out.shape == (2, K) and torch.isfinite(out).all()
                torch.testing.assert_close(
                    model(x[:1, idx], waves[idx]), out[:1], atol=1e-5, rtol=0
                )
                outs.append(out)
    assert len(outs) == 2 ** len(BANDS) - 1


def test_wavelength_model_bad_input() -> None:
    model = make_wavelength_model()
    x = torch.randn(2, 3, SIZE, SIZE)
    with pytest.raises(SarevalError, match=r"^wavelengths: expected \(3,\)"):
        model(x, torch.tensor([0.49, 0.56]))
    with pytest.raises(SarevalError, match=r"^x: expected \(B, C' >= 1, 32, 32\)"):
        model(x[:, :0], torch.zeros(0))
    with pytest.raises(SarevalError, match=r"^x: expected"):
        model(x[..., :16], torch.tensor([0.49, 0.56, 0.665]))


# --- two-branch late fusion: omit ---------------------------------------------------------------
@pytest.fixture(scope="module")
def two_branch() -> TwoBranchFusion:
    torch.manual_seed(5)
    return build_two_branch(2, 4, K, depth=18).eval()


def _forbid(model: TwoBranchFusion, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError(f"branch {name} was run")

    monkeypatch.setattr(model.branches[name], "forward_features", fail)


def _head(model: TwoBranchFusion, feats: torch.Tensor) -> torch.Tensor:
    return F.linear(feats, model.head.weight, model.head.bias)


def test_two_branch_one_branch_is_that_branch_alone(
    two_branch: TwoBranchFusion, monkeypatch: pytest.MonkeyPatch
) -> None:
    s1, s2 = torch.randn(3, 2, SIZE, SIZE), torch.randn(3, 4, SIZE, SIZE)
    with torch.no_grad():
        f1 = two_branch.branches["s1"].forward_features(s1)
        f2 = two_branch.branches["s2"].forward_features(s2)
        want1, want2 = _head(two_branch, f1), _head(two_branch, f2)
        with monkeypatch.context() as mp:
            _forbid(two_branch, "s2", mp)
            torch.testing.assert_close(two_branch(s1, None), want1, atol=1e-6, rtol=0)
            torch.testing.assert_close(two_branch({"s1": s1}), want1, atol=1e-6, rtol=0)
        with monkeypatch.context() as mp:
            _forbid(two_branch, "s1", mp)
            torch.testing.assert_close(two_branch(None, s2), want2, atol=1e-6, rtol=0)
            torch.testing.assert_close(two_branch(s2=s2), want2, atol=1e-6, rtol=0)
            torch.testing.assert_close(two_branch({"s2": s2}), want2, atol=1e-6, rtol=0)
        both = _head(two_branch, (f1 + f2) / 2)
        torch.testing.assert_close(two_branch(s1, s2), both, atol=1e-5, rtol=0)
        torch.testing.assert_close(two_branch({"s2": s2, "s1": s1}), both, atol=1e-5, rtol=0)
    assert not torch.allclose(both, want1, atol=1e-4)


def test_two_branch_state_dict_and_bad_input(two_branch: TwoBranchFusion) -> None:
    keys = list(two_branch.state_dict())
    assert keys[-2:] == ["head.weight", "head.bias"]
    assert {k.split(".")[:2][1] for k in keys[:-2]} == {"s1", "s2"}
    assert "branches.s1.conv1.weight" in keys and "branches.s2.encoder.0.weight" in keys
    assert two_branch.state_dict()["branches.s2.conv1.weight"].shape[1] == 4
    s1 = torch.randn(1, 2, SIZE, SIZE)
    with pytest.raises(SarevalError, match="both absent"):
        two_branch(None, None)
    with pytest.raises(SarevalError, match="both absent"):
        two_branch({})
    with pytest.raises(SarevalError, match=r"unknown inputs \['sar'\]"):
        two_branch({"s1": s1, "sar": s1})
    with pytest.raises(SarevalError, match="dict alone"):
        two_branch({"s1": s1}, s1)
    with pytest.raises(SarevalError, match="depth= 20"):
        build_two_branch(2, 4, K, depth=20)
    with pytest.raises(SarevalError, match="equal feature_dim"):
        TwoBranchFusion(two_branch.branches["s1"], torch.nn.Linear(2, 2), K)


def test_two_branch_called_as_its_card_says(two_branch: TwoBranchFusion) -> None:
    card = ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04", "B08"]},
        task="single-label",
        class_names=[f"c{k}" for k in range(K)],
        input_size=SIZE,
        inputs={"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04", "B08"]},
        call="dict",
        absence=TwoBranchFusion.absence,
    )
    assert card.absence == ("fill", "omit", "marginal") and card.input_names == ("s1", "s2")
    x = torch.randn(2, card.n_channels, SIZE, SIZE)
    inputs = {name: x[:, sl] for name, sl in card.input_slices()}
    with torch.no_grad():
        torch.testing.assert_close(two_branch(inputs), two_branch(x[:, :2], x[:, 2:]))
        # omit opt: the dict without the key of the input that holds opt's bands
        torch.testing.assert_close(two_branch({"s1": inputs["s1"]}), two_branch(x[:, :2]))
