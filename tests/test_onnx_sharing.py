"""The shared first conv of the composed ONNX graph equals the unshared graph (onnxruntime)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from shape_testing import get_assets

import sareval
from sareval.errors import SarevalError
from sareval.evaluator.backends import OnnxRuntimeBackend, load_model
from sareval.evaluator.onnx_sharing import NETWORK_INPUT, share_first_conv
from sareval.evaluator.preamble import build_preamble, compose_onnx
from sareval.models.registry import build_model
from sareval.store import Store

TASK = "single-label"
GROUPS = {"sar": ["VV", "VH"], "rgb": ["B02", "B03", "B04"], "re": ["B05", "B06", "B07"],
          "nir": ["B08", "B8A"], "swir": ["B11", "B12"]}  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def _resnet(card) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("resnet18", card.n_channels, len(card.class_names))
    for m in net.modules():  # non-trivial BatchNorm statistics: the folded BN must matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def _graphs(assets, net, baseline: str):
    from sareval.evaluator.backends import _module_to_onnx

    card = assets.cards[TASK]
    with Store(assets.store) as st:
        sub = st.subset("clear")
        raw = st.read_batch(sub, 0, len(sub)).arrays
        bands = {s: st.bands(s) for s in ("s1", "s2")}
        means = {b: float(m) for s in ("s1", "s2")
                 for b, m in zip(bands[s], st.band_mean(s, sub.rows), strict=True)}  # fmt: skip
    pre = build_preamble(card, bands, baseline=baseline, band_means=means)
    size = next(iter(raw.values())).shape[2:]
    model = _module_to_onnx(load_model(net, card=card), size)
    dtypes = {s: a.dtype for s, a in raw.items()}
    composed = compose_onnx(pre, model, input_dtypes=dtypes, image_size=size)
    return pre, raw, composed, share_first_conv(composed, pre)


@pytest.mark.parametrize("baseline", ["input-zero", "raw-zero", "band-mean"])
@pytest.mark.parametrize("arch", ["resnet18", "tiny"])
def test_shared_graph_equals_unshared(assets, arch: str, baseline: str) -> None:
    from shape_testing import tiny_net

    net = _resnet(assets.cards[TASK]) if arch == "resnet18" else tiny_net()
    pre, raw, plain, shared = _graphs(assets, net, baseline)
    assert shared is not None
    # the (n_coal * B, C, H, W) coalition input is gone: nothing builds it any more
    assert NETWORK_INPUT not in {o for n in shared.graph.node for o in n.output}
    assert NETWORK_INPUT in {o for n in plain.graph.node for o in n.output}
    a, b = OnnxRuntimeBackend(plain, threads=1), OnnxRuntimeBackend(shared, threads=1)
    want, got = a.run(raw), b.run(raw)
    assert got.shape == want.shape == (pre.n_coalitions, len(raw["s1"]), want.shape[-1])
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
    # mask overrides: one coalition at a time, and the empty coalition on one row
    for k in range(pre.n_coalitions):
        np.testing.assert_allclose(b.run(raw, pre.masks[k : k + 1]), want[k : k + 1],
                                   rtol=0, atol=1e-5 * scale)  # fmt: skip
    one = {s: x[:1] for s, x in raw.items()}
    np.testing.assert_allclose(b.run(one, pre.empty_mask()), a.run(one, pre.empty_mask()),
                               rtol=0, atol=1e-5 * scale)  # fmt: skip


def test_split_player_mask_is_refused(assets) -> None:
    from shape_testing import tiny_net

    pre, raw, _, shared = _graphs(assets, tiny_net(), "input-zero")
    assert shared is not None
    backend = OnnxRuntimeBackend(shared, groups=pre.channel_groups)
    split = np.zeros((1, pre.n_channels), bool)
    split[0, pre.channel_groups[1][0]] = True  # one optical band without the others
    with pytest.raises(SarevalError, match="splits a player"):
        backend.run(raw, split)


def test_graph_without_a_first_conv_is_not_shared(assets) -> None:
    card = assets.cards[TASK]
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * card.n_channels, len(card.class_names)),
    )  # fmt: skip
    _, _, _, shared = _graphs(assets, net.eval(), "input-zero")
    assert shared is None
    docs = {}
    for share in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            docs[share] = sareval.evaluate(net, (assets.store, "clear"), card=card,
                                           backend="onnxruntime", share=share)  # fmt: skip
        assert any("share=True" in str(w.message) for w in caught) == share
    assert docs[True].doc["config"]["share"] == "unshared"
    assert docs[True].counts == docs[False].counts


@pytest.mark.parametrize(
    "kw",
    [{}, {"players": GROUPS, "estimator": "exact"}, {"players": GROUPS, "estimator": "sampled",
     "samples": 8}, {"players": GROUPS, "max_rows": 7}],
    ids=["modalities", "band-groups", "sampled", "chunked"],
)  # fmt: skip
def test_evaluate_counts_identical_with_and_without_sharing(assets, kw) -> None:
    """The model file as users pass it: identical counts, the shared kind recorded."""
    path = assets.onnx[TASK]
    docs = {s: sareval.evaluate(path, (assets.store, "clear"), batch_size=5, share=s, **kw)
            for s in (False, True)}  # fmt: skip
    assert docs[True].doc["config"]["share"] == "first-conv"
    assert docs[False].doc["config"]["share"] is None
    assert docs[True].counts == docs[False].counts
    assert docs[True].coalitions == docs[False].coalitions
