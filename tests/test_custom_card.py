"""Cards for your own models: ``ModelCard.custom`` and ``card.normalize``.

``card.normalize(x)`` must be exactly what the network receives inside ``sareval.evaluate``:
a module records its input, and the full coalition's rows are compared with ``normalize`` of
the same raw arrays (numpy and torch, with clipping, NaN filling and +-inf). Statistics
computed by ``custom`` are checked against numpy on the same pixels, and a store subset gives
the same statistics as its arrays read with h5py.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from shape_testing import write_store
from torch import nn

import sareval
from sareval.card import BandTransform, ModelCard
from sareval.errors import CardError, SarevalError
from sareval.evaluator.coalitions import all_coalitions

CLASSES = ("water", "forest", "urban")
S2 = ("B02", "B03", "B04", "B08")


class Recorder(nn.Module):
    """(B, C, H, W) -> (B, 3) scores; keeps every input it is called with. It refuses to be
    traced, so the torch backend runs it eagerly (a traced copy would record nothing)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.head = nn.Linear(c, len(CLASSES))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("a recorder runs eagerly")
        self.seen.append(x.detach().clone())
        return self.head(torch.nan_to_num(x).mean((2, 3)))


def raw_arrays(n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """S1 dB with NaN, +-inf and values beyond the clip range; S2 uint16 DN."""
    rng = np.random.default_rng(seed)
    s1 = rng.normal(-14, 8, size=(n, 2, 4, 4)).astype(np.float32)
    s1[0, 0, 0, 0] = np.nan
    s1[1, 1, 2, 3] = np.nan
    s1[2, 0, 1, 1] = np.inf
    s1[3, 1, 0, 0] = -np.inf
    s1[4, 0, 3, 3] = 40.0  # beyond clip [-25, 0]
    s2 = rng.integers(0, 9000, size=(n, len(S2), 4, 4)).astype(np.uint16)
    return {"s1": s1, "s2": s2}


def own_card(**kw: object) -> ModelCard:
    """S2 first (computed mean-std), then S1 with a given clip and NaN fill."""
    arrays = raw_arrays()
    args: dict = dict(
        task="single-label",
        class_names=CLASSES,
        input_size=4,
        channels=[*S2, "VH", "VV"],
        normalize_from={"opt": arrays["s2"]},
        normalization={
            "VV": {"nan": -30.0, "clip": [-25.0, 0.0], "mean": -11.5, "std": 4.25},
            "VH": BandTransform(nan=0.0, clip=(-30.0, -5.0), mean=-18.0, std=4.5),
        },
    )
    args.update(kw)
    return ModelCard.custom({"sar": ["VV", "VH"], "opt": list(S2)}, **args)  # type: ignore[arg-type]


def received(card: ModelCard, arrays: dict, y: np.ndarray) -> torch.Tensor:
    """The full coalition's network input inside sareval.evaluate (torch backend)."""
    net = Recorder(card.n_channels).eval()  # a module in training mode is run as a copy
    data = {**arrays, "label": y}
    bands = {"s1": ("VV", "VH"), "s2": S2}
    sareval.evaluate(net, data, card=card, bands=bands, batch_size=len(y), backend="torch")
    coalitions = [c for c in all_coalitions(card.modality_names) if c]
    k = coalitions.index(frozenset(card.modality_names))
    (batch,) = [x for x in net.seen if len(x) == len(coalitions) * len(y)]
    return batch[k * len(y) : (k + 1) * len(y)]


@pytest.mark.parametrize("as_torch", [False, True])
def test_normalize_is_what_the_model_receives(as_torch: bool) -> None:
    card = own_card()
    arrays = raw_arrays()
    y = np.arange(6) % 3
    given = {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}
    seen = received(card, given if as_torch else arrays, y)
    # the documented route: raw arrays by sensor, bands by name
    bands = {"s1": ("VV", "VH"), "s2": S2}
    out = card.normalize(given if as_torch else arrays, bands=bands)
    assert isinstance(out, torch.Tensor if as_torch else np.ndarray)
    got = out if as_torch else torch.from_numpy(out)
    assert got.dtype == torch.float32 and tuple(got.shape) == (6, 6, 4, 4)
    torch.testing.assert_close(got, seen, rtol=0, atol=0)
    # and a (B, C, H, W) array already in the card's channel order
    stacked = np.concatenate([arrays["s2"], arrays["s1"][:, ::-1]], 1).astype(np.float32)
    x = torch.from_numpy(stacked) if as_torch else stacked
    direct = card.normalize(x)
    torch.testing.assert_close(torch.as_tensor(np.asarray(direct)), seen, rtol=0, atol=0)
    one = card.normalize(x[2])
    torch.testing.assert_close(torch.as_tensor(np.asarray(one)), seen[2], rtol=0, atol=0)
    # the properties the card promises, from the raw values
    vv = seen[:, 5].numpy()
    assert np.isfinite(vv).all()  # NaN -> -30 -> clipped to -25; +inf clipped to 0
    assert vv.min() == pytest.approx((-25 + 11.5) / 4.25) and vv.max() <= (0 + 11.5) / 4.25 + 1e-6
    assert vv[0, 0, 0] == pytest.approx((-25 + 11.5) / 4.25)
    assert vv[4, 3, 3] == pytest.approx((0 + 11.5) / 4.25)
    assert seen[1, 4, 2, 3].item() == pytest.approx((-5.0 + 18.0) / 4.5)  # NaN -> 0 -> -5


def finite(a: np.ndarray) -> np.ndarray:
    x = a.astype(np.float64).ravel()
    return x[np.isfinite(x)]


def test_statistics_are_computed_as_stated_and_recorded() -> None:
    arrays = raw_arrays()
    s1, s2 = arrays["s1"], arrays["s2"]
    card = ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": list(S2)},
        task="multi-label",
        class_names=CLASSES,
        normalize_from={"sar": torch.from_numpy(s1), "B03": s2[:, 1]},  # by modality / by band
        nan=0.0,
    )
    assert set(card.normalization) == {"VV", "VH", "B03"}  # the other bands are fed raw
    for b, x in (("VV", s1[:, 0]), ("VH", s1[:, 1]), ("B03", s2[:, 1])):
        t = card.transform(b)
        v = finite(x)
        assert t.mean == pytest.approx(v.mean(), rel=1e-12)
        assert t.std == pytest.approx(v.std(), rel=1e-12)  # population std
        assert t.nan == 0.0 and t.clip is None
    rec = card.provenance["normalization"]
    assert rec["statistic"] == "mean-std" and "finite pixels" in rec["definition"]
    assert rec["finite_pixels"]["VV"] == s1[:, 0].size - 2  # one NaN, one +inf
    assert ModelCard.from_json(card.to_json()) == card  # a valid card, JSON round trip

    q = ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": list(S2)},
        task="single-label",
        class_names=CLASSES,
        normalize_from={"sar": s1, "opt": s2},
        statistic="percentiles",
        percentiles=(2, 98),
    )
    for i, b in enumerate(S2):
        lo, hi = np.percentile(finite(s2[:, i]), (2, 98))
        t = q.transform(b)
        assert t.clip == (lo, hi) and t.mean == lo and t.std == pytest.approx(hi - lo)
    assert q.provenance["normalization"]["percentiles"] == [2.0, 98.0]
    z = q.normalize({"s1": s1, "s2": s2}, bands={"s1": ("VV", "VH"), "s2": S2})
    assert np.nanmin(z) == 0.0 and np.nanmax(z) == pytest.approx(1.0)  # clipped, scaled to [0, 1]
    assert np.isnan(z[0, 0, 0, 0]) and np.isnan(z).sum() == 2  # no nan fill given: NaN stays


