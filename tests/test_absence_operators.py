"""Absence operators as backends (sareval.evaluator.absence), each against a naive loop that
normalises by hand (explicit clip / z-score below) and calls the model once per coalition:

- ``mask`` (MultimodalViT): one batched call equals the tokens of the absent modalities removed;
- ``omit`` (WavelengthViT with band groups as players; TwoBranchFusion, positional and dict);
- ``marginal`` (a small conv classifier; a two-branch dict card): the donors drawn are the
  documented ``default_rng([seed, position])`` draws, whatever the chunking of coalitions;
- the donor pool: the seeded positions of the data, read once;
- refusals: an operator the card does not list, a one-sample donor pool, a model that ignores
  its mask, an omit model that fails with an input left out.
V(S) is compared as sklearn confusion matrices of the decisions (identical) and outputs to
float rounding (1e-5 of the largest logit).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from torch import nn

from sareval.bands import S1_BANDS, S2_BANDS
from sareval.card import ModelCard
from sareval.errors import SarevalError
from sareval.evaluator.absence import (
    MarginalAbsenceBackend,
    MaskAbsenceBackend,
    OmitAbsenceBackend,
    check_absence,
    check_mask_used,
    make_absence_backend,
    read_donors,
)
from sareval.evaluator.config import FLAT_FIELDS, Game, ShapeConfig
from sareval.evaluator.preamble import Preamble, build_preamble
from sareval.evaluator.sources import ArrayData
from sareval.models.two_branch import build_two_branch
from sareval.models.vit import MultimodalViT, vit_for_card
from sareval.models.wavelength import WavelengthViT

SIZE, B, K = 32, 4, 5
CLASSES = [f"c{i}" for i in range(K)]
STORE_BANDS = {"s1": S1_BANDS, "s2": S2_BANDS}
#: band -> (clip low, clip high, mean, std), applied by hand in :func:`by_hand`
NORM = {
    "VV": (-25.0, 0.0, -11.0, 4.5),
    "VH": (-32.0, -5.0, -18.0, 5.0),
    "B02": (0.0, 10000.0, 1200.0, 800.0),
    "B03": (0.0, 10000.0, 1100.0, 700.0),
    "B04": (0.0, 10000.0, 1000.0, 900.0),
    "B08": (0.0, 10000.0, 2500.0, 1100.0),
}
SAR, OPT = ["VV", "VH"], ["B02", "B03", "B04", "B08"]


def card_for(modalities: dict[str, list[str]], absence: list[str], **kwargs: object) -> ModelCard:
    norm = {b: {"clip": [lo, hi], "mean": m, "std": s} for b, (lo, hi, m, s) in NORM.items()}
    return ModelCard.custom(modalities, task="single-label", class_names=CLASSES,
                            input_size=SIZE, normalization=norm, absence=absence,
                            **kwargs)  # type: ignore[arg-type]  # fmt: skip


def raw_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    """Store-like raw arrays: S1 float32 dB (some beyond the clip), S2 uint16 DN."""
    rng = np.random.default_rng(seed)
    return {
        "s1": rng.normal(-14.0, 8.0, (n, 2, SIZE, SIZE)).astype(np.float32),
        "s2": rng.integers(0, 12000, (n, len(S2_BANDS), SIZE, SIZE)).astype(np.uint16),
    }


def by_hand(raw: dict[str, np.ndarray], channels: tuple[str, ...]) -> np.ndarray:
    """(B, C, H, W) float32: per band ``(clip(raw, lo, hi) - mean) / std``."""
    out = []
    for band in channels:
        sensor = "s1" if band in S1_BANDS else "s2"
        v = raw[sensor][:, STORE_BANDS[sensor].index(band)].astype(np.float32)
        lo, hi, mean, std = (np.float32(t) for t in NORM[band])
        out.append((np.clip(v, lo, hi) - mean) / std)
    return np.stack(out, 1).astype(np.float32)


def counts(outputs: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """V(S) statistics: the confusion matrix of each coalition's argmax decisions."""
    return [confusion_matrix(y, o.argmax(-1), labels=range(K)) for o in outputs]


def close(want: np.ndarray) -> float:
    """Float rounding of outputs of magnitude up to max |want| (batched kernels differ)."""
    return 1e-5 * max(1.0, float(np.abs(want).max()))


def assert_same_game(got: np.ndarray, want: np.ndarray, y: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=close(want))
    for a, b in zip(counts(got, y), counts(want, y), strict=True):
        np.testing.assert_array_equal(a, b)


def members(coalition: frozenset[str], card: ModelCard) -> list[int]:
    """Card channel indices of the players of ``coalition``."""
    return sorted(i for p in coalition for i in card.channel_indices(p))


