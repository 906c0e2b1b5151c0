"""The store contract: round trip, subsets, bounded batches, resume, atomicity, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from sareval.atomic import partial_path
from sareval.errors import OutputExistsError, StoreError
from sareval.store import (
    LabelSpec,
    SensorSpec,
    Store,
    StoreDataset,
    StoreWriter,
    contiguous_runs,
    read_rows,
)


def make_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    s1 = rng.normal(-12, 5, size=(n, 2, 6, 6)).astype(np.float32)
    s1[1, 0, :2, :2] = np.nan
    return {"s1": s1, "s2": rng.integers(0, 10000, size=(n, 3, 6, 6)).astype(np.uint16)}


def new_writer(out: Path, n: int, config: dict | None = None, **kw) -> StoreWriter:
    return StoreWriter(
        out,
        dataset="sen12ms",
        split="test",
        default_task="single-label",
        ids=[f"id{i}" for i in range(n)],
        height=6,
        width=6,
        sensors=[
            SensorSpec("s1", ("VV", "VH"), "float32"),
            SensorSpec("s2", ("B02", "B03", "B04"), "uint16"),
        ],
        labels=[LabelSpec("y", "index", ("a", "b", "c"))],
        config=config or {"k": 1},
        **kw,
    )


def write_all(
    writer: StoreWriter, arrays: dict[str, np.ndarray], start: int = 0, block: int = 3
) -> None:
    n = len(arrays["s1"])
    for a in range(start, n, block):
        b = min(a + block, n)
        writer.write_rows(
            a,
            {k: v[a:b] for k, v in arrays.items()},
            {"y": np.arange(a, b) % 3},
            cloud_cover=np.full(b - a, 0.25),
        )


def test_contiguous_runs_and_read_rows(tmp_path: Path) -> None:
    assert contiguous_runs(np.array([0, 1, 2, 5, 7, 8])) == [(0, 3), (5, 6), (7, 9)]
    assert contiguous_runs(np.array([], dtype=np.int64)) == []
    with h5py.File(tmp_path / "x.h5", "w") as f:
        data = np.arange(40).reshape(20, 2)
        f["d"] = data
        rows = np.array([0, 1, 4, 9, 10, 11, 19])
        np.testing.assert_array_equal(read_rows(f["d"], rows), data[rows])


def test_round_trip_subsets_and_stats(tmp_path: Path) -> None:
    arrays = make_arrays(10)
    w = new_writer(tmp_path / "s.h5", 10)
    write_all(w, arrays)
    w.finish({"clear": (np.arange(10), "s2", ""), "odd": (np.array([9, 1, 3, 3]), "s2", "")})
    with Store(tmp_path / "s.h5") as st:
        assert st.n_samples == 10 and st.image_size == (6, 6)
        assert st.bands("s2") == ("B02", "B03", "B04")
        assert list(st.subsets) == ["clear", "odd"]
        np.testing.assert_array_equal(st.subset("odd").rows, [1, 3, 9])
        got = list(st.iter_batches("odd", 2, label_sets=["y"]))
        assert [len(b) for b in got] == [2, 1]
        rows = np.concatenate([b.rows for b in got])
        s1 = np.concatenate([b.arrays["s1"] for b in got])
        np.testing.assert_array_equal(s1, arrays["s1"][rows])  # NaN-safe: equal bit patterns
        assert got[0].ids == ["id1", "id3"] and list(got[0].labels["y"]) == [1, 0]
        np.testing.assert_allclose(st.band_mean("s1"), np.nanmean(arrays["s1"], axis=(0, 2, 3)))
        np.testing.assert_allclose(
            st.band_std("s2", np.array([1, 3])), arrays["s2"][[1, 3]].std(axis=(0, 2, 3)), rtol=1e-9
        )
        assert st.nonfinite_count("s1") == 4
        with pytest.raises(StoreError, match="unknown subset 'nope'; known: clear, odd"):
            st.subset("nope")
        with pytest.raises(StoreError, match="no multi-label labels"):
            st.find_labels("multi-label", ["a", "b", "c"])
        assert st.find_labels("single-label", ["c", "b", "a"]).name == "y"


def test_digest_depends_on_content(tmp_path: Path) -> None:
    digests = []
    for seed in (0, 0, 1):
        out = tmp_path / f"s{len(digests)}.h5"
        w = new_writer(out, 4)
        write_all(w, make_arrays(4, seed))
        w.finish({"clear": (np.arange(4), "s2", "")})
        digests.append(Store(out).content_digest)
    assert digests[0] == digests[1] != digests[2]


def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path) -> None:
    arrays = make_arrays(9)
    ref = new_writer(tmp_path / "ref.h5", 9)
    write_all(ref, arrays)
    ref.finish({"clear": (np.arange(9), "s2", "")})

    out = tmp_path / "s.h5"
    w = new_writer(out, 9)
    write_all(w, {k: v[:6] for k, v in arrays.items()})
    w.abort()  # simulated crash after 6 rows
    assert not out.exists() and partial_path(out).exists()
    with pytest.raises(StoreError, match=r"incomplete \.partial"):
        Store(out)
    w2 = new_writer(out, 9)
    assert w2.rows_written == 6
    write_all(w2, arrays, start=6)
    w2.finish({"clear": (np.arange(9), "s2", "")})
    assert Store(out).content_digest == Store(tmp_path / "ref.h5").content_digest
    assert not partial_path(out).exists()


def test_changed_config_rebuilds_instead_of_resuming(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    w = new_writer(out, 6)
    write_all(w, {k: v[:3] for k, v in make_arrays(6).items()})
    w.abort()
    assert new_writer(out, 6, config={"k": 2}).rows_written == 0


def test_truncated_partial_is_rebuilt(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    partial_path(out).write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    assert new_writer(out, 3).rows_written == 0


def test_out_of_order_rows_are_refused(tmp_path: Path) -> None:
    w = new_writer(tmp_path / "s.h5", 6)
    with pytest.raises(ValueError, match="in order"):
        w.write_rows(3, {k: v[3:6] for k, v in make_arrays(6).items()}, {"y": np.zeros(3)})


def test_existing_output_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    out.write_text("x")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        new_writer(out, 2)
    assert new_writer(out, 2, overwrite=True).rows_written == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b"not hdf5 at all", "not an HDF5 file"),
        ("other", "not a sareval store"),
        ("version", "format version 99"),
    ],
)
def test_bad_store_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.h5"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "other":
        with h5py.File(path, "w") as f:
            f["x"] = 1
    elif content == "version":
        with h5py.File(path, "w") as f:
            f.attrs.update({"format": "sareval-store", "format_version": 99})
    with pytest.raises(StoreError, match=message) as e:
        Store(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_store_dataset_items(tiny_store: Path) -> None:
    ds = StoreDataset(tiny_store, "cloudy", "igbp10_single")
    assert len(ds) == 6
    item = ds[1]
    with Store(tiny_store) as st:
        row = st.subset("cloudy").rows[1]
        np.testing.assert_array_equal(item["s2"], st.file["s2_cloudy"][row])
        assert item["label"] == st.labels("igbp10_single")[row]
    with pytest.raises(IndexError):
        ds[6]


def test_options_are_recorded(tiny_store: Path) -> None:
    with Store(tiny_store) as st:
        assert json.loads(st.attrs["options"]) == {"fixture": "tiny"}
        assert st.has_cloudy


def test_tampered_copies_are_refused(tiny_store: Path, tmp_path: Path) -> None:
    """Labels or subsets edited after writing fail the content digest when the store is opened;
    edited images pass it (their row hashes are unchanged) but fail ``verify_rows``."""
    import shutil

    import h5py
    from click.testing import CliRunner

    from sareval.cli import cli

    with Store(tiny_store) as st:
        assert st.verify_rows() == 12
    labels = tmp_path / "labels.h5"
    shutil.copy(tiny_store, labels)
    with h5py.File(labels, "r+") as f:
        f["labels/igbp10_single"][0] = (f["labels/igbp10_single"][0] + 1) % 10
    with pytest.raises(StoreError, match="does not match its content digest"):
        Store(labels)
    images = tmp_path / "images.h5"
    shutil.copy(tiny_store, images)
    with h5py.File(images, "r+") as f:
        f["s2"][5, 0, 0, 0] += 1
    with Store(images) as st, pytest.raises(StoreError, match=r"row 5 .* does not match its row"):
        st.verify_rows()
    result = CliRunner().invoke(cli, ["info", "--verify", str(images)])
    assert result.exit_code == 1 and "row 5" in result.output.strip().splitlines()[-1]
    assert CliRunner().invoke(cli, ["info", "--verify", str(tiny_store)]).exit_code == 0
