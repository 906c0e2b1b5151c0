"""The seeded synthetic dataset generators (``sareval synth``): layout, labels, clouds, signal."""

from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.bands import BIGEARTHNET_S2_BANDS, S2_BANDS, S2_RESOLUTION_M
from sareval.classes import BEN19_FROM_CLC43, CLC43, igbp10_fractions
from sareval.cli import cli
from sareval.errors import OutputExistsError, SarevalError
from sareval.preprocess import synth_sen12ms
from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_scene import opacity_field, smooth_field
from sareval.preprocess.synth_sen12ms import SEASONS, generate_sen12ms

DATA = Path(__file__).parent / "data"
S1_NAME = re.compile(r"^(ROIs\d{4}_[a-z]+)_s1_(\d+)_p(\d+)\.tif$")
S2_BEN = re.compile(r"^S2[AB]_MSIL2A_(\d{8})T(\d{5,6})_(\d+)_(\d+)$")
S1_BEN = re.compile(r"^S1[AB]_IW_GRDH_1SDV_(\d{8})T(\d{6})_(\w{5})_(\d+)_(\d+)$")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Loads the generator's own pickles: numpy arrays and builtins, nothing else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("copyreg", "_reconstructor"),
        ("builtins", "object"), ("_codecs", "encode"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} not allowed")
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    return _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sen12ms_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth") / "tree"
    return out, generate_sen12ms(out, n_patches=24, size=24, seed=3)


@pytest.fixture(scope="module")
def ben_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth") / "ben"
    return out, generate_bigearthnet(out, n_patches=30, size=24, seed=3)


# ---------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_sen12ms(tmp_path / "a", n_patches=6, size=16, seed=5)
    b = generate_sen12ms(tmp_path / "b", n_patches=6, size=16, seed=5)
    generate_sen12ms(tmp_path / "c", n_patches=6, size=16, seed=6)
    fa, fb, fc = (tree_files(tmp_path / x) for x in "abc")
    assert fa == fb and len(fa) > 20
    assert a["cloud_cover"] == b["cloud_cover"]
    assert fa != fc
    generate_bigearthnet(tmp_path / "d", n_patches=6, size=12, seed=5)
    generate_bigearthnet(tmp_path / "e", n_patches=6, size=12, seed=5)
    generate_bigearthnet(tmp_path / "f", n_patches=6, size=12, seed=6)
    fd, fe, ff = (tree_files(tmp_path / x) for x in "def")
    assert fd == fe and len(fd) > 50
    assert fd != ff


