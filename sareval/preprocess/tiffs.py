"""Reading one GeoTIFF with the checks every dataset reader needs (rasterio).

:func:`read_geotiff` returns the full array as stored (``(bands, H, W)``, no scaling, no nodata
masking) plus the affine transform and CRS, after checking the driver, band count, dtype and
size; any problem is an :class:`~sareval.errors.InputFileError` naming the file.
``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (see :func:`gdal_env`) stops GDAL from listing the
patch's folder on every open (sidecar files do not change the pixel values).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from sareval.errors import InputFileError


@dataclass
class GeoTiff:
    """Pixels ``(bands, H, W)`` with the affine transform (6 floats) and CRS string."""

    data: np.ndarray
    transform: tuple[float, ...]
    crs: str


def gdal_env() -> Any:
    """A rasterio environment for fast reading of many small files."""
    return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


def read_geotiff(
    path: str | Path,
    *,
    bands: int,
    dtype: str | None,
    size: tuple[int, int] | None = None,
    what: str = "",
) -> GeoTiff:
    """Read all bands of ``path``; check ``bands`` count, ``dtype`` (None: any integer type)
    and ``size`` (H, W)."""
    label = f" ({what})" if what else ""
    try:
        with rasterio.open(path) as src:
            if src.driver != "GTiff":
                raise InputFileError(path, f"not a GeoTIFF (GDAL reads it as {src.driver})")
            if src.count != bands:
                raise InputFileError(path, f"{src.count} bands, expected {bands}{label}")
            got = ",".join(sorted(set(src.dtypes)))
            if dtype is None and np.dtype(src.dtypes[0]).kind not in "ui":
                raise InputFileError(path, f"dtype {got}, expected an integer type{label}")
            if dtype is not None and got != dtype:
                raise InputFileError(path, f"dtype {got}, expected {dtype}{label}")
            if size is not None and (src.height, src.width) != tuple(size):
                raise InputFileError(
                    path,
                    f"size {src.height}x{src.width}, expected {size[0]}x{size[1]}{label}",
                )
            data = src.read()
            transform = tuple(float(v) for v in src.transform[:6])
            crs = src.crs.to_string() if src.crs else ""
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (RasterioError, OSError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not Path(path).is_file():
            raise InputFileError(path, "file not found") from None
        raise InputFileError(
            path, f"not a readable GeoTIFF (truncated or not a TIFF: {problem[:160]})"
        ) from None
    return GeoTiff(data, transform, crs)


def reference_size(paths: list[Path]) -> tuple[int, int]:
    """The (height, width) most of ``paths`` have (ties: the first path's), so that a single
    wrong-sized file is the one reported later, not its correct neighbours."""
    sizes = [tiff_size(p) for p in paths]
    return max(sizes, key=lambda s: (sizes.count(s), -sizes.index(s)))


def tiff_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a raster, read from its header only."""
    try:
        with rasterio.open(path) as src:
            return src.height, src.width
    except (RasterioError, OSError) as e:
        if not Path(path).is_file():
            raise InputFileError(path, "file not found") from None
        raise InputFileError(path, f"not a readable GeoTIFF ({str(e)[:160]})") from None
