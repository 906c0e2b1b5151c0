"""The parallel preprocess loop: same store whatever the workers, compression or chunking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.preprocess.pipeline import chunk_rows_for, compression_filter
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.store import Store, row_stats

DATA = Path(__file__).parent / "data"
ROOT, CR = DATA / "sen12ms", DATA / "sen12mscr"


def all_datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda name, obj: (
                out.setdefault(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


def test_row_stats_equal_a_float64_reference() -> None:
    rng = np.random.default_rng(0)
    u = rng.integers(0, 65536, size=(3, 4, 17, 19)).astype(np.uint16)
    u[0, 0] = 65535
    f = rng.normal(-15, 5, size=(3, 2, 17, 19)).astype(np.float32)
    f[1, 1, 2, 3] = np.nan
    f[2, 0, 0, 0] = np.inf
    for a in (u, f):
        finite = np.isfinite(a.astype(np.float64))
        clean = np.where(finite, a.astype(np.float64), 0.0)
        total, total_sq, count = row_stats(a)
        np.testing.assert_array_equal(total, clean.sum(axis=(2, 3)))
        np.testing.assert_array_equal(total_sq, (clean**2).sum(axis=(2, 3)))
        np.testing.assert_array_equal(count, finite.sum(axis=(2, 3)))
        assert total.dtype == np.float64 and count.dtype == np.int64


@pytest.mark.parametrize("compression", ["gzip", "none", "lz4", "zstd"])
def test_same_store_whatever_workers_compression_and_chunks(
    tmp_path: Path, compression: str
) -> None:
    ref = preprocess_sen12ms(ROOT, tmp_path / "ref.h5", cr_root=CR, workers=1, progress=False)
    other = preprocess_sen12ms(ROOT, tmp_path / "o.h5", cr_root=CR, workers=2, chunk_rows=3,
                               compression=compression, progress=False)  # fmt: skip
    if compression in ("lz4", "zstd"):  # a fresh process (no writer imported) reads it too
        code = (
            "import sys; from sareval.store import Store; s = Store(sys.argv[1]); "
            "print(next(s.iter_batches('clear', 2)).arrays['s2'].sum())"
        )
        done = subprocess.run([sys.executable, "-c", code, str(other)], capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    a, b = all_datasets(ref), all_datasets(other)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with Store(ref) as sa, Store(other) as sb:
        assert sa.content_digest == sb.content_digest
        assert sb.file["s2"].chunks[0] == 3
        # the stats kept in the store equal a recomputation from the stored arrays
        s2 = sa.file["s2"][()].astype(np.float64)
        np.testing.assert_array_equal(sa.file["stats/s2_sum"][()], s2.sum(axis=(2, 3)))


def test_compression_filters() -> None:
    assert compression_filter("none") is None and compression_filter("lzf") == "lzf"
    gz = compression_filter("gzip")
    assert gz.filter_id == 1 and tuple(gz.filter_options) == (1,)
    assert 1 <= chunk_rows_for(13 * 256 * 256 * 2) <= 4
    assert chunk_rows_for(10) == 64