def test_committed_fixtures_are_up_to_date(tmp_path: Path) -> None:
    """tests/data/* equal what make_fixtures.py makes (else: run it and commit the result)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    generate_sen12ms(tmp_path / "ms", seed=mod.SEED, compress="deflate", **mod.SEN12MS)
    generate_bigearthnet(tmp_path / "ben", seed=mod.SEED, compress="deflate", **mod.BIGEARTHNET)
    for fresh, committed in (
        (tmp_path / "ms" / "sen12ms", DATA / "sen12ms"),
        (tmp_path / "ms" / "sen12mscr", DATA / "sen12mscr"),
        (tmp_path / "ben", DATA / "bigearthnet"),
    ):
        names = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
        assert names == sorted(
            str(p.relative_to(committed)) for p in committed.rglob("*") if p.is_file()
        )
        for name in names:
            if name.endswith(".tif"):
                np.testing.assert_array_equal(read(fresh / name), read(committed / name))
            elif name.endswith(".pkl"):
                a, b = load_pickle(fresh / name), load_pickle(committed / name)
                assert type(a) is type(b) and len(a) == len(b)
                if isinstance(a, dict):
                    for k in a:
                        np.testing.assert_array_equal(a[k], b[k])
                else:
                    assert a == b
            else:
                assert (fresh / name).read_bytes() == (committed / name).read_bytes(), name


# ---------------------------------------------------------------- SEN12MS layout


def test_sen12ms_layout_dtypes_and_geo(sen12ms_tree: tuple[Path, dict[str, Any]]) -> None:
    out, summary = sen12ms_tree
    root = out / "sen12ms"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SEASONS)
    s1_files = sorted(root.glob("*/s1_*/*.tif"))
    assert len(s1_files) == summary["n_patches"] == 24
    expect = {"s1": (2, "float32"), "s2": (13, "uint16"), "lc": (4, "uint16")}
    for s1 in s1_files:
        season, scene, patch = S1_NAME.match(s1.name).groups()  # type: ignore[union-attr]
        assert s1.parent.name == f"s1_{scene}" and s1.parent.parent.name == season
        for sensor, (count, dtype) in expect.items():
            path = root / season / f"{sensor}_{scene}" / f"{season}_{sensor}_{scene}_p{patch}.tif"
            with rasterio.open(path) as src:
                assert (src.count, src.height, src.width) == (count, 24, 24)
                assert set(src.dtypes) == {dtype}
                assert src.crs.is_projected and src.crs.to_epsg() // 100 in (326, 327)
                assert src.res == (10.0, 10.0)
                if sensor == "lc":
                    lc = src.read()
                    assert lc[0].min() >= 1 and lc[0].max() <= 17
    nan_files = [p.name for p in s1_files if np.isnan(read(p)).any()]
    assert nan_files == [summary["nan_patch"]]
    n_nan = np.isnan(read(next(p for p in s1_files if p.name == nan_files[0]))).sum()
    assert 0 < n_nan <= 20
    # the SEN12MS-CR tree has no lc and suffixes on the season folders
    cr = out / "sen12mscr"
    assert {p.name.split("_", 2)[-1] for p in cr.iterdir()} <= {"s1", "s2", "s2_cloudy"}


def test_label_pickle_equals_recount_from_lc(sen12ms_tree: tuple[Path, dict[str, Any]]) -> None:
    out, _ = sen12ms_tree
    root = out / "sen12ms"
    labels = load_pickle(root / "IGBP_probability_labels.pkl")
    lc_files = sorted(root.glob("*/lc_*/*.tif"))
    assert len(labels) == len(lc_files)
    n_labels = []
    for lc in lc_files:
        igbp = read(lc)[0].ravel()
        valid = igbp[(igbp >= 1) & (igbp <= 17)]
        expected = np.array([(valid == k).sum() for k in range(1, 18)]) / valid.size
        value = labels[lc.name.replace("_lc_", "_s2_")]
        assert value.dtype == np.float64 and value.shape == (17,)
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-15)
        n_labels.append(int((igbp10_fractions(value) >= 0.1).sum()))
    assert min(n_labels) >= 1 and max(n_labels) <= 3 and max(n_labels) > 1


def test_split_lists(sen12ms_tree: tuple[Path, dict[str, Any]]) -> None:
    out, summary = sen12ms_tree
    root = out / "sen12ms"
    train = load_pickle(root / "train_list.pkl")
    test = load_pickle(root / "test_list.pkl")
    assert train == (root / "train_list.txt").read_text().splitlines()
    assert test == (root / "test_list.txt").read_text().splitlines()
    assert not set(train) & set(test)
    on_disk = {p.name for p in root.glob("*/s2_*/*.tif")}
    assert set(train) | set(test) == on_disk
    assert (len(train), len(test)) == (summary["n_train"], summary["n_test"])
    assert 0.1 <= len(test) / len(on_disk) <= 0.4
    # the test split is whole scenes
    scene = {n: n.rsplit("_p", 1)[0] for n in on_disk}
    assert not {scene[n] for n in train} & {scene[n] for n in test}


def test_pickles_use_protocol_2(sen12ms_tree: tuple[Path, dict[str, Any]]) -> None:
    out, _ = sen12ms_tree
    for name in ("IGBP_probability_labels.pkl", "train_list.pkl", "test_list.pkl"):
        assert (out / "sen12ms" / name).read_bytes()[:2] == b"\x80\x02"


def test_sen12mscr_subset_with_identical_clear_data(
    sen12ms_tree: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = sen12ms_tree
    ms, cr = out / "sen12ms", out / "sen12mscr"
    cloudy = sorted(cr.glob("*_s2_cloudy/s2_cloudy_*/*.tif"))
    assert len(cloudy) == summary["n_cloudy"] > 0
    test = set((ms / "test_list.txt").read_text().splitlines())
    in_test = []
    for path in cloudy:
        season = path.parent.parent.name.removesuffix("_s2_cloudy")
        scene = path.parent.name.removeprefix("s2_cloudy_")
        patch = path.stem.rsplit("_p", 1)[1]
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0]) == (13, "uint16")
        for sensor in ("s1", "s2"):
            name = f"{season}_{sensor}_{scene}_p{patch}.tif"
            a = read(cr / f"{season}_{sensor}" / f"{sensor}_{scene}" / name)
            b = read(ms / season / f"{sensor}_{scene}" / name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        in_test.append(f"{season}_s2_{scene}_p{patch}.tif" in test)
    assert any(in_test) and not all(in_test)
    n_cr = {len(list(cr.glob(f"*_{s}/{s}_*/*.tif"))) for s in ("s1", "s2", "s2_cloudy")}
    assert n_cr == {len(cloudy)}


# ---------------------------------------------------------------- clouds


def test_opacity_field_has_exact_coverage() -> None:
    rng = np.random.default_rng(0)
    for cov in (0.0, 0.01, 0.37, 0.9, 0.999, 1.0):
        alpha = opacity_field(rng, 40, cov, edge=0.7)
        assert (alpha >= 0.5).sum() == round(cov * 1600)
        assert alpha.min() >= 0 and alpha.max() <= 1
    field = smooth_field(rng, 64)
    assert abs(field.mean()) < 1e-5 and abs(field.std() - 1) < 1e-4
    # smooth: neighbours are strongly correlated
    assert np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1] > 0.9


@pytest.fixture(scope="module")
def medium_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A moderately sized tree where every scene has a cloudy version."""
    out = tmp_path_factory.mktemp("synth") / "medium"
    return out, generate_sen12ms(out, n_patches=600, size=16, seed=11, cr_fraction=1.0)