# --- the game's field ---------------------------------------------------------------------------
def test_absence_is_a_validated_recorded_game_field() -> None:
    assert Game().absence == "fill" and FLAT_FIELDS["absence"] == ("game", "absence")
    config = ShapeConfig(absence="omit")
    assert config.game == Game(absence="omit") and config.to_record()["absence"] == "omit"
    with pytest.raises(SarevalError, match=r"ShapeConfig\.game\.absence: 'drop' is not one of"):
        ShapeConfig(absence="drop")
    with pytest.raises(SarevalError, match=r"ShapeConfig\.game\.baseline: 'raw-zero' applies"):
        Game(absence="mask", baseline="raw-zero")


# --- mask ---------------------------------------------------------------------------------------
def vit_setup() -> tuple[ModelCard, Preamble, MultimodalViT]:
    # channels interleaved across modalities, and in another order than the store's
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "mask", "marginal"],
                    channels=["B04", "VV", "B03", "B02", "VH", "B08"])  # fmt: skip
    torch.manual_seed(0)
    vit = vit_for_card(card, patch_size=8, dim=32, depth=2, heads=4).eval()
    return card, build_preamble(card, STORE_BANDS), vit


def test_mask_backend_is_one_call_equal_to_token_removal() -> None:
    card, pre, vit = vit_setup()
    raw = raw_batch(B, 1)
    y = np.random.default_rng(2).integers(0, K, B)
    calls = []
    vit.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    backend = MaskAbsenceBackend(vit, pre, card)
    got = backend.run(raw)
    assert calls == [pre.n_coalitions * B]  # every coalition in ONE execution
    x = torch.from_numpy(by_hand(raw, card.channels))
    names = card.modality_names
    with torch.no_grad():
        want = np.stack([vit.forward_modalities(x, [names.index(p) for p in names if p in co])
                         .numpy() for co in pre.coalitions])  # fmt: skip
    assert_same_game(got, want, y)
    assert not np.allclose(got[0], got[-1], atol=1e-3)  # the coalitions differ
    # chunks of coalitions (the runner's max_rows) and the empty coalition
    np.testing.assert_allclose(
        np.concatenate([backend.run(raw, pre.masks[:1]), backend.run(raw, pre.masks[1:])]),
        got, rtol=0, atol=1e-5,
    )  # fmt: skip
    one = {s: np.zeros((1, *a.shape[1:]), a.dtype) for s, a in raw.items()}
    empty = backend.run(one, pre.empty_mask())
    with torch.no_grad():
        no_tokens = vit.forward_modalities(torch.zeros(1, 6, SIZE, SIZE), []).numpy()
    assert empty.shape == (1, 1, K) and np.isfinite(empty).all()
    np.testing.assert_allclose(empty[0], no_tokens, rtol=0, atol=1e-5)
    check_mask_used(backend, raw)  # the ViT uses its mask: no error


def test_a_model_that_ignores_its_mask_is_refused() -> None:
    card, pre, vit = vit_setup()

    class Ignores(nn.Module):
        def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
            return vit(x)

    backend = MaskAbsenceBackend(Ignores(), pre, card)
    with pytest.raises(SarevalError, match="outputs do not change with its mask input"):
        check_mask_used(backend, raw_batch(B, 3))


# --- omit ---------------------------------------------------------------------------------------
WAVELENGTH = {"VV": 3.75, "VH": 3.75, "B02": 0.490, "B03": 0.560, "B04": 0.665, "B08": 0.842}


def test_omit_wavelength_model_with_band_groups_as_players() -> None:
    players = {"sar": SAR, "rgb": ["B02", "B03", "B04"], "nir": ["B08"]}
    card = card_for(players, ["fill", "omit", "marginal"],
                    channels=["B02", "VH", "B03", "B08", "B04", "VV"])  # fmt: skip
    pre = build_preamble(card, STORE_BANDS)
    torch.manual_seed(0)
    model = WavelengthViT(K, image_size=SIZE, patch_size=8, dim=32, depth=1, heads=4,
                          wv_dim=16, n_weight_tokens=4).eval()  # fmt: skip
    raw, y = raw_batch(B, 4), np.random.default_rng(5).integers(0, K, B)
    backend = make_absence_backend("omit", model, pre, card)
    assert isinstance(backend, OmitAbsenceBackend) and backend.calls_per_batch == 7
    got = backend.run(raw)
    x = by_hand(raw, card.channels)
    want = []
    for co in pre.coalitions:
        idx = members(co, card)  # the present bands, in card order
        wl = torch.tensor([WAVELENGTH[card.channels[i]] for i in idx])
        with torch.no_grad():
            want.append(model(torch.from_numpy(x[:, idx]), wl).numpy())
    assert_same_game(got, np.stack(want), y)
    # the empty coalition gives the model no band: it refuses, and the message says so
    one = {s: a[:1] for s, a in raw.items()}
    with pytest.raises(SarevalError, match=r"band\(s\) B02, VH, B03, B08, B04, VV left out "
                       r"\(coalition none\): SarevalError: x: expected.*'majority'"):  # fmt: skip
        backend.run(one, pre.empty_mask())


