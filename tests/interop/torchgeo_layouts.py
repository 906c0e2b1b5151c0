"""Datasets in the on-disk layouts torchgeo's dataset classes read, from sareval's generators.

``sareval synth`` already writes the trees torchgeo expects (checked against torchgeo 0.8.1's
``BigEarthNetV2``, ``BigEarthNet`` and ``SEN12MS``); what differs is added here:

- BigEarthNet (v1): torchgeo reads its splits from ``bigearthnet-{train,val,test}.csv`` (the
  same ``s2,s1`` lines as the release's ``train.csv`` ...): copied.
- BigEarthNet v1 / v2: torchgeo reads every band as int32, so S1 dB are rounded to whole dB
  (NaN -> 0). :func:`round_s1` rewrites the S1 files with whole, finite dB (still float32) so
  that the store route (which keeps float dB) and torchgeo's see the same values; the signal
  (class-dependent backscatter) survives the rounding.
- SEN12MS: torchgeo wants all four season folders and ``{train,test}_list.txt``; a small run
  may leave a season without patches: its folder is created.

Also the small model of the tests: sareval's test card layout restricted to the given bands
and a conv net over them (a random net that depends on every channel: a band or class read
in the wrong order changes its counts).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from sareval.card import ModelCard
from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2
from sareval.preprocess.synth_sen12ms import generate_sen12ms

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")


def round_s1(s1_root: Path) -> int:
    """Rewrite every ``*_VV.tif`` / ``*_VH.tif`` under ``s1_root`` with values rounded to whole
    dB (NaN -> 0), dtype and profile unchanged; returns the number of files."""
    files = sorted(s1_root.rglob("*_V[VH].tif"))
    for path in files:
        with rasterio.open(path) as src:
            data, profile = src.read(), src.profile
        data = np.nan_to_num(np.round(data), nan=0.0).astype(data.dtype)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return len(files)


def bigearthnet_v2_tree(root: Path, n_patches: int = 40, seed: int = 1) -> Path:
    """reBEN as torchgeo's ``BigEarthNetV2(root)`` reads it (and ``sareval preprocess``)."""
    generate_bigearthnet_v2(root, n_patches=n_patches, seed=seed)
    round_s1(root / "BigEarthNet-S1")
    return root


def bigearthnet_tree(root: Path, n_patches: int = 40, seed: int = 1) -> Path:
    """BigEarthNet v1.0 + S1 as torchgeo's ``BigEarthNet(root)`` reads it."""
    generate_bigearthnet(root, n_patches=n_patches, seed=seed)
    for split in ("train", "val", "test"):
        shutil.copyfile(root / f"{split}.csv", root / f"bigearthnet-{split}.csv")
    round_s1(root / "BigEarthNet-S1-v1.0")
    return root


def sen12ms_tree(root: Path, n_patches: int = 40, size: int = 64, seed: int = 1) -> Path:
    """SEN12MS as torchgeo's ``SEN12MS(root / "sen12ms")`` reads it; returns that folder."""
    generate_sen12ms(root, n_patches=n_patches, size=size, seed=seed, cr_fraction=0.0)
    tree = root / "sen12ms"
    for season in SEASONS:
        (tree / season).mkdir(exist_ok=True)
    return tree


def small_card(bands: Sequence[str], class_names: Sequence[str], task: str, size: int) -> ModelCard:
    """A card over ``bands`` (S1 ones -> ``sar``, the others -> ``opt``) with toolbox-like
    normalisation (S1: NaN -> 0, clip to [-25, 0])."""
    s2_stats = {"mean": 1500.0, "std": 1000.0}
    norm: dict[str, Any] = {}
    for b in bands:
        if b in ("VV", "VH"):
            norm[b] = {"nan": 0.0, "clip": [-25.0, 0.0], "mean": -15.0, "std": 5.0}
        else:
            norm[b] = dict(s2_stats)
    return ModelCard.from_dict(
        {
            "name": "interop",
            "task": task,
            "class_names": list(class_names),
            "output": "logits",
            "threshold": 0.5,
            "input": {"name": "input", "channels": list(bands), "height": size, "width": size},
            "modalities": [
                {"name": "sar", "bands": [b for b in bands if b in ("VV", "VH")]},
                {"name": "opt", "bands": [b for b in bands if b not in ("VV", "VH")]},
            ],
            "normalization": norm,
        }
    )


def small_net(n_in: int, n_classes: int, seed: int = 0) -> Any:
    """A small conv net (B, n_in, H, W) -> (B, K) whose output depends on every channel."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(n_in, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, n_classes),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    return net.eval()