def _band_means(path: Path) -> np.ndarray:
    return np.nanmean(read(path).astype(np.float64), axis=(1, 2))


def test_cloud_coverage_peaks_at_90_to_100(medium_tree: tuple[Path, dict[str, Any]]) -> None:
    out, summary = medium_tree
    cover = np.array(list(summary["cloud_cover"].values()))
    counts = np.histogram(np.minimum(cover, 0.999), bins=10, range=(0, 1))[0]
    assert counts.argmax() == 9 and counts[9] > 2 * counts[:9].max()
    assert counts[:9].min() > 0  # the whole range is covered
    # an independent detector on the files (cirrus band B10 bright) agrees with the summary
    b10 = S2_BANDS.index("B10")
    for name, cov in list(summary["cloud_cover"].items())[:40]:
        season, rest = name.split("_s2_")
        scene, patch = rest.removesuffix(".tif").split("_p")
        path = (
            out / "sen12mscr" / f"{season}_s2_cloudy" / f"s2_cloudy_{scene}"
            / f"{season}_s2_cloudy_{scene}_p{patch}.tif"
        )  # fmt: skip
        detected = (read(path)[b10] > 600).mean()
        assert abs(detected - cov) < 0.12, (name, detected, cov)
        clear = read(out / "sen12ms" / season / f"s2_{scene}" / name)
        assert (clear[b10] > 600).mean() == 0


