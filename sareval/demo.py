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
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sareval
from sareval.errors import OutputExistsError
from sareval.evaluator.config import DECILES
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.report import make_report
from sareval.report.compare import Setup
from sareval.train.loop import TrainConfig, train

SETUPS = (("clear", 0.0), ("cloudy", 0.8))
TEST_SUBSETS = ("clear", "cloudy", "very_cloudy")
#: subsets on which the two training setups are compared (paired bootstrap)
COMPARED_SUBSETS = ("very_cloudy", "cloudy")
#: the sub-directories a demo writes (and ``overwrite`` removes)
DEMO_DIRS = ("data", "data-val", "stores", "runs", "report")


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the report, each model's results per test subset, and
    the wall time in seconds."""

    out: Path
    report: Any
    results: dict[tuple[str, str], Any] = field(default_factory=dict)
    seconds: float = 0.0


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
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Generate, preprocess, train clear / cloudy ResNet18s, evaluate, report (module doc).

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
    result.seconds = time.perf_counter() - t_start
    return result


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
