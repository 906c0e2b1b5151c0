"""The study's pipeline end to end on a generated dataset, in minutes on a CPU (``sareval demo``).

Library calls only (the command is a thin shell over :func:`run_demo`); every output lands
under ``out``::

    data/          generate_sen12ms (SEN12MS + SEN12MS-CR layout; seed ``seed``)
    data-val/      the same generator with seed + 1: independent scenes for validation
    stores/        preprocess_sen12ms -> train.h5, val.h5, test.h5 (with cloudy S2)
    runs/clear/    train(cloudy_prob=0)   (the study's "clear" training)
    runs/cloudy/   train(cloudy_prob=0.8) (its "cloudy" training; both keep model.onnx,
                   model.pt, card.json, config.json, metrics.jsonl; the resume checkpoints
                   last.pt / best.pt are deleted to save disk space)
    runs/*/shape-<subset>.json/.csv   sareval.evaluate of model.onnx on the test subsets clear,
                   cloudy, very_cloudy (200 bootstrap replicates, by class, per-sample
                   relevance and false-prediction detection)
    runs/*/pred-<subset>.h5           the per-sample decisions of every coalition
    report/        make_report: summary.md/.csv, the figures, and comparisons.md/.csv
                   (cloudy-trained minus clear-trained on cloudy and very_cloudy)
    segmentation/  the segmentation part (:func:`run_segmentation`) on the same stores (their
                   ``lc10_map`` labels and per-pixel ``/cloud_mask``): model.pt and card.json of
                   a small fully convolutional net trained with cloudy mixing, shape.json/.csv
                   (sareval.evaluate on the cloudy test subset: 200 replicates, by class,
                   per-pixel relevance) and maps.h5 (its relevance maps)
    report-segmentation/  make_report of shape.json and maps.h5: per-class IoU relevance,
                   clear vs cloudy pixels, relevance maps (RGB, SAR, label, prediction, SAR and
                   optical relevance) and summary.md

The segmentation model is trained here with plain torch (:func:`tiny_segmenter`, seconds per
epoch), not with ``sareval.train``: its smallest segmentation network (a U-Net) takes minutes per
epoch on 2 CPU cores, beyond the demo's budget.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sareval
from sareval.bands import S2_BANDS
from sareval.card import ModelCard
from sareval.errors import OutputExistsError
from sareval.evaluator.config import DECILES
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.report import make_report
from sareval.report.compare import Setup
from sareval.store import Store
from sareval.train.loop import TrainConfig, train
from sareval.train.mixing import cloudy_draws

SETUPS = (("clear", 0.0), ("cloudy", 0.8))
TEST_SUBSETS = ("clear", "cloudy", "very_cloudy")
#: subsets on which the two training setups are compared (paired bootstrap)
COMPARED_SUBSETS = ("very_cloudy", "cloudy")
#: the sub-directories a demo writes (and ``overwrite`` removes)
DEMO_DIRS = ("data", "data-val", "stores", "runs", "report", "segmentation",
             "report-segmentation")  # fmt: skip
#: the segmentation part: players and their bands, the store's label set, the cloudy-mixing
#: probability of training, the test subset (cloudy S2 with clear and cloudy pixels)
SEG_PLAYERS = {"sar": ("VV", "VH"), "opt": S2_BANDS}
SEG_LABELS = "lc10_map"
SEG_CLOUDY_PROB = 0.5
SEG_SUBSET = "cloudy"


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the report, each model's results per test subset, and
    the wall time in seconds."""

    out: Path
    report: Any
    results: dict[tuple[str, str], Any] = field(default_factory=dict)
    seconds: float = 0.0
    segmentation: Any = None
    segmentation_report: Any = None