def test_learnability_optical_beats_sar_and_clouds_hurt_only_optical(
    medium_tree: tuple[Path, dict[str, Any]],
) -> None:
    """Logistic regression on per-patch band means, trained on train scenes, tested on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out, summary = medium_tree
    ms, cr = out / "sen12ms", out / "sen12mscr"
    labels = load_pickle(ms / "IGBP_probability_labels.pkl")
    test_names = set((ms / "test_list.txt").read_text().splitlines())
    rows = []
    for name, frac in labels.items():
        season, rest = name.split("_s2_")
        scene, patch = rest.removesuffix(".tif").split("_p")
        cloudy_name = f"{season}_s2_cloudy_{scene}_p{patch}.tif"
        rows.append((
            _band_means(ms / season / f"s1_{scene}" / name.replace("_s2_", "_s1_")),
            _band_means(ms / season / f"s2_{scene}" / name),
            _band_means(cr / f"{season}_s2_cloudy" / f"s2_cloudy_{scene}" / cloudy_name),
            int(np.argmax(igbp10_fractions(frac))), name in test_names,
            summary["cloud_cover"][name],
        ))  # fmt: skip
    sar, opt, opt_cloudy = (np.array([r[i] for r in rows]) for i in range(3))
    y, test, cover = (np.array([r[i] for r in rows]) for i in range(3, 6))
    assert np.bincount(y, minlength=10).min() >= 3  # every class is present

    def accuracy(x_train: np.ndarray, x_test: np.ndarray, rows: np.ndarray) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        model.fit(x_train[~test], y[~test])
        return float(model.score(x_test[rows], y[rows]))

    majority = np.bincount(y[test]).max() / test.sum()
    acc_opt = accuracy(opt, opt, test)
    acc_sar = accuracy(sar, sar, test)
    assert acc_opt >= 0.75
    assert majority + 0.1 <= acc_sar <= acc_opt - 0.15
    very_cloudy = test & (cover >= 0.9)
    assert very_cloudy.sum() >= 15
    vc_majority = np.bincount(y[very_cloudy]).max() / very_cloudy.sum()
    assert accuracy(opt, opt_cloudy, very_cloudy) <= vc_majority + 0.1
    assert accuracy(sar, sar, very_cloudy) >= vc_majority + 0.1


# ---------------------------------------------------------------- BigEarthNet


def _ben_pairs(root: Path) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for split in ("train", "val", "test"):
        lines = (root / f"{split}.csv").read_bytes().decode().splitlines()
        out[split] = [tuple(line.split(",")) for line in lines]
    return out  # type: ignore[return-value]


def test_bigearthnet_layout_and_quirks(ben_tree: tuple[Path, dict[str, Any]]) -> None:
    out, summary = ben_tree
    s2_root, s1_root = out / "BigEarthNet-v1.0", out / "BigEarthNet-S1-v1.0"
    s2_names = sorted(p.name for p in s2_root.iterdir())
    assert len(s2_names) == len(list(s1_root.iterdir())) == summary["n_patches"] == 30
    assert any(S2_BEN.match(n).group(2).__len__() == 5 for n in s2_names)  # type: ignore[union-attr]
    s1_of_s2 = {}
    for s1_dir in s1_root.iterdir():
        s1 = s1_dir.name
        m = S1_BEN.match(s1)
        assert m, s1
        meta = json.loads((s1_dir / f"{s1}_labels_metadata.json").read_text())
        assert set(meta) == {
            "labels", "coordinates", "projection", "corresponding_s2_patch", "scene_source",
            "acquisition_time",
        }  # fmt: skip
        assert set(meta["coordinates"]) == {"ulx", "uly", "lrx", "lly"}
        s2 = meta["corresponding_s2_patch"]
        s1_of_s2[s2] = s1
        m2 = S2_BEN.match(s2)
        assert m2 and m2.group(3, 4) == m.group(4, 5) and m2.group(2) != m.group(2)
        for pol in ("VV", "VH"):
            with rasterio.open(s1_dir / f"{s1}_{pol}.tif") as src:
                assert (src.count, src.height, src.width, src.dtypes[0]) == (1, 24, 24, "float32")
                s1_corner = (src.transform.c, src.transform.f)
        s2_meta = json.loads((s2_root / s2 / f"{s2}_labels_metadata.json").read_text())
        assert set(s2_meta) == {
            "labels",
            "coordinates",
            "projection",
            "tile_source",
            "acquisition_date",
        }
        assert set(s2_meta["coordinates"]) == {"ulx", "uly", "lrx", "lry"}
        assert s2_meta["labels"] == meta["labels"] and set(meta["labels"]) <= set(CLC43)
        mapped = {CLC43[i] for ks in BEN19_FROM_CLC43 for i in ks}
        assert set(meta["labels"]) & mapped
        c = s2_meta["coordinates"]
        assert (c["ulx"], c["uly"]) == s1_corner
        assert (c["lrx"] - c["ulx"], c["uly"] - c["lry"]) == (240, 240)
        assert s2_meta["projection"] == meta["projection"] and "UTM" in meta["projection"]
        for band in BIGEARTHNET_S2_BANDS:
            res = S2_RESOLUTION_M[band]
            with rasterio.open(s2_root / s2 / f"{s2}_{band}.tif") as src:
                px = 24 * 10 // res
                assert (src.count, src.height, src.width, src.dtypes[0]) == (1, px, px, "uint16")
                assert src.res == (res, res)
                assert (src.transform.c, src.transform.f) == s1_corner
        assert not (s2_root / s2 / f"{s2}_B10.tif").exists()
    assert sorted(s1_of_s2) == s2_names


def test_bigearthnet_splits_and_lists(ben_tree: tuple[Path, dict[str, Any]]) -> None:
    out, summary = ben_tree
    raw = {s: (out / f"{s}.csv").read_bytes() for s in ("train", "val", "test")}
    assert raw["test"].count(b"\r\n") == raw["test"].count(b"\n") > 0
    assert b"\r" not in raw["train"] and b"\r" not in raw["val"]
    pairs = _ben_pairs(out)
    s1_root = out / "BigEarthNet-S1-v1.0"
    names = {split: {s2 for s2, _ in p} for split, p in pairs.items()}
    for split, p in pairs.items():
        assert len(p) == summary[f"n_{split}"] > 0
        for s2, s1 in p:
            meta = json.loads((s1_root / s1 / f"{s1}_labels_metadata.json").read_text())
            assert meta["corresponding_s2_patch"] == s2
    cloud = (out / "patches_with_cloud_and_shadow.csv").read_text().splitlines()
    snow = (out / "patches_with_seasonal_snow.csv").read_text().splitlines()
    assert len(cloud) == summary["n_cloudy"] > 0 and len(snow) == summary["n_snow"] > 0
    split_names = names["train"] | names["val"] | names["test"]
    assert len(split_names) == sum(len(p) for p in pairs.values())
    assert not set(cloud) & set(snow) and not (set(cloud) | set(snow)) & split_names
    assert len(split_names) + len(cloud) + len(snow) == summary["n_patches"]
    s2_root = out / "BigEarthNet-v1.0"

    def mean(name: str, band: str) -> float:
        return float(read(s2_root / name / f"{name}_{band}.tif").astype(float).mean())

    clear = sorted(split_names)
    clear_b02 = np.mean([mean(n, "B02") for n in clear])
    assert np.mean([mean(n, "B02") for n in cloud]) > clear_b02 + 1000
    for n in snow:  # snow: bright visible, darker SWIR: snow index NDSI > 0.2
        b03, b11 = mean(n, "B03"), mean(n, "B11")
        assert b03 > 2500 and (b03 - b11) / (b03 + b11) > 0.2
    assert min(summary["cloud_cover"].values()) >= 0.05


@pytest.mark.slow
def test_bigearthnet_learnability(tmp_path: Path) -> None:
    """One-vs-rest logistic regression on per-patch band means, 19-class multi-hot labels:
    ranking quality (macro ROC AUC over labels present in the test part)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sareval.classes import BEN19, ben19_multi_hot

    out = tmp_path / "ben"
    generate_bigearthnet(out, n_patches=300, size=12, seed=4)
    s2_root, s1_root = out / "BigEarthNet-v1.0", out / "BigEarthNet-S1-v1.0"
    pairs = [pair for split in _ben_pairs(out).values() for pair in split]
    sar, opt, y = [], [], []
    for s2, s1 in pairs:
        sar.append([read(s1_root / s1 / f"{s1}_{p}.tif").mean() for p in ("VV", "VH")])
        opt.append([read(s2_root / s2 / f"{s2}_{b}.tif").mean() for b in BIGEARTHNET_S2_BANDS])
        labels = json.loads((s2_root / s2 / f"{s2}_labels_metadata.json").read_text())["labels"]
        y.append(ben19_multi_hot(np.isin(CLC43, labels).astype(np.uint8)))
    sar_x, opt_x, labels_y = np.array(sar), np.array(opt), np.array(y)
    train = np.arange(len(pairs)) < 0.7 * len(pairs)
    keep = labels_y[train].sum(0) >= 5

    def macro_auc(x: np.ndarray) -> float:
        model = make_pipeline(
            StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=5000))
        )
        model.fit(x[train], labels_y[train][:, keep])
        test_y = labels_y[~train][:, keep]
        cols = (test_y.min(0) == 0) & (test_y.max(0) == 1)
        score = model.decision_function(x[~train])
        return float(roc_auc_score(test_y[:, cols], score[:, cols], average="macro"))

    auc_opt, auc_sar = macro_auc(opt_x), macro_auc(sar_x)
    assert auc_opt >= 0.75 and 0.55 <= auc_sar <= auc_opt - 0.1
    # SAR alone still sees water: low backscatter ranks water patches first
    water = labels_y[:, [BEN19.index("Inland waters"), BEN19.index("Marine waters")]].max(1)
    assert roc_auc_score(water, -sar_x[:, 0]) > 0.85