@pytest.mark.parametrize("call", ["positional", "dict"])
def test_omit_two_branch_model(call: str) -> None:
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "omit", "marginal"],
                    inputs={"s1": SAR, "s2": OPT}, call=call)  # fmt: skip
    pre = build_preamble(card, STORE_BANDS)
    torch.manual_seed(0)
    model = build_two_branch(2, 4, K).eval()
    raw, y = raw_batch(B, 6), np.random.default_rng(7).integers(0, K, B)
    got = make_absence_backend("omit", model, pre, card).run(raw)  # type: ignore[union-attr]
    x = torch.from_numpy(by_hand(raw, card.channels))
    s1, s2 = x[:, :2], x[:, 2:]
    given = {frozenset({"sar"}): {"s1": s1}, frozenset({"opt"}): {"s2": s2},
             frozenset({"sar", "opt"}): {"s1": s1, "s2": s2}}  # fmt: skip
    with torch.no_grad():
        want = np.stack([
            (model(given[co]) if call == "dict"
             else model(given[co].get("s1"), given[co].get("s2"))).numpy()
            for co in pre.coalitions
        ])  # fmt: skip
    assert_same_game(got, want, y)
    backend = OmitAbsenceBackend(model, pre, card)
    with pytest.raises(SarevalError, match=r"input\(s\) s1, s2 left out \(coalition none\).*"
                       r"both absent.*empty_coalition 'majority'"):  # fmt: skip
        backend.run({s: a[:1] for s, a in raw.items()}, pre.empty_mask())


def test_omit_model_failing_without_an_input_names_it_and_the_coalition() -> None:
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "omit"], inputs={"s1": SAR, "s2": OPT})

    class NeedsBoth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(6, K)

        def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([s1, s2], 1).mean((2, 3)))

    backend = OmitAbsenceBackend(NeedsBoth(), build_preamble(card, STORE_BANDS), card)
    with pytest.raises(SarevalError, match=r"input\(s\) s2 left out \(coalition sar\): TypeError"):
        backend.run(raw_batch(2, 0))


# --- marginal -----------------------------------------------------------------------------------
def test_marginal_draws_documented_donors_whatever_the_chunks() -> None:
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "marginal"],
                    channels=["VV", "B02", "VH", "B03", "B04", "B08"])  # fmt: skip
    pre = build_preamble(card, STORE_BANDS)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(6, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, K)).eval()  # fmt: skip
    pool, draws, seed = 5, 3, 11
    donors, raw = raw_batch(pool, 8), raw_batch(B, 9)
    positions = np.arange(20, 20 + B)
    y = np.random.default_rng(10).integers(0, K, B)
    backend = make_absence_backend("marginal", net, pre, card, donors=donors, draws=draws,
                                   seed=seed)  # fmt: skip
    assert isinstance(backend, MarginalAbsenceBackend)
    assert backend.record == {"draws": draws, "pool": pool, "seed": seed}
    got = backend.run(raw, positions=positions)
    assert got.shape == (pre.n_coalitions, draws * B, K)
    # by hand: sample b's donors are default_rng([seed, position]).integers(0, pool, draws)
    x, d = by_hand(raw, card.channels), by_hand(donors, card.channels)
    rows = np.array(
        [np.random.default_rng([seed, int(p)]).integers(0, pool, draws) for p in positions]
    )
    assert len(set(rows.ravel())) > 1
    want = np.empty_like(got)
    for k, co in enumerate(pre.coalitions):
        on = np.isin(np.arange(6), members(co, card))
        for j in range(draws):
            for b in range(B):
                filled = np.where(on[:, None, None], x[b], d[rows[b, j]])
                with torch.no_grad():
                    want[k, j * B + b] = net(torch.from_numpy(filled[None]))[0].numpy()
    assert_same_game(got, want, np.tile(y, draws))
    # the donors depend on the positions, not on how the coalitions are chunked
    parts = [backend.run(raw, pre.masks[i : i + 1], positions=positions) for i in range(3)]
    np.testing.assert_allclose(np.concatenate(parts), got, rtol=0, atol=1e-5)
    # half a batch at its positions: the same rows
    half = backend.run({s: a[2:] for s, a in raw.items()}, positions=positions[2:])
    np.testing.assert_allclose(half, got.reshape(3, draws, B, K)[:, :, 2:].reshape(3, -1, K),
                               rtol=0, atol=1e-5)  # fmt: skip
    # the empty coalition: every channel from the donors
    empty = backend.run(raw, pre.empty_mask(), positions=positions)
    with torch.no_grad():
        want0 = net(torch.from_numpy(d[rows[:, 0]])).numpy()
    np.testing.assert_allclose(empty[0, :B], want0, rtol=0, atol=1e-5)


