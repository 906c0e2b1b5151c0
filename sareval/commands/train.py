"""``sareval train``: the study's clear-vs-cloudy fusion training with relevance per epoch."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import click

from sareval.choices import TASKS, Task
from sareval.commands.options import overwrite_option, progress_enabled
from sareval.errors import SarevalError
from sareval.train.loop import TrainConfig, resolve_device, run_is_complete, train

#: ``--arch`` when not given
DEFAULT_ARCH: dict[str, str] = {
    "single-label": "resnet18",
    "multi-label": "resnet18",
    "segmentation": "unet",
}


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"`` -> [0, 2, 5]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                seeds.extend(range(int(a), int(b) + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise SarevalError(f"--seeds {text!r}: expected e.g. 0-4 or 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SarevalError(f"--seeds {text!r}: expected distinct seeds, e.g. 0-4 or 0,1,2")
    return seeds


def game_text(metric: str, metrics: dict, players: list[str]) -> str:
    """``"miou 0.812 (relevance sar 0.401, opt 0.377)"``; empty when ``metric`` has no V."""
    m = metrics.get(metric)
    if not m or m["V"].get("+".join(players)) is None:
        return ""
    rel = ", ".join(
        f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in m["relevance"].items()
    )
    return f"{metric} {m['V']['+'.join(players)]:.3f} (relevance {rel})"


@contextlib.contextmanager
def config_errors_as_options() -> Iterator[None]:
    """Name the command's options in errors of :class:`~sareval.train.loop.TrainConfig`
    (``TrainConfig.select_metric`` -> ``--select-metric``, ``overwrite=True`` ->
    ``--overwrite``)."""
    try:
        yield
    except SarevalError as e:
        text = re.sub(r"TrainConfig\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), str(e))
        text = text.replace("overwrite=True", "--overwrite")
        if text == str(e):
            raise
        raise SarevalError(text) from None


@click.command(
    "train",
    epilog="""\b
Example (the study's "cloudy" setup, 5 runs into runs/cloudy/seed-0 .. seed-4):
  sareval train --data train.h5 --val val.h5 --arch resnet18 --preset study-resnet18 \\
      --task single-label --cloudy-prob 0.8 --epochs 25 --batch-size 64 --seeds 0-4 \\
      --out runs/cloudy

\b
Segmentation (a land-cover map per patch, e.g. a SEN12MS store with /labels/lc10_map):
  sareval train --data train.h5 --val val.h5 --task segmentation --arch unet \\
      --cloudy-prob 0.8 --epochs 25 --out runs/seg
""",
)
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Training store.")
@click.option(
    "--val",
    type=click.Path(dir_okay=False),
    help="Validation store: metrics and SHAPE relevance after every epoch.",
)
@click.option(
    "--arch",
    default=None,
    help="Architecture: a classifier (resnet18, ...) or, with --task segmentation, unet, "
    "resnet18-unet, deeplabv3-resnet18 or deeplabv3-resnet50.  [default: resnet18; "
    "unet for segmentation]",
)
@click.option(
    "--preset", default="study-resnet18", show_default=True, help="Model card preset (bands)."
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="single-label",
    show_default=True,
)
@click.option("--fusion", type=click.Choice(["early", "late"]), default="early", show_default=True)
@click.option(
    "--cloudy-prob",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Probability of loading a sample's cloudy optical version each time it is drawn "
    "(0 = the study's clear setup, 0.8 = its cloudy setup).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of a single run.")
@click.option("--seeds", help="Several runs, e.g. 0-4 or 0,2,7: run K goes to OUT/seed-K.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option(
    "--val-subsets",
    default="clear,cloudy",
    show_default=True,
    help="Validation subsets evaluated after every epoch (comma-separated).",
)
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--select-metric",
    default="",
    help="Metric whose V(all) on the first validation subset picks best.pt "
    "(default oa / f1_micro / miou for single-label / multi-label / segmentation).",
)
@click.option(
    "--in-memory", is_flag=True, help="Read the training arrays into memory once (small stores)."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@overwrite_option
def command(
    data: str,
    val: str | None,
    arch: str | None,
    preset: str,
    task: Task,
    fusion: str,
    cloudy_prob: float,
    epochs: int,
    batch_size: int,
    seed: int,
    seeds: str | None,
    lr: float,
    weight_decay: float,
    workers: int,
    device: str,
    val_subsets: str,
    eval_batch_size: int,
    select_metric: str,
    in_memory: bool,
    out: str,
    overwrite: bool,
) -> None:
    """Train a fusion classifier or segmenter with clear/cloudy optical mixing.

    Every sample with a cloudy optical version is loaded cloudy with probability --cloudy-prob
    each time it is drawn (segmentation: the label map stays the same). After every epoch:
    training loss, and metrics and SHAPE relevance on the validation subsets (segmentation:
    also on their clear and cloudy pixels), appended to OUT/metrics.jsonl; checkpoints
    OUT/last.pt and OUT/best.pt. At the end OUT/model.onnx with its model card, ready for
    `sareval shape`. Re-running the same command resumes an interrupted run from OUT/last.pt
    (with --seeds, finished runs are skipped).
    """
    runs = (
        [(seed, Path(out))]
        if seeds is None
        else [(s, Path(out) / f"seed-{s}") for s in parse_seeds(seeds)]
    )
    device = resolve_device(device, "--device")
    for run_seed, run_out in runs:
        with config_errors_as_options():
            config = TrainConfig(
                data=data,
                val=val,
                out=str(run_out),
                arch=arch or DEFAULT_ARCH[task],
                preset=preset,
                task=task,
                fusion=fusion,
                cloudy_prob=cloudy_prob,
                epochs=epochs,
                batch_size=batch_size,
                seed=run_seed,
                lr=lr,
                weight_decay=weight_decay,
                workers=workers,
                device=device,
                val_subsets=tuple(s.strip() for s in val_subsets.split(",") if s.strip()),
                eval_batch_size=eval_batch_size,
                select_metric=select_metric,
                in_memory=in_memory,
                progress=progress_enabled(),
            )
            result = (
                None
                if seeds is not None and not overwrite and run_is_complete(config)
                else train(config, overwrite=overwrite)
            )
        if result is None:
            click.echo(f"{run_out}: complete ({epochs} epochs), skipped")
            continue
        last = result.history[-1] if result.history else {}
        line = f"{run_out}: {len(result.history)} epochs"
        if result.resumed_from:
            line += f" (resumed after epoch {result.resumed_from})"
        line += f", train loss {last.get('train_loss', float('nan')):.4f}"
        metric = config.selection_metric
        pixel_lines = []
        for subset, r in last.get("val", {}).items():
            text = game_text(metric, r["metrics"], r["players"])
            if text:
                line += f"; {subset}: {text}"
            for state, part in (r.get("pixels") or {}).items():  # segmentation
                text = game_text(metric, part["metrics"], r["players"])
                if text and state != "unknown":
                    pixel_lines.append(f"  {subset}, {state} pixels: {text}")
        click.echo(line)
        for text in pixel_lines:
            click.echo(text)
        if result.model_file:
            click.echo(f"  model: {result.model_file}")
