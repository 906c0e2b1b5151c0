"""Atomic output files: written under a temporary name, renamed into place when complete.

A crash, an error or Ctrl-C never leaves a file at the output path that looks complete::

    with atomic_output(out, overwrite=False) as tmp:
        write_everything(tmp)      # tmp = <out dir>/.<out name>.<pid>.tmp
    # here <out> exists and is complete

:func:`partial_path` gives the fixed name a resumable job (preprocess) writes to instead.
:class:`OutputSet` makes a command's several outputs (results JSON, CSV, predictions file)
appear together: each is written under ``.<name>.sareval-tmp-<pid>`` and all are renamed at
the end; temporaries a killed run left behind (its pid no longer running) are removed.
:func:`check_outputs` vets all of a command's outputs together before any work starts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from sareval.errors import OutputExistsError, SarevalError


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    return path


def check_writable_folder(path: Path) -> None:
    """Refuse ``path`` when it is a directory or its nearest existing parent is not a writable
    directory (missing parents are created when the output is written)."""
    if path.is_dir():
        raise SarevalError(f"{path}: is a directory, expected an output file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SarevalError(f"{path}: cannot be written ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SarevalError(f"{path}: cannot be written (folder {parent} is not writable)")


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    overwrite: bool,
    *,
    json_option: str | None = None,
    inputs: Iterable[str | Path] = (),
) -> dict[str, Path]:
    """Vet a command's outputs (option name -> path; None: not written) before any work.

    Refused: an existing output without ``overwrite``; two outputs, or an output and an input,
    naming the same file (resolved path); an output that is a directory or whose folder is not
    writable; the results JSON ``json_option`` not ending in ``.json`` while another output is
    written (the CSV beside it would take the JSON's name). Returns the non-None outputs as Paths.
    """
    paths = {opt: Path(p) for opt, p in outputs.items() if p is not None}
    seen: dict[Path, str] = {Path(p).resolve(): "an input" for p in inputs}
    for opt, path in paths.items():
        key = path.resolve()
        if key in seen:
            raise SarevalError(f"{path}: {opt} and {seen[key]} name the same file")
        seen[key] = opt
    if json_option in paths and len(paths) > 1 and paths[json_option].suffix.lower() != ".json":
        raise SarevalError(
            f"{paths[json_option]}: {json_option} is the results JSON; give it a .json name"
        )
    for path in paths.values():
        check_writable_folder(path)
        check_output(path, overwrite)
    return paths


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


TMP_MARK = ".sareval-tmp-"


def set_temporary(path: Path) -> Path:
    """``<dir>/.<name>.sareval-tmp-<pid>``: where an :class:`OutputSet` member is written."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporaries of ``path`` (``.<name>.sareval-tmp-<pid>`` and what a writer derived
    from that name) left by runs whose process is gone; returns what was removed."""
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f"*{path.name}{TMP_MARK}*"):
        tail = candidate.name.split(TMP_MARK, 1)[1]
        digits = "".join(itertools.takewhile(str.isdigit, tail))
        if digits and not _pid_running(int(digits)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
            removed.append(candidate)
    return removed


class OutputSet:
    """Outputs that appear together or not at all (module docstring).

    ``with OutputSet({"--out": r.json, "--csv": r.csv}) as outs: write(outs.temporary("--out"))``
    ... on leaving the block without an error every written temporary is renamed to its output
    (in the order given; the last is the one a reader should look for); on an error or Ctrl-C /
    SIGTERM every temporary is removed and no output is touched.
    """

    def __init__(self, outputs: Mapping[str, str | Path | None]) -> None:
        self.final = {k: Path(p) for k, p in outputs.items() if p is not None}
        for path in self.final.values():
            remove_stale_temporaries(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = {k: set_temporary(p) for k, p in self.final.items()}

    def temporary(self, key: str) -> Path:
        """Where output ``key`` is written during the run."""
        return self.tmp[key]

    def commit(self) -> None:
        missing = [str(self.tmp[k]) for k in self.final if not self.tmp[k].exists()]
        if missing:
            raise FileNotFoundError(f"{', '.join(missing)}: nothing was written")
        for key, path in self.final.items():
            os.replace(self.tmp[key], path)

    def abort(self) -> None:
        for tmp in self.tmp.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
