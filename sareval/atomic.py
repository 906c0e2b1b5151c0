"""Atomic output files: written under a temporary name, renamed into place when complete.

A crash, an error or Ctrl-C never leaves a file at the output path that looks complete::

    with atomic_output(out, overwrite=False) as tmp:
        write_everything(tmp)      # tmp = <out dir>/.<out name>.<pid>.tmp
    # here <out> exists and is complete

:func:`partial_path` gives the fixed name a resumable job (preprocess) writes to instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sareval.errors import OutputExistsError


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    return path


def partial_path(path: str | Path) -> Path:
    """The fixed temporary name of a resumable output: ``<dir>/<name>.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and the
    exception propagates; ``path`` is untouched.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` (a directory).

    An existing non-empty ``path`` is refused (:class:`OutputExistsError`) unless ``overwrite``;
    then the old directory is moved aside, the new one renamed in, and the old one deleted.
    On any exception the temporary directory is removed and ``path`` is untouched.
    """
    import shutil

    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not overwrite:
        raise OutputExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
