"""Shared fixtures: tiny georeferenced GeoTIFFs, seeded generators, the real sample rasters.

`make_geotiff(path, array, ...)` writes a small GeoTIFF with a real CRS and an affine transform (non-square
pixels, so swapped axes show up). rasterio is imported only when the fixture is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The real sample rasters (rasterio's test data), shared next to the project: ../shared/data/geotiff
SAMPLE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "geotiff"

# Default georeferencing of synthetic rasters: UTM 18N, 10 m x 12.5 m pixels, north up.
DEFAULT_ORIGIN = (300000.0, 4400000.0)
DEFAULT_PIXEL_SIZE = (10.0, 12.5)


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    dtype: Any = None,
    nodata: float | None = None,
    crs: str | None = "EPSG:32618",
    transform: Any = None,
    tiled: bool = False,
    **profile: Any,
) -> Path:
    """Write `array` ((C, H, W) or (H, W)) as a GeoTIFF; returns the path.

    Args:
        dtype: pixel type (default: the array's).
        nodata: nodata value, or None.
        crs: any CRS rasterio understands, or None for no georeferencing.
        transform: an `affine.Affine`; default: origin (300000, 4400000), pixels 10 m wide and 12.5 m tall.
        tiled: 16 x 16 internal tiles (tiny rasters can be tiled too).
        **profile: extra creation options (e.g. compress="deflate", photometric="RGB").
    """
    import rasterio
    from affine import Affine

    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"array must be (C, H, W) or (H, W), got shape {array.shape}")
    dtype = np.dtype(dtype or array.dtype)
    if transform is None and crs is not None:
        transform = Affine(
            DEFAULT_PIXEL_SIZE[0], 0.0, DEFAULT_ORIGIN[0], 0.0, -DEFAULT_PIXEL_SIZE[1], DEFAULT_ORIGIN[1]
        )
    options: dict[str, Any] = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": dtype.name,
        "nodata": nodata,
    }
    if crs is not None:
        options["crs"] = crs
    if transform is not None:
        options["transform"] = transform
    if tiled:
        options.update(tiled=True, blockxsize=16, blockysize=16)
    options.update(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array.astype(dtype))
    return path


@pytest.fixture
def make_geotiff():
    """The `write_geotiff` function: `make_geotiff(tmp_path / "x.tif", array, dtype=..., nodata=...)`."""
    pytest.importorskip("rasterio")
    return write_geotiff


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator (same numbers in every run)."""
    return np.random.default_rng(0)


@pytest.fixture
def sample_raster():
    """`sample_raster("RGB.byte.tif")` -> path of a real sample raster (skips if the shared data is absent)."""

    def get(name: str) -> Path:
        path = SAMPLE_DIR / name
        if not path.exists():
            pytest.skip(f"sample raster {path} is not available")
        return path

    return get
