"""Segmentation labels and per-pixel cloud masks written by ``preprocess`` for SEN12MS(-CR),
reBEN and DFC2020 trees made by ``synth``: every row of each map label set equals an
independent read of its file (rasterio + the published class table written out here as a
literal, not imported from sareval); ``/cloud_mask`` averages to ``/cloud_cover``; the batch
reader hands the mask over only for the optical source it describes; bad label files are
one-line errors naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sareval.errors import InputFileError
from sareval.preprocess.bigearthnet import preprocess_bigearthnet
from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
from sareval.preprocess.dfc2020 import preprocess_dfc2020
from sareval.preprocess.sen12ms import preprocess_sen12ms
from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2
from sareval.preprocess.synth_dfc2020 import generate_dfc2020
from sareval.preprocess.synth_sen12ms import generate_sen12ms
from sareval.store import Store

pq = pytest.importorskip("pyarrow.parquet")  # reBEN metadata; not in the GPU image

#: IGBP code 0..17 -> DFC2020 class 0..10 (lukasliebel/dfc2020_baseline ``DFC2020_CLASSES``);
#: the store holds class - 1, and 255 for code 0 (and any code outside 0..17)
DFC2020_CLASSES = [0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10]
#: CORINE level-3 code -> BigEarthNet-19 index (BigEarthNet nomenclature); other codes -> 255
CLC_TO_BEN19 = {
    111: 0, 112: 0, 121: 1, 211: 2, 212: 2, 213: 2, 221: 3, 222: 3, 223: 3, 241: 3, 231: 4,
    242: 5, 243: 6, 244: 7, 311: 8, 312: 9, 313: 10, 321: 11, 333: 11, 322: 12, 323: 12,
    324: 13, 331: 14, 411: 15, 412: 15, 421: 16, 422: 16, 511: 17, 512: 17, 521: 18, 522: 18,
    523: 18,
}  # fmt: skip


def rio(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def igbp_reference(igbp: np.ndarray) -> np.ndarray:
    out = np.full(igbp.shape, 255, dtype=np.int64)
    for code, dfc in enumerate(DFC2020_CLASSES):
        if dfc:
            out[igbp == code] = dfc - 1
    return out


def clc_reference(codes: np.ndarray) -> np.ndarray:
    out = np.full(codes.shape, 255, dtype=np.int64)
    for code, index in CLC_TO_BEN19.items():
        out[codes == code] = index
    return out


def check_mask(store: Store) -> None:
    """(b) /cloud_mask: 0/1 with mean == cover where known, 255 everywhere where NaN."""
    cover, mask = store.cloud_cover(), store.cloud_mask()
    assert mask is not None and mask.shape == (store.n_samples, *store.image_size)
    known = ~np.isnan(cover)
    assert known.any()
    assert set(np.unique(mask[known])) <= {0, 1}
    np.testing.assert_allclose(mask[known].mean(axis=(1, 2)), cover[known], atol=1e-7)
    assert (mask[~known] == 255).all()


# --- SEN12MS + SEN12MS-CR -------------------------------------------------------------------
@pytest.fixture(scope="module")
def sen12ms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("seg-sen12ms")
    summary = generate_sen12ms(tmp / "tree", n_patches=6, size=64, seed=4, cr_fraction=1.0)
    paths = summary["paths"]
    out = preprocess_sen12ms(
        paths["sen12ms"], tmp / "s.h5", labels=paths["labels"], cr_root=paths["sen12mscr"],
        workers=1, progress=False, use_s2cloudless=False,
    )  # fmt: skip
    return Path(paths["sen12ms"]), out


def test_sen12ms_lc10_map_equals_the_lc_files(sen12ms: tuple[Path, Path]) -> None:
    root, out = sen12ms
    with Store(out) as store:
        spec = store.label_set("lc10_map")
        assert (spec.kind, spec.task, spec.ignore_index) == ("map", "segmentation", 255)
        maps = store.labels("lc10_map")
        assert maps.dtype == np.uint8 and maps.shape == (store.n_samples, 64, 64)
        for row, pid in enumerate(store.ids()):
            m = re.fullmatch(r"(ROIs\d+_[a-z]+)_(\d+)_p(\d+)", pid)
            assert m is not None
            season, scene, patch = m.groups()
            lc = root / season / f"lc_{scene}" / f"{season}_lc_{scene}_p{patch}.tif"
            np.testing.assert_array_equal(maps[row], igbp_reference(rio(lc)), err_msg=pid)


def test_sen12ms_cloud_mask_describes_the_cloudy_version(sen12ms: tuple[Path, Path]) -> None:
    _, out = sen12ms
    with Store(out) as store:
        assert store.cloud_cover_source == "s2_cloudy"
        check_mask(store)
        cloudy, clear = store.subset("cloudy"), store.subset("cloudy_clear")
        b = store.read_batch(cloudy, 0, 3, label_sets=("lc10_map",))
        assert b.cloud_mask is not None
        np.testing.assert_array_equal(b.cloud_mask, store.cloud_mask(cloudy.rows[:3]))
        assert b.labels["lc10_map"].shape == (3, 64, 64)
        assert store.read_batch(clear, 0, 3).cloud_mask is None  # the clear twin: no mask


def test_sen12ms_without_cr_root_has_maps_but_no_mask(
    sen12ms: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = sen12ms
    out = preprocess_sen12ms(root, tmp_path / "c.h5", workers=1, progress=False)
    with Store(out) as store:
        assert "lc10_map" in store.label_sets and store.cloud_mask() is None
        assert store.read_batch(store.subset("clear"), 0, 2).cloud_mask is None


def test_sen12ms_lc_of_the_wrong_size_names_the_file(
    sen12ms: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = sen12ms
    lc = next(root.glob("*/lc_*/*.tif"))
    with rasterio.open(lc) as src:
        profile, data = src.profile, src.read()
    profile.update(height=32, width=32)
    with rasterio.open(lc, "w", **profile) as dst:
        dst.write(data[:, :32, :32])
    try:
        with pytest.raises(InputFileError) as err:
            preprocess_sen12ms(root, tmp_path / "bad.h5", workers=1, progress=False)
    finally:
        profile.update(height=64, width=64)
        with rasterio.open(lc, "w", **profile) as dst:
            dst.write(data)
    assert str(lc) in str(err.value) and "\n" not in str(err.value)
    assert "32x32" in str(err.value)


# --- reBEN ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reben(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("seg-reben")
    paths = generate_bigearthnet_v2(tmp / "tree", n_patches=10, size=24, seed=5)["paths"]
    # plant codes without a 19-class: 124 Airports (unmapped CLC class), 0 (no code)
    first = sorted(Path(paths["reference_maps"]).glob("*/*/*_reference_map.tif"))[0]
    codes = rio(first)
    codes[:3, :3], codes[5, :4] = 124, 0
    _rewrite(first, codes)
    out = preprocess_bigearthnet_v2(
        paths["s2_root"], paths["s1_root"], paths["metadata"], tmp / "r.h5",
        snow_cloud_metadata=paths["snow_cloud_metadata"],
        reference_maps=paths["reference_maps"], workers=1, progress=False,
    )  # fmt: skip
    return Path(paths["reference_maps"]), out


def test_reben_ben19_map_equals_the_reference_maps(reben: tuple[Path, Path]) -> None:
    maps_root, out = reben
    with Store(out) as store:
        maps = store.labels("ben19_map")
        assert (
            store.label_set("ben19_map").class_names == store.label_set("clc19_multi").class_names
        )
        ignored = 0
        for row, pid in enumerate(store.ids()):
            product = "_".join(pid.split("_")[:-2])
            codes = rio(maps_root / product / pid / f"{pid}_reference_map.tif")
            want = clc_reference(codes)
            np.testing.assert_array_equal(maps[row], want, err_msg=pid)
            ignored += int((want == 255).sum())
        assert ignored >= 13  # the planted codes outside the 19 classes
        # the map's classes are the scene labels' classes (the same table)
        multi = store.labels("clc19_multi")
        for row in range(store.n_samples):
            present = np.unique(maps[row][maps[row] != 255])
            assert set(present) == set(np.flatnonzero(multi[row]))


def test_reben_cloud_mask(reben: tuple[Path, Path]) -> None:
    _, out = reben
    with Store(out) as store:
        assert store.cloud_cover_source == "s2"
        check_mask(store)
        cloudy = store.subset("cloudy")
        b = store.read_batch(cloudy, 0, len(cloudy))
        assert b.cloud_mask is not None and b.cloud_mask.shape == (len(cloudy), 24, 24)
        assert set(np.unique(b.cloud_mask)) <= {0, 1}  # the cloudy rows have a known cover


# --- DFC2020 ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dfc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("seg-dfc")
    generate_dfc2020(tmp / "tree", n_patches=4, size=64, seed=6, cloud_fraction=0.5)
    stores = {}
    for split in ("validation", "test"):
        stores[split] = preprocess_dfc2020(
            tmp / "tree", tmp / f"{split}.h5", split=split, workers=1, progress=False,
            use_s2cloudless=False,
        )  # fmt: skip
    return tmp / "tree", stores


@pytest.mark.parametrize("split", ["validation", "test"])
def test_dfc2020_lc10_map_equals_the_dfc_files(
    dfc: tuple[Path, dict[str, Path]], split: str
) -> None:
    root, stores = dfc
    folder = {"validation": "validation", "test": "0"}[split]
    with Store(stores[split]) as store:
        assert store.dataset == "dfc2020" and store.split == split
        maps = store.labels("lc10_map")
        for row, pid in enumerate(store.ids()):
            n = int(pid.rsplit("_p", 1)[1])
            name = f"ROIs0000_{split}_dfc_0_p{n}.tif"
            raw = rio(root / f"ROIs0000_{split}" / f"dfc_{folder}" / name).astype(np.int64)
            want = np.where(raw == 0, 255, raw - 1)  # the baseline's load_lc(igbp=False)
            np.testing.assert_array_equal(maps[row], want, err_msg=pid)
        if split == "validation":
            assert (maps == 255).sum() == 16  # the 4 x 4 no-label block of the first patch
        check_mask(store)


def test_dfc2020_maps_are_the_images_class_maps(dfc: tuple[Path, dict[str, Path]]) -> None:
    """Learnable: the dfc map is the lc file's IGBP layer in the 10-class scheme (the map the
    images were rendered from), apart from the no-label block."""
    root, stores = dfc
    with Store(stores["test"]) as store:
        maps = store.labels("lc10_map")
        for row, pid in enumerate(store.ids()):
            n = int(pid.rsplit("_p", 1)[1])
            lc = rio(root / "ROIs0000_test" / "lc_0" / f"ROIs0000_test_lc_0_p{n}.tif")
            np.testing.assert_array_equal(maps[row], igbp_reference(lc))


def _rewrite(path: Path, data: np.ndarray) -> None:
    with rasterio.open(path) as src:
        profile = src.profile
    profile.update(height=data.shape[0], width=data.shape[1])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None])


def test_dfc2020_value_outside_the_classes_names_the_file(
    dfc: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, _ = dfc
    path = sorted((root / "ROIs0000_test" / "dfc_0").glob("*.tif"))[1]
    before = rio(path)
    bad = before.copy()
    bad[5, 7] = 11
    _rewrite(path, bad)
    try:
        with pytest.raises(InputFileError) as err:
            preprocess_dfc2020(root, tmp_path / "bad.h5", split="test", workers=1, progress=False)
    finally:
        _rewrite(path, before)
    text = str(err.value)
    assert str(path) in text and "\n" not in text
    assert "value 11 at pixel 5,7" in text


def test_dfc2020_label_file_of_the_wrong_size_names_the_file(
    dfc: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, _ = dfc
    path = sorted((root / "ROIs0000_test" / "dfc_0").glob("*.tif"))[0]
    before = rio(path)
    _rewrite(path, before[:48, :64])
    try:
        with pytest.raises(InputFileError) as err:
            preprocess_dfc2020(root, tmp_path / "bad.h5", split="test", workers=1, progress=False)
    finally:
        _rewrite(path, before)
    text = str(err.value)
    assert str(path) in text and "\n" not in text and "48x64" in text


# --- BigEarthNet v1: the cloud mask of its cloudy-list rows ---------------------------------
def test_bigearthnet_v1_cloud_mask(tmp_path: Path) -> None:
    ben = Path(__file__).parent / "data" / "bigearthnet"
    out = preprocess_bigearthnet(
        ben / "BigEarthNet-v1.0", ben / "BigEarthNet-S1-v1.0", ben / "train.csv",
        tmp_path / "b.h5", cloudy_list=ben / "patches_with_cloud_and_shadow.csv",
        workers=1, progress=False,
    )  # fmt: skip
    with Store(out) as store:
        check_mask(store)
        assert np.isnan(store.cloud_cover()).any()  # rows off the cloudy list: mask 255
