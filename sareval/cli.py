"""The ``sareval`` command group.

Commands live one per module in :mod:`sareval.commands` and are imported only when run, so
``sareval --help`` starts fast and a command's heavy dependencies (rasterio, torch, onnx) load
only where needed. Every error is one line on stderr, ``error: <file or option>: <what is
wrong>``, without a traceback (:func:`error_line`): a :class:`~sareval.errors.SarevalError` or an
``OSError`` naming a file exits with status 1, a usage error (click's: a bad or missing option)
with status 2; Ctrl-C and SIGTERM exit with status 130. Other packages' warnings (torch,
onnxruntime, h5py) go through :mod:`logging` (:func:`route_foreign_output`), so nothing foreign
prints before that line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from sareval import __version__
from sareval.commands.options import as_cli_message
from sareval.errors import SarevalError
from sareval.write_errors import as_write_error, write_errno

#: command name -> (module in sareval.commands, one-line summary shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "Generate a small SEN12MS(-CR), BigEarthNet or DFC2020 tree."),
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
        except KeyboardInterrupt:
            click.echo("error: interrupted; no output was written", err=True)
            ctx.exit(130)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but every error (ours, click's usage errors, a failed file operation)
        is printed by :func:`error_line` as one line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            with sigterm_as_interrupt():
                rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.Abort:
            click.echo("error: interrupted; no output was written", err=True)
            sys.exit(130)
        except (SarevalError, click.ClickException, OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not write_errno(e):  # a bug: show the traceback
                raise
            if isinstance(e, BrokenPipeError):  # output piped into e.g. `head`: nothing to say
                sys.exit(1)
            click.echo(f"error: {error_line(e)}", err=True)
            sys.exit(e.exit_code if isinstance(e, click.ClickException) else 1)
        sys.exit(rv if isinstance(rv, int) else 0)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in this (main) process, so a terminated run cleans up
    like Ctrl-C; forked children keep the default action. No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked worker: die as before
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _param_name(param: click.Parameter | None, fallback: str) -> str:
    """``--batch-size`` for an option, ``FILE`` for an argument."""
    if isinstance(param, click.Option) and param.opts:
        return max(param.opts, key=len)
    if param is not None and param.name:
        return param.human_readable_name
    return fallback


def _h5_file_name(e: BaseException) -> str | None:
    """The ``filename = '...'`` an HDF5 error message names, if any."""
    m = re.search(r"filename = '([^']*)'", str(e))
    return m.group(1) if m else None


def error_line(e: BaseException) -> str:
    """``<file or option>: <what is wrong>`` of an error, on one printable line."""
    if isinstance(e, click.MissingParameter):
        kind = e.param_type or (e.param.param_type_name if e.param else "parameter")
        text = f"{_param_name(e.param, kind)}: missing {kind}; see --help"
    elif isinstance(e, click.BadParameter):
        text = f"{_param_name(e.param, str(e.param_hint or 'value'))}: {e.message}"
    elif isinstance(e, click.NoSuchOption):
        hint = f" (did you mean {', '.join(e.possibilities)}?)" if e.possibilities else ""
        text = f"{e.option_name}: no such option{hint}"
    elif isinstance(e, click.UsageError):
        where = e.ctx.command_path if e.ctx is not None else "sareval"
        text = f"{where}: {e.format_message()[:1].lower()}{e.format_message()[1:]}"
    elif isinstance(e, click.ClickException):
        text = e.format_message()
    elif write_errno(e) is not None:  # a full disk etc. that no writer turned into an error
        text = str(as_write_error(e, _h5_file_name(e) or getattr(e, "filename", None) or "file"))
    elif isinstance(e, OSError) and not isinstance(e, SarevalError):
        text = f"{e.filename or 'file'}: {e.strerror or type(e).__name__}"
    else:
        text = as_cli_message(str(e))  # API field names -> flags
    text = " ".join(text.split())
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    route_foreign_output(verbose)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


PACKAGE_DIR = Path(__file__).resolve().parent
#: onnxruntime's C++ log severity by -v count (3: errors only; 2: warnings; 1: info)
ORT_SEVERITY = (3, 2, 1)


def route_foreign_output(verbose: int = 0) -> None:
    """Route Python warnings through :mod:`logging` and quiet onnxruntime's C++ logger, so that
    nothing foreign prints before the ``error:`` line.

    A warning raised in sareval's own code is one ``WARNING sareval: ...`` line; one raised in
    another package (torch, onnxruntime, h5py, numpy) is logged at DEBUG on ``py.warnings``
    (shown with ``-vv``). onnxruntime's default logger is set to :data:`ORT_SEVERITY` when
    it is imported (now, or later by the command)."""
    logging.captureWarnings(True)
    own, foreign = logging.getLogger("sareval"), logging.getLogger("py.warnings")

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())
        if Path(filename).resolve().is_relative_to(PACKAGE_DIR):
            own.warning("%s", text)
        else:
            foreign.debug("%s:%d: %s: %s", filename, lineno, category.__name__, text)

    warnings.showwarning = show
    severity = ORT_SEVERITY[min(verbose, 2)]
    if "onnxruntime" in sys.modules:
        _set_ort_severity(sys.modules["onnxruntime"], severity)
    elif not any(isinstance(f, _OrtSeverityHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _OrtSeverityHook(severity))


def _set_ort_severity(module: Any, severity: int) -> None:
    with contextlib.suppress(AttributeError):
        module.set_default_logger_severity(severity)


class _OrtSeverityHook(importlib.abc.MetaPathFinder):
    """Sets onnxruntime's default log severity right after the module is first imported."""

    def __init__(self, severity: int) -> None:
        self.severity = severity

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "onnxruntime":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run, severity = loader.exec_module, self.severity

        def exec_module(module: Any) -> None:
            run(module)
            _set_ort_severity(module, severity)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sareval")
