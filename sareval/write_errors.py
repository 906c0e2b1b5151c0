"""A full disk or an unwritable output while writing: one ``<output>: <what>`` error, no debris.

Writers (:func:`~sareval.atomic.atomic_output`, :class:`~sareval.store.StoreWriter`,
:class:`~sareval.evaluator.predictions.PredictionsWriter`) pass what they caught through
:func:`as_write_error`: ENOSPC, EDQUOT, EACCES and EROFS become an :class:`OutputWriteError`
naming the output the user asked for (not its temporary name), whether they come as an
``OSError`` or inside an HDF5 / torch message; the CLI turns any that escaped into the same line.
The HDF5 library does not recover from running out of space (its objects fail to close, print
tracebacks from finalizers and can crash the interpreter), so HDF5 writers check the space
before each write (:func:`ensure_free`) and, should a write fail anyway, remove their file with
:func:`discard_h5`, which frees its space before closing it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sareval.errors import SarevalError

#: errno values that mean "this output cannot be written here", not a bug
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM})
#: below this much free space an errno-less write failure (torch's "unexpected pos") is ENOSPC
NEARLY_FULL_BYTES = 1 << 20
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")
_TEMP_NAMES = (
    re.compile(r"^\.(?P<name>.+)\.\d+\.tmp$"),
    re.compile(r"^\.(?P<name>.+)\.sareval-tmp-\d+$"),
    re.compile(r"^(?P<name>.+)\.partial$"),
)


P = ParamSpec("P")
R = TypeVar("R")


class DiscardableWriter(Protocol):
    """A writer with an output path and a way to delete what it wrote so far."""

    out: Path

    def discard(self, error: BaseException | None = None) -> None: ...


W = TypeVar("W", bound=DiscardableWriter)


class OutputWriteError(SarevalError):
    """An output could not be written (disk full, quota, permission, read-only filesystem)."""

    def __init__(self, path: str | Path, code: int, detail: str = "") -> None:
        self.path, self.errno = Path(path), code
        what = os.strerror(code).lower() + (f" ({detail})" if detail else "")
        super().__init__(f"{self.path}: {what}")


def free_bytes(folder: str | Path) -> int | None:
    """Bytes this process may still write on ``folder``'s filesystem (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use reserved blocks
    return blocks * st.f_frsize


def ensure_free(target: str | Path, nbytes: int) -> None:
    """Raise ENOSPC as an :class:`OutputWriteError` naming ``target``'s output unless its
    filesystem has ``nbytes`` plus :data:`NEARLY_FULL_BYTES` free.

    HDF5 writers call this before writing: the HDF5 library does not recover from a write
    failing for lack of space (its objects cannot be closed; the interpreter can crash)."""
    target = Path(target)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = free_bytes(folder)
    need = nbytes + NEARLY_FULL_BYTES
    if free is not None and free < need:
        detail = f"needs {_size(need)}, {_size(free)} free"
        raise OutputWriteError(output_name(target), errno.ENOSPC, detail)


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def output_name(path: str | Path) -> Path:
    """The output a temporary stands for: ``.r.json.sareval-tmp-12`` / ``.r.json.12.tmp`` /
    ``s.h5.partial`` -> ``r.json`` / ``r.json`` / ``s.h5`` (other names unchanged)."""
    path = Path(path)
    for _ in range(3):  # nested: a writer's temporary of an output set's temporary
        for pattern in _TEMP_NAMES:
            m = pattern.match(path.name)
            if m:
                path = path.with_name(m.group("name"))
                break
        else:
            break
    return path


def write_errno(error: BaseException, folder: str | Path | None = None) -> int | None:
    """The errno of ``error`` if it is one of :data:`WRITE_ERRNOS` (an ``OSError``'s, or the
    ``errno = N`` of an HDF5 message); an errno-less ``OSError`` / ``RuntimeError`` while
    ``folder``'s filesystem is (nearly) full counts as ENOSPC. None otherwise."""
    if not isinstance(error, (OSError, RuntimeError)) or isinstance(error, SarevalError):
        return None
    code = getattr(error, "errno", None)
    if code is None:
        m = _ERRNO_IN_TEXT.search(str(error))
        code = int(m.group(1)) if m else None
    if code in WRITE_ERRNOS:
        return code
    if code is None and folder is not None and nearly_full(folder):
        return errno.ENOSPC
    return None


def nearly_full(folder: str | Path) -> bool:
    """Whether the filesystem of ``folder`` has less than :data:`NEARLY_FULL_BYTES` free."""
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def as_write_error(error: BaseException, target: str | Path) -> BaseException:
    """``error`` as an :class:`OutputWriteError` naming ``target``'s output when it is a write
    failure of :func:`write_errno`; else ``error`` itself."""
    target = Path(target)
    code = write_errno(error, target.parent if target.parent.exists() else None)
    return error if code is None else OutputWriteError(output_name(target), code)


def discard_h5(file: Any, path: str | Path, error: BaseException | None = None) -> None:
    """Close the open h5py ``file`` and delete ``path`` (its file), whatever state it is in.

    The file is truncated first: on a full disk that frees its space, so that the objects
    the failed call ``error`` still holds (its frames' locals, released here) and the file
    itself flush their caches and close cleanly, instead of failing again in finalizers (which
    print tracebacks and can crash the interpreter). Writers must therefore keep the h5py
    objects they write through in local variables, not temporaries."""
    path = Path(path)
    with contextlib.suppress(OSError):
        os.truncate(path, 0)
    if error is not None and error.__traceback__ is not None:
        traceback.clear_frames(error.__traceback__)
        error.__traceback__ = None
    with contextlib.suppress(Exception):
        file.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def discard_on_write_error(
    method: Callable[Concatenate[W, P], R],
) -> Callable[Concatenate[W, P], R]:
    """Decorate a writer's method: a write failure (:func:`write_errno`) discards the writer's
    file (``self.discard()``) and is raised as an :class:`OutputWriteError` naming ``self.out``;
    any other exception propagates unchanged. Meanwhile the HDF5 library's complaints from
    finalizers of objects of the failing file are not printed (they repeat the same ENOSPC)."""

    @functools.wraps(method)
    def wrapper(self: W, /, *args: P.args, **kwargs: P.kwargs) -> R:
        previous = sys.unraisablehook
        sys.unraisablehook = functools.partial(_quiet_write_failures, previous)
        try:
            try:
                return method(self, *args, **kwargs)
            except BaseException as e:
                out = getattr(self, "out", None)  # unset: __init__ failed vetting it
                error = (
                    e if isinstance(e, OutputWriteError) or out is None else as_write_error(e, out)
                )
                if not isinstance(error, OutputWriteError):
                    raise
                self.discard(e)
            raise error  # outside the except block: no chained traceback keeps ``e`` alive
        finally:
            sys.unraisablehook = previous

    return wrapper


def _quiet_write_failures(previous: Any, unraisable: Any) -> None:
    """An ``unraisablehook`` dropping h5py finalizer errors that are write failures."""
    value = unraisable.exc_value
    if value is not None and write_errno(value) is not None and "h5py" in repr(unraisable.object):
        return
    previous(unraisable)