def _prepare(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise OutputExistsError(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise OutputExistsError(root)
        for name in DEMO_DIRS:  # only what a demo writes: never the rest of a directory
            if (root / name).is_dir():
                shutil.rmtree(root / name)
    root.mkdir(parents=True, exist_ok=True)


def run_demo(
    out: str | Path = "sareval-demo",
    *,
    patches: int = 1200,
    size: int = 32,
    epochs: int = 12,
    seg_epochs: int = 5,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Generate, preprocess, train clear / cloudy ResNet18s, evaluate, report, then the
    segmentation part (``seg_epochs`` epochs; module doc).

    ``log`` receives one line per step, prefixed with the elapsed seconds."""
    root = Path(out)
    _prepare(root, overwrite)
    t_start = time.perf_counter()

    def step(text: str) -> None:
        log(f"[{time.perf_counter() - t_start:6.1f} s] {text}")

    data, val_data, stores = root / "data", root / "data-val", root / "stores"
    step(f"generating {patches} SEN12MS patches of {size}x{size} px (+ SEN12MS-CR) in {data}")
    generate_sen12ms(data, n_patches=patches, size=size, seed=seed)
    generate_sen12ms(val_data, n_patches=max(patches // 4, 16), size=size, seed=seed + 1)

    step(f"preprocessing into HDF5 stores in {stores}")
    for name, tree, split in (("train", data, "train"), ("test", data, "test"),
                              ("val", val_data, "train")):  # fmt: skip
        ms = tree / "sen12ms"
        preprocess_sen12ms(
            ms, stores / f"{name}.h5", split_list=ms / f"{split}_list.pkl",
            labels=ms / "IGBP_probability_labels.pkl", cr_root=tree / "sen12mscr",
            progress=False,
        )  # fmt: skip

    for label, p in SETUPS:
        step(f"training the {label!r} model (ResNet18, cloudy-prob {p}, {epochs} epochs)")
        run = root / "runs" / label
        train(TrainConfig(
            data=str(stores / "train.h5"), val=str(stores / "val.h5"), out=str(run),
            arch="resnet18", preset="study-resnet18", task="single-label", cloudy_prob=p,
            epochs=epochs, batch_size=32, seed=seed, device="cpu", in_memory=True,
            progress=False,
        ))  # fmt: skip
        for checkpoint in ("last.pt", "best.pt"):  # only needed to resume: 135 MB each
            (run / checkpoint).unlink(missing_ok=True)

    result = DemoResult(root, None)
    step("SHAPE relevance of both models on the test subsets " + ", ".join(TEST_SUBSETS))
    with sareval.open_store(stores / "test.h5") as store:
        for label, _ in SETUPS:
            run = root / "runs" / label
            for subset in TEST_SUBSETS:
                r = sareval.evaluate(
                    run / "model.onnx", store.subset(subset), backend="onnxruntime",
                    cloud_cover_bins=DECILES if subset == "cloudy" else None, by_class=True,
                    replicates=200, per_sample=True, save_predictions=run / f"pred-{subset}.h5",
                )  # fmt: skip
                r.save(run / f"shape-{subset}.json", csv=run / f"shape-{subset}.csv")
                result.results[label, subset] = r

    step(f"writing the report to {root / 'report'}")
    (a, _), (b, _) = SETUPS
    compare = [
        (Setup(f"{a}-trained", (root / "runs" / a / f"pred-{s}.h5",)),
         Setup(f"{b}-trained", (root / "runs" / b / f"pred-{s}.h5",)))
        for s in COMPARED_SUBSETS
    ]  # fmt: skip
    result.report = make_report(
        [(f"{label}-trained", root / "runs" / label) for label, _ in SETUPS],
        root / "report",
        compare=compare,
    )
    step(f"segmentation: a small net trained for {seg_epochs} epochs, SHAPE on the pixels of "
         f"the {SEG_SUBSET!r} test subset, report in {root / 'report-segmentation'}")  # fmt: skip
    result.segmentation, result.segmentation_report = run_segmentation(
        stores, root, epochs=seg_epochs, seed=seed
    )
    result.seconds = time.perf_counter() - t_start
    return result


def tiny_segmenter(n_channels: int, n_classes: int, width: int = 16) -> Any:
    """A 3x3 convolution to ``width`` channels, ReLU, a 1x1 convolution to the classes (a
    ``torch.nn.Sequential``): logits (N, K, H, W) at the input size."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(n_channels, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, n_classes, 1),
    )  # fmt: skip


def _segmentation_inputs(store: Store, cloudy: np.ndarray) -> np.ndarray:
    """The raw inputs (N, C, H, W) float32 of every row in :data:`SEG_PLAYERS` band order, the
    optical bands from the cloudy version where ``cloudy``."""
    rows = np.arange(store.n_samples)
    s1 = store.read_source("s1", rows)
    s2 = store.read_source("s2", rows).astype(np.float32)
    if cloudy.any():
        s2[cloudy] = store.read_source("s2_cloudy", rows[cloudy])
    by_band = {b: s1[:, i] for i, b in enumerate(store.bands("s1"))}
    by_band |= {b: s2[:, i] for i, b in enumerate(store.bands("s2"))}
    bands = [b for group in SEG_PLAYERS.values() for b in group]
    return np.stack([by_band[b] for b in bands], axis=1).astype(np.float32)


def train_segmenter(
    train_store: str | Path, *, epochs: int, seed: int, batch_size: int = 32
) -> tuple[Any, ModelCard]:
    """A :func:`tiny_segmenter` trained on every row of ``train_store`` (cross-entropy over the
    labelled pixels of :data:`SEG_LABELS`, Adam; each epoch a sample reads its cloudy optical
    version with probability :data:`SEG_CLOUDY_PROB`, :func:`~sareval.train.mixing.cloudy_draws`),
    and its card (z-scores of the clear training images)."""
    import torch

    torch.manual_seed(seed)
    with Store(train_store) as store:
        spec = store.label_set(SEG_LABELS)
        labels = torch.from_numpy(store.labels(SEG_LABELS).astype(np.int64))
        available = store.cloudy_available(np.arange(store.n_samples))
        clear = _segmentation_inputs(store, np.zeros(store.n_samples, bool))
        cloudy = _segmentation_inputs(store, available) if available.any() else clear
    bands = [b for group in SEG_PLAYERS.values() for b in group]
    mean = np.array([np.nanmean(clear[:, i]) for i in range(len(bands))], np.float32)
    std = np.array([np.nanstd(clear[:, i]) or 1.0 for i in range(len(bands))], np.float32)
    card = ModelCard.custom(
        {p: list(b) for p, b in SEG_PLAYERS.items()}, task="segmentation",
        class_names=spec.class_names, input_size=clear.shape[-1],
        normalization={b: {"mean": float(m), "std": float(s)}
                       for b, m, s in zip(bands, mean, std, strict=True)},
        ignore_index=spec.ignore_index, name="demo-segmenter",
        provenance={"training": {"cloudy_prob": SEG_CLOUDY_PROB, "epochs": epochs}},
    )  # fmt: skip
    net = tiny_segmenter(len(bands), len(spec.class_names))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    ignore = -100 if spec.ignore_index is None else int(spec.ignore_index)  # -100: torch's
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=ignore)
    scale = (torch.from_numpy(mean)[:, None, None], torch.from_numpy(std)[:, None, None])
    net.train()
    for epoch in range(epochs):
        use_cloudy = torch.from_numpy(cloudy_draws(available, SEG_CLOUDY_PROB, seed, epoch))
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + epoch))
        for batch in order.split(batch_size):
            raw = torch.where(use_cloudy[batch, None, None, None],
                              torch.from_numpy(cloudy[batch.numpy()]),
                              torch.from_numpy(clear[batch.numpy()]))  # fmt: skip
            x = torch.nan_to_num((raw - scale[0]) / scale[1])
            optimiser.zero_grad()
            loss = loss_fn(net(x), labels[batch])
            loss.backward()
            optimiser.step()
    return net.eval(), card


