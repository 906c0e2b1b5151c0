"""``write_store`` validates exactly what ``open_store`` validates, before writing anything
(issue 19): one validator (:func:`sareval.store.check_content`) serves both. Each invalid store
is refused by ``write_store`` with no file left behind; the same content written by hand with
h5py (a valid store edited, its content digest recomputed) is refused by ``open_store`` with
the same message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import sareval
from sareval.bands import S2_BANDS
from sareval.errors import StoreError
from sareval.store import content_digest_of

N = 10
CLASSES = ("water", "forest", "urban", "crop")


def base() -> dict[str, Any]:
    """The arguments of a valid write_store call."""
    rng = np.random.default_rng(7)
    return {
        "arrays": {
            "s1": rng.normal(-12, 4, size=(N, 2, 4, 4)).astype(np.float32),
            "s2": rng.integers(0, 4000, size=(N, 13, 4, 4)).astype(np.uint16),
        },
        "labels": {
            "y": (rng.integers(0, 4, N), CLASSES),
            "m": ((rng.random((N, 4)) < 0.4).astype(np.uint8), CLASSES),
        },
        "subsets": {"all": np.arange(N), "bad": np.arange(2, 6)},
        "ids": [f"p{i}" for i in range(N)],
        "cloud_cover": np.linspace(0, 1, N).astype(np.float32),
    }


def set_subset(rows: Any) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f["subsets/bad"]
        ds = f["subsets"].create_dataset("bad", data=np.asarray(rows))
        ds.attrs.update({"optical": "s2", "description": "bad"})

    return edit


def set_ids(f: h5py.File) -> None:
    ids = [f"p{i}" for i in range(N)]
    ids[6] = "p2"
    f["ids"][...] = np.asarray(ids, dtype=object)


def set_bands(f: h5py.File) -> None:
    bands = list(S2_BANDS)
    bands[5] = "B02"
    f["s2"].attrs["bands"] = json.dumps(bands)


def set_class_names(f: h5py.File) -> None:
    f["labels/y"][0] = 3
    f["labels/y"].attrs["class_names"] = json.dumps(list(CLASSES[:3]))


def set_multi_hot_names(f: h5py.File) -> None:
    f["labels/m"].attrs["class_names"] = json.dumps(list(CLASSES[:3]))


def set_multi_hot_two(f: h5py.File) -> None:
    f["labels/m"][3, 1] = 2


def set_cover(f: h5py.File) -> None:
    f["cloud_cover"][4] = 2.0


def with_subset(rows: Any) -> Callable[[dict[str, Any]], None]:
    def change(kw: dict[str, Any]) -> None:
        kw["subsets"]["bad"] = rows

    return change


def dup_ids(kw: dict[str, Any]) -> None:
    kw["ids"][6] = "p2"


def dup_bands(kw: dict[str, Any]) -> None:
    bands = list(S2_BANDS)
    bands[5] = "B02"
    kw["bands"] = {"s2": bands}


def short_classes(kw: dict[str, Any]) -> None:
    y, _ = kw["labels"]["y"]
    y[0] = 3
    kw["labels"]["y"] = (y, CLASSES[:3])


def short_multi_hot_classes(kw: dict[str, Any]) -> None:
    kw["labels"]["m"] = (kw["labels"]["m"][0], CLASSES[:3])


def multi_hot_two(kw: dict[str, Any]) -> None:
    kw["labels"]["m"][0][3, 1] = 2


def cover_two(kw: dict[str, Any]) -> None:
    kw["cloud_cover"][4] = 2.0


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], Callable[[h5py.File], None], str]] = {
    "rows-out-of-range": (
        with_subset([0, N]), set_subset([0, N]), f"/subsets/bad has rows outside 0..{N - 1}"
    ),
    "rows-negative": (
        with_subset([-1, 3]), set_subset([-1, 3]), f"/subsets/bad has rows outside 0..{N - 1}"
    ),
    "rows-fractional": (
        with_subset([0.5, 1.0]), set_subset([0.5, 1.0]),
        "/subsets/bad holds float64 rows, not integers",
    ),
    "rows-unsorted": (
        with_subset([3, 1]), set_subset([3, 1]), "/subsets/bad rows are not sorted and unique"
    ),
    "rows-duplicate": (
        with_subset([1, 1, 2]), set_subset([1, 1, 2]),
        "/subsets/bad rows are not sorted and unique",
    ),
    "ids-duplicate": (dup_ids, set_ids, "/ids repeats 'p2' (1 id(s) repeated)"),
    "bands-duplicate": (dup_bands, set_bands, "band name 'B02' is twice in /s2"),
    "classes-short": (
        short_classes, set_class_names,
        "/labels/y holds class index 3, outside 0..2 (3 classes)",
    ),
    "multi-hot-classes-short": (
        short_multi_hot_classes, set_multi_hot_names,
        f"/labels/m has shape ({N}, 4): 3 class names need (N, 3)",
    ),
    "multi-hot-two": (
        multi_hot_two, set_multi_hot_two,
        "/labels/m holds 2 (row 3, column 1); multi-hot labels are 0 or 1",
    ),
    "cloud-cover-2": (
        cover_two, set_cover,
        "/cloud_cover holds 2 (row 4); cloud cover is a fraction in [0, 1], NaN where unknown",
    ),
}  # fmt: skip


def write(path: Path, kw: dict[str, Any]) -> Path:
    return sareval.write_store(path, kw.pop("arrays"), kw.pop("labels"), **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_write_store_refuses_what_open_store_refuses(case: str, tmp_path: Path) -> None:
    change, edit, problem = CASES[case]
    path = tmp_path / "out" / "s.h5"
    path.parent.mkdir()
    kw = base()
    change(kw)
    with pytest.raises(StoreError) as refused:
        write(path, kw)
    assert str(refused.value) == f"{path}: malformed store: {problem}"
    assert list(path.parent.iterdir()) == []  # nothing written, not even a .partial

    write(path, base())  # the valid store, then the same content by hand
    with h5py.File(path, "r+") as f:
        edit(f)
        f.attrs["content_digest"] = content_digest_of(f)
    with pytest.raises(StoreError) as opened:
        sareval.open_store(path)
    assert str(opened.value) == str(refused.value)


def test_the_valid_arguments_write_a_store_that_opens(tmp_path: Path) -> None:
    kw = base()
    path = write(tmp_path / "s.h5", kw)
    with sareval.open_store(path) as store:
        assert store.subsets == ["all", "bad"]
        assert store.store.ids() == [f"p{i}" for i in range(N)]
        np.testing.assert_array_equal(store.store.cloud_cover(), base()["cloud_cover"])


def test_a_band_in_two_sensors_and_a_bad_optical_source(tmp_path: Path) -> None:
    kw = base()
    kw["arrays"]["dem"] = np.zeros((N, 1, 4, 4), np.float32)
    kw["bands"] = {"dem": ["VH"]}
    with pytest.raises(StoreError, match=r"band name 'VH' is in both /s1 and /dem$"):
        write(tmp_path / "a.h5", kw)
    kw = base()
    kw["subsets"]["bad"] = (np.arange(3), "s2_cloudy")
    with pytest.raises(StoreError, match="/subsets/bad: optical source 's2_cloudy' is not in"):
        write(tmp_path / "b.h5", kw)
    assert list(tmp_path.iterdir()) == []