def test_statistics_from_a_store_subset_equal_its_arrays(tmp_path: Path) -> None:
    path = write_store(tmp_path / "s.h5", n=20, h=4, w=4)
    with sareval.open_store(path) as st:
        sub = st.subset("cloudy")
        rows = sub.subset.rows
        with h5py.File(path, "r") as f:  # the subset's raw values, read independently
            s1, s2 = f["s1"][rows], f["s2_cloudy"][rows]
        bands = {"sar": ["VV", "VH"], "opt": list(st.store.bands("s2")[1:5])}
        for statistic in ("mean-std", "percentiles"):
            from_store = ModelCard.custom(
                bands, task="single-label", class_names=CLASSES, normalize_from=sub,
                statistic=statistic,
            )  # fmt: skip
            from_arrays = ModelCard.custom(
                bands, task="single-label", class_names=CLASSES, statistic=statistic,
                normalize_from={"sar": s1, "opt": s2[:, 1:5]},
            )  # fmt: skip
            for b in from_arrays.channels:
                a, s = from_arrays.transform(b), from_store.transform(b)
                assert s.mean == pytest.approx(a.mean, rel=1e-9, abs=1e-9)
                assert s.std == pytest.approx(a.std, rel=1e-9)
                assert s.clip == a.clip
            rec = from_store.provenance["normalization"]
            assert "cloudy" in rec["source"] and rec["samples"] == len(rows) == 10
            assert rec["store_content_digest"] == st.store.content_digest


