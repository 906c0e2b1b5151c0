"""``sareval info``: store summaries (checked against numpy) and dispatch for model files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sareval.cli import cli
from sareval.commands import info as info_command
from sareval.store import Store
from sareval.store_summary import cloud_cover_histogram


def info(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["info", str(path)])
    return result.exit_code, result.output


def test_store_summary(tiny_store: Path) -> None:
    code, out = info(tiny_store)
    assert code == 0, out
    with Store(tiny_store) as store:
        cover = store.cloud_cover()
        n_nan = int(np.isnan(store.file["s1"][()]).sum())
        subsets = {name: len(s) for name, s in store.subsets.items()}
    assert "sen12ms, split test: 12 samples" in out and "8x8 px" in out
    assert "single-label" in out and "igbp10_multi" in out and "threshold 0.1" in out
    assert "[VV, VH]" in out and "B8A" in out and "available for 6 of 12" in out
    for name, size in subsets.items():
        assert re.search(rf"^\s+{name}\s+{size}\s", out, re.M), (name, out)
    assert re.search(rf"^\s+s1\s+{n_nan} values in 1 samples", out, re.M)
    # the histogram: an independent count in 10 % bins
    finite = cover[np.isfinite(cover)]
    expected = [
        int(((finite >= b / 10) & ((finite < (b + 1) / 10) | (b == 9))).sum()) for b in range(10)
    ]
    got = [int(m) for m in re.findall(r"^\s+\[\s*\d+,\s*\d+[)\]] %\s+(\d+)", out, re.M)]
    assert got == expected and sum(got) == 6
    # the cloudy subset's mean cover is shown, the clear one's is not (it reads clear optical)
    assert re.search(r"^\s+cloudy\s+6\s+s2_cloudy\s+\d+\.\d%", out, re.M)
    assert re.search(r"^\s+clear\s+12\s+s2\s+-", out, re.M)


def test_histogram_edges() -> None:
    cover = np.array([0.0, 0.0999, 0.1, 0.55, 0.9, 0.95, 1.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(cloud_cover_histogram(cover), [2, 1, 0, 0, 0, 1, 0, 0, 0, 3])


def test_missing_partial_and_foreign_files(tmp_path: Path) -> None:
    code, out = info(tmp_path / "none.h5")
    assert code == 1 and "file not found" in out and "Traceback" not in out
    (tmp_path / "half.h5.partial").write_bytes(b"x")
    code, out = info(tmp_path / "half.h5")
    assert code == 1 and "partial" in out
    (tmp_path / "notes.txt").write_text("hello")
    code, out = info(tmp_path / "notes.txt")
    assert code == 1 and "not a store" in out
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    code, out = info(tmp_path / "broken.h5")
    assert code == 1 and "not an HDF5 file" in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".json"])
def test_model_files_go_to_describe_model(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def fake(path: Path) -> str:
        seen.append(Path(path))
        return "MODEL SUMMARY"

    monkeypatch.setattr(info_command, "describe_model", fake)  # as `sareval info` calls it
    model = tmp_path / f"m{suffix}"
    model.write_bytes(b"{}")
    code, out = info(model)
    assert code == 0 and out.strip() == "MODEL SUMMARY" and seen == [model]
