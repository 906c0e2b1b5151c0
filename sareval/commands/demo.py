"""``sareval demo``: a thin shell over :func:`sareval.demo.run_demo` (the steps are listed
there); prints the summary: accuracy and relevance per model and test subset, the paired
comparison of the two training setups, the false-prediction detection table, and the
segmentation part's mean IoU relevance over all, clear and cloudy pixels."""

from __future__ import annotations

import inspect
from pathlib import Path

import click

from sareval.commands.options import overwrite_option
from sareval.demo import (
    comparison_lines,
    detection_summary,
    run_demo,
    segmentation_summary,
    summary_table,
)


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
@click.option(
    "--seg-epochs",
    default=inspect.signature(run_demo).parameters["seg_epochs"].default,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Training epochs of the segmentation model.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the data and the training.")
@overwrite_option
def command(
    out: str, patches: int, size: int, epochs: int, seg_epochs: int, seed: int, overwrite: bool
) -> None:
    """The whole pipeline on an embedded generated dataset (no download, a few CPU minutes).

    Generates a small SEN12MS/SEN12MS-CR dataset, preprocesses it, trains a "clear" model
    (never sees clouds) and a "cloudy" model (a sample with a cloudy version is loaded cloudy
    with probability 0.8), evaluates SHAPE modality relevance of both on the clear, cloudy and
    very cloudy test subsets, compares the two setups (paired bootstrap), and writes a report
    with tables and figures. Then segmentation: a small net trained on the same stores' land-cover
    maps, SHAPE on the pixels of the cloudy test images (clear vs cloudy pixels, per class,
    relevance maps) and its report.
    """
    result = run_demo(
        out, patches=patches, size=size, epochs=epochs, seg_epochs=seg_epochs, seed=seed,
        overwrite=overwrite, log=click.echo,
    )  # fmt: skip
    report = result.report
    root = Path(out)
    click.echo("")
    click.echo(summary_table(report.rows))
    click.echo("")
    click.echo("Cloudy-trained minus clear-trained (paired bootstrap, 999 replicates, Z = 1):")
    for line in comparison_lines(result):
        click.echo(f"  {line}")
    click.echo("")
    click.echo("False-prediction detection (AUROC; baseline msp = 1 - max softmax):")
    click.echo("\n".join(f"  {line}" for line in detection_summary(result).splitlines()))
    click.echo("")
    click.echo(
        "Segmentation: mean IoU and its relevance [95% interval] over the pixels of the cloudy "
        "test images; per-pixel: mean Shapley value of the true class's probability"
    )
    click.echo("\n".join(f"  {line}" for line in segmentation_summary(result).splitlines()))
    click.echo("")
    tables = [root / "report" / "summary.md", root / "report-segmentation" / "summary.md"]
    click.echo(f"done in {result.seconds:.0f} s. Tables: {', '.join(map(str, tables))}")
    click.echo("Figures:")
    for path in [*report.figures, *result.segmentation_report.figures]:
        if path.suffix == ".png":
            click.echo(f"  {path}")
