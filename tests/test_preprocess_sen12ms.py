"""SEN12MS (+ SEN12MS-CR) -> store: arrays bit for bit, labels, subsets, CLI.

References are independent of the code under test: rasterio reads of the committed fixtures
(``tests/data/sen12ms``, ``tests/data/sen12mscr``, made by ``tests/data/make_fixtures.py``),
a plain ``pickle.load`` of the (trusted) fixture label file and a pixel-count loop over ``lc``.
"""

from __future__ import annotations

import collections
import json
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.bands import S2_BANDS
from sareval.cli import cli
from sareval.preprocess.sen12ms import PatchId, preprocess_sen12ms, read_split_list
from sareval.store import Store, StoreDataset

DATA = Path(__file__).parent / "data"
ROOT = DATA / "sen12ms"
CR = DATA / "sen12mscr"
#: simplified IGBP classes, from shared/reference/datasets.md (independent of sareval.classes)
IGBP10_GROUPS = [[1, 2, 3, 4, 5], [6, 7], [8, 9], [10], [11], [12, 14], [13], [15], [16], [17]]
ID_RE = re.compile(r"^(ROIs\d+_[a-z]+)_(\d+)_p(\d+)$")


def rio(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def sen12ms_file(root: Path, pid: str, sensor: str) -> Path:
    season, scene, patch = ID_RE.match(pid).groups()  # type: ignore[union-attr]
    return root / season / f"{sensor}_{scene}" / f"{season}_{sensor}_{scene}_p{patch}.tif"


def cr_file(pid: str, sensor: str) -> Path:
    season, scene, patch = ID_RE.match(pid).groups()  # type: ignore[union-attr]
    return (
        CR / f"{season}_{sensor}" / f"{sensor}_{scene}" / f"{season}_{sensor}_{scene}_p{patch}.tif"
    )


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32) if a.dtype == np.float32 else a


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sen12ms")
    return {
        # whole tree, labels from lc, cloudy from CR, two worker processes (2 blocks of 8)
        "tree": preprocess_sen12ms(ROOT, tmp / "all.h5", cr_root=CR, workers=2, progress=False),
        # the test list (pickle) with the label pickle, in process, 1 row a chunk
        "test": preprocess_sen12ms(
            ROOT,
            tmp / "test.h5",
            split_list=ROOT / "test_list.pkl",
            labels=ROOT / "IGBP_probability_labels.pkl",
            cr_root=CR,
            workers=1,
            chunk_rows=1,
            progress=False,
        ),
    }


def test_arrays_equal_rasterio_bit_for_bit(stores: dict[str, Path]) -> None:
    for path in stores.values():
        with Store(path) as store:
            ids = store.ids()
            s1, s2 = store.file["s1"][()], store.file["s2"][()]
            cloudy = store.file["s2_cloudy"][()]
            available = store.file["s2_cloudy_available"][()]
            transforms, crs = store.file["geo/transform"][()], store.file["geo/crs"][()]
            assert store.bands("s2") == S2_BANDS and store.bands("s1") == ("VV", "VH")
            for i, pid in enumerate(ids):
                np.testing.assert_array_equal(bits(s1[i]), bits(rio(sen12ms_file(ROOT, pid, "s1"))))
                np.testing.assert_array_equal(s2[i], rio(sen12ms_file(ROOT, pid, "s2")))
                has_cloudy = cr_file(pid, "s2_cloudy").is_file()
                assert available[i] == has_cloudy
                if has_cloudy:
                    np.testing.assert_array_equal(cloudy[i], rio(cr_file(pid, "s2_cloudy")))
                else:
                    assert not cloudy[i].any()
                with rasterio.open(sen12ms_file(ROOT, pid, "s2")) as src:
                    np.testing.assert_array_equal(transforms[i], list(src.transform)[:6])
                    assert crs[i].decode() == src.crs.to_string()
            assert s1.dtype == np.float32 and s2.dtype == np.uint16


def test_rows_and_split(stores: dict[str, Path]) -> None:
    with Store(stores["tree"]) as store:
        on_disk = sorted(
            PatchId.parse(p.name)
            for p in ROOT.glob("*/s2_*/*.tif")  # type: ignore[type-var]
        )
        assert store.ids() == [p.id for p in on_disk]  # type: ignore[union-attr]
        assert store.split == "all" and store.dataset == "sen12ms"
        assert store.attrs["default_task"] == "single-label"
    with Store(stores["test"]) as store:
        listed = pickle.loads((ROOT / "test_list.pkl").read_bytes())
        assert store.ids() == [PatchId.parse(n).id for n in listed]  # type: ignore[union-attr]
        assert store.split == "test"


def test_labels_from_the_pickle(stores: dict[str, Path]) -> None:
    table = pickle.loads((ROOT / "IGBP_probability_labels.pkl").read_bytes())
    with Store(stores["test"]) as store:
        check_labels(store, [table[PatchId.parse(i).file_name("s2")] for i in store.ids()])  # type: ignore[union-attr]
        assert store.attrs["labels_source"] == "pickle"


def test_labels_computed_from_lc(stores: dict[str, Path]) -> None:
    with Store(stores["tree"]) as store:
        expected = []
        for pid in store.ids():
            igbp = rio(sen12ms_file(ROOT, pid, "lc"))[0]
            counts = collections.Counter(int(v) for v in igbp.ravel() if 1 <= v <= 17)
            total = sum(counts.values())
            expected.append(np.array([counts[k] / total for k in range(1, 18)]))
        check_labels(store, expected)
        # the generator's pickle was made the same way: the two sources agree
        table = pickle.loads((ROOT / "IGBP_probability_labels.pkl").read_bytes())
        for pid, frac in zip(store.ids(), expected, strict=True):
            np.testing.assert_allclose(frac, table[PatchId.parse(pid).file_name("s2")])  # type: ignore[union-attr]


