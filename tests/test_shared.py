"""Shared computation across coalitions equals the unshared coalition graph."""

from __future__ import annotations

import warnings

import pytest
import torch
from shape_testing import get_assets

import sareval
from sareval.errors import SarevalError
from sareval.evaluator.preamble import build_preamble, coalition_module
from sareval.evaluator.sharing import shared_module
from sareval.models.registry import build_model
from sareval.store import Store


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def _net(card, arch: str, fusion: str) -> torch.nn.Module:
    torch.manual_seed(0)
    groups = [card.channel_indices(m) for m in card.modality_names]
    net = build_model(arch, card.n_channels, len(card.class_names), fusion=fusion,
                      modality_channels=groups if fusion == "late" else None)  # fmt: skip
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _raw(assets):
    with Store(assets.store) as st:
        sub = st.subset("clear")
        raw = st.read_batch(sub, 0, len(sub)).arrays
        bands = {s: st.bands(s) for s in ("s1", "s2")}
    return {s: torch.from_numpy(a) for s, a in raw.items()}, bands


@pytest.mark.parametrize(
    ("arch", "fusion", "kind"),
    [("resnet18", "late", "late-fusion"), ("resnet18", "early", "first-conv")],
)  # fmt: skip
@pytest.mark.parametrize("baseline", ["input-zero", "raw-zero"])
def test_shared_outputs_equal_unshared(assets, arch: str, fusion: str, kind: str,
                                       baseline: str) -> None:  # fmt: skip
    card = assets.cards["single-label"]
    raw, bands = _raw(assets)
    pre = build_preamble(card, bands, baseline=baseline)
    net = _net(card, arch, fusion)
    shared = shared_module(pre, net)
    assert shared is not None and shared.kind == kind
    plain = coalition_module(pre, net)
    with torch.inference_mode():
        want, got = plain(raw), shared(raw)
        again = shared(raw)  # cached baseline terms
        # an override mask splitting a player falls back to the unshared graph
        split = torch.zeros(1, card.n_channels, dtype=torch.bool)
        split[0, 0] = True
        fallback, direct = shared(raw, split), plain(raw, split)
    assert got.shape == want.shape
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * max(1.0, scale))
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    torch.testing.assert_close(fallback, direct, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet50", "densenet121", "vgg16", "vgg16-tv"])
def test_first_conv_found_in_every_architecture(assets, arch: str) -> None:
    card = assets.cards["single-label"]
    _, bands = _raw(assets)
    pre = build_preamble(card, bands)
    net = build_model(arch, card.n_channels, len(card.class_names))
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    shared = shared_module(pre, net)
    assert shared is not None and shared.kind == "first-conv"
    assert shared.parts["conv"] is conv
    rest_convs = [m for m in shared.parts["rest"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv not in rest_convs  # the rest of the network starts after the first conv


def test_unknown_network_is_not_shared(assets) -> None:
    card = assets.cards["single-label"]
    _, bands = _raw(assets)
    pre = build_preamble(card, bands)
    net = torch.nn.Sequential(torch.nn.Conv2d(card.n_channels, 4, 3), torch.nn.Flatten())
    assert shared_module(pre, net) is None


@pytest.mark.parametrize("fusion", ["late", "early"])
def test_evaluate_counts_identical_with_and_without_sharing(assets, fusion: str) -> None:
    card = assets.cards["single-label"]
    net = _net(card, "resnet18", fusion)
    docs = {}
    for share in (False, True):
        cfg = sareval.ShapeConfig(backend="torch", share=share, batch_size=5)
        docs[share] = sareval.evaluate(net, (assets.store, "clear"), cfg, card=card)
    kind = "late-fusion" if fusion == "late" else "first-conv"
    assert docs[True].doc["config"]["share"] == kind
    assert docs[False].doc["config"]["share"] is None
    assert docs[True].counts == docs[False].counts
    assert docs[True].relevance == docs[False].relevance


def test_share_true_falls_back_on_an_unknown_network(assets) -> None:
    card = assets.cards["single-label"]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(card.n_channels, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, len(card.class_names)),
    )
    docs = {}
    for share in (False, True):
        cfg = sareval.ShapeConfig(backend="torch", share=share)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            docs[share] = sareval.evaluate(net, (assets.store, "clear"), cfg, card=card)
        assert any("share=True" in str(w.message) for w in caught) == share
    assert docs[True].doc["config"]["share"] == "unshared"
    assert docs[True].counts == docs[False].counts


def test_share_is_validated() -> None:
    with pytest.raises(SarevalError, match=r"ShapeConfig\.execution\.share"):
        sareval.ShapeConfig(share="yes")  # type: ignore[arg-type]
