"""Cloud-cover detectors against the generator's exact coverage.

Usage: ``python benchmarks/cloud_cover_accuracy.py [--patches 60] [--size 64] [--seed 3]``.
Generates a SEN12MS-CR tree, reads every ``s2_cloudy`` patch with rasterio and prints, per
detector (s2cloudless when importable, and the fallback), the correlation and the mean absolute
error of its coverage against the coverage the generator drew (fraction of pixels with cloud
opacity >= 0.5).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from sareval.bands import S2_BANDS
from sareval.preprocess.cloud_cover import choose_detector, s2cloudless_available
from sareval.preprocess.synth_sen12ms import generate_sen12ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        info = generate_sen12ms(Path(tmp), n_patches=args.patches, size=args.size, seed=args.seed)
        files = {p.name: p for p in (Path(tmp) / "sen12mscr").rglob("*_s2_cloudy_*.tif")}
        names = sorted(info["cloud_cover"])
        true = np.array([info["cloud_cover"][n] for n in names])
        patches = []
        for name in names:
            with rasterio.open(files[name.replace("_s2_", "_s2_cloudy_")]) as src:
                patches.append(src.read())
    s2 = np.stack(patches)
    print(
        f"{len(names)} cloudy patches at {args.size} px; s2cloudless importable: "
        f"{s2cloudless_available()}"
    )
    for use in (True, False) if s2cloudless_available() else (False,):
        det = choose_detector(S2_BANDS, use_s2cloudless=use)
        est = det.cover(s2)
        print(
            f"{det.kind:12s} corr {np.corrcoef(true, est)[0, 1]:.3f}  "
            f"mean abs err {np.abs(true - est).mean():.3f}  ({det.method})"
        )


if __name__ == "__main__":
    main()
