"""Errors raised by rest_hf.io: one-line messages that name the file (and the window) involved."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["RasterReadError", "RasterWriteError", "quiet_georeferencing"]


class RasterReadError(ValueError):
    """A raster could not be opened or a window of it could not be read (corrupt, truncated, unsupported).

    The message names the file and, for pixel reads, the window that failed; the underlying rasterio/GDAL
    error is chained as `__cause__`.
    """


class RasterWriteError(OSError):
    """An output raster could not be written (disk full, permission, GDAL failure); names the file."""


@contextlib.contextmanager
def quiet_georeferencing() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning, expected for PNG/JPEG inputs and their outputs."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def gdal_detail(error: BaseException) -> str:
    """The most useful one-line text of a rasterio error (its GDAL cause when rasterio says 'see previous')."""
    detail = str(error)
    cause = error.__cause__ or error.__context__
    if cause is not None and ("previous exception" in detail or not detail):
        detail = str(cause) or detail
    return " ".join(detail.split())
