"""reBEN as others ship it: torchgeo's test-data layout (four columns, split ``val``, int16 S1
and S2) preprocesses, with the store equal to rasterio's read of the files; flag columns are
optional (their subsets left out, the store and ``sareval info`` say so); S1 of any real type
is cast to float32 and recorded; every problem of a metadata file comes in one error; S1/S2
pairing is checked (an S1 patch paired twice, S1 names swapped between rows).

Data: :func:`generate_bigearthnet_v2` (seeded), in both layouts, in temporary folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.bands import BIGEARTHNET_S2_BANDS
from sareval.classes import BEN19
from sareval.cli import cli
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.bigearthnet_v2 import preprocess_bigearthnet_v2
from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2
from sareval.store import Store

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SIZE = 12
FLAGS = ("contains_seasonal_snow", "contains_cloud_or_shadow")
FLAG_SUBSETS = {"clear", "cloudy", "very_cloudy", "snow"}


def rio(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def s1_path(root: Path, s1_name: str, band: str) -> Path:
    product = "_".join(s1_name.split("_")[:-3])
    return root / "BigEarthNet-S1" / product / s1_name / f"{s1_name}_{band}.tif"


def s2_path(root: Path, pid: str, band: str) -> Path:
    return root / "BigEarthNet-S2" / "_".join(pid.split("_")[:-2]) / pid / f"{pid}_{band}.tif"


def cli_run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def preprocess_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "preprocess", "bigearthnet-v2", "--s2-root", str(root / "BigEarthNet-S2"),
            "--s1-root", str(root / "BigEarthNet-S1"), "--metadata",
            str(root / "metadata.parquet"), "--workers", "1", "--out", str(out),
            *extra]  # fmt: skip


def one_error_line(code: int, output: str, out: Path) -> str:
    """The CLI failed as promised: exit 1, one ``error:`` line, no traceback, no output left."""
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    assert not out.exists() and not Path(f"{out}.partial").exists()
    return lines[0]


@pytest.fixture(scope="module")
def torchgeo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tg") / "BigEarthNetV2"
    generate_bigearthnet_v2(root, n_patches=8, size=SIZE, seed=4, layout="torchgeo")
    return root


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rel") / "reben"
    generate_bigearthnet_v2(root, n_patches=12, size=SIZE, seed=7)
    return root


@pytest.fixture
def tree(release_tree: Path, tmp_path: Path) -> Path:
    """A copy of the release-layout tree to damage."""
    shutil.copytree(release_tree, tmp_path / "d")
    return tmp_path / "d"


def build(root: Path, out: Path, **kw: Any) -> Path:
    return preprocess_bigearthnet_v2(
        root / "BigEarthNet-S2", root / "BigEarthNet-S1", root / "metadata.parquet", out,
        workers=1, chunk_rows=4, progress=False, **kw,
    )  # fmt: skip


# --- torchgeo's test data layout ------------------------------------------------------------------
def test_torchgeo_layout_is_what_torchgeo_ships(torchgeo_tree: Path) -> None:
    """The generator's torchgeo layout has what torchgeo's tests/data/bigearthnet/v2/data.py
    writes: four columns, split values train/val/test, int16 S1 and S2 at 120 px... (here
    SIZE px), a uint16 reference map, one CRS and origin for every file, no second parquet."""
    table = pq.read_table(torchgeo_tree / "metadata.parquet")
    assert table.column_names == ["patch_id", "s1_name", "split", "labels"]
    assert [str(t) for t in table.schema.types[:3]] == ["string"] * 3
    assert pa.types.is_list(table.schema.field("labels").type)
    assert set(table.column("split").to_pylist()) == {"train", "val", "test"}
    assert not (torchgeo_tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet").exists()
    row = table.to_pylist()[0]
    with rasterio.open(s1_path(torchgeo_tree, row["s1_name"], "VV")) as src:
        assert src.dtypes[0] == "int16" and (src.height, src.width) == (SIZE, SIZE)
        assert src.crs.to_proj4().startswith("+proj=utm +zone=32")
        assert src.transform[2] == 0 and src.transform[5] == 0
    for band in BIGEARTHNET_S2_BANDS:
        with rasterio.open(s2_path(torchgeo_tree, row["patch_id"], band)) as src:
            assert src.dtypes[0] == "int16" and (src.height, src.width) == (SIZE, SIZE)
    # as in torchgeo's data, the S1 and S2 names agree on the tile, not on the grid numbers
    for r in table.to_pylist():
        assert r["patch_id"].split("_")[-3] == "T" + r["s1_name"].split("_")[-3]
    assert any(r["patch_id"][-5:] != r["s1_name"][-5:] for r in table.to_pylist())


def test_torchgeo_layout_preprocesses_equal_to_rasterio(
    torchgeo_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tg.h5"
    code, output = cli_run(preprocess_args(torchgeo_tree, out))
    assert code == 0, output
    rows = pq.read_table(torchgeo_tree / "metadata.parquet").to_pylist()
    with Store(out) as st:
        assert st.ids() == [r["patch_id"] for r in rows]
        s1, s2 = st.file["s1"][()], st.file["s2"][()]
        assert s1.dtype == np.float32 and s2.dtype == np.float32
        for i, r in enumerate(rows):
            for c, band in enumerate(("VV", "VH")):
                raw = rio(s1_path(torchgeo_tree, r["s1_name"], band))
                assert raw.dtype == np.int16
                np.testing.assert_array_equal(s1[i, c], raw.astype(np.float32))
            for c, band in enumerate(BIGEARTHNET_S2_BANDS):  # every band already at 10 m size
                np.testing.assert_array_equal(
                    s2[i, c], rio(s2_path(torchgeo_tree, r["patch_id"], band))
                )
        y = st.labels("clc19_multi")
        expected = [[int(name in r["labels"]) for name in BEN19] for r in rows]
        np.testing.assert_array_equal(y, expected)
        split = np.array([{"val": "validation"}.get(r["split"], r["split"]) for r in rows])
        subsets = st.subsets
        assert set(subsets) == {"train", "validation", "test"}
        for s in ("train", "validation", "test"):
            np.testing.assert_array_equal(subsets[s].rows, np.flatnonzero(split == s))
        assert st.attrs["s1_source_dtype"] == "int16"
        assert st.attrs["s1_cast"] == "int16 -> float32 (exact)"
        assert all(f in st.attrs["flags_absent"] for f in FLAGS)
        assert "'val' read as 'validation'" in st.attrs["split_aliases"]
        assert np.isnan(st.cloud_cover()).all()
    code, output = cli_run(["info", str(out)])
    assert code == 0, output
    line = next(x for x in output.splitlines() if x.startswith("flags absent"))
    assert all(f in line for f in FLAGS) and "no clear, cloudy, very_cloudy, snow subsets" in line


# --- flag columns optional ------------------------------------------------------------------------
def test_missing_snow_flag_leaves_out_its_subsets(tree: Path, tmp_path: Path) -> None:
    meta = tree / "metadata.parquet"
    extra = tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    pq.write_table(pq.read_table(meta).drop_columns(["contains_seasonal_snow", "country"]), meta)
    out = build(tree, tmp_path / "s.h5", snow_cloud_metadata=extra)
    rows = pq.read_table(meta).to_pylist() + pq.read_table(extra).to_pylist()
    cloudy = np.array([r["contains_cloud_or_shadow"] for r in rows])
    with Store(out) as st:
        assert set(st.subsets) & FLAG_SUBSETS == {"cloudy", "very_cloudy"}
        np.testing.assert_array_equal(st.subsets["cloudy"].rows, np.flatnonzero(cloudy))
        note = st.attrs["flags_absent"]
        assert note.startswith("contains_seasonal_snow (not in metadata.parquet)")
        assert "contains_cloud_or_shadow" not in note and note.endswith("no clear, snow subsets")
        assert np.isfinite(st.cloud_cover()[cloudy]).all()
    # without the cloud flag, a very-cloudy list has no cloudy patches to select from
    pq.write_table(pq.read_table(extra).drop_columns(["contains_cloud_or_shadow"]), extra)
    (tmp_path / "very.txt").write_text(rows[-1]["patch_id"] + "\n")
    with pytest.raises(SarevalError) as e:
        build(tree, tmp_path / "v.h5", snow_cloud_metadata=extra,
              very_cloudy_list=tmp_path / "very.txt")  # fmt: skip
    assert str(e.value) == (
        "very_cloudy_list: needs the column contains_cloud_or_shadow (which patches are "
        f"cloudy); absent: contains_cloud_or_shadow (not in {extra.name})"
    )


# --- every problem in one error ------------------------------------------------------------------
def test_every_metadata_problem_in_one_error(tree: Path) -> None:
    meta = tree / "metadata.parquet"
    rows = pq.read_table(meta).to_pylist()
    i, j = same_tile_pair(rows)
    a, b = [k for k in range(len(rows)) if k not in (i, j)][:2]
    rows[a]["split"] = "holdout"
    rows[j]["patch_id"] = rows[i]["patch_id"]
    s1 = rows[b]["s1_name"].split("_")
    s1[-3] = "99XYZ"  # another tile
    rows[b]["s1_name"] = "_".join(s1)
    table = pa.Table.from_pylist(rows).drop_columns(["labels"])
    table = table.set_column(
        table.column_names.index("contains_seasonal_snow"), "contains_seasonal_snow",
        pa.array([str(r["contains_seasonal_snow"]) for r in rows]),
    )  # fmt: skip
    pq.write_table(table, meta)
    out = tree / "out.h5"
    line = one_error_line(*cli_run(preprocess_args(tree, out)), out)
    assert str(meta) in line and "5 problems:" in line, line
    for problem in (
        "no column 'labels'",
        "column 'contains_seasonal_snow' is string, expected bool",
        f"row {a} ({rows[a]['patch_id']}): split 'holdout' is not one of train, validation, test",
        f"patch_id {rows[i]['patch_id']} is listed twice (rows {i} and {j})",
        f"row {b} ({rows[b]['patch_id']}): s1_name {rows[b]['s1_name']} is on tile 99XYZ",
    ):
        assert problem in line, (problem, line)


def test_many_problems_are_listed_up_to_a_bound(tree: Path) -> None:
    meta = tree / "metadata.parquet"
    table = pq.read_table(meta)
    n = table.num_rows
    table = table.set_column(table.column_names.index("split"), "split", pa.array(["x"] * n))
    pq.write_table(table, meta)
    with pytest.raises(InputFileError) as e:
        build(tree, tree / "out.h5")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{meta}: {n} problems: row 0 (")
    assert msg.endswith(f"; ... and {n - 8} more") and msg.count("split 'x'") == 8


# --- S1 of any real type --------------------------------------------------------------------------
def rewrite_s1(root: Path, dtype: str) -> dict[Path, np.ndarray]:
    """Every S1 file rewritten as ``dtype`` (values derived from the dB), returned by path."""
    written = {}
    for path in sorted((root / "BigEarthNet-S1").rglob("*.tif")):
        with rasterio.open(path) as src:
            profile, db = dict(src.profile), src.read(1).astype(np.float64)
        if dtype == "int16":
            data = np.rint(db * 100).astype(np.int16)  # centi-dB, as some releases do
        elif dtype == "uint16":
            data = np.rint((db + 50) * 1000).astype(np.uint16)
        elif dtype == "float64":
            data = db + 1e-9 * np.arange(db.size).reshape(db.shape)  # not float32-exact
        else:
            data = (db + 1j).astype(dtype)
        profile.update(dtype=dtype)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
        written[path] = data
    return written


@pytest.mark.parametrize(
    ("dtype", "cast"),
    [
        ("int16", "int16 -> float32 (exact)"),
        ("uint16", "uint16 -> float32 (exact)"),
        ("float64", "float64 -> float32 (rounded to nearest)"),
    ],
)
def test_s1_of_any_real_type_is_cast_and_recorded(
    tree: Path, tmp_path: Path, dtype: str, cast: str
) -> None:
    written = rewrite_s1(tree, dtype)
    out = build(tree, tmp_path / "s1.h5")
    rows = pq.read_table(tree / "metadata.parquet").to_pylist()
    with Store(out) as st:
        s1 = st.file["s1"][()]
        assert s1.dtype == np.float32
        for i, r in enumerate(rows):
            for c, band in enumerate(("VV", "VH")):
                raw = rio(s1_path(tree, r["s1_name"], band))
                np.testing.assert_array_equal(raw, written[s1_path(tree, r["s1_name"], band)])
                np.testing.assert_array_equal(s1[i, c], raw.astype(np.float32))
        assert st.attrs["s1_source_dtype"] == dtype and st.attrs["s1_cast"] == cast
    if dtype == "float64":  # the cast did round: not every value is float32-exact
        assert any((v.astype(np.float32).astype(np.float64) != v).any() for v in written.values())


def test_complex_s1_is_refused(tree: Path) -> None:
    written = rewrite_s1(tree, "complex64")
    out = tree / "out.h5"
    line = one_error_line(*cli_run(preprocess_args(tree, out)), out)
    assert "dtype complex64: S1 must be a real number type" in line
    assert any(str(p) in line for p in written), line


def test_s1_file_of_another_type_than_the_others_is_named(tree: Path) -> None:
    rows = pq.read_table(tree / "metadata.parquet").to_pylist()
    path = s1_path(tree, rows[-1]["s1_name"], "VH")
    with rasterio.open(path) as src:
        profile, data = dict(src.profile), src.read(1)
    profile.update(dtype="int16")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.rint(data).astype(np.int16), 1)
    with pytest.raises(InputFileError, match="dtype int16, expected float32") as e:
        build(tree, tree / "out.h5")
    assert e.value.path == path


# --- pairing --------------------------------------------------------------------------------------
def same_tile_pair(rows: list[dict[str, Any]]) -> tuple[int, int]:
    by_tile: dict[str, int] = {}
    for i, r in enumerate(rows):
        tile = r["patch_id"].split("_")[-3]
        if tile in by_tile:
            return by_tile[tile], i
        by_tile[tile] = i
    raise AssertionError("no two patches on one tile")


def test_s1_patch_paired_twice_is_refused_naming_both_rows(tree: Path) -> None:
    meta = tree / "metadata.parquet"
    rows = pq.read_table(meta).to_pylist()
    i, j = same_tile_pair(rows)
    rows[j]["s1_name"] = rows[i]["s1_name"]
    pq.write_table(pa.Table.from_pylist(rows), meta)
    out = tree / "out.h5"
    line = one_error_line(*cli_run(preprocess_args(tree, out)), out)
    assert str(meta) in line
    assert (
        f"S1 patch {rows[i]['s1_name']} is paired with two S2 patches: "
        f"row {i} ({rows[i]['patch_id']}) and row {j} ({rows[j]['patch_id']})"
    ) in line, line


def test_s1_patch_in_both_metadata_files_is_refused(tree: Path) -> None:
    meta = tree / "metadata.parquet"
    extra = tree / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    first = pq.read_table(meta).to_pylist()
    rows = pq.read_table(extra).to_pylist()
    rows[0]["s1_name"] = first[2]["s1_name"]
    pq.write_table(pa.Table.from_pylist(rows).drop_columns(["s2v1_name"]), extra)
    out = tree / "out.h5"
    line = one_error_line(
        *cli_run(preprocess_args(tree, out, "--snow-cloud-metadata", str(extra))), out
    )
    assert line.startswith(f"error: {extra}: S1 patch {first[2]['s1_name']} is paired with two")
    assert f"row 0 ({rows[0]['patch_id']}) and row 2 ({first[2]['patch_id']}) of {meta}" in line


def swap_s1(meta: Path, drop: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], int, int]:
    """Swap the S1 names of two rows of one tile, moved to the front (the first block read)."""
    rows = pq.read_table(meta).to_pylist()
    i, j = same_tile_pair(rows)
    rows = [rows[i], rows[j]] + [r for k, r in enumerate(rows) if k not in (i, j)]
    rows[0]["s1_name"], rows[1]["s1_name"] = rows[1]["s1_name"], rows[0]["s1_name"]
    pq.write_table(pa.Table.from_pylist(rows).drop_columns(list(drop)), meta)
    return rows, 0, 1


def test_swapped_s1_names_refused_by_name_with_s2v1_name(tree: Path) -> None:
    meta = tree / "metadata.parquet"
    rows, i, j = swap_s1(meta)
    out = tree / "out.h5"
    line = one_error_line(*cli_run(preprocess_args(tree, out)), out)
    assert str(meta) in line and "2 problems:" in line
    for k in (i, j):
        assert f"row {k} ({rows[k]['patch_id']}): s1_name {rows[k]['s1_name']} is at grid" in line
    assert line.count("(S1 from another grid cell)") == 2


def test_swapped_s1_names_refused_by_georeference_without_s2v1_name(tree: Path) -> None:
    """Without s2v1_name (torchgeo's four columns) the names agree on the tile; the files'
    georeference tells the S1 patch is another grid cell's."""
    meta = tree / "metadata.parquet"
    rows, i, _ = swap_s1(meta, drop=("s2v1_name",))
    out = tree / "out.h5"
    line = one_error_line(*cli_run(preprocess_args(tree, out, "--chunk-rows", "4")), out)
    pid, s1 = rows[i]["patch_id"], rows[i]["s1_name"]
    assert line.startswith(f"error: {meta}: row {i} ({pid}): its S1 patch {s1} lies "), line
    assert line.endswith(
        f"(centre to centre; a patch is {SIZE * 10} m wide): S1 from another grid cell"
    )
