"""DFC2020 -> store: the release layout (folders, file names, row order), images bit for bit
against rasterio, the command line (``synth dfc2020``, ``preprocess dfc2020``), and one-line
errors naming the file or argument for a broken tree. Label maps: test_segmentation_preprocess.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from sareval.cli import cli
from sareval.errors import InputFileError, SarevalError
from sareval.preprocess.dfc2020 import preprocess_dfc2020
from sareval.preprocess.synth_dfc2020 import generate_dfc2020
from sareval.store import Store

SIZE = 32


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dfc") / "DFC2020"
    summary = generate_dfc2020(root, n_patches=5, size=SIZE, seed=2, cloud_fraction=0.4)
    return root, summary


def test_release_layout_as_the_baseline_reads_it(tree: tuple[Path, dict]) -> None:
    """lukasliebel/dfc2020_baseline: s2 under ROIs0000_validation/s2_validation and
    ROIs0000_test/s2_0; partners by replacing ``s2_`` with ``s1_`` / ``dfc_``."""
    root, summary = tree
    for split, folder in (("validation", "s2_validation"), ("test", "s2_0")):
        s2 = sorted((root / f"ROIs0000_{split}" / folder).glob("*.tif"))
        assert len(s2) == 5
        for path in s2:
            assert path.name.startswith(f"ROIs0000_{split}_s2_0_p")
            for other in ("s1_", "dfc_", "lc_"):
                assert Path(str(path).replace("s2_", other)).is_file()
        with rasterio.open(s2[0]) as src:
            assert (src.count, src.dtypes[0], src.height) == (13, "uint16", SIZE)
        dfc = Path(str(s2[0]).replace("s2_", "dfc_"))
        with rasterio.open(dfc) as src:
            assert src.count == 1 and 1 <= src.read(1).max() <= 10
    assert sorted(summary["patches"]) == ["test", "validation"]


def test_store_rows_and_images(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, summary = tree
    out = preprocess_dfc2020(root, tmp_path / "v.h5", workers=1, progress=False)
    with Store(out) as store:
        numbers = summary["patches"]["validation"]
        assert store.ids() == [f"ROIs0000_validation_p{n}" for n in sorted(numbers)]
        assert list(store.subsets) == ["all"] and store.attribute("default_task") == "segmentation"
        s1, s2 = store.file["s1"][()], store.file["s2"][()]
        for row, n in enumerate(sorted(numbers)):
            base = root / "ROIs0000_validation"
            with rasterio.open(base / "s2_validation" / f"ROIs0000_validation_s2_0_p{n}.tif") as f:
                np.testing.assert_array_equal(s2[row], f.read())
            with rasterio.open(base / "s1_validation" / f"ROIs0000_validation_s1_0_p{n}.tif") as f:
                np.testing.assert_array_equal(s1[row], f.read())
        # the clouded patches are the cloudiest rows by the store's cover
        cover = store.cloud_cover()
        clouded = [
            row for row, n in enumerate(sorted(numbers))
            if f"ROIs0000_validation_s2_0_p{n}.tif" in summary["cloud_cover"]
            and summary["cloud_cover"][f"ROIs0000_validation_s2_0_p{n}.tif"] > 0.3
        ]  # fmt: skip
        clear = [r for r, n in enumerate(sorted(numbers))
                 if f"ROIs0000_validation_s2_0_p{n}.tif" not in summary["cloud_cover"]]  # fmt: skip
        assert clouded and clear  # seed 2 draws both
        assert cover[clouded].min() > cover[clear].max()


def test_missing_partner_names_the_file(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = tree
    copy = tmp_path / "DFC2020"
    shutil.copytree(root / "ROIs0000_test", copy / "ROIs0000_test")
    victim = sorted((copy / "ROIs0000_test" / "s1_0").glob("*.tif"))[2]
    victim.unlink()
    with pytest.raises(InputFileError) as err:
        preprocess_dfc2020(copy, tmp_path / "t.h5", split="test", workers=1, progress=False)
    assert str(victim) in str(err.value) and "missing s1 partner" in str(err.value)
    with pytest.raises(InputFileError, match="ROIs0000_validation"):  # release not there
        preprocess_dfc2020(copy, tmp_path / "v.h5", split="validation", progress=False)
    with pytest.raises(SarevalError, match="split 'val': DFC2020 has validation, test"):
        preprocess_dfc2020(copy, tmp_path / "v.h5", split="val", progress=False)


def test_cli_synth_and_preprocess(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        cli, ["synth", "dfc2020", str(tmp_path / "d"), "--patches", "3", "--size", "16"]
    )
    assert res.exit_code == 0, res.output
    assert "3 DFC2020 patches per release" in res.output
    out = tmp_path / "t.h5"
    res = runner.invoke(
        cli,
        ["preprocess", "dfc2020", str(tmp_path / "d"), "--split", "test", "--workers", "1",
         "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with Store(out) as store:
        assert store.n_samples == 3 and store.label_set("lc10_map").kind == "map"
        assert store.image_size == (16, 16)
