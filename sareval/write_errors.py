"""A full disk or an unwritable output while writing: one ``<output>: <what>`` error, no debris.

Writers (:func:`~sareval.atomic.atomic_output`, :class:`~sareval.store.StoreWriter`,
:class:`~sareval.evaluator.predictions.PredictionsWriter`) pass what they caught through
:func:`as_write_error`: ENOSPC, EDQUOT, EACCES and EROFS become an :class:`OutputWriteError`
naming the output the user asked for (not its temporary name), whether they come as an
``OSError`` or inside an HDF5 / torch message. :func:`discard_h5` closes and removes a
half-written HDF5 file on a full disk without the HDF5 library's metadata flush failing again
(which prints tracebacks from finalizers and can crash the interpreter at exit).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
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
    re.compile(r"^\.(?P<name>.+)\.sareval-tmp-\d+(?:\.\d+\.tmp)?$"),
    re.compile(r"^\.(?P<name>.+)\.\d+\.tmp$"),
    re.compile(r"^(?P<name>.+)\.partial$"),
)


P = ParamSpec("P")
R = TypeVar("R")


class DiscardableWriter(Protocol):
    """A writer with an output path and a way to delete what it wrote so far."""

    out: Path

    def discard(self) -> None: ...


W = TypeVar("W", bound=DiscardableWriter)


class OutputWriteError(SarevalError):
    """An output could not be written (disk full, quota, permission, read-only filesystem)."""

    def __init__(self, path: str | Path, code: int) -> None:
        self.path, self.errno = Path(path), code
        super().__init__(f"{self.path}: {os.strerror(code).lower()}; nothing was written")


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
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL_BYTES


def as_write_error(error: BaseException, target: str | Path) -> BaseException:
    """``error`` as an :class:`OutputWriteError` naming ``target``'s output when it is a write
    failure of :func:`write_errno`; else ``error`` itself."""
    target = Path(target)
    code = write_errno(error, target.parent if target.parent.exists() else None)
    return error if code is None else OutputWriteError(output_name(target), code)


def discard_h5(file: Any, path: str | Path) -> None:
    """Close the open h5py ``file`` and delete ``path`` (its file), whatever state it is in.

    The file is truncated first: on a full disk that frees its space, so the close's metadata
    flush succeeds instead of failing again in every finalizer."""
    path = Path(path)
    with contextlib.suppress(OSError):
        os.truncate(path, 0)
    with contextlib.suppress(Exception):
        file.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def discard_on_write_error(
    method: Callable[Concatenate[W, P], R],
) -> Callable[Concatenate[W, P], R]:
    """Decorate a writer's method: a write failure (:func:`write_errno`) discards the writer's
    file (``self.discard()``) and is raised as an :class:`OutputWriteError` naming ``self.out``;
    any other exception propagates unchanged."""

    @functools.wraps(method)
    def wrapper(self: W, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except BaseException as e:
            error = as_write_error(e, self.out)
            if error is e:
                raise
            self.discard()
            raise error from None

    return wrapper
