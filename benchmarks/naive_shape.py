"""The naive way to compute SHAPE today: 2^M passes over the GeoTIFF tree, one per coalition.

Written the way a typical research script does it (the SEN12MS classification toolbox's
``dataset.py`` + ``test.py`` pattern), so that it is a fair baseline:

- a map-style torch ``Dataset`` that opens the sample's S1 and S2 GeoTIFFs with rasterio in every
  ``__getitem__``, reads the bands the model uses, cleans and z-scores them on the host
  (per sample, numpy) and returns a float32 tensor and the label (from the label pickle:
  17 IGBP fractions -> 10 simplified classes -> argmax, or multi-hot at 0.1);
- a ``DataLoader`` and a torch eager model in ``eval()`` / ``no_grad``;
- for each of the 2^M coalitions (the empty one included, as a full pass): a pass over the whole
  test list with the absent modalities' channels set to zero on the host (zero in the network's
  input space, after normalisation: the study's baseline);
- metrics with scikit-learn at the end, then Shapley values by the textbook formula.

The model card is the single source of the band order and normalisation, so this script and
``sareval shape`` evaluate exactly the same function; :mod:`tests.test_benchmarks` checks that
their metrics are equal.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations
from math import factorial
from pathlib import Path
from typing import Any

import numpy as np

from sareval.bands import S1_BANDS, S2_BANDS
from sareval.card import ModelCard
from sareval.classes import igbp10_fractions, multi_hot, single_label


def sen12ms_paths(root: Path, s2_name: str) -> tuple[Path, Path]:
    """(s1, s2) GeoTIFF paths of ``ROIs1158_spring_s2_124_p100.tif`` under a SEN12MS root."""
    season, sensor, scene, patch = s2_name.removesuffix(".tif").rsplit("_", 3)
    if sensor != "s2":
        raise ValueError(f"not an s2 file name: {s2_name}")
    s2 = root / season / f"s2_{scene}" / s2_name
    s1 = root / season / f"s1_{scene}" / f"{season}_s1_{scene}_{patch}.tif"
    return s1, s2


class Sen12msTestSet:
    """SEN12MS samples read from the GeoTIFF tree, one rasterio open per file per item.

    Item ``i``: ``(x, y)`` with ``x`` float32 (C, H, W) in the card's channel order, cleaned and
    z-scored per the card; ``y`` the class index (single-label) or multi-hot (multi-label).
    """

    def __init__(
        self, root: Path, names: Sequence[str], labels: dict[str, Any], card: ModelCard
    ) -> None:
        self.root = Path(root)
        self.names = list(names)
        self.labels = labels
        self.card = card
        # 1-based band indexes for rasterio, and where each goes in the input
        self.s1_read = [S1_BANDS.index(b) + 1 for b in card.channels if b in S1_BANDS]
        self.s2_read = [S2_BANDS.index(b) + 1 for b in card.channels if b in S2_BANDS]
        self.s1_slots = [i for i, b in enumerate(card.channels) if b in S1_BANDS]
        self.s2_slots = [i for i, b in enumerate(card.channels) if b in S2_BANDS]
        t = [card.transform(b) for b in card.channels]
        self.nan = [x.nan for x in t]
        self.clip = [x.clip for x in t]
        self.mean = np.array([x.mean for x in t], np.float32)[:, None, None]
        self.std = np.array([x.std for x in t], np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import rasterio
        import torch

        name = self.names[i]
        s1_path, s2_path = sen12ms_paths(self.root, name)
        with rasterio.open(s2_path) as f:
            s2 = f.read(self.s2_read)
        with rasterio.open(s1_path) as f:
            s1 = f.read(self.s1_read)
        x = np.empty((len(self.card.channels), *s2.shape[1:]), np.float32)
        x[self.s2_slots] = s2
        x[self.s1_slots] = s1
        for c in range(len(x)):
            if self.nan[c] is not None:
                x[c] = np.nan_to_num(x[c], nan=self.nan[c])
            if self.clip[c] is not None:
                np.clip(x[c], self.clip[c][0], self.clip[c][1], out=x[c])
        x = (x - self.mean) / self.std
        fractions = igbp10_fractions(np.asarray(self.labels[name]))
        if self.card.task == "single-label":
            y = int(single_label(fractions))
        else:
            y = torch.from_numpy(multi_hot(fractions))
        return torch.from_numpy(x), y


def coalitions(players: Sequence[str]) -> list[tuple[str, ...]]:
    """All 2^M subsets, empty first, then by size, in player order."""
    return [c for k in range(len(players) + 1) for c in combinations(players, k)]


def coalition_label(c: Sequence[str]) -> str:
    return "+".join(c) if c else "none"


def sklearn_metrics(y: np.ndarray, p: np.ndarray, task: str, k: int) -> dict[str, float]:
    """Every metric of the study, by scikit-learn (``zero_division=0``, all K class columns).

    Single-label: ``oa`` (accuracy), ``aa`` (mean recall over all K classes, SEN12MS: an empty
    class counts 0), ``balanced_accuracy`` (sklearn's, classes present), F1/F2, precision and
    recall (micro/macro/samples on one-hot rows). Multi-label: the same F-scores, precision,
    recall on multi-hot rows, and ``subset_accuracy``.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        fbeta_score,
        precision_score,
        recall_score,
    )

    labels = list(range(k))
    out: dict[str, float] = {}
    if task == "single-label":
        out["oa"] = accuracy_score(y, p)
        recall = recall_score(y, p, labels=labels, average=None, zero_division=0)
        out["aa"] = float(np.mean(recall))
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected
            warnings.simplefilter("ignore", UserWarning)
            out["balanced_accuracy"] = balanced_accuracy_score(y, p)
        y_hot, p_hot = np.eye(k, dtype=np.uint8)[y], np.eye(k, dtype=np.uint8)[p]
    else:
        y_hot, p_hot = y, p
        out["subset_accuracy"] = accuracy_score(y_hot, p_hot)
    for avg in ("micro", "macro", "samples"):
        kw: dict[str, Any] = {"labels": labels, "average": avg, "zero_division": 0}
        out[f"f1_{avg}"] = fbeta_score(y_hot, p_hot, beta=1.0, **kw)
        out[f"f2_{avg}"] = fbeta_score(y_hot, p_hot, beta=2.0, **kw)
        out[f"precision_{avg}"] = precision_score(y_hot, p_hot, **kw)
        out[f"recall_{avg}"] = recall_score(y_hot, p_hot, **kw)
    return {name: float(v) for name, v in out.items()}


