"""`sareval train --task segmentation`: the pixel loss against a hand computation, a tiny U-Net
run end to end (metrics.jsonl, the exported model and its card), and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sareval
from sareval.card import ModelCard, read_card
from sareval.classes import IGBP10
from sareval.cli import cli
from sareval.errors import SarevalError
from sareval.store import Store
from sareval.train.loop import TrainConfig, segmentation_loss

SIZE = 32  # the smallest input of the U-Net (a multiple of 16, >= 32)
CLOUD = 6000  # DN of every band of a cloudy pixel


def seg_store(path: Path, n: int, seed: int) -> Path:
    """A SEN12MS-like store of n 32 px patches with 10-class label maps (some pixels ignored)
    that SAR (VV step on class 1) and optical (B04 step on class 2) show, and a cloudy optical
    twin whose left or right half is cloud (``/cloud_mask``); subsets ``clear`` and ``cloudy``."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, SIZE, SIZE), np.uint8)
    y[:, : SIZE // 2, : SIZE // 2] = 1
    y[:, SIZE // 2 :, SIZE // 2 :] = 2
    y[:, : SIZE // 2, SIZE // 2 :] = (np.arange(n) % 7 + 3)[:, None, None]
    y[:, -2:, :] = 255  # pixels without a class
    s1 = rng.normal(-15, 1, (n, 2, SIZE, SIZE)).astype(np.float32)
    s1[:, 0] += 6.0 * (y == 1)
    s2 = rng.normal(1500, 100, (n, 13, SIZE, SIZE))
    s2[:, 3] += 2000 * (y == 2)
    s2 = np.clip(s2, 0, 65535).astype(np.uint16)
    mask = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        mask[i, :, (i % 2) * SIZE // 2 : (i % 2 + 1) * SIZE // 2] = 1
    cloudy = np.where(mask[:, None].astype(bool), CLOUD, s2).astype(np.uint16)
    rows = np.arange(n)
    return sareval.write_store(
        path, {"s1": s1, "s2": s2}, {"lc10_map": (y, IGBP10)},
        {"clear": rows, "cloudy": (rows, "s2_cloudy")},
        cloudy=cloudy, cloud_cover=mask.reshape(n, -1).mean(1), cloud_mask=mask,
        dataset="sen12ms", split="train",
    )  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("seg")
    return seg_store(d / "train.h5", 8, 0), seg_store(d / "val.h5", 4, 1)


def seg_config(stores: tuple[Path, Path], out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "data": str(stores[0]), "val": str(stores[1]), "out": str(out), "arch": "unet",
        "task": "segmentation", "epochs": 2, "batch_size": 4, "cloudy_prob": 0.5, "seed": 1,
        "device": "cpu", "progress": False, "eval_batch_size": 4,
    }  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def card_of(matching: str, size: int = 8) -> ModelCard:
    return ModelCard.custom(
        {"sar": ["VV", "VH"], "opt": ["B04"]}, task="segmentation", class_names=["a", "b", "c"],
        input_size=size, label_matching=matching,
    )  # fmt: skip


def hand_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean of -log softmax(logits)[y] over the pixels whose label is not 255 (a loop)."""
    logp = torch.log_softmax(logits.double(), 1)
    terms = [
        -float(logp[b, int(y[b, i, j]), i, j])
        for b in range(y.shape[0])
        for i in range(y.shape[1])
        for j in range(y.shape[2])
        if int(y[b, i, j]) != 255
    ]
    return sum(terms) / len(terms)


def test_the_pixel_loss_matches_labels_to_outputs_as_the_card_says() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 8, 8), generator=g)
    y[0, 1, :] = 255
    coarse = torch.randn(2, 3, 4, 4, generator=g)  # outputs at half the input size
    # nearest-labels: label pixel (2i + 1, 2j + 1) for output cell (i, j)
    got = float(segmentation_loss(card_of("nearest-labels"))(coarse, y))
    assert got == pytest.approx(hand_cross_entropy(coarse, y[:, 1::2, 1::2]), rel=1e-6)
    # upsample-logits: bilinear logits at the label size
    up = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    got = float(segmentation_loss(card_of("upsample-logits"))(coarse, y))
    assert got == pytest.approx(hand_cross_entropy(up, y), rel=1e-6)
    full = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    loss = segmentation_loss(card_of("nearest-labels"))(full, y)
    loss.backward()
    assert full.grad is not None and float(full.grad[0, :, 1, :].abs().sum()) == 0.0  # ignored
    none = segmentation_loss(card_of("nearest-labels"))(full, torch.full((2, 8, 8), 255))
    assert float(none.detach()) == 0.0


@pytest.mark.slow
def test_a_tiny_unet_run_logs_pixel_relevance_and_exports_a_segmentation_model(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = (
        f"train --data {stores[0]} --val {stores[1]} --task segmentation --epochs 1 "
        f"--batch-size 4 --eval-batch-size 4 --cloudy-prob 0.5 --seed 1 --device cpu --out {out}"
    )  # --arch: unet, the default for segmentation
    res = CliRunner().invoke(cli, args.split())
    assert res.exit_code == 0, res.output
    assert "cloudy: miou" in res.output and "cloudy, cloudy pixels: miou" in res.output
    assert "cloudy, clear pixels: miou" in res.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    assert json.loads((out / "config.json").read_text())["arch"] == "unet"
    with Store(stores[1]) as val:
        y = val.labels("lc10_map")
        mask = val.cloud_mask()
    labelled = y != 255
    for r in records:
        assert np.isfinite(r["train_loss"]) and r["train_loss"] > 0
        assert r["train_samples"] == 8
        for subset in ("clear", "cloudy"):
            v = r["val"][subset]
            assert v["n_samples"] == 4 and v["n_pixels"] == int(labelled.sum())
            miou = v["metrics"]["miou"]
            assert set(miou["V"]) == {"none", "sar", "opt", "sar+opt"}
            total = miou["relevance"]["sar"] + miou["relevance"]["opt"]
            assert total == pytest.approx(miou["V"]["sar+opt"] - miou["V"]["none"], abs=1e-12)
            assert r[f"val/{subset}/shape/miou/relevance/sar"] == miou["relevance"]["sar"]
        # the cloudy twin's pixels split by its mask; the clear images have no mask (unknown)
        pixels = r["val"]["cloudy"]["pixels"]
        assert pixels["cloudy"]["n_pixels"] == int((labelled & (mask == 1)).sum())
        assert pixels["clear"]["n_pixels"] == int((labelled & (mask == 0)).sum())
        assert r["val"]["clear"]["pixels"]["unknown"]["n_pixels"] == int(labelled.sum())
        assert "miou" in pixels["cloudy"]["metrics"]
    card = read_card(out / "model.onnx")
    assert card.task == "segmentation" and card.class_names == IGBP10
    assert card.ignore_index == 255 and card.label_matching == "nearest-labels"
    assert (card.height, card.width) == (SIZE, SIZE)
    assert card.provenance["architecture"] == "unet"
    with sareval.open_store(stores[1]) as val:
        again = sareval.evaluate(out / "model.onnx", val.subset("cloudy"))
    last = records[-1]["val"]["cloudy"]["metrics"]["miou"]["V"]
    # the exported ONNX model against the torch network validated after the last epoch
    for coalition, value in last.items():
        assert again.values["miou"][coalition] == pytest.approx(value, abs=2e-3)


def test_segmentation_on_a_store_without_label_maps_is_one_line_naming_the_store(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    s1 = rng.normal(-15, 1, (4, 2, SIZE, SIZE)).astype(np.float32)
    s2 = rng.integers(0, 3000, (4, 13, SIZE, SIZE)).astype(np.uint16)
    scenes = sareval.write_store(
        tmp_path / "scenes.h5", {"s1": s1, "s2": s2}, {"igbp": (np.arange(4) % 10, IGBP10)},
        {"clear": np.arange(4)},
    )  # fmt: skip
    res = CliRunner().invoke(
        cli, ["train", "--data", str(scenes), "--task", "segmentation", "--epochs", "1",
              "--device", "cpu", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(scenes) in lines[0]
    assert "no segmentation labels with the model's 10 classes" in lines[0]
    assert "igbp (single-label, 10 classes)" in lines[0]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch": "resnet18"}, "TrainConfig.arch: resnet18 does not fit task segmentation"),
        ({"task": "single-label"}, "TrainConfig.arch: unet does not fit task single-label"),
        ({"select_metric": "f1_samples"}, "TrainConfig.select_metric: 'f1_samples' is not"),
    ],
)
def test_bad_segmentation_configs_are_refused(tmp_path: Path, kw: dict, match: str) -> None:
    stores = (tmp_path / "a.h5", tmp_path / "b.h5")
    with pytest.raises(SarevalError, match=match):
        seg_config(stores, tmp_path / "run", **kw)


def test_miou_is_the_default_selection_metric(tmp_path: Path) -> None:
    stores = (tmp_path / "a.h5", tmp_path / "b.h5")
    assert seg_config(stores, tmp_path / "run").selection_metric == "miou"
