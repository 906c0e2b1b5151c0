#!/usr/bin/env python3
"""Regenerate the tiny committed dataset fixtures (seeded; run from anywhere).

    python tests/data/make_fixtures.py

Writes, with :mod:`sareval.preprocess.synth_sen12ms` and
:mod:`sareval.preprocess.synth_bigearthnet` (DEFLATE-compressed GeoTIFFs):

- ``tests/data/sen12ms/``    SEN12MS tree: 10 patches of 32 x 32 px in 4 scenes (one season
  each), ``IGBP_probability_labels.pkl``, ``train_list``/``test_list`` ``.pkl`` and ``.txt``;
  one S1 patch has a few NaN pixels.
- ``tests/data/sen12mscr/``  SEN12MS-CR tree for whole scenes of the same patch ids (train and
  test scenes): s1, s2 (equal to SEN12MS) and s2_cloudy.
- ``tests/data/bigearthnet/`` ``BigEarthNet-v1.0/`` and ``BigEarthNet-S1-v1.0/`` with 10 pairs
  of 24 x 24 px (12 x 12 at 20 m, 4 x 4 at 60 m), ``train.csv``, ``val.csv``, ``test.csv``
  (CRLF), ``patches_with_cloud_and_shadow.csv``, ``patches_with_seasonal_snow.csv``.

The same seed gives the same bytes, so regenerating leaves ``git status`` clean.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_sen12ms import generate_sen12ms

HERE = Path(__file__).resolve().parent
SEED = 0
SEN12MS = {"n_patches": 10, "size": 32, "cr_fraction": 0.7}
BIGEARTHNET = {"n_patches": 10, "size": 24}


def main() -> None:
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        generate_sen12ms(Path(tmp) / "out", seed=SEED, compress="deflate", **SEN12MS)
        for name in ("sen12ms", "sen12mscr"):
            shutil.rmtree(HERE / name, ignore_errors=True)
            shutil.move(str(Path(tmp) / "out" / name), HERE / name)
    generate_bigearthnet(
        HERE / "bigearthnet", seed=SEED, compress="deflate", overwrite=True, **BIGEARTHNET
    )
    for name in ("sen12ms", "sen12mscr", "bigearthnet"):
        size = sum(f.stat().st_size for f in (HERE / name).rglob("*") if f.is_file())
        print(f"{HERE / name}: {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
