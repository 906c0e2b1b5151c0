"""BigEarthNet v2.0 (reBEN) -> store: 10 m bands and S1 bit for bit, 20/60 m bands = the
resampling reference, labels = pyarrow's parse of the parquet, subsets = the flags, reference
maps, and one-line errors naming the file for bad input.

Data: ``sareval synth bigearthnet-v2`` (seeded) in a temporary folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.bands import BIGEARTHNET_S2_BANDS
from sareval.cli import cli
from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2
from sareval.store import Store

pq = pytest.importorskip("pyarrow.parquet")  # not in the GPU image

SIZE = 24
TEN_M = ("B02", "B03", "B04", "B08")
SIXTY_M = ("B01", "B09")
#: BigEarthNet 19-class names in the nomenclature's order (shared/reference/datasets.md)
BEN19_NAMES = [
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops",
    "Pastures", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation", "Transitional woodland, shrub",
    "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands", "Inland waters",
    "Marine waters",
]  # fmt: skip


def rio(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def product(name: str, fields: int) -> str:
    return "_".join(name.split("_")[:-fields])


def parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reben") / "d"
    generate_bigearthnet_v2(root, n_patches=20, size=SIZE, seed=3)
    return root


def build(tree: Path, out: Path, **kw: object) -> Path:
    return preprocess_bigearthnet_v2(
        tree / "BigEarthNet-S2", tree / "BigEarthNet-S1", tree / "metadata.parquet", out,
        workers=1, chunk_rows=4, progress=False, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(
        tree,
        tmp_path_factory.mktemp("reben-store") / "all.h5",
        snow_cloud_metadata=tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet",
        reference_maps=tree / "Reference_Maps",
    )


def test_arrays_equal_rasterio_and_resampling_reference(tree: Path, store: Path) -> None:
    rows = parquet_rows(tree / "metadata.parquet") + parquet_rows(
        tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    )
    with Store(store) as st:
        assert st.ids() == [r["patch_id"] for r in rows]
        assert st.bands("s2") == BIGEARTHNET_S2_BANDS and st.image_size == (SIZE, SIZE)
        assert st.file["s2"].dtype == np.float32
        s1, s2, maps = st.file["s1"][()], st.file["s2"][()], st.file["reference_map"][()]
        for i, r in enumerate(rows):
            pid, s1n = r["patch_id"], r["s1_name"]
            folder = tree / "BigEarthNet-S2" / product(pid, 2) / pid
            for c, band in enumerate(BIGEARTHNET_S2_BANDS):
                raw = rio(folder / f"{pid}_{band}.tif")
                if band in TEN_M:
                    assert raw.shape == (SIZE, SIZE)
                    np.testing.assert_array_equal(s2[i, c], raw)
                else:  # nearest, integer factor: each coarse pixel repeated
                    f = 6 if band in SIXTY_M else 2
                    assert raw.shape == (SIZE // f, SIZE // f)
                    np.testing.assert_array_equal(s2[i, c], raw.repeat(f, 0).repeat(f, 1))
            for c, band in enumerate(("VV", "VH")):
                raw = rio(tree / "BigEarthNet-S1" / product(s1n, 3) / s1n / f"{s1n}_{band}.tif")
                np.testing.assert_array_equal(s1[i, c].view(np.uint32), raw.view(np.uint32))
            ref = tree / "Reference_Maps" / product(pid, 2) / pid / f"{pid}_reference_map.tif"
            np.testing.assert_array_equal(maps[i, 0], rio(ref))
        assert st.attrs["resampling"] == "nearest" and st.dataset == "bigearthnet-v2"


def test_labels_equal_parquet(tree: Path, store: Path) -> None:
    rows = parquet_rows(tree / "metadata.parquet") + parquet_rows(
        tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    )
    with Store(store) as st:
        spec = st.label_set("clc19_multi")
        assert list(spec.class_names) == BEN19_NAMES
        y = st.labels("clc19_multi")
        for i, r in enumerate(rows):
            expected = [int(n in r["labels"]) for n in BEN19_NAMES]
            np.testing.assert_array_equal(y[i], expected)
        assert y.sum() > 0


def test_subsets_match_flags_and_splits(tree: Path, store: Path, tmp_path: Path) -> None:
    clean = parquet_rows(tree / "metadata.parquet")
    rows = clean + parquet_rows(tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    snow = np.array([r["contains_seasonal_snow"] for r in rows])
    cloudy = np.array([r["contains_cloud_or_shadow"] for r in rows])
    split = np.array([r["split"] for r in rows])
    with Store(store) as st:
        subs = st.subsets
        np.testing.assert_array_equal(subs["clear"].rows, np.flatnonzero(~snow & ~cloudy))
        np.testing.assert_array_equal(subs["cloudy"].rows, np.flatnonzero(cloudy))
        np.testing.assert_array_equal(subs["snow"].rows, np.flatnonzero(snow))
        for s in ("train", "validation", "test"):
            np.testing.assert_array_equal(subs[s].rows, np.flatnonzero(split == s))
        assert all(s.optical == "s2" for s in subs.values()) and not st.has_cloudy
        cover = st.cloud_cover()
        assert np.isfinite(cover[cloudy]).all() and np.isnan(cover[~cloudy]).all()
        assert set(subs["very_cloudy"].rows) <= set(subs["cloudy"].rows)
    # --split: only that split's rows (here: metadata.parquet alone, so all clear)
    out = build(tree, tmp_path / "test.h5", split="test")
    with Store(out) as st:
        assert st.ids() == [r["patch_id"] for r in clean if r["split"] == "test"]
        assert st.split == "test" and len(st.subset("clear")) == st.n_samples
        assert "reference_map" not in st.file


# --- bad input ------------------------------------------------------------------------------------
@pytest.fixture
def bad_tree(tree: Path, tmp_path: Path) -> Path:
    shutil.copytree(tree, tmp_path / "d")
    return tmp_path / "d"


def run(t: Path, *extra: str) -> tuple[int, str]:
    args = ["-q", "preprocess", "bigearthnet-v2", "--s2-root", str(t / "BigEarthNet-S2"),
            "--s1-root", str(t / "BigEarthNet-S1"), "--metadata", str(t / "metadata.parquet"),
            "--workers", "1", "--out", str(t / "out.h5"), *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def assert_clean_error(t: Path, code: int, output: str, path: Path, problem: str) -> None:
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    assert str(path) in lines[0] and problem in lines[0], lines[0]
    assert not (t / "out.h5").exists() and not (t / "out.h5.partial").exists()


def first_patch(t: Path) -> tuple[str, Path]:
    pid = parquet_rows(t / "metadata.parquet")[0]["patch_id"]
    return pid, t / "BigEarthNet-S2" / product(pid, 2) / pid


def test_missing_band_file(bad_tree: Path) -> None:
    pid, folder = first_patch(bad_tree)
    (folder / f"{pid}_B8A.tif").unlink()
    code, out = run(bad_tree)
    assert_clean_error(bad_tree, code, out, folder / f"{pid}_B8A.tif", "missing S2 band B8A")


def test_wrong_size(bad_tree: Path) -> None:
    pid, folder = first_patch(bad_tree)
    path = folder / f"{pid}_B11.tif"
    with rasterio.open(path) as src:
        profile = dict(src.profile)
    profile.update(height=5, width=5)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 5, 5), np.uint16))
    code, out = run(bad_tree)
    assert_clean_error(bad_tree, code, out, path, "size 5x5, expected 12x12")


def rewrite_parquet(path: Path, change: Callable[[Any], Any]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def test_unknown_label_name(bad_tree: Path) -> None:
    import pyarrow as pa

    meta = bad_tree / "metadata.parquet"

    def change(table: pa.Table) -> pa.Table:
        labels = table.column("labels").to_pylist()
        labels[2] = [*labels[2], "Glaciers"]
        return table.set_column(1, "labels", pa.array(labels, pa.list_(pa.string())))

    rewrite_parquet(meta, change)
    code, out = run(bad_tree)
    assert_clean_error(bad_tree, code, out, meta, "unknown label 'Glaciers'")
    assert "row 2" in out


def test_missing_column(bad_tree: Path) -> None:
    """A required column missing is refused; a flag column is not required (see
    test_reben_as_shipped.py)."""
    extra = bad_tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    rewrite_parquet(extra, lambda table: table.drop_columns(["s1_name"]))
    code, out = run(bad_tree, "--snow-cloud-metadata", str(extra))
    assert_clean_error(bad_tree, code, out, extra, "no column 's1_name'")


def test_not_parquet_and_missing_reference_map(bad_tree: Path) -> None:
    meta = bad_tree / "metadata.parquet"
    pid, _ = first_patch(bad_tree)
    ref = bad_tree / "Reference_Maps" / product(pid, 2) / pid / f"{pid}_reference_map.tif"
    ref.unlink()
    code, out = run(bad_tree, "--reference-maps", str(bad_tree / "Reference_Maps"))
    assert_clean_error(bad_tree, code, out, ref, "missing reference map")
    meta.write_bytes(b"patch_id,labels\n")
    code, out = run(bad_tree)
    assert_clean_error(bad_tree, code, out, meta, "not a readable Parquet file")


def test_bands_already_on_the_10m_grid_are_taken_as_they_are(tmp_path: Path) -> None:
    """Trees whose 20/60 m bands are already 120 px (as torchgeo's fakes) read unchanged."""
    root = tmp_path / "d"
    generate_bigearthnet_v2(root, n_patches=5, size=SIZE, seed=9)
    rng = np.random.default_rng(0)
    written = {}
    for path in (root / "BigEarthNet-S2").rglob("*.tif"):
        band = path.stem.rsplit("_", 1)[1]
        if band in TEN_M:
            continue
        with rasterio.open(path) as src:
            profile = dict(src.profile)
        profile.update(height=SIZE, width=SIZE)
        data = rng.integers(0, 12000, (1, SIZE, SIZE)).astype(np.uint16)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        written[path.name] = data[0]
    with Store(build(root, tmp_path / "full.h5")) as st:
        s2 = st.file["s2"][()]
        for i, pid in enumerate(st.ids()):
            for c, band in enumerate(BIGEARTHNET_S2_BANDS):
                if band not in TEN_M:
                    np.testing.assert_array_equal(s2[i, c], written[f"{pid}_{band}.tif"])
