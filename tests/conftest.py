"""Shared fixtures: tiny stores written with the real StoreWriter, paths to generated fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sareval.classes import IGBP10
from sareval.store import LabelSpec, SensorSpec, StoreWriter

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    """A 12-sample SEN12MS-like store (8x8 px) with a cloudy source for half the rows."""
    rng = np.random.default_rng(0)
    n, h, w = 12, 8, 8
    ids = [f"ROIs1158_spring_{i // 4}_p{i}" for i in range(n)]
    s1 = rng.normal(-15, 4, size=(n, 2, h, w)).astype(np.float32)
    s1[2, 1, 3, 3] = np.nan
    s2 = rng.integers(0, 6000, size=(n, 13, h, w)).astype(np.uint16)
    cloudy = np.clip(s2.astype(np.int64) + 3000, 0, 65535).astype(np.uint16)
    available = np.arange(n) % 2 == 0
    cloudy[~available] = 0
    y = rng.integers(0, 10, size=n)
    out = tmp_path / "tiny.h5"
    writer = StoreWriter(
        out,
        dataset="sen12ms",
        split="test",
        default_task="single-label",
        ids=ids,
        height=h,
        width=w,
        sensors=[
            SensorSpec("s1", ("VV", "VH"), "float32"),
            SensorSpec(
                "s2",
                tuple(
                    f"B{b}"
                    for b in (
                        "01",
                        "02",
                        "03",
                        "04",
                        "05",
                        "06",
                        "07",
                        "08",
                        "8A",
                        "09",
                        "10",
                        "11",
                        "12",
                    )
                ),
                "uint16",
            ),
        ],
        labels=[
            LabelSpec("igbp10_single", "index", IGBP10),
            LabelSpec("igbp10_multi", "multi_hot", IGBP10, 0.1),
        ],
        config={"fixture": "tiny"},
        with_cloudy=True,
    )
    for a in range(0, n, 5):
        b = min(a + 5, n)
        writer.write_rows(
            a,
            {"s1": s1[a:b], "s2": s2[a:b], "s2_cloudy": cloudy[a:b]},
            {"igbp10_single": y[a:b], "igbp10_multi": np.eye(10, dtype=np.uint8)[y[a:b]]},
            cloud_cover=np.where(available[a:b], np.linspace(0.5, 1.0, n)[a:b], np.nan),
            cloudy_available=available[a:b],
        )
    rows = np.arange(n)
    writer.finish(
        {
            "clear": (rows, "s2", "all rows, clear optical"),
            "cloudy": (rows[available], "s2_cloudy", "rows with a cloudy version"),
        }
    )
    return out
