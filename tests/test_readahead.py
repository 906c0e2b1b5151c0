"""Readahead hints: the byte ranges are where the rows really are, and hints change no data."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.readahead import Readahead, merge_ranges, row_byte_ranges
from sareval.store import Store
from tests.test_store import make_arrays, new_writer, write_all


def file_bytes(path: Path, ranges: list[tuple[int, int]]) -> list[bytes]:
    with open(path, "rb") as f:
        out = []
        for offset, size in ranges:
            f.seek(offset)
            out.append(f.read(size))
        return out


def test_merge_ranges() -> None:
    assert merge_ranges([(10, 5), (0, 10), (30, 1), (14, 3)]) == [(0, 17), (30, 1)]
    assert merge_ranges([(5, 10), (6, 2)]) == [(5, 10)]
    assert merge_ranges([]) == []


def test_chunked_ranges_hold_the_rows_chunks(tmp_path: Path) -> None:
    data = np.arange(10 * 4 * 5, dtype=np.float32).reshape(10, 4, 5)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(3, 4, 5))
    with h5py.File(path, "r") as f:
        ranges = row_byte_ranges(f["d"], np.array([1, 7, 8]))
    # rows 1, 7, 8 live in chunks 0 (rows 0-2) and 2 (rows 6-8), written in row order
    got = np.frombuffer(b"".join(file_bytes(path, ranges)), dtype=np.float32)
    np.testing.assert_array_equal(got, np.concatenate([data[0:3], data[6:9]]).ravel())


def test_contiguous_ranges_hold_the_rows(tmp_path: Path) -> None:
    data = np.arange(6 * 3, dtype=np.int16).reshape(6, 3)
    path = tmp_path / "contiguous.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data)
    with h5py.File(path, "r") as f:
        assert f["d"].chunks is None
        ranges = row_byte_ranges(f["d"], np.array([2, 3, 5]))
    assert len(ranges) == 2  # rows 2 and 3 merged
    got = np.frombuffer(b"".join(file_bytes(path, ranges)), dtype=np.int16)
    np.testing.assert_array_equal(got, data[[2, 3, 5]].ravel())


def test_compressed_ranges_are_the_stored_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 50, size=(8, 16, 16)).astype(np.uint16)
    path = tmp_path / "gzip.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=data, chunks=(4, 16, 16), compression="gzip")
    with h5py.File(path, "r") as f:
        ranges = row_byte_ranges(f["d"], np.array([5]))
    assert len(ranges) == 1
    (raw,) = file_bytes(path, ranges)
    np.testing.assert_array_equal(
        np.frombuffer(zlib.decompress(raw), dtype=np.uint16), data[4:8].ravel()
    )


def test_unwritten_chunks_and_empty_rows_have_no_ranges(tmp_path: Path) -> None:
    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("d", shape=(10, 4), dtype=np.float32, chunks=(2, 4))
        d[0:2] = 1.0
        assert row_byte_ranges(d, np.array([5, 9])) == []
        assert len(row_byte_ranges(d, np.array([0, 5]))) == 1
        assert row_byte_ranges(d, np.array([], dtype=np.int64)) == []
        empty = f.create_dataset("e", shape=(4, 4), dtype=np.float32)  # no storage yet
        assert row_byte_ranges(empty, np.array([1])) == []


def test_hints_change_no_data_and_count_bytes(tmp_path: Path, monkeypatch) -> None:
    arrays = make_arrays(9)
    w = new_writer(tmp_path / "s.h5", 9, chunk_rows=2)
    write_all(w, arrays)
    w.finish({"odd": (np.arange(1, 9, 2), "s2", "")})
    with Store(tmp_path / "s.h5") as st:
        sub = st.subset("odd")
        # rows 1, 3 -> chunks 0 and 1 of each sensor (2 rows x C x 6 x 6)
        assert st.prefetch(sub, 0, 2) == 2 * 2 * 36 * (2 * 4 + 3 * 2)
        batches = {
            k: np.concatenate([b.arrays["s1"] for b in st.iter_batches(sub, 3, readahead=k)])
            for k in (0, 1, 2, 5)
        }
    for got in batches.values():
        np.testing.assert_array_equal(got, arrays["s1"][1::2])
    with h5py.File(tmp_path / "s.h5", "r") as f:
        hints = Readahead(tmp_path / "s.h5")
        assert hints.advise(f["s1"], np.array([1])) == 2 * 2 * 36 * 4

        def refuse(*args: object) -> None:
            raise OSError(22, "Invalid argument")

        monkeypatch.setattr(os, "posix_fadvise", refuse)
        assert hints.advise(f["s1"], np.array([1])) == 0  # refused: hints off, no error
        assert hints.fd is None and hints.advise(f["s1"], np.array([1])) == 0
        monkeypatch.delattr(os, "posix_fadvise")
        assert Readahead(tmp_path / "s.h5").advise(f["s1"], np.array([1])) == 0  # no fadvise


@pytest.mark.parametrize("readahead", [0, 2])
def test_batch_reader_reads_the_same_with_and_without_hints(tmp_path: Path, readahead) -> None:
    from sareval.evaluator.reader import BatchReader

    arrays = make_arrays(11)
    w = new_writer(tmp_path / "s.h5", 11, chunk_rows=3)
    write_all(w, arrays)
    w.finish({"all": (np.arange(11), "s2", "")})
    with Store(tmp_path / "s.h5") as st:
        sub = st.subset("all")
        with BatchReader(st, sub, 2, 11, 4, sensors=("s2",), readahead=readahead) as reader:
            got = np.concatenate([b.arrays["s2"].copy() for b, _ in reader])
    np.testing.assert_array_equal(got, arrays["s2"][2:11])