def test_bad_custom_cards_name_the_argument() -> None:
    s2 = raw_arrays()["s2"]
    bands = {"sar": ["VV", "VH"], "opt": list(S2)}
    kw: dict = dict(task="single-label", class_names=CLASSES)
    with pytest.raises(SarevalError, match=r"statistic: 'median' is not one of"):
        ModelCard.custom(bands, normalize_from={"opt": s2}, statistic="median", **kw)
    with pytest.raises(SarevalError, match=r"normalize_from\['dem'\]: 'dem' is neither"):
        ModelCard.custom(bands, normalize_from={"dem": s2}, **kw)
    with pytest.raises(SarevalError, match=r"normalize_from\['opt'\]: expected \(N, 4, H, W\)"):
        ModelCard.custom(bands, normalize_from={"opt": s2[:, :3]}, **kw)
    flat = np.full((3, 4, 4), 7.0)
    with pytest.raises(SarevalError, match=r"band 'VV' is constant \(7\)"):
        ModelCard.custom(bands, normalize_from={"VV": flat}, **kw)
    with pytest.raises(SarevalError, match=r"normalization: bands \['B99'\] are not input chan"):
        ModelCard.custom(bands, normalization={"B99": {"mean": 1, "std": 2}}, **kw)
    with pytest.raises(SarevalError, match=r"percentiles: \(50, 5\) is not"):
        ModelCard.custom(
            bands, normalize_from={"opt": s2}, statistic="percentiles", percentiles=(50, 5), **kw
        )
    # overlapping inputs name the band and both inputs
    with pytest.raises(CardError, match=r"band 'VH' is given twice \(input 's1' and input 's2'\)"):
        ModelCard.custom(bands, inputs={"s1": ["VV", "VH"], "s2": ["VH", *S2]}, **kw)
    with pytest.raises(CardError, match=r"input.channels: \"B03\" is given twice"):
        ModelCard.custom(bands, channels=["VV", "VH", *S2, "B03"], **kw)
    card = own_card()
    with pytest.raises(SarevalError, match=r"ModelCard.normalize: x has 5 channels, expected 6"):
        card.normalize(np.zeros((2, 5, 4, 4), np.float32))
    with pytest.raises(SarevalError, match=r"ModelCard.normalize: x must be \(B, C, H, W\)"):
        card.normalize(np.zeros((2, 6), np.float32))
    with pytest.raises(SarevalError, match=r"bands \['VV'\] are missing from the data"):
        card.normalize({"s2": s2, "x": np.zeros((6, 1, 4, 4))}, bands={"s2": S2, "x": ["VH"]})
    with pytest.raises(SarevalError, match=r"normalize: bands: name the channels of x\['s2'\]"):
        card.normalize({"s2": s2})  # 4 bands: not a standard S2 layout


def test_normalize_is_what_the_onnx_graph_computes(tmp_path: Path) -> None:
    """The onnxruntime route (the preamble as ONNX nodes) gives the same input: a network that
    returns its flattened input writes it to the predictions file."""
    arrays = {k: v[:, :, :2, :2].copy() for k, v in raw_arrays().items()}
    arrays["s1"][0, 0, 0, 0], arrays["s1"][1, 1, 1, 1] = np.nan, np.inf
    arrays["s1"][2, 0, 1, 0] = -np.inf
    names = [f"c{k}" for k in range(6 * 2 * 2)]
    card = own_card(class_names=names, input_size=2)
    y = np.arange(6) % len(names)
    p = tmp_path / "p.h5"
    bands = {"s1": ("VV", "VH"), "s2": S2}
    sareval.evaluate(
        nn.Flatten(), {**arrays, "label": y}, card=card, bands=bands, backend="onnxruntime",
        save_predictions=p,
    )  # fmt: skip
    with h5py.File(p, "r") as f:
        coalitions = json.loads(f.attrs["coalitions"])
        outputs = f["outputs"][coalitions.index("sar+opt")]
    expected = card.normalize(arrays, bands=bands)
    np.testing.assert_array_equal(outputs.reshape(expected.shape), expected)
