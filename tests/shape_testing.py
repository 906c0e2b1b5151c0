"""Helpers for the evaluator tests: small stores, tiny exported models, the naive reference.

The naive reference is written independently of :mod:`sareval.evaluator.preamble`: one
coalition at a time, numpy cleaning / z-scoring of a copy straight from the card, absent
channels overwritten on the host, a plain onnxruntime session on the model alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from sareval.bands import S2_BANDS, SEN12MS_S2_LAND_BANDS
from sareval.card import ModelCard, set_onnx_card
from sareval.store import LabelSpec, SensorSpec, Store, StoreWriter

CLASSES = tuple(f"class{k}" for k in range(6))
S2_MEAN = (1226.4, 1137.4, 1139.7, 1351.0, 1932.9, 2211.2, 2155.0, 2409.1, 2001.9, 1356.1)
S2_STD = (741.6, 740.9, 960.1, 946.8, 985.5, 1082.4, 1057.8, 1136.2, 1132.8, 991.5)


def write_store(
    path: Path, n: int = 40, h: int = 8, w: int = 8, seed: int = 0, s2_bands: tuple = S2_BANDS
) -> Path:
    """A SEN12MS-like store: S1 dB float32 (with NaN and Inf), 13-band S2 uint16, cloudy S2.

    Labels: ``single`` (index, 6 classes, class 5 never occurs) and ``multi`` (multi-hot,
    class 4 never occurs, some all-negative rows). Subsets: ``clear`` (all, s2),
    ``cloudy`` (every other row, s2_cloudy), ``tail`` (rows 5..), ``nothing`` (empty).
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    # per-sample, per-band levels plus pixel noise: predictions vary from sample to sample
    s1 = rng.normal(-14, 5, size=(n, 2, 1, 1)) + rng.normal(0, 1, size=(n, 2, h, w))
    s1 = s1.astype(np.float32)
    s1[1, 0, 2, 3] = np.nan
    s1[3, 1, 0, 0] = np.nan
    s1[4, 0, 1, 1] = np.inf
    c2 = len(s2_bands)
    s2 = rng.integers(0, 4000, size=(n, c2, 1, 1)) + rng.integers(0, 1000, size=(n, c2, h, w))
    s2 = s2.astype(np.uint16)
    cloudy = np.clip(s2.astype(np.int64) + rng.integers(0, 6000, size=s2.shape), 0, 65535)
    cloudy = cloudy.astype(np.uint16)
    available = np.arange(n) % 2 == 0
    cloudy[~available] = 0
    single = rng.integers(0, k - 1, size=n)
    multi = (rng.random((n, k)) < 0.35).astype(np.uint8)
    multi[:, 4] = 0
    multi[::7] = 0
    cover = np.where(available, rng.random(n), np.nan).astype(np.float32)
    writer = StoreWriter(
        path,
        dataset="sen12ms",
        split="test",
        default_task="single-label",
        ids=[f"ROIs1158_spring_{i // 5}_p{i}" for i in range(n)],
        height=h,
        width=w,
        sensors=[
            SensorSpec("s1", ("VV", "VH"), "float32"),
            SensorSpec("s2", tuple(s2_bands), "uint16"),
        ],
        labels=[LabelSpec("single", "index", CLASSES), LabelSpec("multi", "multi_hot", CLASSES)],
        config={"test": "shape", "seed": seed, "n": n},
        with_cloudy=True,
    )
    for a in range(0, n, 9):
        b = min(a + 9, n)
        writer.write_rows(
            a,
            {"s1": s1[a:b], "s2": s2[a:b], "s2_cloudy": cloudy[a:b]},
            {"single": single[a:b], "multi": multi[a:b]},
            cloud_cover=cover[a:b],
            cloudy_available=available[a:b],
        )
    rows = np.arange(n)
    writer.finish(
        {
            "clear": (rows, "s2", "all rows"),
            "cloudy": (rows[available], "s2_cloudy", "rows with a cloudy version"),
            "tail": (rows[5:], "s2", "rows 5.."),
            "nothing": (rows[:0], "s2", "no rows"),
        }
    )
    return path


def make_card(task: str = "single-label", **changes: object) -> ModelCard:
    """The SEN12MS s1s2 layout (10 S2 land bands, then VV, VH) with toolbox-like transforms."""
    norm = {
        b: {"mean": m, "std": s}
        for b, m, s in zip(SEN12MS_S2_LAND_BANDS, S2_MEAN, S2_STD, strict=True)
    }
    norm["VV"] = {"nan": 0.0, "clip": [-25.0, 0.0], "mean": -11.77, "std": 4.53}
    norm["VH"] = {"nan": 0.0, "clip": [-25.0, 0.0], "mean": -18.29, "std": 4.36}
    d = {
        "name": "tiny",
        "task": task,
        "class_names": list(CLASSES),
        "output": "logits",
        "threshold": 0.5,
        "input": {"name": "input", "channels": [*SEN12MS_S2_LAND_BANDS, "VV", "VH"]},
        "modalities": [
            {"name": "sar", "bands": ["VV", "VH"]},
            {"name": "opt", "bands": list(SEN12MS_S2_LAND_BANDS)},
        ],
        "normalization": norm,
    }
    d.update(changes)
    return ModelCard.from_dict(d)