def test_bigearthnet_v2_labels_maps_and_clouds(tmp_path: Path) -> None:
    """reBEN layout: labels = the 19 classes of the reference map's CLC codes; same seed, same
    bytes; cloud/shadow patches are bright (the v1 signal, clouds included)."""
    pq = pytest.importorskip("pyarrow.parquet")

    from sareval.classes import BEN19, CLC43_CODES

    args = ["synth", "bigearthnet-v2", "--patches", "20", "--size", "24", "--seed", "5"]
    for name in ("a", "b"):
        result = CliRunner().invoke(cli, [*args[:2], str(tmp_path / name), *args[2:]])
        assert result.exit_code == 0 and "20 reBEN pairs" in result.output, result.output
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    root = tmp_path / "a"
    clean = pq.read_table(root / "metadata.parquet").to_pylist()
    flagged = pq.read_table(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet")
    rows = clean + flagged.to_pylist()
    flags = [r["contains_cloud_or_shadow"] or r["contains_seasonal_snow"] for r in rows]
    assert flags == [False] * len(clean) + [True] * flagged.num_rows
    b02 = {}
    for r in rows:
        pid = r["patch_id"]
        folder = "_".join(pid.split("_")[:-2]) + "/" + pid
        codes = set(np.unique(read(root / "Reference_Maps" / folder / f"{pid}_reference_map.tif")))
        fine = {k for k, c in enumerate(CLC43_CODES) if c in codes}
        expected = [BEN19[j] for j, ks in enumerate(BEN19_FROM_CLC43) if fine & set(ks)]
        assert r["labels"] == expected
        b02[pid] = read(root / "BigEarthNet-S2" / folder / f"{pid}_B02.tif").mean()
    clear = np.median([b02[r["patch_id"]] for r in rows if not r["contains_cloud_or_shadow"]])
    assert all(b02[r["patch_id"]] > 2 * clear for r in rows if r["contains_cloud_or_shadow"])


# ---------------------------------------------------------------- CLI and errors


def test_cli_synth_refuses_existing_output(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "synth"
    args = ["synth", "sen12ms", str(out), "--patches", "5", "--size", "16", "--seed", "2"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "5 SEN12MS patches" in result.output
    before = tree_files(out)
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "output exists" in result.output
    assert tree_files(out) == before
    result = runner.invoke(cli, [*args[:-1], "3", "--overwrite"])
    assert result.exit_code == 0 and tree_files(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temporary left

    ben = tmp_path / "ben"
    result = runner.invoke(
        cli, ["synth", "bigearthnet", str(ben), "--patches", "6", "--size", "20"]
    )
    assert result.exit_code == 1 and "multiple of 6" in result.output and not ben.exists()
    result = runner.invoke(
        cli, ["synth", "bigearthnet", str(ben), "--patches", "6", "--size", "12"]
    )
    assert result.exit_code == 0 and (ben / "test.csv").exists()
    for sub in ("sen12ms", "bigearthnet"):
        result = runner.invoke(cli, ["synth", sub, "--help"])
        assert result.exit_code == 0 and f"sareval synth {sub}" in result.output


def test_empty_existing_dir_is_accepted_and_bad_arguments_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    generate_sen12ms(tmp_path / "empty", n_patches=4, size=8, seed=0)
    with pytest.raises(OutputExistsError, match="output exists"):
        generate_sen12ms(tmp_path / "empty", n_patches=4, size=8, seed=0)
    with pytest.raises(SarevalError, match="at least 4"):
        generate_sen12ms(tmp_path / "x", n_patches=3)
    with pytest.raises(SarevalError, match="cr_fraction"):
        generate_sen12ms(tmp_path / "x", n_patches=4, cr_fraction=1.5)
    assert not (tmp_path / "x").exists()


def test_failure_midway_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synth_sen12ms.write_geotiff

    def failing(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(synth_sen12ms, "write_geotiff", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_sen12ms(tmp_path / "out", n_patches=5, size=8, seed=0)
    assert list(tmp_path.iterdir()) == []
