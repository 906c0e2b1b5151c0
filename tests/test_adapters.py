"""Dataset conventions as data (``sareval.adapters``) and ``TorchData``'s mapping by name.

torchgeo is not importable beside the pinned torch, so its datasets are replicated here: classes
of the same names in a ``torchgeo`` module whose items are built by hand as torchgeo 0.8.1
returns them (BigEarthNet S1 as VH, VV; labels in the official BigEarthNet-19 order; SEN12MS
with an IGBP ``mask``). The reference route is ``ArrayData`` on the same arrays with their true
band and class names; the real torchgeo classes are run by ``tests/interop`` (``make
test-interop``).
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from shape_testing import make_card, tiny_net

import sareval
from sareval.adapters import conventions_for
from sareval.bands import BIGEARTHNET_S2_BANDS, S2_BANDS, close_band
from sareval.classes import BEN19, IGBP10, IGBP10_FROM_IGBP17
from sareval.errors import SarevalError
from sareval.evaluator.sources import layout_problem

N, H = 12, 8
HB = 120  # torchgeo reads BigEarthNet at 120 x 120; the adapter checks it
ALPHABETICAL = tuple(sorted(BEN19))


class FakeTorchgeo(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Items from arrays; subclasses are named and placed like torchgeo's dataset classes."""

    transforms = None

    def __init__(self, items: list[dict[str, torch.Tensor]], **attrs: Any) -> None:
        self.items = items
        self.__dict__.update(attrs)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def torchgeo_class(name: str, module: str = "torchgeo.datasets.bigearthnet") -> type:
    return type(name, (FakeTorchgeo,), {"__module__": module})


@pytest.fixture(scope="module")
def ben() -> dict[str, Any]:
    """S1 (VV, VH), 12 S2 bands and multi-hot labels in the card's (alphabetical) order."""
    rng = np.random.default_rng(3)
    s1 = rng.normal(-15, 4, (N, 2, HB, HB)).astype(np.float32)
    s1[:, 1] -= 6  # VH weaker than VV
    s2 = rng.integers(0, 4000, (N, 12, HB, HB)).astype(np.float32)
    y = (rng.random((N, 19)) < 0.3).astype(np.int64)
    return {"s1": s1, "s2": s2, "y": y}


