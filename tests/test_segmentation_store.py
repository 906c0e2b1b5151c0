"""The store's segmentation parts: ``map`` label sets and ``/cloud_mask``, written with the real
StoreWriter and read back by Store (round trip), their content rules (one-line errors naming
the dataset, the value and the row), the content digest over them, and which batches carry
the cloud mask.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.errors import StoreError
from sareval.store import (
    LabelSpec,
    SensorSpec,
    Store,
    StoreWriter,
    check_content,
    content_digest_of,
)

N, H, W = 7, 6, 5
CLASSES = ("water", "forest", "urban")
S2 = tuple(f"B{b}" for b in ("02", "03", "04", "08"))


def mask_and_cover(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (N, H, W) 0/1 mask with rows 1 and 4 unknown (255, cover NaN); cover = mean."""
    mask = (rng.random((N, H, W)) < 0.4).astype(np.uint8)
    mask[[1, 4]] = 255
    cover = mask.mean(axis=(1, 2)).astype(np.float32)
    cover[[1, 4]] = np.nan
    return mask, cover


def write(
    path: Path, maps: np.ndarray, mask: np.ndarray | None, cover: np.ndarray,
    ignore_index: int | None = None, cloudy: bool = False,
) -> Path:  # fmt: skip
    rng = np.random.default_rng(1)
    writer = StoreWriter(
        path, dataset="custom", split="test", default_task="segmentation",
        ids=[f"p{i}" for i in range(N)], height=H, width=W,
        sensors=[SensorSpec("s1", ("VV", "VH"), "float32"), SensorSpec("s2", S2, "uint16")],
        labels=[LabelSpec("lc_map", "map", CLASSES, ignore_index=ignore_index),
                LabelSpec("scene", "index", CLASSES)],
        config={"t": 1}, with_cloudy=cloudy, with_cloud_mask=mask is not None, chunk_rows=2,
    )  # fmt: skip
    s2 = rng.integers(0, 5000, (N, len(S2), H, W)).astype(np.uint16)
    arrays: dict[str, np.ndarray] = {
        "s1": rng.normal(-12, 3, (N, 2, H, W)).astype(np.float32),
        "s2": s2,
    }
    if cloudy:
        arrays["s2_cloudy"] = s2 + 100
    for a in range(0, N, 3):  # blocks of 3 rows across chunks of 2
        b = min(a + 3, N)
        writer.write_rows(
            a, {k: v[a:b] for k, v in arrays.items()},
            {"lc_map": maps[a:b], "scene": np.zeros(b - a, np.int64)},
            cloud_cover=cover[a:b], cloud_mask=None if mask is None else mask[a:b],
            cloudy_available=np.ones(b - a, bool) if cloudy else None,
        )  # fmt: skip
    rows = np.arange(N)
    subsets = {"all": (rows, "s2", "")}
    if cloudy:
        subsets["cloudy"] = (rows, "s2_cloudy", "")
    return writer.finish(subsets)


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    maps = rng.integers(0, len(CLASSES), (N, H, W)).astype(np.uint8)
    maps[2, 0, :] = 255  # ignored pixels
    return (maps, *mask_and_cover(rng))


