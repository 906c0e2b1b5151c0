"""``sareval export``: a fusion network (checkpoint or random init) -> model file + model card."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.atomic import check_outputs
from sareval.choices import TASKS
from sareval.commands.options import overwrite_option, report_written
from sareval.errors import SarevalError
from sareval.export.build import export_model
from sareval.formats import format_of
from sareval.presets import PRESETS


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
  sareval export --arch resnet18-unet --preset sen12ms-s1s2 --out unet.onnx
      (a segmentation network: task segmentation, ignore index 255 in the card)
""",
)
@click.option(
    "--arch",
    help="resnet18/34/50, densenet121, vgg16/19 (TF-Slim), vgg16-tv/vgg19-tv (torchvision); "
    "segmentation: unet, resnet18-unet, deeplabv3-resnet18/50 (task segmentation); "
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
@click.option("--task", type=click.Choice(TASKS))
@click.option("--fusion", type=click.Choice(["early", "late"]), default="early", show_default=True)
@click.option("--input-size", type=click.IntRange(min=1), help="Input H = W (default: preset's).")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Model file."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "torchscript", "torch-export"]),
    help="Default from the suffix: .onnx, .pt/.ts/.torchscript (TorchScript), .pt2 (torch.export).",
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
    through torch and onnxruntime at batch sizes 1, 3 and 64 (segmentation: 1, 3 and 8; max
    differences printed).
    """
    from sareval.export.onnx_export import check_opset
    from sareval.models.registry import MAX_INPUT_SIZE

    if fmt is None:
        try:
            fmt = format_of(out).kind
        except SarevalError:
            raise SarevalError(
                f"{out}: cannot tell the format from the suffix; pass --format"
            ) from None
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
