"""Opening scene files through `rest_hf.io.RasterSource` (windowed reads with rasterio)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def open_raster(path: str, bands: Sequence[int] | None = None, mask_alpha: bool = True) -> Any:
    """A `RasterSource` (context manager) for windowed reads of `path`."""
    from ..io import RasterSource

    return RasterSource(path, bands=None if bands is None else list(bands), mask_alpha=mask_alpha)


__all__ = ["open_raster"]