def test_round_trip(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    maps, mask, cover = arrays
    path = write(tmp_path / "s.h5", maps, mask, cover)
    with Store(path) as store:
        spec = store.label_set("lc_map")
        assert spec == LabelSpec("lc_map", "map", CLASSES, None, 255)
        assert spec.task == "segmentation"
        assert store.find_labels("segmentation", CLASSES[::-1]) == spec
        assert store.find_labels("single-label", CLASSES).name == "scene"
        np.testing.assert_array_equal(store.labels("lc_map"), maps)
        np.testing.assert_array_equal(store.labels("lc_map", np.array([1, 2, 6])), maps[[1, 2, 6]])
        np.testing.assert_array_equal(store.cloud_mask(), mask)
        np.testing.assert_array_equal(store.cloud_mask(np.array([0, 4])), mask[[0, 4]])
        assert store.file["labels/lc_map"].dtype == np.uint8
        batches = list(store.iter_batches("all", 3, label_sets=("lc_map",)))
        np.testing.assert_array_equal(np.concatenate([b.labels["lc_map"] for b in batches]), maps)
        np.testing.assert_array_equal(np.concatenate([b.cloud_mask for b in batches]), mask)


def test_custom_ignore_index_is_kept(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    maps, mask, cover = arrays
    maps = np.where(maps == 255, 9, maps).astype(np.uint8)
    path = write(tmp_path / "s.h5", maps, mask, cover, ignore_index=9)
    with Store(path) as store:
        assert store.label_set("lc_map").ignore_index == 9
        assert store.file["labels/lc_map"].attrs["ignore_index"] == 9


def test_without_a_mask(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    maps, _, cover = arrays
    path = write(tmp_path / "s.h5", maps, None, cover)
    with Store(path) as store:
        assert store.cloud_mask() is None
        assert next(store.iter_batches("all", 4)).cloud_mask is None


def test_mask_only_for_the_source_it_describes(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    maps, mask, cover = arrays
    path = write(tmp_path / "s.h5", maps, mask, cover, cloudy=True)
    with Store(path) as store:
        assert store.cloud_cover_source == "s2_cloudy"
        sub = store.subset("cloudy")
        np.testing.assert_array_equal(store.read_batch(sub, 2, 5).cloud_mask, mask[2:5])
        assert store.read_batch(store.subset("all"), 0, 3).cloud_mask is None


def _content(maps: np.ndarray, mask: np.ndarray | None, cover: np.ndarray, ignore: int = 255):
    check_content(
        N, [f"p{i}" for i in range(N)], {"s2": S2},
        {"lc_map": ("map", maps, CLASSES, ignore)}, cover, {}, images=["s2"], cloud_mask=mask,
    )  # fmt: skip


def test_content_rules(arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    maps, mask, cover = arrays
    _content(maps, mask, cover)
    bad = maps.copy()
    bad[5, 3, 2] = 3  # K = 3: class indices 0..2
    with pytest.raises(ValueError, match=r"^/labels/lc_map holds 3 \(row 5, pixel 3,2\); "):
        _content(bad, mask, cover)
    with pytest.raises(ValueError, match="holds 255"):  # 255 is not the ignore index here
        _content(maps, mask, cover, ignore=7)
    with pytest.raises(ValueError, match="ignore_index 1 is a class index"):
        _content(maps, mask, cover, ignore=1)
    with pytest.raises(ValueError, match=r"a map needs \(7, H, W\)"):
        _content(maps[:, 0], mask, cover)
    off = cover.copy()
    off[3] = min(1.0, off[3] + 0.01)
    with pytest.raises(ValueError, match=r"^/cloud_mask row 3: mean .* differs from /cloud_cover"):
        _content(maps, mask, off)
    unknown = cover.copy()
    unknown[0] = np.nan
    with pytest.raises(ValueError, match=r"^/cloud_mask row 0: the cover is unknown"):
        _content(maps, mask, unknown)
    two = mask.copy()
    two[6, 0, 0] = 2
    with pytest.raises(ValueError, match="row 6 holds values other than 0 / 1"):
        _content(maps, two, cover)


def test_store_refuses_bad_map_and_mask_files(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    maps, mask, cover = arrays
    path = write(tmp_path / "s.h5", maps, mask, cover)
    with h5py.File(path, "r+") as f:  # a value outside the classes, digest recomputed
        f["labels/lc_map"][4, 1, 1] = 17
        f.attrs["content_digest"] = content_digest_of(f)
    with pytest.raises(StoreError) as err:
        Store(path)
    text = str(err.value)
    assert str(path) in text and "\n" not in text
    assert "/labels/lc_map holds 17 (row 4, pixel 1,1)" in text

    path = write(tmp_path / "m.h5", maps, mask, cover)
    with h5py.File(path, "r+") as f:  # the mask changed after writing: digest mismatch
        f["cloud_mask"][0, 0, 0] = 1 - f["cloud_mask"][0, 0, 0]
        f["cloud_cover"][0] = f["cloud_mask"][0].mean()
    with pytest.raises(StoreError, match="content digest"):
        Store(path)


def test_digest_covers_maps_and_mask_as_whole_arrays(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The block-wise digest equals sha256 over the whole arrays, in the documented order."""
    maps, mask, cover = arrays
    path = write(tmp_path / "s.h5", maps, mask, cover)
    with h5py.File(path, "r") as f:
        h = hashlib.sha256(f["row_sha256"][()].tobytes())
        for name, values in (("lc_map", maps), ("scene", np.zeros(N, np.int64))):
            h.update(name.encode())
            h.update(values.tobytes())
        h.update(b"all")
        h.update(np.arange(N, dtype=np.int64).tobytes())
        h.update(b"cloud_mask")
        h.update(mask.tobytes())
        assert f.attrs["content_digest"] == h.hexdigest()
        assert json.loads(f["labels/lc_map"].attrs["class_names"]) == list(CLASSES)
