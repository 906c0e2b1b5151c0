"""Large buffers reused from the heap during an evaluation, not mapped afresh on every call.

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MiB, adjusted at run
time) with a fresh ``mmap`` and unmaps it on ``free``: the next block of that size faults in
every page again and the kernel zeroes each one. A ResNet18 forward over 64 rows of
12 x 128 x 128 allocates activations of 67 MB, so every call of torch's network (and every
coalition batch, every normalised copy) paid that again: 863 000 page faults (3.4 GB zeroed)
per 400-sample SHAPE run of the in-memory module, about 12 % of its time end to end.
onnxruntime keeps its own arena and is less affected, which is most of what separated the
two. Inside :func:`reused_heap`::

    mallopt(M_MMAP_THRESHOLD, 1 GiB)    # blocks up to 1 GiB come from the heap
    mallopt(M_TRIM_THRESHOLD, 1 GiB)    # freed heap is kept for the next batch

and on leaving the outermost block::

    mallopt(M_MMAP_THRESHOLD, 32 MiB)   # the values glibc's own dynamic rule reaches once a
    mallopt(M_TRIM_THRESHOLD, 64 MiB)   # large block has been freed (DEFAULT_MMAP_THRESHOLD_MAX)
    malloc_trim(0)                      # the heap the evaluation kept goes back to the system

Measured (``python -m benchmarks.shape_throughput [--fresh-heap]``, RESULTS.md): page
faults per run 863 000 -> 133 000 on the module path (what is left: the run's first touch of
its heap, given back at the end), 0.88x -> 0.95x onnxruntime end to end.

Nothing is changed where the process is not glibc (macOS, Windows, musl), in a thread other
than the main one (the setting is process-wide: an evaluation in a worker thread leaves the
process's allocator as it found it), or where the user chose malloc's tuning already
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc`` in
``GLIBC_TUNABLES``): their setting stands.
Nested blocks (an evaluation inside a comparison) share one setting; the outermost restores.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: inside :func:`reused_heap`
EVALUATION_MMAP_THRESHOLD = 1 << 30
EVALUATION_TRIM_THRESHOLD = 1 << 30  # mallopt takes a C int
#: on leaving it: glibc's DEFAULT_MMAP_THRESHOLD_MAX (64-bit) and twice that, as its own rule
AFTER_MMAP_THRESHOLD = 32 << 20
AFTER_TRIM_THRESHOLD = 64 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_depth = 0  # blocks entered and not left (main thread only)
#: False switches :func:`reused_heap` off (``benchmarks`` measure glibc's default with it)
enabled = True


@functools.cache
def glibc() -> Any:
    """The process's C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else
    None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def user_tuned() -> bool:
    """Whether malloc's thresholds were set by the user (environment)."""
    return any(v in os.environ for v in USER_SETTINGS) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    )


def applies() -> bool:
    """Whether :func:`reused_heap` changes anything in this process and thread."""
    return (
        enabled
        and glibc() is not None
        and threading.current_thread() is threading.main_thread()
        and not user_tuned()
    )


def _set(mmap_threshold: int, trim_threshold: int) -> None:
    libc = glibc()
    libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)


@contextlib.contextmanager
def reused_heap() -> Iterator[None]:
    """Large blocks come from a heap kept between batches inside the block (module
    docstring); a no-op where :func:`applies` is False."""
    global _depth
    if not applies():
        yield
        return
    _depth += 1
    if _depth == 1:
        _set(EVALUATION_MMAP_THRESHOLD, EVALUATION_TRIM_THRESHOLD)
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _set(AFTER_MMAP_THRESHOLD, AFTER_TRIM_THRESHOLD)
            glibc().malloc_trim(0)
