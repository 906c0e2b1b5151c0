"""The Python API: the same model and data give identical counts through every route.

Routes: the CLI on a store; ``sareval.evaluate`` on the store subset; on the same arrays in
memory; on a torch Dataset in torchgeo's conventions (``image`` + band list, ``image_s1`` /
``image_s2``); an in-memory module on torch vs its ONNX export; two-stream ``forward(s1, s2)``
and dict-input modules vs the equivalent single-input model. Plus typed errors naming the
argument, and the result's save / load round trip.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shape_testing import CLASSES, get_assets, make_card
from torch import nn

import sareval
from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.store import Store

TASK = "single-label"


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory):
    return get_assets(tmp_path_factory)


def store_arrays(path: Path, subset: str = "clear") -> dict[str, np.ndarray]:
    """The subset's raw arrays, labels and cloud cover read with h5py directly (the store's
    /cloud_cover is that of s2_cloudy: a subset reading s2 has no estimate, NaN)."""
    import h5py

    with h5py.File(path, "r") as f:
        rows = f[f"subsets/{subset}"][()]
        optical = f[f"subsets/{subset}"].attrs["optical"]
        return {
            "s1": f["s1"][()][rows],
            "s2": f[optical][()][rows],
            "label": f["labels/single"][()][rows],
            "cloud_cover": f["cloud_cover"][()][rows]
            if optical == "s2_cloudy"
            else np.full(len(rows), np.nan, np.float32),
            "s1_bands": json.loads(f["s1"].attrs["bands"]),
            "s2_bands": json.loads(f["s2"].attrs["bands"]),
        }


class ItemDataset(torch.utils.data.Dataset):
    """Per-sample dicts in torchgeo's conventions."""

    def __init__(self, a: dict[str, np.ndarray], stacked: bool) -> None:
        self.a, self.stacked = a, stacked

    def __len__(self) -> int:
        return len(self.a["label"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s1 = torch.from_numpy(self.a["s1"][i])
        s2 = torch.from_numpy(self.a["s2"][i].astype(np.int32))  # torch has no uint16 math
        y = torch.tensor(int(self.a["label"][i]))
        if self.stacked:
            return {"image": torch.cat([s1, s2.float()]), "label": y}
        return {"image_s1": s1, "image_s2": s2, "label": y}


def test_every_route_gives_the_same_counts(assets, tmp_path: Path) -> None:
    net, card, onnx_path = assets.nets[TASK], assets.cards[TASK], assets.onnx[TASK]
    kw = dict(by_class=True, cloud_cover_bins=[0, 0.5, 1], batch_size=7)
    via_store = sareval.evaluate(onnx_path, sareval.open_store(assets.store).subset("clear"), **kw)
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(cli, ["shape", "-m", str(onnx_path), "-d", str(assets.store),
                                      "-s", "clear", "--by", "class", "--by", "cloud-cover",
                                      "0,0.5,1", "--batch-size", "7", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    via_cli = sareval.load_result(out)
    a = store_arrays(assets.store)
    arrays = {"s1": a["s1"], "s2": a["s2"], "label": a["label"], "cloud_cover": a["cloud_cover"]}
    via_arrays = sareval.evaluate(onnx_path, arrays, bands={"s1": a["s1_bands"],
                                                            "s2": a["s2_bands"]},
                                  class_names=CLASSES, **kw)  # fmt: skip
    via_torch = sareval.evaluate(net, arrays, card=card, bands={"s1": a["s1_bands"],
                                                                "s2": a["s2_bands"]},
                                 class_names=CLASSES, **kw)  # fmt: skip
    bands = [*a["s1_bands"], *a["s2_bands"]]
    stacked = sareval.TorchData(ItemDataset(a, stacked=True), image="image", bands=bands,
                                class_names=CLASSES)  # fmt: skip
    via_dataset = sareval.evaluate(net, stacked, card=card, batch_size=7, by_class=True)
    separate = sareval.TorchData(ItemDataset(a, stacked=False), bands={"s1": a["s1_bands"],
                                 "s2": a["s2_bands"]}, class_names=CLASSES)  # fmt: skip
    via_separate = sareval.evaluate(net, separate, card=card, batch_size=5)
    assert via_store.counts == via_cli.counts == via_arrays.counts
    assert via_torch.counts == via_store.counts  # in-memory module vs its ONNX export
    assert via_dataset.counts == via_separate.counts == via_store.counts
    assert via_store.doc["by"].pop("cloud_cover_source") == "none"
    assert via_arrays.doc["by"].pop("cloud_cover_source") == "given"
    assert via_store.doc["by"] == via_arrays.doc["by"]
    assert via_torch.config["backend"] == "torch" and via_store.config["backend"] == "onnxruntime"


class TwoStream(nn.Module):
    """``forward(s1, s2)`` around a single-input network (channels: SAR first here)."""

    def __init__(self, net: nn.Module, order: torch.Tensor) -> None:
        super().__init__()
        self.net, self.order = net, order

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([s1, s2], 1)[:, self.order])


class DictInput(TwoStream):
    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x["s1"], x["s2"])


def test_two_stream_and_dict_input_models(assets) -> None:
    net, card = assets.nets[TASK], assets.cards[TASK]
    sar = list(card.modality("sar").bands)
    opt = [b for b in card.channels if b not in sar]
    # the card lists SAR then optical; the wrapped network wants the card's original order
    order = torch.tensor([(sar + opt).index(b) for b in card.channels])
    data = sareval.open_store(assets.store).subset("clear")
    single = sareval.evaluate(net, data, card=card)
    two_card = card.with_inputs({"s1": sar, "s2": opt})
    assert two_card.input_names == ("s1", "s2") and two_card.channels == tuple(sar + opt)
    two = sareval.evaluate(TwoStream(net, order), data, card=two_card)
    two_onnx = sareval.evaluate(TwoStream(net, order), data, card=two_card, backend="onnxruntime")
    dict_card = card.with_inputs({"s1": sar, "s2": opt}, call="dict")
    as_dict = sareval.evaluate(DictInput(net, order), data, card=dict_card)
    assert two.counts == single.counts == as_dict.counts == two_onnx.counts
    assert two.relevance == single.relevance
    # the card travels in JSON and reads back equal (card_version 2)
    assert sareval.ModelCard.from_json(two_card.to_json()) == two_card


def test_in_memory_module_is_not_moved_or_changed(assets) -> None:
    net, card = assets.nets[TASK], assets.cards[TASK]
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sareval.evaluate(net, (assets.store, "tail"), card=card)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()


def test_extra_band_modality(tmp_path: Path) -> None:
    """A DEM in its own sensor and modality: a player of the game like SAR and optical."""
    rng = np.random.default_rng(0)
    n = 24
    s1 = rng.normal(-15, 3, (n, 2, 4, 4)).astype(np.float32)
    dem = rng.normal(300, 50, (n, 1, 4, 4)).astype(np.float32)
    y = (dem.mean((1, 2, 3)) > 300).astype(np.int64)  # the DEM decides the class
    d = make_card().to_dict()
    d.update(class_names=["low", "high"])
    d["input"] = {"name": "input", "channels": ["VV", "VH", "DEM"], "height": 4, "width": 4}
    d["modalities"] = [{"name": "sar", "bands": ["VV", "VH"]}, {"name": "dem", "bands": ["DEM"]}]
    d["normalization"] = {"DEM": {"mean": 300.0, "std": 50.0}}
    card = sareval.ModelCard.from_dict(d)

    def model(x: torch.Tensor) -> torch.Tensor:  # a plain callable: logit = +-mean(DEM)
        m = x[:, 2].mean((1, 2))
        return torch.stack([-m, m], 1)

    path = sareval.write_store(tmp_path / "dem.h5", {"s1": s1, "dem": dem},
                               {"cls": (y, ["low", "high"])}, bands={"dem": ["DEM"]})  # fmt: skip
    assert Store(path).sensors == ("s1", "dem")
    r = sareval.evaluate(model, (path, "all"), card=card)
    assert r.values["oa"]["dem"] == 1.0 and r.relevance["oa"]["sar"] == pytest.approx(0.0)
    with pytest.raises(SarevalError, match=r"players: bands XX are not input channels .*DEM"):
        sareval.evaluate(model, (path, "all"), card=card, players={"a": ["VV", "VH", "DEM"],
                                                                   "b": ["XX"]})  # fmt: skip


def test_result_round_trip_and_table(assets, tmp_path: Path) -> None:
    r = sareval.evaluate(
        assets.onnx[TASK], (assets.store, "tail"), replicates=20, seed=1, by_class=True
    )
    path = r.save(tmp_path / "r.json", csv=tmp_path / "r.csv")
    back = sareval.load_result(path)
    assert back == r and back.intervals["oa"]["relevance"]["sar"][0] <= r.relevance["oa"]["sar"]
    assert "R(sar)" in str(r) and (tmp_path / "r.csv").read_text().startswith("group,")
    for name, section in r.by_class.items():  # per-class intervals, in the CSV too
        entry = section["metrics"]["recall"]
        lo, hi = entry["ci"]["relevance"]["opt"]
        assert lo <= entry["relevance"]["opt"] <= hi, name
        v_lo, v_hi = entry["ci"]["V"]["sar+opt"]
        assert v_lo <= entry["V"]["sar+opt"] <= v_hi, name
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(row["group"].startswith("class:") and row["ci_high"] for row in rows)


def _z(c: int, n: int = 3) -> np.ndarray:
    return np.zeros((n, c, 8, 8), np.float32)


STORE = "(store, tail)"  # replaced by the assets' store subset
BAD_INPUTS = [  # (model, data, keyword arguments, expected message)
    ("onnx", "x.h5", {}, r"data: 'x.h5' is a path; name the subset"),
    ("onnx", 42, {}, r"data: expected a store subset"),
    ("net", STORE, {}, r"card: an in-memory model needs"),
    (3.5, STORE, {}, r"model: expected a model file path"),
    ("onnx", STORE, {"normalization": "half"}, r"ShapeConfig.reporting.normalization: 'half'"),
    ("onnx", STORE, {"colour": 1}, r"unknown ShapeConfig field\(s\) colour"),
    (
        "onnx",
        STORE,
        {"batch_size": 0},
        r"ShapeConfig.execution.batch_size: expected an integer >= 1",
    ),
    ("onnx", STORE, {"device": "gpu"}, r"ShapeConfig.execution.device: 'gpu'"),
    ("onnx", STORE, {"metrics": ["oa", "auc"]}, r"ShapeConfig.reporting.metrics: auc"),
    ("onnx", {"s1": _z(2), "s2": _z(13)}, {}, r"data: the dict has no labels"),
    ("onnx", {"s1": _z(2), "label": np.zeros(3, int)}, {}, r"bands \['B02'.*missing from the data"),
    ("onnx", {"s1": _z(2), "s2": _z(13), "label": np.zeros(4, int)}, {},
     r"labels: expected \(N,\) class indices .* N = 3"),
    ("onnx", {"s1": _z(2), "s2": _z(13), "label": np.zeros(3, int)}, {"class_names": ["a", "b"]},
     r"label classes do not match the model card's"),
    ("onnx", {"s1": _z(2), "s2": _z(5), "label": np.zeros(3, int)}, {},
     r"bands: give the band names of data\['s2'\]"),
    ("onnx", [{"x": torch.zeros(2)}], {}, r"keys: no s1/s2 or image_s1/image_s2"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "data", "kw", "message"), BAD_INPUTS)
def test_bad_api_input_names_the_argument(assets, model, data, kw, message: str) -> None:
    model = {"onnx": assets.onnx[TASK], "net": assets.nets[TASK]}.get(model, model)
    data = (assets.store, "tail") if isinstance(data, str) and data == STORE else data
    with pytest.raises(SarevalError, match=message):
        sareval.evaluate(model, data, **kw)


def test_store_cloud_cover_is_that_of_the_image_read(tmp_path: Path) -> None:
    """Without a cloudy version (BigEarthNet) the cover is s2's own; with one (SEN12MS-CR) it
    is the cloudy twin's, so a subset reading the clear s2 gets NaN."""
    from sareval.evaluator.sources import Labels

    rng = np.random.default_rng(0)
    n = 6
    s1 = rng.normal(-15, 3, (n, 2, 4, 4)).astype(np.float32)
    s2 = rng.integers(0, 5000, (n, 13, 4, 4)).astype(np.uint16)
    labels = {"classes": (np.arange(n) % 2, ["a", "b"])}
    cover = np.linspace(0, 1, n).astype(np.float32)
    rows = np.arange(n)

    def covers(path: Path, subset: str) -> tuple[str, np.ndarray]:
        with sareval.open_store(path) as store:
            sub = store.subset(subset)
            with sub.batches(0, n, 4, sensors=["s2"], labels=Labels("index", None, "classes")) as b:
                return sub.cloud_cover_source, np.concatenate([x.cloud_cover for x in b])

    ben = sareval.write_store(tmp_path / "ben.h5", {"s1": s1, "s2": s2}, labels, cloud_cover=cover)
    source, got = covers(ben, "all")
    assert source == "s2"
    np.testing.assert_array_equal(got, cover)
    subsets = {"clear": rows, "cloudy": (rows, "s2_cloudy")}
    cr = sareval.write_store(
        tmp_path / "cr.h5", {"s1": s1, "s2": s2}, labels, subsets, cloudy=s2 + 1, cloud_cover=cover
    )
    source, got = covers(cr, "clear")
    assert source == "none" and np.isnan(got).all()
    source, got = covers(cr, "cloudy")
    assert source == "s2_cloudy"
    np.testing.assert_array_equal(got, cover)