def run_segmentation(stores: Path, root: Path, *, epochs: int, seed: int) -> tuple[Any, Any]:
    """The segmentation part (module docstring): train, evaluate on :data:`SEG_SUBSET` of the
    test store, write ``segmentation/`` and ``report-segmentation/``; (ShapeResult, Report)."""
    out = root / "segmentation"
    out.mkdir(parents=True, exist_ok=True)
    import torch

    net, card = train_segmenter(stores / "train.h5", epochs=epochs, seed=seed)
    torch.save(net.state_dict(), out / "model.pt")
    (out / "card.json").write_text(card.to_json() + "\n")
    with sareval.open_store(stores / "test.h5") as store:
        r = sareval.evaluate(
            net, store.subset(SEG_SUBSET), card=card, by_class=True, replicates=200,
            per_sample=True, save_predictions=out / "maps.h5",
        )  # fmt: skip
    r.save(out / "shape.json", csv=out / "shape.csv")
    report = make_report(
        [("demo-segmenter", out / "shape.json"), ("demo-segmenter", out / "maps.h5")],
        root / "report-segmentation", metrics=["miou"],
    )  # fmt: skip
    return r, report


def segmentation_summary(result: DemoResult, metric: str = "miou") -> str:
    """``metric`` and its SAR / optical relevance [95% interval] over all pixels and over the
    clear and cloudy pixels of the segmentation test subset, and the mean per-pixel relevance
    of the probability of the true class (plain text, aligned)."""
    r = result.segmentation
    doc = r.doc
    players = list(doc["players"])
    full = "+".join(players)
    pixel = (doc.get("pixel_relevance") or {}).get("true_probability", {})
    head = ["pixels", "n", metric, *(f"relevance {p}" for p in players),
            *(f"per-pixel {p}" for p in players)]  # fmt: skip

    def cell(m: dict[str, Any], key: str, sub: str) -> str:
        v, ci = m[key][sub], (m.get("ci") or {}).get(key, {}).get(sub)
        return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    parts = [("all", doc["n_pixels"], doc["metrics"][metric], pixel.get("all") or {})]
    parts += [(e["label"], e["n_pixels"], e["metrics"].get(metric),
               (pixel.get("by_pixels") or {}).get(e["label"]) or {})
              for e in doc["by"].get("cloud_pixels", []) if e["n_pixels"]]  # fmt: skip
    body = [
        [label, str(n), cell(m, "V", full), *(cell(m, "relevance", p) for p in players),
         *(f"{pp[p]:.4f}" if pp.get(p) is not None else "n/a" for p in players)]
        for label, n, m, pp in parts if m
    ]  # fmt: skip
    return _aligned(head, body)


