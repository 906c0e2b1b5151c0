"""Click options shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path

import click

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