def tiny_net(n_in: int = 12, n_classes: int = len(CLASSES), seed: int = 0):
    """A small conv net (B, n_in, H, W) -> (B, K) that depends on every input channel."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(n_in, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, n_classes),
    )
    with torch.no_grad():  # make the output depend strongly on both modalities
        net[0].weight.mul_(3.0)
    return net.eval()


def export_onnx(net, card: ModelCard, path: Path, h: int = 8, w: int = 8) -> Path:
    """Export with a dynamic batch axis and embed the card."""
    import onnx
    import torch

    x = torch.randn(3, card.n_channels, h, w)
    program = torch.onnx.export(
        net,
        (x,),
        dynamo=True,
        input_names=[card.input_name],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    model = program.model_proto
    set_onnx_card(model, card)
    onnx.save(model, str(path))
    return path


def export_torchscript(net, card: ModelCard, path: Path) -> Path:
    import torch

    from sareval.card import TORCHSCRIPT_EXTRA_FILE

    scripted = torch.jit.script(net)
    torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_EXTRA_FILE: card.to_json()})
    return path


# --- the naive reference -----------------------------------------------------------------------
def naive_inputs(store: Store, subset: str, card: ModelCard) -> np.ndarray:
    """Every sample's network input (N, C, H, W), cleaned and z-scored per the card."""
    sub = store.subset(subset)
    s1 = store.file["s1"][()][sub.rows]
    s2 = store.file[sub.optical][()][sub.rows]
    stored = {b: ("s1", i) for i, b in enumerate(store.bands("s1"))}
    stored.update({b: ("s2", i) for i, b in enumerate(store.bands("s2"))})
    chans = []
    for band in card.channels:
        sensor, i = stored[band]
        x = (s1 if sensor == "s1" else s2)[:, i].astype(np.float32)
        t = card.transform(band)
        if t.nan is not None:
            x = np.nan_to_num(x, nan=t.nan)
        if t.clip is not None:
            x = np.clip(x, t.clip[0], t.clip[1])
        chans.append((x - np.float32(t.mean)) / np.float32(t.std))
    return np.stack(chans, axis=1).astype(np.float32)


def player_coalitions(players: tuple[str, ...]) -> list[frozenset[str]]:
    return [frozenset(c) for r in range(len(players) + 1) for c in combinations(players, r)]


def naive_outputs(
    model_path: Path,
    store_path: Path,
    subset: str,
    card: ModelCard,
    baseline: np.ndarray | None = None,
    batch: int = 16,
) -> tuple[list[frozenset[str]], np.ndarray]:
    """Outputs (2^M, N, K) of every coalition (empty first), one coalition at a time.

    ``baseline`` (C,): the value of an absent channel in input space (default 0).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with Store(store_path) as store:
        x = naive_inputs(store, subset, card)
    base = np.zeros(card.n_channels, np.float32) if baseline is None else baseline
    coalitions = player_coalitions(card.modality_names)
    owner = {b: m.name for m in card.modalities for b in m.bands}
    outs = []
    for coalition in coalitions:
        masked = x.copy()
        for c, band in enumerate(card.channels):
            if owner[band] not in coalition:
                masked[:, c] = base[c]
        rows = [
            session.run(None, {card.input_name: masked[a : a + batch]})[0]
            for a in range(0, len(x), batch)
        ]
        outs.append(np.concatenate(rows))
    return coalitions, np.stack(outs)


# --- shared assets (built once per test session) ------------------------------------------------
@dataclass
class Assets:
    """A store and tiny single-/multi-label models (ONNX and TorchScript) with cards."""

    root: Path
    store: Path
    cards: dict[str, ModelCard]
    nets: dict[str, Any]
    onnx: dict[str, Path]
    torchscript: dict[str, Path]


_ASSETS: dict[str, Assets] = {}


def get_assets(tmp_path_factory: Any) -> Assets:
    """The session's :class:`Assets` (built on first use)."""
    if "assets" not in _ASSETS:
        root = tmp_path_factory.mktemp("shape_assets")
        store = write_store(root / "test.h5")
        cards, nets, onnx_paths, ts_paths = {}, {}, {}, {}
        for task, seed in (("single-label", 0), ("multi-label", 1)):
            cards[task] = make_card(task)
            nets[task] = tiny_net(seed=seed)
            onnx_paths[task] = export_onnx(nets[task], cards[task], root / f"{task}.onnx")
            ts_paths[task] = export_torchscript(nets[task], cards[task], root / f"{task}.pt")
        _ASSETS["assets"] = Assets(root, store, cards, nets, onnx_paths, ts_paths)
    return _ASSETS["assets"]


# --- scikit-learn references ----------------------------------------------------------------------
def naive_decisions(outputs: np.ndarray, task: str) -> np.ndarray:
    """argmax (single-label) or sigmoid(logit) >= 0.5, i.e. logit >= 0 (multi-label)."""
    if task == "single-label":
        return outputs.argmax(axis=-1)
    return outputs >= 0.0