def test_marginal_on_a_dict_input_model_splits_inputs_like_the_fill_graph() -> None:
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "omit", "marginal"],
                    inputs={"s1": SAR, "s2": OPT}, call="dict")  # fmt: skip
    pre = build_preamble(card, STORE_BANDS)
    torch.manual_seed(1)
    model = build_two_branch(2, 4, K).eval()
    donors, raw = raw_batch(3, 12), raw_batch(2, 13)
    k = pre.coalitions.index(frozenset({"opt"}))  # SAR from the donors
    backend = MarginalAbsenceBackend(model, pre, card, donors=donors, draws=2, seed=0)
    got = backend.run(raw, pre.masks[k : k + 1])[0]
    x, d = by_hand(raw, card.channels), by_hand(donors, card.channels)
    rows = np.array([np.random.default_rng([0, p]).integers(0, 3, 2) for p in range(2)])
    for j in range(2):
        for b in range(2):
            s1 = torch.from_numpy(d[rows[b, j], None, :2])
            s2 = torch.from_numpy(x[b, None, 2:])
            with torch.no_grad():
                want = model({"s1": s1, "s2": s2})[0].numpy()
            np.testing.assert_allclose(got[j * 2 + b], want, rtol=0, atol=close(want))


# --- refusals -----------------------------------------------------------------------------------
def test_refusals() -> None:
    plain = card_for({"sar": SAR, "opt": OPT}, ["fill", "marginal"])
    with pytest.raises(SarevalError, match=r"ShapeConfig\.game\.absence: 'mask' is not supported "
                       r"by the model \(its card's absence: fill, marginal\)"):  # fmt: skip
        check_absence("mask", plain)
    pre = build_preamble(plain, STORE_BANDS)
    net = nn.Sequential(nn.Flatten(), nn.LazyLinear(K))
    with pytest.raises(SarevalError, match=r"donor pool has 1 sample\(s\).*at least 2"):
        make_absence_backend("marginal", net, pre, plain, donors=raw_batch(1, 0))
    assert make_absence_backend("fill", net, pre, plain) is None
    # omit: a player holding part of a model input; mask: players splitting a modality
    two = card_for({"sar": SAR, "opt": OPT}, ["fill", "omit"], inputs={"s1": SAR, "s2": OPT})
    with pytest.raises(SarevalError, match=r"'omit' leaves out whole model inputs, but input s2"):
        check_absence("omit", two, {"sar": SAR, "rgb": OPT[:3], "nir": OPT[3:]})
    vit_card = card_for({"sar": SAR, "opt": OPT}, ["fill", "mask"])
    with pytest.raises(SarevalError, match=r"'mask' takes whole modalities.*modality opt"):
        check_absence("mask", vit_card, {"sar": SAR, "rgb": OPT[:3], "nir": OPT[3:]})
    check_absence("mask", vit_card, {"all": SAR + OPT})  # players of whole modalities: fine
    # omit on a one-input model whose bands have no wavelength
    dem = ModelCard.custom({"dem": ["DEM"]}, task="single-label", class_names=CLASSES,
                           absence=["fill", "omit"])  # fmt: skip
    with pytest.raises(SarevalError, match=r"wavelengths of the bands present; .*DEM"):
        check_absence("omit", dem)


def test_read_donors_reads_the_seeded_positions_once() -> None:
    card = card_for({"sar": SAR, "opt": OPT}, ["fill", "marginal"])
    raw = raw_batch(9, 14)
    y = np.arange(9) % K
    data = ArrayData(raw, y, class_names=CLASSES)
    donors, positions = read_donors(data, data.labels_for(card), ["s1", "s2"], size=4, seed=3)
    want = np.sort(np.random.default_rng(3).choice(9, 4, replace=False))
    np.testing.assert_array_equal(positions, want)
    for s in ("s1", "s2"):
        np.testing.assert_array_equal(donors[s], raw[s][want])
    every, _ = read_donors(data, data.labels_for(card), ["s1"], size=100, seed=3)
    np.testing.assert_array_equal(every["s1"], raw["s1"])  # a pool larger than the data: all
    one = ArrayData({s: a[:1] for s, a in raw.items()}, y[:1], class_names=CLASSES)
    with pytest.raises(SarevalError, match=r"has 1 sample\(s\).*needs at least 2"):
        read_donors(one, one.labels_for(card), ["s1", "s2"])
