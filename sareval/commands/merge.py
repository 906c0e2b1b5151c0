"""``sareval merge``: one result from the counts of ``sareval shape --shard i/n`` runs."""

from __future__ import annotations

from pathlib import Path

import click

from sareval.atomic import check_outputs, is_stream, output_set
from sareval.commands.options import overwrite_option, report_written
from sareval.evaluator.merge import merge_documents
from sareval.evaluator.results import console_table, read_results, write_csv, write_results


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Merged results JSON (a CSV table is written next to it).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV table path (default: --out with .csv; none when --out is a device or FIFO).",
)
@overwrite_option
def command(shards: tuple[Path, ...], out: Path, csv_path: Path | None, overwrite: bool) -> None:
    """Sum the counts of complementary shards and recompute every metric and relevance.

    \b
    sareval shape -m m.onnx -d test.h5 -s clear --shard 0/2 -o part0.json
    sareval shape -m m.onnx -d test.h5 -s clear --shard 1/2 -o part1.json
    sareval merge part0.json part1.json --out merged.json

    The shards must share model, store, subset and options, and cover parts 0..n-1 once each.
    """
    if csv_path is None and not is_stream(out):  # none beside a device or FIFO
        csv_path = out.with_suffix(".csv")
    check_outputs({"--out": out, "--csv": csv_path}, overwrite, json_option="--out", inputs=shards)
    docs = [read_results(p) for p in shards]
    merged = merge_documents(docs, [str(p) for p in shards])
    with output_set((out, csv_path), overwrite) as outputs:
        write_results(merged, outputs.temp(out), overwrite=True)
        if csv_path is not None:
            write_csv(merged, outputs.temp(csv_path), overwrite=True)
    click.echo(console_table(merged))
    report_written(out, csv_path)
