"""torchgeo's own dataset classes through ``sareval.TorchData`` vs the store route.

Runs where torchgeo imports (``make test-interop``: the second environment, torch 2.14.1);
skipped elsewhere. Data: sareval's generators in the layouts torchgeo reads
(:mod:`torchgeo_layouts`), read both by torchgeo's ``BigEarthNetV2`` / ``BigEarthNet`` /
``SEN12MS`` and by ``sareval preprocess`` (the store route). With no mapping argument the counts
must be identical, or the evaluation refused with a one-line error; never a different number.
The models read only bands both routes give bit for bit (torchgeo bilinear-resamples the 20 m
and 60 m BigEarthNet bands; that case must warn).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

torchgeo = pytest.importorskip("torchgeo")
from click.testing import CliRunner  # noqa: E402
from torchgeo.datasets import SEN12MS, BigEarthNet, BigEarthNetV2  # noqa: E402
from torchgeo_layouts import (  # noqa: E402
    bigearthnet_tree,
    bigearthnet_v2_tree,
    sen12ms_tree,
    small_card,
    small_net,
)

import sareval  # noqa: E402
from sareval.bands import BIGEARTHNET_S2_BANDS, SEN12MS_S2_LAND_BANDS  # noqa: E402
from sareval.classes import BEN19, CLC43, IGBP10  # noqa: E402
from sareval.cli import cli  # noqa: E402
from sareval.errors import SarevalError  # noqa: E402

#: S1 and the 10 m S2 bands: values identical in both routes (S1 written in whole dB)
BEN_BANDS = ("VV", "VH", "B02", "B03", "B04", "B08")
S12_BANDS = ("VV", "VH", *SEN12MS_S2_LAND_BANDS)
ALPHABETICAL = tuple(sorted(BEN19))  # the reBEN cards' class order
ROUNDED = "VV, VH: rounded to whole dB"


def preprocess(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["preprocess", *args, "--workers", "1"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three trees and their test-split stores (``sareval preprocess``)."""
    root = tmp_path_factory.mktemp("torchgeo")
    v2 = bigearthnet_v2_tree(root / "reben")
    v1 = bigearthnet_tree(root / "ben")
    s12 = sen12ms_tree(root / "s12")
    preprocess(["bigearthnet-v2", "--s2-root", str(v2 / "BigEarthNet-S2"), "--s1-root",
                str(v2 / "BigEarthNet-S1"), "--metadata", str(v2 / "metadata.parquet"),
                "--reference-maps", str(v2 / "Reference_Maps"),
                "--split", "test", "--out", str(root / "reben.h5")])  # fmt: skip
    preprocess(["bigearthnet", "--s2-root", str(v1 / "BigEarthNet-v1.0"), "--s1-root",
                str(v1 / "BigEarthNet-S1-v1.0"), "--split-csv", str(v1 / "test.csv"),
                "--out", str(root / "ben.h5")])  # fmt: skip
    preprocess(["sen12ms", str(s12), "--split-list", str(s12 / "test_list.txt"),
                "--out", str(root / "s12.h5")])  # fmt: skip
    return {"reben": v2, "ben": v1, "s12": s12, "reben.h5": root / "reben.h5",
            "ben.h5": root / "ben.h5", "s12.h5": root / "s12.h5"}  # fmt: skip


def both_routes(net: Any, card: sareval.ModelCard, ds: Any, store: Path) -> tuple[Any, Any]:
    """(TorchData result, store result) of the same model, no mapping argument."""
    kw: dict[str, Any] = {"card": card, "batch_size": 3, "by_class": True}
    via_torchgeo = sareval.evaluate(net, sareval.TorchData(ds), **kw)
    with sareval.open_store(store) as handle:
        via_store = sareval.evaluate(net, handle.subset("clear"), **kw)
    return via_torchgeo, via_store


