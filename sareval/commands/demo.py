"""``sareval demo``: the study's pipeline end to end on a generated dataset, in minutes on a CPU.

Steps (each is the public command a user would run; every output lands under OUT)::

    data/          sareval synth sen12ms (SEN12MS + SEN12MS-CR layout; seed 0)
    data-val/      the same generator with seed 1: independent scenes for validation
    stores/        sareval preprocess sen12ms -> train.h5, val.h5, test.h5 (with cloudy S2)
    runs/clear/    sareval train --cloudy-prob 0     (the study's "clear" training)
    runs/cloudy/   sareval train --cloudy-prob 0.8   (its "cloudy" training; both keep
                   model.onnx, model.pt, card.json, metrics.jsonl; the resume checkpoints
                   last.pt/best.pt are deleted to save disk space)
    runs/*/shape-<subset>.json   sareval shape on the test subsets clear, cloudy, very_cloudy
    report/        sareval report: summary.md/.csv and the figures (PNG, SVG)
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sareval.commands.options import overwrite_option
from sareval.errors import OutputExistsError

if TYPE_CHECKING:
    from sareval.report.tables import SummaryRow

SETUPS = (("clear", 0.0), ("cloudy", 0.8))
TEST_SUBSETS = ("clear", "cloudy", "very_cloudy")
#: the sub-directories a demo writes (and --overwrite removes)
DEMO_DIRS = ("data", "data-val", "stores", "runs", "report")


def run_cli(args: list[str]) -> str:
    """Run a sareval command in this process, quietly; return what it printed.

    Errors propagate as in the CLI (a :class:`SarevalError` becomes ``error: ...``)."""
    from sareval.cli import cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        cli.main(["-q", *args], prog_name="sareval", standalone_mode=False)
    return printed.getvalue()


@click.command(
    "demo",
    epilog="""\b
Example:
  sareval demo --out sareval-demo
""",
)
@click.option(
    "--out",
    default="sareval-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for everything the demo writes.",
)
@click.option("--patches", default=1200, show_default=True, help="Generated patches (train+test).")
@click.option("--size", default=32, show_default=True, help="Patch size in pixels (>= 32).")
@click.option("--epochs", default=12, show_default=True, help="Training epochs per model.")
@click.option("--seed", default=0, show_default=True, help="Seed of the data and the training.")
@overwrite_option
def command(out: str, patches: int, size: int, epochs: int, seed: int, overwrite: bool) -> None:
    """The whole pipeline on an embedded generated dataset (no download, a few CPU minutes).

    Generates a small SEN12MS/SEN12MS-CR dataset, preprocesses it, trains a "clear" model
    (never sees clouds) and a "cloudy" model (a sample with a cloudy version is loaded cloudy
    with probability 0.8), evaluates SHAPE modality relevance of both on the clear, cloudy and
    very cloudy test subsets, and writes a report with tables and figures.
    """
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise OutputExistsError(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise OutputExistsError(root)
        for name in DEMO_DIRS:  # only what a demo writes: never the rest of a directory
            if (root / name).is_dir():
                shutil.rmtree(root / name)
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def step(text: str) -> float:
        click.echo(f"[{time.perf_counter() - t_start:6.1f} s] {text}")
        return time.perf_counter()

    data, val_data = root / "data", root / "data-val"
    stores = root / "stores"
    step(f"generating {patches} SEN12MS patches of {size}x{size} px (+ SEN12MS-CR) in {data}")
    run_cli(["synth", "sen12ms", str(data), "--patches", str(patches), "--size", str(size),
             "--seed", str(seed)])  # fmt: skip
    n_val = max(patches // 4, 16)
    run_cli(["synth", "sen12ms", str(val_data), "--patches", str(n_val), "--size", str(size),
             "--seed", str(seed + 1)])  # fmt: skip

    step(f"preprocessing into HDF5 stores in {stores}")
    for name, tree, split in (
        ("train", data, "train"),
        ("test", data, "test"),
        ("val", val_data, "train"),
    ):
        ms = tree / "sen12ms"
        run_cli([
            "preprocess", "sen12ms", str(ms),
            "--split-list", str(ms / f"{split}_list.pkl"),
            "--labels", str(ms / "IGBP_probability_labels.pkl"),
            "--cr-root", str(tree / "sen12mscr"),
            "--out", str(stores / f"{name}.h5"),
        ])  # fmt: skip

    for label, p in SETUPS:
        step(f"training the {label!r} model (ResNet18, cloudy-prob {p}, {epochs} epochs)")
        run_cli([
            "train", "--data", str(stores / "train.h5"), "--val", str(stores / "val.h5"),
            "--arch", "resnet18", "--preset", "study-resnet18", "--task", "single-label",
            "--cloudy-prob", str(p), "--epochs", str(epochs), "--batch-size", "32",
            "--seed", str(seed), "--device", "cpu", "--in-memory",
            "--out", str(root / "runs" / label),
        ])  # fmt: skip
        for checkpoint in ("last.pt", "best.pt"):  # only needed to resume: 135 MB each
            (root / "runs" / label / checkpoint).unlink(missing_ok=True)

    step("SHAPE relevance of both models on the test subsets " + ", ".join(TEST_SUBSETS))
    for label, _ in SETUPS:
        run = root / "runs" / label
        for subset in TEST_SUBSETS:
            by = ["--by", "cloud-cover"] if subset == "cloudy" else []
            run_cli([
                "shape", "--model", str(run / "model.onnx"), "--data", str(stores / "test.h5"),
                "--subset", subset, "--backend", "onnxruntime", *by,
                "--out", str(run / f"shape-{subset}.json"),
            ])  # fmt: skip

    step(f"writing the report to {root / 'report'}")
    from sareval.report import make_report

    report = make_report(
        [f"{label}-trained={root / 'runs' / label}" for label, _ in SETUPS], root / "report"
    )
    elapsed = time.perf_counter() - t_start
    click.echo("")
    click.echo(summary_table(report.rows))
    click.echo("")
    click.echo(f"done in {elapsed:.0f} s. Tables: {root / 'report' / 'summary.md'}")
    click.echo("Figures:")
    for path in report.figures:
        if path.suffix == ".png":
            click.echo(f"  {path}")


def summary_table(rows: list[SummaryRow]) -> str:
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
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)
