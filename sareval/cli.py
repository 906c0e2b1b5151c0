"""The ``sareval`` command group.

Commands live one per module in :mod:`sareval.commands` and are imported only when run, so
``sareval --help`` starts fast and a command's heavy dependencies (rasterio, torch, onnx) load
only where needed. Every :class:`~sareval.errors.SarevalError` becomes a one-line
``error: ...`` with exit status 1; Ctrl-C exits with status 130; neither prints a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from sareval import __version__
from sareval.errors import SarevalError

#: command name -> (module in sareval.commands, one-line summary shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "Generate a small SEN12MS(-CR) or BigEarthNet tree in the real layout."),
    "preprocess": ("preprocess", "Convert a dataset's GeoTIFF tree into an HDF5 store."),
    "info": ("info", "Summarise a store (.h5) or a model file (.onnx, .pt)."),
    "export": ("export", "Export a fusion model to ONNX or TorchScript with its model card."),
    "card": ("card", "Write, check and attach model cards (for foreign models)."),
    "shape": ("shape", "SHAPE modality relevance of a model on a store subset."),
    "merge": ("merge", "Merge the counts of `shape --shard i/n` runs into one result."),
    "train": ("train", "Train a fusion model with clear/cloudy optical mixing."),
    "report": ("report", "Tables and figures from results and training metrics."),
    "demo": ("demo", "The whole pipeline on a generated dataset, in minutes."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use and whose errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"sareval.commands.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, summary) for name, (_, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SarevalError as e:
            raise click.ClickException(str(e).replace("\n", " ")) from None
        except KeyboardInterrupt:
            click.echo("interrupted; no output was written", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sareval")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """sareval: how much a SAR+optical fusion classifier relies on each modality.

    \b
    Start here:   sareval demo --out sareval-demo
    Pipeline:     sareval preprocess ... -> sareval export ... -> sareval shape ...
    """
    levels = (logging.WARNING, logging.INFO, logging.DEBUG)
    level = logging.ERROR if quiet else levels[min(verbose, 2)]
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sareval")