def check_labels(store: Store, fractions17: list[np.ndarray]) -> None:
    f17 = np.array(fractions17)
    np.testing.assert_array_equal(store.labels("igbp17_fractions"), f17.astype(np.float32))
    f10 = np.array([[row[[k - 1 for k in g]].sum() for g in IGBP10_GROUPS] for row in f17])
    np.testing.assert_array_equal(store.labels("igbp10_single"), f10.argmax(1))
    np.testing.assert_array_equal(store.labels("igbp10_multi"), (f10 >= 0.1).astype(np.uint8))
    assert store.label_set("igbp10_multi").threshold == pytest.approx(0.1)
    assert store.label_set("igbp17_fractions").kind == "fractions"


def test_subsets_and_cloud_cover(stores: dict[str, Path]) -> None:
    with Store(stores["tree"]) as store:
        subs = store.subsets
        n = store.n_samples
        has_cloudy = np.array([cr_file(i, "s2_cloudy").is_file() for i in store.ids()])
        cloudy_rows = np.flatnonzero(has_cloudy)
        np.testing.assert_array_equal(subs["clear"].rows, np.arange(n))
        np.testing.assert_array_equal(subs["cloudy"].rows, cloudy_rows)
        np.testing.assert_array_equal(subs["cloudy_clear"].rows, cloudy_rows)
        assert (subs["clear"].optical, subs["cloudy"].optical) == ("s2", "s2_cloudy")
        assert subs["cloudy_clear"].optical == "s2" and subs["very_cloudy"].optical == "s2_cloudy"
        cover = store.cloud_cover()
        assert np.isnan(cover[~has_cloudy]).all() and np.isfinite(cover[has_cloudy]).all()
        np.testing.assert_array_equal(
            subs["very_cloudy"].rows, cloudy_rows[cover[cloudy_rows] >= 0.9]
        )
        assert "fallback" in store.attrs["cloud_cover_method"] or "s2cloudless" in str(
            store.attrs["cloud_cover_method"]
        )
        # the cloudy subset reads the cloudy optical version, cloudy_clear the clear one
        b = next(store.iter_batches("cloudy", 3))
        np.testing.assert_array_equal(b.arrays["s2"], store.file["s2_cloudy"][b.rows])
        b = next(store.iter_batches("cloudy_clear", 3))
        np.testing.assert_array_equal(b.arrays["s2"], store.file["s2"][b.rows])


def test_without_cr_root_only_clear(tmp_path: Path) -> None:
    out = preprocess_sen12ms(
        ROOT, tmp_path / "s.h5", split_list=ROOT / "test_list.txt", workers=1, progress=False
    )
    with Store(out) as store:
        assert list(store.subsets) == ["clear"] and not store.has_cloudy
        assert np.isnan(store.cloud_cover()).all()
        assert store.attrs["cloud_cover_method"] == "none"


def test_txt_and_pkl_lists_agree() -> None:
    assert read_split_list(ROOT / "test_list.txt") == read_split_list(ROOT / "test_list.pkl")
    assert read_split_list(ROOT / "train_list.txt") == read_split_list(ROOT / "train_list.pkl")


def test_very_cloudy_from_a_user_list(tmp_path: Path) -> None:
    listed = tmp_path / "very.txt"
    names = ["ROIs2017_winter_s2_cloudy_72_p775.tif", "ROIs1970_fall_12_p626"]
    listed.write_text("\r\n".join(names) + "\r\n")
    out = preprocess_sen12ms(
        ROOT,
        tmp_path / "s.h5",
        split_list=ROOT / "test_list.pkl",
        cr_root=CR,
        very_cloudy_list=listed,
        workers=1,
        progress=False,
    )
    with Store(out) as store:
        rows = store.subset("very_cloudy").rows
        assert sorted(store.ids(rows)) == sorted(
            ["ROIs2017_winter_72_p775", "ROIs1970_fall_12_p626"]
        )


def test_reading_api_and_torch_dataset(stores: dict[str, Path]) -> None:
    torch = pytest.importorskip("torch")
    with Store(stores["tree"]) as store:
        rows = store.subset("cloudy").rows
        got = np.concatenate([b.arrays["s2"] for b in store.iter_batches("cloudy", 2)])
        np.testing.assert_array_equal(got, store.file["s2_cloudy"][rows])
        nan_rows = np.flatnonzero(np.isnan(store.file["s1"][()]).any(axis=(1, 2, 3)))
        assert store.nonfinite_count("s1") == int(np.isnan(store.file["s1"][()]).sum()) > 0
        assert len(nan_rows) == 1
    ds = StoreDataset(stores["tree"], "clear", "igbp10_single")
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["s2"].shape[1:] == (13, 32, 32) and batch["label"].shape == (4,)


def test_cli_preprocess_and_info(tmp_path: Path) -> None:
    out = tmp_path / "test.h5"
    args = ["preprocess", "sen12ms", str(ROOT), "--split-list", str(ROOT / "test_list.pkl"),
            "--labels", str(ROOT / "IGBP_probability_labels.pkl"), "--cr-root", str(CR),
            "--workers", "1", "--compression", "gzip", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "very_cloudy" in result.output
    with h5py.File(out) as f:
        assert f["s2"].compression == "gzip" and f["s2"].compression_opts == 1
        assert json.loads(f.attrs["options"])["compression"] == "gzip"
    result = CliRunner().invoke(cli, ["info", str(out)])
    assert result.exit_code == 0, result.output
    for word in ("sen12ms", "test", "single-label", "igbp10_single", "very_cloudy", "B8A"):
        assert word in result.output
