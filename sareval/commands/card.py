"""``sareval card``: start a card from a preset, check a model against its card, attach one."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.atomic import atomic_output, check_outputs
from sareval.card import make_card
from sareval.choices import TASKS
from sareval.commands.options import overwrite_option, report_written
from sareval.export.attach import attach_card, check_model
from sareval.presets import PRESETS, get_preset


@click.group(
    "card",
    epilog="""\b
A foreign ONNX classifier (e.g. converted from TensorFlow with tf2onnx) needs a card:
  sareval card template --preset bigearthnet-mm --task multi-label --out card.json
  (edit card.json: input.name, channels in the model's order, classes, normalisation)
  sareval card attach vgg16.onnx card.json --out vgg16-card.onnx
  sareval card check vgg16-card.onnx
""",
)
def command() -> None:
    """Write, check and attach model cards."""


@command.command(
    "template",
    epilog="""\b
Example:
  sareval card template --preset sen12ms-s1s2 --task single-label > card.json
""",
)
@click.option("--preset", required=True, type=click.Choice(list(PRESETS)), help="Start from.")
@click.option("--task", type=click.Choice(TASKS), help="Default: preset's first.")
@click.option("--arch", default="unknown", show_default=True, help="Recorded in provenance.")
@click.option("--fusion", type=click.Choice(["early", "late"]), default="early", show_default=True)
@click.option("--input-size", type=click.IntRange(min=1), help="Input H = W (default: preset's).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@overwrite_option
def template(
    preset: str,
    task: str | None,
    arch: str,
    fusion: str,
    input_size: int | None,
    out: Path | None,
    overwrite: bool,
) -> None:
    """Print (or write) a preset's model card JSON to edit for your own model."""
    p = get_preset(preset)
    card = make_card(
        preset,
        task or p.tasks[0],
        architecture=arch,
        fusion=fusion,
        checkpoint_sha256=None,
        random_init=False,
        input_size=input_size,
    )
    text = card.to_json() + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    report_written(out)


@command.command(
    "attach",
    epilog="""\b
Example:
  sareval card attach model.onnx card.json --out model-with-card.onnx
""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("card", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: replace MODEL in place, atomically).",
)
@overwrite_option
def attach(model: Path, card: Path, out: Path | None, overwrite: bool) -> None:
    """Check CARD against MODEL's graph (inputs, channels, dynamic batch, H/W, output width)
    and embed it in the ONNX metadata."""
    if out is not None:
        check_outputs({"--out": out}, overwrite, inputs=[model, card])
    written = attach_card(model, card, out, overwrite=overwrite)
    click.echo(f"card {card} fits {model}; wrote {written}")


@command.command(
    "check",
    epilog="""\b
Example:
  sareval card check resnet50.onnx
""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(model: Path) -> None:
    """Check that MODEL carries a card and that the card fits the model.

    MODEL is any model file (.onnx, TorchScript .pt/.ts/.torchscript, torch.export .pt2) or a
    card .json; ONNX graphs must pass onnx.checker, TorchScript and .pt2 modules must return
    (2, K) on a zero batch of 2."""
    card = check_model(model)
    size = "any size" if card.height is None else f"{card.height}x{card.width}"
    players = ", ".join(f"{m.name} ({len(m.bands)} bands)" for m in card.modalities)
    click.echo(
        f"ok: {model} fits its card {card.name or '(unnamed)'}: {card.task}, "
        f"{card.n_channels} channels at {size}, {card.n_classes} classes; players {players}"
    )