def ben_v2_items(a: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """What torchgeo's BigEarthNetV2(bands='all') returns: VH before VV, official class order."""
    official = [ALPHABETICAL.index(c) for c in BEN19]
    assert BEN19[0] == "Urban fabric" and BEN19[2] == "Arable land"  # not alphabetical
    return [
        {
            "image_s1": torch.from_numpy(a["s1"][i, [1, 0]]),
            "image_s2": torch.from_numpy(a["s2"][i]),
            "mask": torch.zeros(1, HB, HB, dtype=torch.long),
            "label": torch.from_numpy(a["y"][i, official]),
        }
        for i in range(N)
    ]


def ben_card() -> sareval.ModelCard:
    return make_card("multi-label", class_names=list(ALPHABETICAL))


def reference(net: Any, card: sareval.ModelCard, a: dict[str, Any]) -> Any:
    data = {"s1": a["s1"], "s2": a["s2"], "label": a["y"]}
    bands = {"s1": ["VV", "VH"], "s2": list(BIGEARTHNET_S2_BANDS)}
    return sareval.evaluate(net, data, card=card, bands=bands, class_names=ALPHABETICAL)


def test_bigearthnet_v2_is_mapped_by_name(ben: dict[str, Any], tmp_path: Path) -> None:
    card, net = ben_card(), tiny_net(12, 19)
    ds = torchgeo_class("BigEarthNetV2")(ben_v2_items(ben), bands="all", class_set=list(BEN19))
    with pytest.warns(UserWarning, match=r"B8A, B11, B12: bilinear.*VV, VH: rounded to whole dB"):
        got = sareval.evaluate(net, sareval.TorchData(ds), card=card, batch_size=5)
    want = reference(net, card, ben)
    assert got.counts == want.counts
    adapter = got.doc["provenance"]["adapter"]
    assert adapter["name"] == "torchgeo.BigEarthNetV2" and adapter["class_names"] == list(BEN19)
    assert adapter["altered_bands_used"]["VH"].startswith("rounded to whole dB")
    assert "B02" not in adapter["altered_bands_used"]  # 10 m: read as is
    # what a positional reading gives (the defect): other counts, so the check above can fail
    wrong = sareval.TorchData(
        FakeTorchgeo(ben_v2_items(ben)),
        bands={"s1": ["VV", "VH"], "s2": list(BIGEARTHNET_S2_BANDS)},
        class_names=ALPHABETICAL,
    )
    assert sareval.evaluate(net, wrong, card=card).counts != want.counts
    # a Subset of it, and a DataLoader's batches, are still recognised
    sub = torch.utils.data.Subset(ds, list(range(N)))
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    with pytest.warns(UserWarning):
        assert sareval.evaluate(net, sareval.TorchData(sub), card=card).counts == want.counts
        assert sareval.evaluate(net, sareval.TorchData(loader), card=card).counts == want.counts
    # the adapter is part of the saved, schema-checked results
    got.save(tmp_path / "r.json")
    loaded = sareval.load_result(tmp_path / "r.json")
    assert loaded.doc["provenance"]["adapter"]["images"]["image_s1"] == ["VH", "VV"]


def test_bigearthnet_v1_stacked_image_and_43_classes(ben: dict[str, Any]) -> None:
    card, net = ben_card(), tiny_net(12, 19)
    official = [ALPHABETICAL.index(c) for c in BEN19]
    items = [
        {
            "image": torch.from_numpy(np.concatenate([ben["s1"][i, [1, 0]], ben["s2"][i]])),
            "label": torch.from_numpy(ben["y"][i, official]),
        }
        for i in range(N)
    ]
    cls = torchgeo_class("BigEarthNet")
    with pytest.warns(UserWarning):
        got = sareval.evaluate(net, cls(items, bands="all", num_classes=19), card=card)
    assert got.counts == reference(net, card, ben).counts
    items43 = [{**it, "label": torch.zeros(43, dtype=torch.long)} for it in items]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the altered bands, tested above
        with pytest.raises(SarevalError, match=r"only in the data: \['Airports'") as err:
            sareval.evaluate(net, cls(items43, bands="all", num_classes=43), card=card)
    assert "\n" not in str(err.value)
    with pytest.raises(SarevalError, match=r"yields image: VH, VV, B01.* leave them out"):
        sareval.TorchData(cls(items, bands="all", num_classes=19), image="image", bands="all")
    with pytest.raises(SarevalError, match=r"BigEarthNet.bands is 'rgb'"):
        sareval.TorchData(cls(items, bands="rgb", num_classes=19))


def igbp10_index(mask: np.ndarray) -> int:
    """Independent reference: SEN12MS's simplified IGBP class of an IGBP layer (toolbox)."""
    counts = np.bincount(mask[(mask >= 1) & (mask <= 17)].ravel(), minlength=18)[1:]
    simple = [sum(counts[k - 1] for k in group) for group in IGBP10_FROM_IGBP17]
    return int(np.argmax(simple))


def test_sen12ms_band_subset_and_mask_labels() -> None:
    rng = np.random.default_rng(4)
    order = ("B12", "VH", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "VV")
    image = rng.normal(0, 1, (N, len(order), H, H)).astype(np.float32)
    image[:, [1, 11]] = rng.normal(-15, 4, (N, 2, H, H))
    image[:, [0, *range(2, 11)]] = rng.integers(0, 4000, (N, 10, H, H))
    masks = rng.choice([1, 4, 10, 12, 13, 17, 0], size=(N, H, H))
    dominant = rng.choice([1, 6, 9, 11, 13, 16, 17], size=N)
    masks[:, : H // 2 + 1] = dominant[:, None, None]  # each patch has a majority class
    items = [
        {"image": torch.from_numpy(image[i]), "mask": torch.from_numpy(masks[i])} for i in range(N)
    ]
    ds = torchgeo_class("SEN12MS", "torchgeo.datasets.sen12ms")(items, bands=order)
    card = make_card("single-label", class_names=list(IGBP10))
    net = tiny_net(12, 10)
    got = sareval.evaluate(net, sareval.TorchData(ds), card=card)
    y = np.array([igbp10_index(m) for m in masks])
    by_name = {b: image[:, i] for i, b in enumerate(order)}
    s2 = [b for b in S2_BANDS if b in by_name]
    data = {
        "s1": np.stack([by_name["VV"], by_name["VH"]], 1),
        "s2": np.stack([by_name[b] for b in s2], 1),
        "label": y,
    }
    want = sareval.evaluate(
        net, data, card=card, bands={"s1": ["VV", "VH"], "s2": s2}, class_names=IGBP10
    )
    assert got.counts == want.counts
    assert len(set(y)) > 1
    unlabelled = [{**items[0], "mask": torch.zeros(H, H, dtype=torch.long)}, *items[1:]]
    with pytest.raises(SarevalError, match=r"'mask' of the batch from sample 0.*no pixel") as err:
        sareval.evaluate(net, sareval.TorchData(type(ds)(unlabelled, bands=order)), card=card)
    assert "\n" not in str(err.value)
    # the old one-line mapping agrees with the adapter, so it is still accepted
    same = sareval.TorchData(ds, image="image", bands=list(order))
    assert sareval.evaluate(net, same, card=card).counts == want.counts


def test_arguments_that_contradict_a_known_dataset_are_refused(ben: dict[str, Any]) -> None:
    cls = torchgeo_class("BigEarthNetV2")
    ds = cls(ben_v2_items(ben), bands="all")
    with pytest.raises(SarevalError, match=r"image_s1: VH, VV; .* leave them out"):
        sareval.TorchData(ds, bands={"s1": ["VV", "VH"], "s2": list(BIGEARTHNET_S2_BANDS)})
    with pytest.raises(
        SarevalError, match=r"class_names: .* has its own class order \(Urban fabric"
    ):
        sareval.TorchData(ds, class_names=ALPHABETICAL)
    with_transforms = cls(ben_v2_items(ben), bands="all", transforms=lambda s: s)
    with pytest.raises(SarevalError, match=r"transforms: sareval needs the raw values"):
        sareval.TorchData(with_transforms)
    with pytest.raises(SarevalError, match=r"class_set differs"):
        sareval.TorchData(cls(ben_v2_items(ben), bands="all", class_set=ALPHABETICAL))


def test_unknown_datasets_must_name_bands_and_classes(ben: dict[str, Any]) -> None:
    items = ben_v2_items(ben)
    # same name, not torchgeo's module: not assumed to be torchgeo's
    lookalike = torchgeo_class("BigEarthNetV2", "mylib.data")(items, bands="all")
    assert conventions_for(lookalike) is None
    with pytest.raises(SarevalError, match=r"bands: give the band names of the dataset's "
                       r"'image_s1' \(2 channels\) in channel order") as err:  # fmt: skip
        sareval.TorchData(lookalike)
    assert "\n" not in str(err.value)
    bands = {"s1": ["VH", "VV"], "s2": list(BIGEARTHNET_S2_BANDS)}
    with pytest.raises(SarevalError, match=r"class_names: .*\(K,\) multi-hot per sample"):
        sareval.TorchData(lookalike, bands=bands)
    card, net = ben_card(), tiny_net(12, 19)
    named = sareval.TorchData(lookalike, bands=bands, class_names=BEN19)
    assert sareval.evaluate(net, named, card=card).counts == reference(net, card, ben).counts


def test_errors_name_the_likely_cause(ben: dict[str, Any]) -> None:
    card, net = ben_card(), tiny_net(12, 19)
    last = [
        {"image": torch.from_numpy(np.moveaxis(ben["s2"][i], 0, -1)), "label": it["label"]}
        for i, it in enumerate(ben_v2_items(ben))
    ]
    with pytest.raises(SarevalError, match=r"looks channels-last \(N, H, W, C\)"):
        sareval.TorchData(FakeTorchgeo(last), image="image", bands=list(BIGEARTHNET_S2_BANDS))
    typo = [b if b != "B8A" else "B8a" for b in BIGEARTHNET_S2_BANDS]
    data = sareval.TorchData(
        FakeTorchgeo(ben_v2_items(ben)),
        bands={"s1": ["VH", "VV"], "s2": typo},
        class_names=BEN19,
    )
    with pytest.raises(SarevalError, match=r"'B8a' .* did you mean B8A\?"):
        sareval.evaluate(net, data, card=card)
    other = [*BEN19[:-1], "Marine water"]
    data = sareval.TorchData(
        FakeTorchgeo(ben_v2_items(ben)),
        bands={"s1": ["VH", "VV"], "s2": list(BIGEARTHNET_S2_BANDS)},
        class_names=other,
    )
    with pytest.raises(SarevalError, match=r"data 'Marine water' ~ card 'Marine waters'\?"):
        sareval.evaluate(net, data, card=card)
    arrays = {"s1": np.moveaxis(ben["s1"], 1, -1), "s2": ben["s2"]}
    with pytest.raises(SarevalError, match=r"data\['s1'\]: shape \(12, 120, 120, 2\) looks "
                       r"channels-last \(N, H, W, C\)"):  # fmt: skip
        sareval.ArrayData(arrays, ben["y"])
    arrays = {"s1": ben["s1"], "s2": ben["s2"], "label": ben["y"]}
    with pytest.raises(SarevalError, match=r"did you mean B8A for the data's 'B8a'\?"):
        sareval.evaluate(net, arrays, card=card, bands={"s1": ["VV", "VH"], "s2": typo},
                         class_names=ALPHABETICAL)  # fmt: skip
    assert close_band("b8a", S2_BANDS) == "B8A" and close_band("DEM", S2_BANDS) is None
    assert "channels-last" not in layout_problem((4, 3, 8, 8), 2, "x")


def test_adapters_do_not_import_torchgeo() -> None:
    assert "torchgeo" not in sys.modules or sys.modules["torchgeo"] is not None
    import importlib

    mod = importlib.import_module("sareval.adapters.torchgeo")
    source = Path(mod.__file__ or "").read_text()
    assert not re.search(r"^\s*(import|from)\s+torchgeo", source, re.MULTILINE)
    assert mod.BEN_V2_IMAGES["all"]["image_s1"] == ("VH", "VV")


def test_sen12ms_mask_as_label_maps_for_a_segmentation_model() -> None:
    """torchgeo's SEN12MS ``mask`` (IGBP 1..17 per pixel) read as 10-class label maps: the
    published IGBP -> simplified table is written out here, not imported."""
    rng = np.random.default_rng(5)
    order = ("VV", "VH", "B02", "B03", "B04")
    image = rng.normal(0, 1, (N, len(order), H, H)).astype(np.float32)
    masks = rng.choice([0, 1, 5, 7, 10, 11, 12, 13, 14, 16, 17], size=(N, H, H))
    items = [
        {"image": torch.from_numpy(image[i]), "mask": torch.from_numpy(masks[i])} for i in range(N)
    ]
    ds = torchgeo_class("SEN12MS", "torchgeo.datasets.sen12ms")(items, bands=order)
    table = [255, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9]  # IGBP code -> index
    maps = np.array(table)[masks]
    card = sareval.ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]}, task="segmentation",
        class_names=list(IGBP10),
    )  # fmt: skip
    net = torch.nn.Conv2d(5, 10, 1)
    got = sareval.evaluate(net, sareval.TorchData(ds), card=card)
    data = sareval.ArrayData(
        {"s1": image[:, :2], "s2": image[:, 2:]}, maps.astype(np.uint8),
        bands={"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04"]},
    )  # fmt: skip
    want = sareval.evaluate(net, data, card=card)
    assert got.counts == want.counts
    assert got.doc["n_pixels"] == int((maps != 255).sum()) > 0


