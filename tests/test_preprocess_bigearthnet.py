"""BigEarthNet -> store: 10 m bands and S1 bit for bit, 20/60 m bands = resampler(rasterio read),
labels from the JSONs, S1 pairing, subsets.

Fixtures: ``tests/data/bigearthnet`` (made by ``tests/data/make_fixtures.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.bands import BIGEARTHNET_S2_BANDS
from sareval.classes import CLC43
from sareval.cli import cli
from sareval.preprocess.bigearthnet import preprocess_bigearthnet
from sareval.preprocess.resample import upsample_float32
from sareval.store import Store

BEN = Path(__file__).parent / "data" / "bigearthnet"
S2_ROOT = BEN / "BigEarthNet-v1.0"
S1_ROOT = BEN / "BigEarthNet-S1-v1.0"
#: BigEarthNet-19 <- CLC43 indices, from shared/reference/datasets.md
BEN19_GROUPS = [
    [0, 1],
    [2],
    [11, 12, 13],
    [14, 15, 16, 18],
    [17],
    [19],
    [20],
    [21],
    [22],
    [23],
    [24],
    [25, 31],
    [26, 27],
    [28],
    [29],
    [33, 34],
    [35, 36],
    [38, 39],
    [40, 41, 42],
]
TEN_M = ("B02", "B03", "B04", "B08")


def rio(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines() if line.strip()]


def s1_of(s2: str) -> str:
    for js in S1_ROOT.glob("*/*_labels_metadata.json"):
        if json.loads(js.read_text())["corresponding_s2_patch"] == s2:
            return js.parent.name
    raise AssertionError(s2)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preprocess_bigearthnet(
        S2_ROOT,
        S1_ROOT,
        BEN / "train.csv",
        tmp_path_factory.mktemp("ben") / "train.h5",
        cloudy_list=BEN / "patches_with_cloud_and_shadow.csv",
        snow_list=BEN / "patches_with_seasonal_snow.csv",
        workers=1,
        chunk_rows=1,
        progress=False,
    )


def test_rows_pairs_and_arrays(store: Path) -> None:
    split = csv_rows(BEN / "train.csv")
    cloudy = [r[0] for r in csv_rows(BEN / "patches_with_cloud_and_shadow.csv")]
    snow = [r[0] for r in csv_rows(BEN / "patches_with_seasonal_snow.csv")]
    with Store(store) as st:
        ids = st.ids()
        assert ids == [r[0] for r in split] + cloudy + snow
        assert st.bands("s2") == BIGEARTHNET_S2_BANDS and st.image_size == (24, 24)
        s1, s2 = st.file["s1"][()], st.file["s2"][()]
        pairs = {r[0]: r[1] for r in split} | {n: s1_of(n) for n in cloudy + snow}
        for i, name in enumerate(ids):
            for c, band in enumerate(BIGEARTHNET_S2_BANDS):
                raw = rio(S2_ROOT / name / f"{name}_{band}.tif")
                if band in TEN_M:
                    np.testing.assert_array_equal(s2[i, c], raw)
                else:
                    assert raw.shape == ((12, 12) if band not in ("B01", "B09") else (4, 4))
                    np.testing.assert_array_equal(s2[i, c], upsample_float32(raw, 24, 24))
            for c, band in enumerate(("VV", "VH")):
                raw = rio(S1_ROOT / pairs[name] / f"{pairs[name]}_{band}.tif")
                np.testing.assert_array_equal(s1[i, c].view(np.uint32), raw.view(np.uint32))
            with rasterio.open(S2_ROOT / name / f"{name}_B02.tif") as src:
                np.testing.assert_array_equal(st.file["geo/transform"][i], list(src.transform)[:6])
        assert st.attrs["resampling"] == "cubic-tf1"
        assert "asymmetric" in st.attrs["resampling_description"]


def test_labels_from_json(store: Path) -> None:
    with Store(store) as st:
        c43, c19 = st.labels("clc43_multi"), st.labels("clc19_multi")
        for i, name in enumerate(st.ids()):
            names = json.loads((S2_ROOT / name / f"{name}_labels_metadata.json").read_text())[
                "labels"
            ]
            expected = np.zeros(43, np.uint8)
            expected[[CLC43.index(n) for n in names]] = 1
            np.testing.assert_array_equal(c43[i], expected)
            exp19 = [int(any(expected[k] for k in g)) for g in BEN19_GROUPS]
            np.testing.assert_array_equal(c19[i], exp19)
        assert st.attrs["default_task"] == "multi-label"


def test_subsets_and_cloud_cover(store: Path) -> None:
    n_split = len(csv_rows(BEN / "train.csv"))
    n_cloudy = len(csv_rows(BEN / "patches_with_cloud_and_shadow.csv"))
    with Store(store) as st:
        subs = st.subsets
        np.testing.assert_array_equal(subs["clear"].rows, np.arange(n_split))
        cloudy = np.arange(n_split, n_split + n_cloudy)
        np.testing.assert_array_equal(subs["cloudy"].rows, cloudy)
        np.testing.assert_array_equal(
            subs["snow"].rows, np.arange(n_split + n_cloudy, st.n_samples)
        )
        assert all(s.optical == "s2" for s in subs.values())
        cover = st.cloud_cover()
        assert np.isfinite(cover[cloudy]).all() and np.isnan(np.delete(cover, cloudy)).all()
        np.testing.assert_array_equal(subs["very_cloudy"].rows, cloudy[cover[cloudy] >= 0.9])
        assert "B10" in st.attrs["cloud_cover_method"]


def test_pairing_through_the_s1_json_equals_the_csv(tmp_path: Path) -> None:
    one_column = tmp_path / "test.csv"
    rows = csv_rows(BEN / "test.csv")
    one_column.write_text("".join(r[0] + "\n" for r in rows))
    a = preprocess_bigearthnet(
        S2_ROOT, S1_ROOT, BEN / "test.csv", tmp_path / "a.h5", workers=1, progress=False
    )
    b = preprocess_bigearthnet(
        S2_ROOT, S1_ROOT, one_column, tmp_path / "b.h5", workers=1, progress=False
    )
    with Store(a) as sa, Store(b) as sb:
        assert sa.ids() == sb.ids() and list(sa.subsets) == ["clear"]
        np.testing.assert_array_equal(sa.file["s1"][()], sb.file["s1"][()])
        np.testing.assert_array_equal(sa.file["row_sha256"][()], sb.file["row_sha256"][()])


def test_nearest_resampling_keeps_values(tmp_path: Path) -> None:
    out = preprocess_bigearthnet(
        S2_ROOT, S1_ROOT, BEN / "val.csv", tmp_path / "v.h5", resampling="nearest", workers=1,
        progress=False,
    )  # fmt: skip
    with Store(out) as st:
        name = st.ids()[0]
        c = BIGEARTHNET_S2_BANDS.index("B05")
        raw = rio(S2_ROOT / name / f"{name}_B05.tif")
        np.testing.assert_array_equal(st.file["s2"][0, c], raw.repeat(2, 0).repeat(2, 1))
        assert st.attrs["resampling"] == "nearest"


def test_cli_bigearthnet_and_info(tmp_path: Path) -> None:
    out = tmp_path / "test.h5"
    args = ["-q", "preprocess", "bigearthnet", "--s2-root", str(S2_ROOT), "--s1-root", str(S1_ROOT),
            "--split-csv", str(BEN / "test.csv"),
            "--cloudy-list", str(BEN / "patches_with_cloud_and_shadow.csv"),
            "--very-cloudy-threshold", "0.5", "--workers", "2", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["info", str(out)])
    assert result.exit_code == 0, result.output
    for word in ("bigearthnet", "multi-label", "clc19_multi", "cubic-tf1", "very_cloudy", "0.5"):
        assert word in result.output


def test_crlf_and_header_tolerated(tmp_path: Path) -> None:
    csv = tmp_path / "test.csv"
    rows = csv_rows(BEN / "test.csv")
    csv.write_text("S2_name,S1_name\r\n" + "".join(",".join(r) + "\r\n" for r in rows))
    out = preprocess_bigearthnet(
        S2_ROOT, S1_ROOT, csv, tmp_path / "t.h5", workers=1, progress=False
    )
    with Store(out) as st:
        assert st.ids() == [r[0].strip() for r in rows]


def test_network_input_equals_zscore_then_resize(tmp_path: Path) -> None:
    """The published pipeline z-scores, then resizes in float (bicubic overshoot below 0
    kept); the store's float32 bands + the card's z-score give that input to float rounding."""
    import shutil

    from sareval.card import make_card
    from sareval.evaluator.preamble import build_preamble, normalise_numpy
    from tests.test_preprocess_resample import ort_resize

    root = tmp_path / "ben"
    shutil.copytree(BEN, root)
    name = csv_rows(BEN / "train.csv")[0][0]
    path = root / "BigEarthNet-v1.0" / name / f"{name}_B05.tif"
    edge = np.zeros((12, 12), np.uint16)
    edge[:, 6:] = 9000  # a sharp edge: bicubic undershoots below 0 next to it
    with rasterio.open(path, "r+") as dst:
        dst.write(edge, 1)
    out = preprocess_bigearthnet(
        root / "BigEarthNet-v1.0", root / "BigEarthNet-S1-v1.0", root / "train.csv",
        tmp_path / "t.h5", workers=1, progress=False,
    )  # fmt: skip
    card = make_card("bigearthnet-mm", "multi-label", architecture="vgg16", fusion="early",
                     checkpoint_sha256=None, random_init=True, input_size=24)  # fmt: skip
    with Store(out) as st:
        assert st.file["s2"].dtype == np.float32
        pre = build_preamble(card, {"s1": st.bands("s1"), "s2": st.bands("s2")})
        x = normalise_numpy(pre, {"s1": st.file["s1"][:1], "s2": st.file["s2"][:1]})[0]
    c = card.channels.index("B05")
    t = card.transform("B05")
    z = ((edge.astype(np.float32) - np.float32(t.mean)) / np.float32(t.std)).astype(np.float32)
    ref = ort_resize(z, 24, 24, "cubic")  # onnxruntime Resize on the z-scored band, float32
    assert ref.min() < -t.mean / t.std - 0.01  # overshoot below raw 0 in the reference
    np.testing.assert_allclose(x[c], ref, rtol=0, atol=1e-5)
    # the old uint16 store (rounded, clipped at 0) was off by whole DNs there
    old = (np.clip(np.rint(ref * t.std + t.mean), 0, None) - t.mean) / t.std
    assert np.abs(old - ref).max() * t.std > 10