class Wrapped:
    """The same items from a class no adapter knows (mapping given by hand)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        return self.ds[i]


def test_bigearthnet_v2_counts_equal_the_store_route(trees: dict[str, Path]) -> None:
    card = small_card(BEN_BANDS, ALPHABETICAL, "multi-label", 120)
    net = small_net(len(BEN_BANDS), 19)
    ds = BigEarthNetV2(str(trees["reben"]), split="test")
    assert len(ds) == 8 and ds[0]["image_s1"].shape == (2, 120, 120)
    with pytest.warns(UserWarning, match=ROUNDED):
        via_torchgeo, via_store = both_routes(net, card, ds, trees["reben.h5"])
    assert via_torchgeo.counts == via_store.counts
    adapter = via_torchgeo.doc["provenance"]["adapter"]
    assert adapter["name"] == "torchgeo.BigEarthNetV2" and adapter["version"] == "0.8.1"
    assert adapter["images"]["image_s1"] == ["VH", "VV"]
    # positional mapping (the bug this guards against) gives other counts: the test can fail
    wrong = sareval.TorchData(Wrapped(ds), bands={"s1": ["VV", "VH"],
                              "s2": list(BIGEARTHNET_S2_BANDS)}, class_names=BEN19)  # fmt: skip
    by_position = sareval.evaluate(net, wrong, card=card, batch_size=3)
    assert by_position.counts != via_store.counts
    right = sareval.TorchData(Wrapped(ds), bands={"s1": ["VH", "VV"],
                              "s2": list(BIGEARTHNET_S2_BANDS)}, class_names=BEN19)  # fmt: skip
    assert sareval.evaluate(net, right, card=card, batch_size=3).counts == via_store.counts


def test_bigearthnet_v2_resampled_bands_warn_and_one_sensor_is_refused(
    trees: dict[str, Path],
) -> None:
    bands = ("VV", "VH", "B02", "B05", "B11")
    card = small_card(bands, ALPHABETICAL, "multi-label", 120)
    ds = BigEarthNetV2(str(trees["reben"]), split="test")
    with pytest.warns(UserWarning, match=r"B05, B11: bilinear-upsampled"):
        sareval.evaluate(small_net(len(bands), 19), sareval.TorchData(ds), card=card)
    s2_only = BigEarthNetV2(str(trees["reben"]), split="test", bands="s2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # B05, B11 again
        with pytest.raises(SarevalError, match=r"bands \['VV', 'VH'\] are missing") as err:
            sareval.evaluate(small_net(len(bands), 19), sareval.TorchData(s2_only), card=card)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("num_classes", [19, 43])
def test_bigearthnet_counts_equal_the_store_route(trees: dict[str, Path], num_classes: int) -> None:
    classes = ALPHABETICAL if num_classes == 19 else tuple(reversed(CLC43))
    card = small_card(BEN_BANDS, classes, "multi-label", 120)
    net = small_net(len(BEN_BANDS), num_classes, seed=1)
    ds = BigEarthNet(str(trees["ben"]), split="test", num_classes=num_classes)
    with pytest.warns(UserWarning, match=ROUNDED):
        via_torchgeo, via_store = both_routes(net, card, ds, trees["ben.h5"])
    assert via_torchgeo.counts == via_store.counts
    assert via_torchgeo.doc["provenance"]["adapter"]["attributes"]["num_classes"] == num_classes


def test_bigearthnet_with_other_classes_than_the_card_is_refused(trees: dict[str, Path]) -> None:
    card = small_card(BEN_BANDS, ALPHABETICAL, "multi-label", 120)
    ds = BigEarthNet(str(trees["ben"]), split="test", num_classes=43)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(SarevalError, match=r"only in the data: \['Airports'") as err:
            sareval.evaluate(small_net(len(BEN_BANDS), 19), sareval.TorchData(ds), card=card)
    assert "\n" not in str(err.value) and "only in the card: ['Arable land'" in str(err.value)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_sen12ms_counts_equal_the_store_route(trees: dict[str, Path], task: str) -> None:
    card = small_card(S12_BANDS, tuple(reversed(IGBP10)), task, 64)
    net = small_net(len(S12_BANDS), 10, seed=2)
    ds = SEN12MS(str(trees["s12"]), split="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing altered: no warning
        via_torchgeo, via_store = both_routes(net, card, ds, trees["s12.h5"])
    assert via_torchgeo.counts == via_store.counts
    assert via_torchgeo.doc["provenance"]["adapter"]["label_kind"] == "igbp_mask"
    # a band subset in another order: mapped by name, same counts
    subset = SEN12MS(str(trees["s12"]), split="test", bands=tuple(reversed(S12_BANDS)))
    again = sareval.evaluate(net, sareval.TorchData(subset), card=card, batch_size=3, by_class=True)
    assert again.counts == via_store.counts


def segmenter(n_in: int, n_classes: int) -> Any:
    """A fully convolutional net (B, n_in, H, W) -> (B, K, H, W)."""
    import torch

    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(n_in, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, n_classes, 1)
    )
    return net.eval()


@pytest.mark.parametrize(
    ("name", "bands", "classes", "size"),
    [("reben", BEN_BANDS, BEN19, 120), ("s12", S12_BANDS, IGBP10, 64)],
)
def test_label_maps_equal_the_store_route(
    trees: dict[str, Path], name: str, bands: tuple[str, ...], classes: tuple[str, ...],
    size: int,
) -> None:  # fmt: skip
    """torchgeo's ``mask`` (BigEarthNetV2: ordinals and raw CORINE codes; SEN12MS: IGBP codes)
    read as label maps gives the pixel counts of the store's ``ben19_map`` / ``lc10_map``."""
    seg = small_card(bands, classes, "single-label", size).to_dict()
    seg.update(task="segmentation", card_version=3)
    card = sareval.ModelCard.from_dict(seg)
    net = segmenter(len(bands), len(classes))
    ds = (
        BigEarthNetV2(str(trees["reben"]), split="test")
        if name == "reben"
        else SEN12MS(str(trees["s12"]), split="test")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BigEarthNet's rounded S1: see above
        via_torchgeo, via_store = both_routes(net, card, ds, trees[f"{name}.h5"])
    assert via_torchgeo.counts == via_store.counts
    assert via_store.doc["config"]["label_set"] in ("ben19_map", "lc10_map")
    assert via_torchgeo.doc["n_pixels"] == via_store.doc["n_pixels"] > 0