def test_bigearthnet_v2_mask_as_label_maps_for_a_segmentation_model(ben: dict[str, Any]) -> None:
    """torchgeo's BigEarthNetV2 ``mask``: the 19 classes' CORINE codes replaced by ordinals
    0..18 (``class_set`` order), every other code left as it is (here 999 and 331, beaches):
    those are pixels without a class."""
    rng = np.random.default_rng(6)
    ordinals = rng.integers(0, 19, (N, HB, HB))
    ordinals[:, :5] = 999
    ordinals[:, 5:8] = 331
    items = [{**item, "mask": torch.from_numpy(ordinals[i][None])}
             for i, item in enumerate(ben_v2_items(ben))]  # fmt: skip
    ds = torchgeo_class("BigEarthNetV2")(items, bands="all")
    bands = {"sar": ["VV", "VH"], "opt": ["B02", "B03", "B04"]}
    card = sareval.ModelCard.custom(bands, task="segmentation", class_names=list(BEN19))
    net = torch.nn.Conv2d(5, 19, 1)
    got = sareval.evaluate(net, sareval.TorchData(ds), card=card)
    maps = np.where(ordinals < 19, ordinals, 255).astype(np.uint8)
    s2 = ben["s2"][:, [list(BIGEARTHNET_S2_BANDS).index(b) for b in bands["opt"]]]
    data = sareval.ArrayData(
        {"s1": ben["s1"], "s2": s2}, maps, bands={"s1": ["VV", "VH"], "s2": bands["opt"]}
    )
    want = sareval.evaluate(net, data, card=card)
    assert got.counts == want.counts
    assert got.doc["n_pixels"] == N * HB * (HB - 8)