def summary_table(rows: list[Any]) -> str:
    """Overall accuracy and relevance per model and test subset (plain text, aligned)."""
    sel = [r for r in rows if r.metric == "oa"] or rows
    metric = sel[0].metric if sel else "oa"
    players = list(dict.fromkeys(p for r in sel for p in r.players))
    head = ["model", "test subset", "samples", metric, *(f"relevance {p}" for p in players)]
    body = [
        [r.model, r.subset, str(r.n_samples), f"{r.values['V(all)'].mean:.3f}"]
        + [f"{r.values[f'relevance:{p}'].mean:.3f}" for p in players]
        for r in sel
    ]
    return _aligned(head, body)


def _aligned(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def comparison_lines(result: DemoResult, metric: str = "oa") -> list[str]:
    """SAR relevance (and V(all)), cloudy-trained minus clear-trained, per compared subset."""
    lines = []
    for c in result.report.comparisons:
        if metric not in c.differences:
            continue
        wanted = (f"SAR relevance ({metric})", f"optical relevance ({metric})", f"{metric} V")
        lines += [x for x in c.lines(digits=3) if x.startswith(wanted)]
    return lines


def detection_summary(result: DemoResult) -> str:
    """AUROC of the false-prediction detectors vs the max-softmax baseline (``msp``), per model
    and test subset, and a plain sentence each on whether relevance beats the baseline."""
    head = ["model", "test subset", "wrong / n", "detector", "AUROC [95% CI]", "minus msp"]
    body, sentences = [], []
    for (label, subset), r in result.results.items():
        det = r.doc.get("detection") or {}
        for row in det.get("rows", []):
            lo, hi = row["auroc_ci"]
            dlo, dhi = row["auroc_minus_baseline_ci"]
            body.append([
                f"{label}-trained", subset, f"{row['n_wrong']} / {row['n']}", row["detector"],
                f"{row['auroc']:.3f} [{lo:.3f}, {hi:.3f}]",
                "baseline" if row["detector"] == "msp"
                else f"{row['auroc_minus_baseline']:+.3f} [{dlo:+.3f}, {dhi:+.3f}]",
            ])  # fmt: skip
        sentences.append(f"{label}-trained, {subset}: {det.get('summary', 'not computed')}")
    table = _aligned(head, body) if body else "(no detection rows)"
    return table + "\n" + "\n".join(sentences)
