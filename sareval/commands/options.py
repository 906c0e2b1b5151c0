"""Click options shared by several commands (one definition each)."""

from __future__ import annotations

import click

overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it exists (refused otherwise)."
)


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars unless ``-q`` was given to the group."""
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return not (root and root.obj and root.obj.get("quiet"))
