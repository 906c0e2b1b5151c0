"""One writer per output: an exclusive ``fcntl.flock`` on ``<out>.lock`` held for a run.

A second ``sareval preprocess`` on the same ``--out`` would otherwise resume, rebuild or delete
the ``.partial`` the first one is writing. The lock file holds the owner's pid (named in the
refusal) and is removed when the run ends; one left by a killed run is harmless (the kernel
released its lock) and is taken over. Forked children (preprocess workers) close their copy of
the lock's descriptor, so orphans of a killed run cannot keep holding it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sareval.errors import SarevalError

#: descriptors of the locks this process holds (closed in forked children)
_HELD: set[int] = set()


def _drop_in_child() -> None:
    """After a fork, in the child: close the inherited lock descriptors (the lock stays the
    parent's alone: an flock lives as long as any descriptor of its open file)."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_in_child)


def lock_path(out: str | Path) -> Path:
    """The lock file of an output: ``<dir>/<name>.lock``."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _owner(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 32, 0).decode().strip())}"
    return "another process"


def _acquire(out: Path, path: Path) -> int:
    """Open and lock ``path``, retrying when the file was removed by its previous owner
    between our open and our lock (we would hold a lock on an unlinked file)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise SarevalError(
                f"{out}: another sareval run ({owner}) is writing this output; wait for it "
                f"to end or stop it (lock file {path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold ``<out>.lock`` for the block (refused with the owner's pid if another process
    holds it); the lock file is removed at the end, whatever the outcome."""
    out = Path(out)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(out, path)
    _HELD.add(fd)
    try:
        with contextlib.suppress(OSError):  # the pid is for the message only (a full disk)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _HELD.discard(fd)
        os.close(fd)
