"""``sareval export``: a fusion network (checkpoint or random init) -> model file + model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sareval.commands.options import overwrite_option, report_written
from sareval.errors import SarevalError
from sareval.export.presets import PRESETS

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "torch-export"}


@click.command(
    "export",
    epilog="""\b
Examples:
  sareval export --checkpoint single_label/20200526_101051_model_best.pth --out resnet50.onnx
      (architecture, preset and task from the 20200526_101051_arguments.txt beside it)
  sareval export --arch resnet50 --checkpoint model_best.pth --preset sen12ms-s1s2 \\
      --task single-label --out resnet50.onnx
  sareval export --arch resnet18 --preset study-resnet18 --task multi-label --fusion late \\
      --out late.onnx                       (random initialisation, said so in the card)
  sareval export --arch vgg16 --checkpoint vgg16_tf_vars.npz --preset bigearthnet-mm \\
      --task multi-label --out vgg16.onnx   (TF-Slim variables dumped with numpy.savez)
  sareval export --arch resnet50 --checkpoint model.safetensors --preset reben-s1s2-v0.2.0 \\
      --task multi-label --out reben-r50.onnx   (timm-layout weights of a reBEN model)
""",
)
@click.option(
    "--arch",
    help="resnet18/34/50, densenet121, vgg16/19 (TF-Slim), vgg16-tv/vgg19-tv (torchvision); "
    "default: from the checkpoint's _arguments.txt.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Weights: torch checkpoint (.pth/.pt, loaded weights-only), .safetensors, or TF-Slim "
    "VGG .npz; ResNets also in the torchvision/timm key layout (e.g. reBEN models). Without it "
    "the network is randomly initialised.",
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    help="Model card preset (print one: sareval card template --preset P).",
)
@click.option(
    "--card",
    "card_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own model card JSON instead of a preset.",
)
@click.option("--task", type=click.Choice(["single-label", "multi-label"]))
@click.option("--fusion", type=click.Choice(["early", "late"]), default="early", show_default=True)
@click.option("--input-size", type=click.IntRange(min=1), help="Input H = W (default: preset's).")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Model file."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "torchscript", "torch-export"]),
    help="Default from the suffix: .onnx, .pt/.ts (TorchScript), .pt2 (torch.export).",
)
@click.option("--opset", type=click.IntRange(min=18), help="ONNX opset (default: exporter's).")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0.0),
    default=1e-4,
    show_default=True,
    help="Parity bound: max |exported - torch| <= tolerance x max(1, max |torch|) (or, if "
    "larger, twice torch's own fp32 rounding error, measured against float64).",
)
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="onnxruntime provider of the ONNX parity check.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of a random init.")
@overwrite_option
def command(
    arch: str | None,
    checkpoint: Path | None,
    preset: str | None,
    card_path: Path | None,
    task: str | None,
    fusion: str,
    input_size: int | None,
    out: Path,
    fmt: str | None,
    opset: int | None,
    tolerance: float,
    provider: str,
    seed: int,
    overwrite: bool,
) -> None:
    """Export a fusion network to ONNX (or TorchScript) with its model card.

    The exported file is checked before it is kept: onnx.checker, then the same random inputs
    through torch and onnxruntime at batch sizes 1, 3 and 64 (max differences printed).
    """
    from sareval.atomic import check_outputs
    from sareval.export.onnx_export import check_opset
    from sareval.models.registry import MAX_INPUT_SIZE

    fmt = fmt or FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise SarevalError(f"{out}: cannot tell the format from the suffix; pass --format")
    check_opset(opset)
    if input_size is not None and input_size > MAX_INPUT_SIZE:
        raise SarevalError(f"--input-size: {input_size} px is larger than {MAX_INPUT_SIZE} px")
    inputs = [p for p in (checkpoint, card_path) if p is not None]
    check_outputs({"--out": out}, overwrite, inputs=inputs)
    result = export_model(
        arch=arch,
        checkpoint=checkpoint,
        preset=preset,
        card_path=card_path,
        task=task,
        fusion=fusion,
        input_size=input_size,
        out=out,
        fmt=fmt,
        opset=opset,
        tolerance=tolerance,
        provider=provider,
        seed=seed,
        overwrite=overwrite,
        echo=lambda s: click.echo(s, err=True),
    )
    report_written(f"{result} ({result.stat().st_size / 1e6:.1f} MB)")


def export_model(
    *,
    arch: str | None,
    checkpoint: Path | None,
    preset: str | None,
    card_path: Path | None,
    task: str | None,
    fusion: str,
    input_size: int | None,
    out: Path,
    fmt: str,
    opset: int | None,
    tolerance: float,
    provider: str,
    seed: int,
    overwrite: bool,
    echo: Any = print,
) -> Path:
    """The work of ``sareval export`` (options as there); returns the written path."""
    import torch

    from sareval.card import read_card
    from sareval.classes import IGBP17
    from sareval.export.presets import get_preset, make_card
    from sareval.models import arguments_path, build_model, load_checkpoint, read_arguments

    if preset and card_path:
        raise SarevalError("give --preset or --card, not both")
    run = None
    if checkpoint is not None:
        found = arguments_path(checkpoint)
        if found is not None:
            run = read_arguments(found)
            echo(
                f"run arguments: {found} (model {run.values.get('model')}, {run.preset}, "
                f"{run.task})"
            )
    arch = _agree("--arch", arch, run.arch if run else None, run)
    if arch is None:
        raise SarevalError("give --arch (no _arguments.txt beside the checkpoint names one)")

    class_names = None
    if card_path is not None:
        base = read_card(card_path)
        if task is not None and task != base.task:
            raise SarevalError(f"--task {task} contradicts the card's task {base.task}")
        if run is not None and run.task != base.task:
            raise SarevalError(f"{run.path}: task {run.task} contradicts the card's {base.task}")
        task = base.task
        size = base.height
        if (
            input_size is not None
            and base.height is not None
            and (input_size != base.height or input_size != base.width)
        ):
            raise SarevalError(
                f"--input-size {input_size} contradicts the card's {base.height}x{base.width}"
            )
        size = size or input_size
    else:
        preset = _agree("--preset", preset, run.preset if run else None, run)
        if preset is None:
            raise SarevalError("give --preset or --card (the card says which bands go where)")
        task = _agree("--task", task, run.task if run else None, run)
        if task is None:
            raise SarevalError("give --task single-label or --task multi-label")
        if run is not None and not run.igbp_simple:
            class_names = IGBP17
        size = input_size or get_preset(preset).size

    def final_card(sha: str | None) -> Any:
        if card_path is None:
            assert preset is not None and task is not None
            return make_card(
                preset,
                task,
                architecture=arch,
                fusion=fusion,
                checkpoint_sha256=sha,
                random_init=sha is None,
                input_size=size,
                class_names=class_names,
            )
        from sareval import __version__
        from sareval.card import ModelCard

        d = base.to_dict()
        d["input"]["height"] = d["input"]["height"] or size
        d["input"]["width"] = d["input"]["width"] or size
        d["provenance"] = {
            **d.get("provenance", {}),
            "architecture": arch,
            "fusion": fusion,
            "checkpoint_sha256": sha,
            "random_init": sha is None,
            "sareval_version": __version__,
        }
        return ModelCard.from_dict(d, source=card_path)

    card = final_card(None)
    if card.height is None or card.width is None:
        raise SarevalError("the card gives no input height/width; pass --input-size")
    torch.manual_seed(seed)
    model = build_model(
        arch,
        card.n_channels,
        card.n_classes,
        fusion=fusion,
        modality_channels=[card.channel_indices(m) for m in card.modality_names],
        input_size=min(card.height, card.width),
    )
    if card.height != card.width:
        from sareval.models import check_input_size

        check_input_size(arch, max(card.height, card.width))
    if checkpoint is not None:
        info = load_checkpoint(model, checkpoint)
        epoch = f", epoch {info.epoch}" if info.epoch is not None else ""
        echo(f"loaded {checkpoint} strictly{epoch} (sha256 {info.sha256[:12]}...)")
        card = final_card(info.sha256)
    else:
        echo(f"no --checkpoint: random initialisation (seed {seed}), recorded in the card")
    what = f"{arch} ({fusion} fusion, {card.n_channels} channels, {card.n_classes} classes)"
    echo(f"exporting {what} to {fmt} ...")
    if fmt == "onnx":
        from sareval.export.onnx_export import export_onnx

        report = export_onnx(
            model,
            card,
            out,
            opset=opset,
            overwrite=overwrite,
            tolerance=tolerance,
            provider=provider,
        )
    elif fmt == "torchscript":
        from sareval.export.torchscript_export import export_torchscript

        report = export_torchscript(model, card, out, overwrite=overwrite, tolerance=tolerance)
    else:
        from sareval.export.torchscript_export import export_program

        report = export_program(model, card, out, overwrite=overwrite, tolerance=tolerance)
    if report is not None:
        for line in report.lines():
            echo(line)
    return out


def _agree(option: str, given: str | None, from_run: str | None, run: Any) -> str | None:
    """``given`` unless it contradicts the run arguments; else the run's value."""
    if given is not None and from_run is not None and given != from_run:
        raise SarevalError(
            f"{option} {given} contradicts {run.path} ({from_run}); drop {option} or check "
            "that the checkpoint is the one you mean"
        )
    return given if given is not None else from_run
