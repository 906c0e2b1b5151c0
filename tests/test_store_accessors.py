"""The Store's typed accessors (the HDF5 layout stays inside sareval.store): each compared
with the raw HDF5 file read independently with h5py."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from sareval.store import Store, is_store_path


def test_accessors_match_the_raw_file(tiny_store: Path) -> None:
    with h5py.File(tiny_store, "r") as f:
        raw_counts = {s: f[f"stats/{s}_count"][()] for s in ("s1", "s2", "s2_cloudy")}
        h, w = int(f.attrs["height"]), int(f.attrs["width"])
        options = json.loads(f.attrs["options"])
        created = f.attrs["created"]
        available = int(f["s2_cloudy_available"][()].sum())
        nan_rows = int(np.isnan(f["s1"][()]).any(axis=(1, 2, 3)).sum())
    with Store(tiny_store) as store:
        assert store.image_datasets == ("s1", "s2", "s2_cloudy")
        assert store.options == options
        assert store.attribute("created") == str(created)
        assert store.attribute("no_such_attribute") is None
        for sensor, counts in raw_counts.items():
            np.testing.assert_array_equal(store.finite_counts(sensor), counts)
            rows = np.array([1, 4, 5])
            np.testing.assert_array_equal(store.finite_counts(sensor, rows), counts[rows])
            assert store.nonfinite_rows(sensor) == int((counts < h * w).any(axis=1).sum())
        assert store.nonfinite_rows("s1") == nan_rows >= 1
        assert int(store.cloudy_available(np.arange(store.n_samples)).sum()) == available


def test_is_store_path(tmp_path: Path, tiny_store: Path) -> None:
    assert is_store_path(tiny_store)
    renamed = tmp_path / "store.bin"
    renamed.write_bytes(tiny_store.read_bytes())
    assert is_store_path(renamed)  # by its HDF5 signature
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_store_path(tmp_path / "notes.txt")
    assert is_store_path(tmp_path / "missing.H5")  # by suffix: opening it says what is wrong