def shapley(v: dict[tuple[str, ...], float], players: Sequence[str]) -> dict[str, float]:
    """phi_i = sum_{S subset M\\{i}} |S|!(m-|S|-1)!/m! (V(S u {i}) - V(S)), by enumeration."""
    m = len(players)
    phi = {}
    for i in players:
        rest = [p for p in players if p != i]
        total = 0.0
        for s in coalitions(rest):
            with_i = tuple(p for p in players if p in s or p == i)
            weight = factorial(len(s)) * factorial(m - len(s) - 1) / factorial(m)
            total += weight * (v[with_i] - v[s])
        phi[i] = total
    return phi


def run_naive(
    root: str | Path,
    split_list: Sequence[str],
    labels: dict[str, Any],
    model: Any,
    card: ModelCard,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """2^M passes of ``model`` (torch eager) over the SEN12MS test list ``split_list``.

    Returns ``n_samples``, ``coalitions`` (names), ``predictions`` and ``targets`` (arrays),
    ``metrics`` (metric -> {"V": {coalition: value}, "relevance": {modality: phi},
    "cooperation": C}, Z = 1) and ``confusion`` (single-label: coalition -> K x K counts).
    """
    import torch
    from sklearn.metrics import confusion_matrix
    from torch.utils.data import DataLoader

    dataset = Sen12msTestSet(Path(root), split_list, labels, card)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model = model.to(device).eval()
    players = list(card.modality_names)
    predictions: dict[tuple[str, ...], np.ndarray] = {}
    targets: np.ndarray | None = None
    for coalition in coalitions(players):
        absent = [c for p in players if p not in coalition for c in card.channel_indices(p)]
        preds, ys = [], []
        with torch.no_grad():
            for x, y in loader:
                x[:, absent] = 0.0  # the missing modality: zeros in the network's input space
                out = model(x.to(device))
                if card.task == "single-label":
                    preds.append(out.argmax(1).cpu().numpy())
                else:
                    prob = out if card.output == "probabilities" else torch.sigmoid(out)
                    preds.append((prob >= card.threshold).to(torch.uint8).cpu().numpy())
                ys.append(np.asarray(y))
        predictions[coalition] = np.concatenate(preds)
        targets = np.concatenate(ys)
    assert targets is not None
    k = card.n_classes
    per_coalition = {c: sklearn_metrics(targets, p, card.task, k) for c, p in predictions.items()}
    metrics: dict[str, Any] = {}
    full = tuple(players)
    for name in per_coalition[full]:
        v = {c: per_coalition[c][name] for c in per_coalition}
        singles = sum(v[(p,)] - v[()] for p in players)
        metrics[name] = {
            "V": {coalition_label(c): v[c] for c in v},
            "relevance": shapley(v, players),
            "cooperation": v[full] - v[()] - singles,
        }
    result: dict[str, Any] = {
        "n_samples": len(targets),
        "coalitions": [coalition_label(c) for c in predictions],
        "predictions": {coalition_label(c): p for c, p in predictions.items()},
        "targets": targets,
        "metrics": metrics,
    }
    if card.task == "single-label":
        result["confusion"] = {
            coalition_label(c): confusion_matrix(targets, p, labels=list(range(k)))
            for c, p in predictions.items()
        }
    return result


def load_split(root: str | Path, split_list: str | Path, labels_pkl: str | Path) -> tuple:
    """The test list and the label dict, read with the project's restricted unpickler."""
    from sareval.preprocess.pickles import safe_load_pickle

    split = Path(split_list)
    if split.suffix == ".txt":
        names = [s.strip() for s in split.read_text().splitlines() if s.strip()]
    else:
        names = list(safe_load_pickle(split))
    return names, dict(safe_load_pickle(Path(labels_pkl)))