def sklearn_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    """Every metric of the evaluator, computed by scikit-learn (zero_division=0, all K labels)."""
    import warnings

    from sklearn import metrics as skm

    labels = list(range(k))
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from y_true / y_pred
        if task == "single-label":
            eye = np.eye(k, dtype=int)
            out["oa"] = skm.accuracy_score(y_true, y_pred)
            recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
            out["aa"] = float(np.mean(recall))
            out["balanced_accuracy"] = skm.balanced_accuracy_score(y_true, y_pred)
            for beta in (1, 2):
                for avg in ("micro", "macro"):
                    out[f"f{beta}_{avg}"] = skm.fbeta_score(
                        y_true, y_pred, beta=beta, labels=labels, average=avg, zero_division=0
                    )
                out[f"f{beta}_samples"] = skm.fbeta_score(
                    eye[y_true], eye[y_pred], beta=beta, average="samples", zero_division=0
                )
            out["f1_weighted"] = skm.f1_score(
                y_true, y_pred, labels=labels, average="weighted", zero_division=0
            )
            for avg in ("micro", "macro"):
                out[f"precision_{avg}"] = skm.precision_score(
                    y_true, y_pred, labels=labels, average=avg, zero_division=0
                )
                out[f"recall_{avg}"] = skm.recall_score(
                    y_true, y_pred, labels=labels, average=avg, zero_division=0
                )
            kappa = skm.cohen_kappa_score(y_true, y_pred, labels=labels)
            out["kappa"] = 0.0 if np.isnan(kappa) else kappa
        else:
            y_true, y_pred = y_true.astype(int), y_pred.astype(int)
            for beta in (1, 2):
                for avg in ("micro", "macro", "samples"):
                    out[f"f{beta}_{avg}"] = skm.fbeta_score(
                        y_true, y_pred, beta=beta, average=avg, zero_division=0
                    )
            for avg in ("micro", "macro", "samples"):
                out[f"precision_{avg}"] = skm.precision_score(
                    y_true, y_pred, average=avg, zero_division=0
                )
                out[f"recall_{avg}"] = skm.recall_score(
                    y_true, y_pred, average=avg, zero_division=0
                )
            out["subset_accuracy"] = skm.accuracy_score(y_true, y_pred)
            out["hamming_loss"] = skm.hamming_loss(y_true, y_pred)
            # SEN12MS toolbox OA_multi (both sets empty -> 1) and mean per-class accuracy
            out["oa"] = skm.jaccard_score(y_true, y_pred, average="samples", zero_division=1)
            out["aa"] = float(np.mean([skm.accuracy_score(y_true[:, j], y_pred[:, j])
                                       for j in range(y_true.shape[1])]))  # fmt: skip
    return {name: float(v) for name, v in out.items()}


def store_labels(store_path: Path, subset: str, task: str) -> np.ndarray:
    with Store(store_path) as st:
        rows = st.subset(subset).rows
        return st.labels("single" if task == "single-label" else "multi", rows)


def shapley_by_orderings(V: dict[frozenset[str], float], players: tuple[str, ...]) -> dict:
    """Shapley values as the mean marginal contribution over all player orderings."""
    from itertools import permutations

    total = dict.fromkeys(players, 0.0)
    orders = list(permutations(players))
    for order in orders:
        present: frozenset[str] = frozenset()
        for p in order:
            total[p] += V[present | {p}] - V[present]
            present = present | {p}
    return {p: v / len(orders) for p, v in total.items()}


def evaluate_doc(model: Any, store: Path, subset: str, **kw: Any) -> dict[str, Any]:
    """``sareval.evaluate(model, (store, subset), ...)``'s document, with the CLI's text forms
    of ``by`` and ``players`` parsed as ``sareval shape`` parses them (for the older tests)."""
    import sareval
    from sareval.card import read_card
    from sareval.commands.parsing import parse_by, parse_players

    if isinstance(model, tuple):
        model, kw["card"] = model
    if "by" in kw:
        kw["by_class"], kw["cloud_cover_bins"] = parse_by(tuple(kw.pop("by")))
    if isinstance(kw.get("players"), str):
        card = kw.get("card") or read_card(model)
        kw["players"] = parse_players(kw["players"], card)
    if isinstance(kw.get("shard"), str):
        from sareval.commands.parsing import parse_shard

        kw["shard"] = parse_shard(kw["shard"])
    kw.setdefault("backend", "onnxruntime" if str(model).endswith(".onnx") or
                  not isinstance(model, (str, Path)) else None)  # fmt: skip
    if kw.pop("method", "shape") == "perceptual":  # its own function: players, metrics, seed
        game = {k: kw.pop(k) for k in ("players", "metrics", "seed", "permutations",
                                       "card", "progress") if k in kw}  # fmt: skip
        return sareval.perceptual_score(
            model, (store, subset), **game, execution=sareval.ShapeConfig(**kw).execution
        ).doc
    return sareval.evaluate(model, (store, subset), **kw).doc
