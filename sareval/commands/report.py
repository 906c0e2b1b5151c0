"""``sareval report``: tables and figures from results files and training runs."""

from __future__ import annotations

import inspect

import click

from sareval.commands.options import overwrite_option, report_written
from sareval.commands.parsing import parse_comparison, parse_labelled_path
from sareval.errors import SarevalError
from sareval.report import make_report
from sareval.report.figures import INTERACTION_INDICES


@click.command(
    "report",
    epilog="""\b
Examples:
  sareval report clear=results/clear cloudy=results/cloudy runs/ --out report
  sareval report results/*.json --metric oa,aa,f1_macro --out report
  sareval report runs/ --compare clear=runs/clear/pred-very_cloudy.h5 \\
      cloudy=runs/cloudy/pred-very_cloudy.h5 --out report
  sareval report seg=runs/seg/shape.json runs/seg/maps.h5 --images ROIs1158_spring_1_p30 \\
      --out report
""",
)
@click.argument("inputs", nargs=-1)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report directory.")
@click.option(
    "--metric",
    "metrics",
    help="Comma-separated metrics (default: oa, aa, f1_macro, ... those the results have).",
)
@click.option(
    "--compare",
    nargs=2,
    multiple=True,
    metavar="A B",
    help="Compare setup B with A (each LABEL=PRED.h5[,PRED.h5...], files of "
    "`sareval shape --save-predictions`, one per run, all on the same samples): B - A of V, "
    "relevance and cooperation with paired bootstrap intervals and p-values. Repeatable.",
)
@click.option(
    "--replicates",
    "--bootstrap",
    "n_boot",
    default=inspect.signature(make_report).parameters["replicates"].default,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Bootstrap replicates of --compare (--bootstrap: its old spelling, deprecated).",
)
@click.option(
    "--interaction-index",
    type=click.Choice(list(INTERACTION_INDICES)),
    default=inspect.signature(make_report).parameters["interaction_index"].default,
    show_default=True,
    help="Pairwise index of the interactions_<metric>_<n> figures.",
)
@click.option(
    "--images",
    help="Comma-separated image ids the maps_<n> figures of segmentation maps files show "
    "(default: the first few of each file).",
)
@overwrite_option
def command(
    inputs: tuple[str, ...],
    out: str,
    metrics: str | None,
    compare: tuple[tuple[str, str], ...],
    n_boot: int,
    interaction_index: str,
    images: str | None,
    overwrite: bool,
) -> None:
    """Tables (markdown, CSV) and figures (PNG, SVG) from results and training histories.

    Each input is [LABEL=]PATH: a results JSON of `sareval shape`, a training run's
    metrics.jsonl, a segmentation maps file (`save_predictions` of a segmentation run: the
    maps_<n> figures, RGB and SAR from the store its results file names), or a directory
    searched for them. Results of one model label and test
    subset are runs: the tables and error bars show their mean ± standard deviation (or a
    single run's bootstrap interval). Results with different baselines, Z or players are
    labelled and kept apart; a result given twice, or runs of one label on different stores,
    are refused. --compare adds comparisons.md/.csv (several runs per setup: a two-level
    bootstrap over runs and samples).
    """
    if not inputs and not compare:
        raise SarevalError("report: give results inputs, --compare, or both")
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    report = make_report(
        [parse_labelled_path(spec) for spec in inputs], out, metrics=chosen,
        overwrite=overwrite,
        compare=[parse_comparison(a, b) for a, b in compare], replicates=n_boot,
        interaction_index=interaction_index,
        map_images=[i.strip() for i in images.split(",") if i.strip()] if images else None,
    )  # fmt: skip
    if report.rows:
        click.echo(report.markdown)
    for comparison in report.comparisons:
        click.echo(comparison.header())
        click.echo("\n".join(f"  {line}" for line in comparison.lines()))
    report_written(*report.tables, *report.figures)
