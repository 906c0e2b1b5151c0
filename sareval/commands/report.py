"""``sareval report``: tables and figures from results files and training runs."""

from __future__ import annotations

import click

from sareval.commands.options import overwrite_option, report_written


@click.command(
    "report",
    epilog="""\b
Examples:
  sareval report clear=results/clear cloudy=results/cloudy runs/ --out report
  sareval report results/*.json --metric oa,aa,f1_macro --out report
""",
)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report directory.")
@click.option(
    "--metric",
    "metrics",
    help="Comma-separated metrics (default: oa, aa, f1_macro, ... those the results have).",
)
@overwrite_option
def command(inputs: tuple[str, ...], out: str, metrics: str | None, overwrite: bool) -> None:
    """Tables (markdown, CSV) and figures (PNG, SVG) from results and training histories.

    Each input is [LABEL=]PATH: a results JSON of `sareval shape`, a training run's
    metrics.jsonl, or a directory searched for both. Results of one model label and test
    subset are runs: the tables and error bars show their mean ± standard deviation (or a
    single run's bootstrap interval).
    """
    from sareval.report import make_report

    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    report = make_report(inputs, out, metrics=chosen, overwrite=overwrite)
    if report.rows:
        click.echo(report.markdown)
    report_written(*report.tables, *report.figures)
