"""Readahead hints: ask the kernel to load the file bytes of upcoming HDF5 rows in the background.

A store is read in order, batch after batch. One synchronous reader keeps one request in flight
at a time, which leaves most of a disk's bandwidth unused when the file is not in the page cache
(``benchmarks/RESULTS.md``: cold store reads about 2x faster with hints two batches ahead).
:class:`Readahead` finds where rows ``r`` of a dataset lie in the file (chunk ``r // chunk_rows``
at ``byte_offset`` for ``size`` bytes, from the chunk index; or ``offset + r x row_bytes`` for a
contiguous dataset) and calls ``posix_fadvise(fd, offset, size, POSIX_FADV_WILLNEED)`` on the
merged ranges, which starts the reads and returns at once. A hint never changes what is read;
where ``posix_fadvise`` does not exist (macOS, Windows), the file system refuses it, or HDF5
predates the chunk query (1.10.5), hints do nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

ByteRange = tuple[int, int]  # (offset, size) in the file


def row_byte_ranges(ds: h5py.Dataset, rows: np.ndarray) -> list[ByteRange]:
    """Sorted, merged ``(offset, size)`` file ranges holding ``rows`` of ``ds`` (axis 0).

    Chunked: the stored (possibly compressed) chunks that contain the rows; chunks never written
    have no bytes and are skipped. Contiguous: the rows' own bytes. Empty for a dataset with no
    storage yet.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return []
    ranges: list[ByteRange] = []
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is None:
            return []
        row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
        ranges = [(offset + int(r) * row_bytes, row_bytes) for r in rows]
    else:
        chunk_info = getattr(ds.id, "get_chunk_info_by_coord", None)  # HDF5 >= 1.10.5
        if chunk_info is None:
            return []
        chunk_rows = ds.chunks[0]
        tail = (0,) * (ds.ndim - 1)
        for first in np.unique(rows // chunk_rows) * chunk_rows:
            info = chunk_info((int(first), *tail))
            if info.byte_offset is not None and info.size:
                ranges.append((int(info.byte_offset), int(info.size)))
    return merge_ranges(ranges)


def merge_ranges(ranges: list[ByteRange]) -> list[ByteRange]:
    """Sort ``ranges`` and join those that touch or overlap."""
    merged: list[ByteRange] = []
    for offset, size in sorted(ranges):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            start, length = merged[-1]
            merged[-1] = (start, max(length, offset + size - start))
        else:
            merged.append((offset, size))
    return merged


class Readahead:
    """Background-read hints for one file; :meth:`close` releases its descriptor."""

    def __init__(self, path: str | Path) -> None:
        self.fd: int | None = None
        if hasattr(os, "posix_fadvise"):
            self.fd = os.open(path, os.O_RDONLY)

    def advise(self, ds: h5py.Dataset, rows: np.ndarray) -> int:
        """Hint the bytes of ``rows`` of ``ds``; returns the number of bytes hinted."""
        if self.fd is None:
            return 0
        total = 0
        try:
            for offset, size in row_byte_ranges(ds, rows):
                os.posix_fadvise(self.fd, offset, size, os.POSIX_FADV_WILLNEED)
                total += size
        except OSError:  # a file system that refuses hints: read without them
            self.close()
        return total

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
