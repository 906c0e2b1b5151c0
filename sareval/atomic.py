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
:func:`output_set` writes several outputs of one run so that they appear together or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
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
    exception propagates (a full disk or an unwritable folder as one
    :class:`~sareval.write_errors.OutputWriteError`); ``path`` is untouched.
    """
    from sareval.write_errors import as_write_error

    path = check_output(path, overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written")
        os.replace(tmp, path)
    except BaseException as e:
        error = as_write_error(e, path)  # before the unlink frees the space
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if error is e:
            raise
        raise error from None


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


TMP_TAG = ".sareval-tmp-"


def set_temp_path(path: str | Path) -> Path:
    """The temporary name of ``path`` inside an output set: ``<dir>/.<name>.sareval-tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the output-set temporaries of ``path`` left by killed runs (their pid is dead),
    including the nested ``.<temp>.<pid>.tmp`` of a writer inside the set; return them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.\.?{re.escape(path.name)}{re.escape(TMP_TAG)}(\d+)")
    removed = []
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


class OutputSet:
    """The outputs of one run, written under temporary names and renamed together.

    :meth:`temp` gives the name to write each target to; :meth:`commit` renames every written
    temporary into place (SIGINT/SIGTERM blocked meanwhile); :meth:`abort` removes them.
    """

    def __init__(self, targets: Iterable[str | Path | None], overwrite: bool = False) -> None:
        self.targets = [Path(t) for t in targets if t is not None]
        self.overwrite = overwrite
        for target in self.targets:
            remove_stale_temporaries(target)

    def temp(self, target: str | Path) -> Path:
        """The temporary path that stands for ``target`` (its folder is created)."""
        target = Path(target)
        if target not in self.targets:
            raise ValueError(f"{target}: not an output of this set")
        target.parent.mkdir(parents=True, exist_ok=True)
        return set_temp_path(target)

    def commit(self) -> None:
        """Rename every target's temporary into place; refuse first if one is missing."""
        for target in self.targets:
            check_output(target, self.overwrite)
            if not set_temp_path(target).exists():
                raise FileNotFoundError(f"{set_temp_path(target)}: nothing was written")
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for target in self.targets:
                os.replace(set_temp_path(target), target)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def abort(self) -> None:
        """Remove this run's temporaries (the targets are untouched)."""
        for target in self.targets:
            with contextlib.suppress(FileNotFoundError):
                set_temp_path(target).unlink()


@contextlib.contextmanager
def output_set(
    targets: Iterable[str | Path | None], overwrite: bool = False
) -> Iterator[OutputSet]:
    """An :class:`OutputSet` committed when the block succeeds, aborted on any exception."""
    outputs = OutputSet(targets, overwrite)
    try:
        yield outputs
        outputs.commit()
    except BaseException:
        outputs.abort()
        raise
