"""Click options shared by several commands (one definition each), the defaults of options
that set a :class:`~sareval.ShapeConfig` field (read from the dataclass), and the table that
turns the library's field names in error messages into the CLI's flags."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import click

from sareval.evaluator.config import FLAT_FIELDS, PARTS

#: a ShapeConfig field (its path in library messages) -> the `sareval shape` flag that sets it
FIELD_FLAGS: dict[str, str] = {
    "ShapeConfig.game.players": "--players",
    "ShapeConfig.game.absence": "--absence",
    "ShapeConfig.game.baseline": "--baseline",
    "ShapeConfig.game.baseline_statistics": "--baseline-statistics",
    "ShapeConfig.game.empty_coalition": "--empty-coalition",
    "ShapeConfig.reporting.metrics": "--metric",
    "ShapeConfig.reporting.normalization": "--normalization",
    "ShapeConfig.reporting.by_class": "--by class",
    "ShapeConfig.reporting.cloud_cover_bins": "--by cloud-cover",
    "ShapeConfig.reporting.replicates": "--replicates",
    "ShapeConfig.reporting.seed": "--seed",
    "ShapeConfig.reporting.per_sample": "--per-sample",
    "ShapeConfig.reporting.map_absent_classes": "--map-absent-classes",
    "ShapeConfig.execution.batch_size": "--batch-size",
    "ShapeConfig.execution.backend": "--backend",
    "ShapeConfig.execution.device": "--device",
    "ShapeConfig.execution.provider": "--provider",
    "ShapeConfig.execution.precision": "--precision",
    "ShapeConfig.execution.threads": "--threads",
    "ShapeConfig.execution.pad_last_batch": "--pad-last-batch",
    "ShapeConfig.execution.shard": "--shard",
    "ShapeConfig.execution.max_rows": "--max-rows",
    "ShapeConfig.execution.share": "--share",
    "ShapeConfig.estimation.estimator": "--estimator",
    "ShapeConfig.estimation.orderings": "--orderings",
}
#: other API names in library messages -> their flags (every command)
ARGUMENT_FLAGS: dict[str, str] = {
    "overwrite=True": "--overwrite",
    "save_predictions": "--save-predictions",
    "make_report: metrics": "--metric",
    # export (sareval.export.build) and preprocess / train arguments
    "card_path=": "--card",
    "preset=": "--preset",
    "arch=": "--arch",
    "task=": "--task",
    "input_size=": "--input-size",
    "very_cloudy_list=": "--very-cloudy-list",
    "cloudy_list=": "--cloudy-list",
    "cr_root=": "--cr-root",
    "a labels= file": "--labels",
    "cloudy_prob=": "--cloudy-prob",
    "resampling=": "--resampling",
    "opset=": "--opset",
    "n_patches=": "--patches",
    "size=": "--size",
    "compression=": "--compression",
}
#: an API name where it starts a word (``size=`` never inside ``input_size=``)
_API_NAME = re.compile(
    r"(?<![\w.])(?:"
    + "|".join(
        re.escape(k) for k in sorted({**FIELD_FLAGS, **ARGUMENT_FLAGS}, key=len, reverse=True)
    )
    + ")"
)


def as_cli_message(text: str) -> str:
    """A library message with its API names (``ShapeConfig.execution.precision``,
    ``overwrite=True``) replaced by the flags that set them (``--precision``)."""
    table = {**FIELD_FLAGS, **ARGUMENT_FLAGS}
    return _API_NAME.sub(lambda m: table[m.group(0)], text)


def field_default(name: str) -> Any:
    """The default of the :class:`~sareval.ShapeConfig` field ``name`` (a flat name), read from
    its dataclass: CLI defaults are never written twice."""
    part, field = FLAT_FIELDS[name]
    return next(f.default for f in dataclasses.fields(PARTS[part]) if f.name == field)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it exists (refused otherwise)."
)


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars unless ``-q`` was given to the group."""
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return not (root and root.obj and root.obj.get("quiet"))


def report_written(*paths: str | Path | None) -> None:
    """``wrote PATH`` on stderr for each written output (a path or a path with details),
    unless ``-q`` was given."""
    if progress_enabled():
        for path in paths:
            if path is not None:
                click.echo(f"wrote {path}", err=True)
