"""Bad input to ``sareval preprocess``: a one-line error naming the file and the problem, exit 1,
no traceback, nothing at the output path (and no ``.partial`` when no row was written)."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.cli import cli
from sareval.store import Store

DATA = Path(__file__).parent / "data"
S2_FILE = "ROIs1970_fall/s2_12/ROIs1970_fall_s2_12_p626.tif"  # a test-split patch


@pytest.fixture
def trees(tmp_path: Path) -> Path:
    for name in ("sen12ms", "sen12mscr", "bigearthnet"):
        shutil.copytree(DATA / name, tmp_path / name)
    return tmp_path


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args])
    return result.exit_code, result.output


def sen12ms_args(t: Path, *extra: str, out: str = "out.h5") -> list[str]:
    return ["preprocess", "sen12ms", str(t / "sen12ms"), "--workers", "1", "--out",
            str(t / out), *extra]  # fmt: skip


def assert_clean_error(t: Path, code: int, output: str, names: str, problem: str) -> None:
    assert code == 1, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and "Traceback" not in output
    assert names in lines[0], lines[0]
    assert problem in lines[0], lines[0]
    assert not (t / "out.h5").exists()
    assert not (t / "out.h5.partial").exists()


def rewrite_tiff(path: Path, change: Callable[[np.ndarray, dict], tuple[np.ndarray, dict]]) -> None:
    with rasterio.open(path) as src:
        data, profile = src.read(), dict(src.profile)
    data, profile = change(data, profile)
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2],
                   dtype=data.dtype.name)  # fmt: skip
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def test_missing_tree(trees: Path) -> None:
    code, out = run(["preprocess", "sen12ms", str(trees / "nope"), "--out", str(trees / "out.h5")])
    assert_clean_error(trees, code, out, str(trees / "nope"), "not a directory")
    empty = trees / "empty"
    empty.mkdir()
    code, out = run(["preprocess", "sen12ms", str(empty), "--out", str(trees / "out.h5")])
    assert_clean_error(trees, code, out, str(empty), "no SEN12MS patches found")


def test_s1_without_s2(trees: Path) -> None:
    s2 = trees / "sen12ms" / S2_FILE
    s2.unlink()
    code, out = run(sen12ms_args(trees))  # whole tree: the S1 file is an orphan
    assert_clean_error(trees, code, out, str(s2), "missing S2 partner")
    list_file = trees / "sen12ms" / "test_list.txt"  # listed: the same
    code, out = run(sen12ms_args(trees, "--split-list", str(list_file)))
    assert_clean_error(trees, code, out, str(s2), "missing S2 partner")


def test_cloudy_without_clear(trees: Path) -> None:
    clear = trees / "sen12mscr" / "ROIs1970_fall_s2" / "s2_12" / "ROIs1970_fall_s2_12_p626.tif"
    clear.unlink()
    code, out = run(sen12ms_args(trees, "--cr-root", str(trees / "sen12mscr")))
    assert_clean_error(trees, code, out, str(clear), "missing clear S2 partner of the cloudy")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d, p: (d[:12], p), "12 bands, expected 13"),
        (lambda d, p: (d[:, :16, :16], p), "size 16x16, expected 32x32"),
        (lambda d, p: (d.astype(np.int16), p), "dtype int16, expected uint16"),
        (lambda d, p: (d.astype(np.float32), p), "dtype float32, expected uint16"),
    ],
    ids=["bands", "size", "dtype-int16", "dtype-float32"],
)
def test_wrong_band_count_size_dtype(trees: Path, change: Callable, problem: str) -> None:
    path = trees / "sen12ms" / S2_FILE
    rewrite_tiff(path, change)
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(path), problem)


def test_wrong_s1_dtype_and_cloudy_size(trees: Path) -> None:
    s1 = trees / "sen12ms" / S2_FILE.replace("s2", "s1")
    rewrite_tiff(s1, lambda d, p: (d.astype(np.float64), p))
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(s1), "dtype float64, expected float32")
    shutil.copytree(DATA / "sen12ms", trees / "sen12ms", dirs_exist_ok=True)
    cloudy = trees / "sen12mscr/ROIs1970_fall_s2_cloudy/s2_cloudy_12"
    cloudy = cloudy / "ROIs1970_fall_s2_cloudy_12_p626.tif"
    rewrite_tiff(cloudy, lambda d, p: (d[:, :30, :30], p))
    code, out = run(sen12ms_args(trees, "--cr-root", str(trees / "sen12mscr")))
    assert_clean_error(trees, code, out, str(cloudy), "size 30x30")


def test_truncated_and_non_tiff(trees: Path) -> None:
    path = trees / "sen12ms" / S2_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(path), "not a readable GeoTIFF")
    path.write_text("<html>not a tiff</html>\n")
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(path), "not a readable GeoTIFF")
    path.write_bytes(b"")
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(path), "not a readable GeoTIFF")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_png_named_tif(trees: Path) -> None:
    path = trees / "sen12ms" / S2_FILE
    with rasterio.open(path) as src:
        data = src.read(1)
    path.unlink()
    png = path.with_suffix(".png")
    with rasterio.open(png, "w", driver="PNG", height=32, width=32, count=1, dtype="uint16") as d:
        d.write(data, 1)
    png.rename(path)
    code, out = run(sen12ms_args(trees))
    assert_clean_error(trees, code, out, str(path), "not a GeoTIFF")


def test_ids_not_on_disk(trees: Path) -> None:
    listed = trees / "list.txt"
    listed.write_text(
        (trees / "sen12ms" / "test_list.txt").read_text()
        + "ROIs1158_spring_s2_1_p1.tif\nROIs1158_spring_s2_1_p2.tif\n"
    )
    code, out = run(sen12ms_args(trees, "--split-list", str(listed)))
    assert_clean_error(trees, code, out, str(listed), "2 of 5 listed patches are not on disk")
    listed.write_text("not_a_patch_name.tif\n")
    code, out = run(sen12ms_args(trees, "--split-list", str(listed)))
    assert_clean_error(trees, code, out, str(listed), "is not a SEN12MS patch name")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"ROIs1970_fall_s2_12_p626.tif": np.zeros(10)}, "has shape (10,), expected (17,)"),
        (["ROIs1970_fall_s2_12_p626.tif"], "not a dict of 17-vectors (it holds a list)"),
        ({"ROIs1970_fall_s2_12_p626.tif": "forest"}, "not a dict of 17-vectors"),
        ({"ROIs1970_fall_s2_12_p626.tif": np.full(17, np.nan)}, "non-finite"),
        ({"other.tif": np.ones(17) / 17}, "no labels for 3 of 3 patches"),
    ],
    ids=["shape", "list", "str", "nan", "missing"],
)
def test_bad_label_pickle(trees: Path, content: object, problem: str) -> None:
    labels = trees / "labels.pkl"
    labels.write_bytes(pickle.dumps(content))
    list_file = str(trees / "sen12ms" / "test_list.pkl")
    code, out = run(sen12ms_args(trees, "--split-list", list_file, "--labels", str(labels)))
    assert_clean_error(trees, code, out, str(labels), problem)


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("which", ["--labels", "--split-list"])
def test_malicious_pickle_does_not_run(trees: Path, which: str) -> None:
    target = trees / "pwned"
    evil = trees / "evil.pkl"
    evil.write_bytes(pickle.dumps({"ROIs1970_fall_s2_12_p626.tif": _Payload(target)}))
    code, out = run(sen12ms_args(trees, which, str(evil)))
    assert_clean_error(trees, code, out, str(evil), "forbidden global")
    assert not target.exists()


def test_output_exists(trees: Path) -> None:
    out = trees / "out.h5"
    out.write_text("precious")
    list_file = str(trees / "sen12ms" / "test_list.txt")
    code, output = run(sen12ms_args(trees, "--split-list", list_file))
    assert code == 1 and output.strip().splitlines() == [
        f"error: {out}: output exists; pass --overwrite to replace it"
    ]
    assert out.read_text() == "precious"
    # a failing --overwrite run keeps the old file
    code, output = run(sen12ms_args(trees, "--split-list", str(trees / "nope.txt"), "--overwrite"))
    assert code != 0 and out.read_text() == "precious"
    code, output = run(sen12ms_args(trees, "--split-list", list_file, "--overwrite"))
    assert code == 0, output
    with Store(out) as store:
        assert store.n_samples == 3


def test_option_conflicts(trees: Path) -> None:
    very = trees / "very.txt"
    very.write_text("ROIs1970_fall_12_p626\n")
    code, out = run(sen12ms_args(trees, "--very-cloudy-list", str(very)))
    assert code == 1 and "needs --cr-root" in out
    cr = str(trees / "sen12mscr")
    both = ("--very-cloudy-list", str(very), "--very-cloudy-threshold", "0.5")
    code, out = run(sen12ms_args(trees, "--cr-root", cr, *both))
    assert code == 2 and "not both" in out
    # a listed patch that has no cloudy version
    very.write_text("ROIs1158_spring_98_p1\n")
    code, out = run(sen12ms_args(trees, "--cr-root", str(trees / "sen12mscr"),
                                 "--very-cloudy-list", str(very)))  # fmt: skip
    assert_clean_error(trees, code, out, str(very), "not among the cloudy patches")


def test_mid_run_error_keeps_rows_and_resumes(trees: Path) -> None:
    """A bad file found after some rows were written: the error says where the rows are kept;
    after fixing the file a re-run resumes and equals an uninterrupted run."""
    ref = trees / "ref.h5"
    code, out = run(sen12ms_args(trees, "--chunk-rows", "1", out="ref.h5"))
    assert code == 0, out
    with Store(ref) as store:
        last = store.ids()[-1]  # in the second block of 8 rows
    season, scene, patch = last.rsplit("_", 2)[0], last.rsplit("_", 2)[1], last.rsplit("_p", 1)[1]
    bad = trees / "sen12ms" / season / f"s2_{scene}" / f"{season}_s2_{scene}_p{patch}.tif"
    good = bad.read_bytes()
    bad.write_bytes(good[:100])
    code, out = run(sen12ms_args(trees, "--chunk-rows", "1"))
    assert code == 1 and str(bad) in out and "8 rows done are kept" in out
    assert not (trees / "out.h5").exists() and (trees / "out.h5.partial").exists()
    bad.write_bytes(good)
    code, out = run(sen12ms_args(trees, "--chunk-rows", "1"))
    assert code == 0, out
    assert not (trees / "out.h5.partial").exists()
    with Store(ref) as a, Store(trees / "out.h5") as b:
        assert a.content_digest == b.content_digest
        for name in ("s1", "s2", "ids"):
            np.testing.assert_array_equal(a.file[name][()], b.file[name][()])


# --- BigEarthNet ---------------------------------------------------------------------------------
def ben_args(t: Path, *extra: str) -> list[str]:
    b = t / "bigearthnet"
    return ["preprocess", "bigearthnet", "--s2-root", str(b / "BigEarthNet-v1.0"),
            "--s1-root", str(b / "BigEarthNet-S1-v1.0"), "--split-csv", str(b / "train.csv"),
            "--workers", "1", "--out", str(t / "out.h5"), *extra]  # fmt: skip


def first_pair(t: Path) -> tuple[str, str]:
    s2, s1 = (t / "bigearthnet" / "train.csv").read_text().splitlines()[0].split(",")
    return s2, s1


def test_ben_missing_s1_partner_and_band(trees: Path) -> None:
    s2, s1 = first_pair(trees)
    s1_dir = trees / "bigearthnet" / "BigEarthNet-S1-v1.0" / s1
    shutil.rmtree(s1_dir)
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, str(s1_dir), f"missing S1 partner of S2 patch {s2}")
    shutil.copytree(DATA / "bigearthnet", trees / "bigearthnet", dirs_exist_ok=True)
    band = trees / "bigearthnet" / "BigEarthNet-v1.0" / s2 / f"{s2}_B8A.tif"
    band.unlink()
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, str(band), "missing S2 band B8A")


def test_ben_list_without_s1_partner(trees: Path) -> None:
    b = trees / "bigearthnet"
    cloudy = b / "patches_with_cloud_and_shadow.csv"
    s2 = cloudy.read_text().split()[0]
    for js in (b / "BigEarthNet-S1-v1.0").glob("*/*_labels_metadata.json"):
        if s2 in js.read_text():
            shutil.rmtree(js.parent)
    code, out = run(ben_args(trees, "--cloudy-list", str(cloudy)))
    assert_clean_error(trees, code, out, str(cloudy), "have no S1 partner")


def test_ben_wrong_size_dtype_and_labels(trees: Path) -> None:
    s2, s1 = first_pair(trees)
    folder = trees / "bigearthnet" / "BigEarthNet-v1.0" / s2
    rewrite_tiff(folder / f"{s2}_B11.tif", lambda d, p: (d[:, :10, :10], p))
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, f"{s2}_B11.tif", "size 10x10, expected 12x12")
    shutil.copytree(DATA / "bigearthnet", trees / "bigearthnet", dirs_exist_ok=True)
    vv = trees / "bigearthnet" / "BigEarthNet-S1-v1.0" / s1 / f"{s1}_VV.tif"
    rewrite_tiff(vv, lambda d, p: (np.round(d).astype(np.int16), p))
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, str(vv), "dtype int16, expected float32")
    shutil.copytree(DATA / "bigearthnet", trees / "bigearthnet", dirs_exist_ok=True)
    js = folder / f"{s2}_labels_metadata.json"
    js.write_text('{"labels": ["Martian craters"]}')
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, str(js), "unknown CLC label 'Martian craters'")
    js.write_text('{"labels": ')
    code, out = run(ben_args(trees))
    assert_clean_error(trees, code, out, str(js), "not valid JSON")


def test_ben_csv_problems(trees: Path) -> None:
    b = trees / "bigearthnet"
    bad = trees / "bad.csv"
    bad.write_text("S2A_MSIL2A_20171003T91821_24_13,S1B_IW_GRDH_1SDV_20171004T050718_32TMT_24_13\n"
                   "hello,world\n")  # fmt: skip
    code, out = run([*ben_args(trees)[:6], "--split-csv", str(bad), *ben_args(trees)[8:]])
    assert_clean_error(trees, code, out, str(bad), "line 2: 'hello' is not a BigEarthNet S2")
    bad.write_text("S2A_MSIL2A_20171003T91821_99_99,S1B_IW_GRDH_1SDV_20171004T050718_32TMT_99_99\n")
    code, out = run([*ben_args(trees)[:6], "--split-csv", str(bad), *ben_args(trees)[8:]])
    assert_clean_error(trees, code, out, str(bad), "1 listed patches are not on disk")
    # a patch in the split and in the cloudy list
    both = trees / "cloudy.csv"
    both.write_text(first_pair(trees)[0] + "\n")
    code, out = run(ben_args(trees, "--cloudy-list", str(both)))
    assert_clean_error(trees, code, out, str(both), f"is also listed in {b / 'train.csv'}")
