"""Per-class probability GeoTIFFs written window by window (`ProbabilityWriter`) or at once
(`write_probabilities`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import class_names, class_names_tag
from .atomic import AtomicGeoTIFFWriter, as_numpy, window_valid_mask


def float16_supported() -> bool:
    """Whether this rasterio/GDAL can write Float16 GeoTIFFs (GDAL >= 3.11 with a rasterio that knows it)."""
    try:
        from rasterio.dtypes import check_dtype

        return bool(check_dtype("float16"))
    except Exception:  # pragma: no cover - very old rasterio
        return False


class ProbabilityWriter(AtomicGeoTIFFWriter):
    """Per-class probabilities: a K-band float GeoTIFF written window by window (same atomic semantics).

    Band k holds class k (band description: its name when `id2label` is given, else `class_<k>`); nodata is
    NaN (pixels where `valid_mask` is False, and pixels never written). Tiled, deflate with the floating-point
    predictor; `cog=True` gives a COG with averaged overviews.

    `dtype="float16"` is honoured only when rasterio/GDAL can write Float16 (GDAL >= 3.11 and a rasterio that
    knows it; see `float16_supported()`); otherwise the file is float32 and `self.dtype` says so. (With the
    rasterio 1.4 / GDAL 3.10 of this project's environment, Float16 is not available.)
    """

    _kind = "probability raster"
    _overview_resampling = "average"

    def __init__(
        self,
        path: str | Path,
        like: Any,
        num_classes: int,
        *,
        dtype: str = "float32",
        id2label: Mapping[Any, str] | Sequence[str] | None = None,
        overwrite: bool = False,
        cog: bool = False,
        blocksize: int = 512,
    ) -> None:
        dtype = np.dtype(dtype).name
        if dtype not in ("float16", "float32"):
            raise ValueError(f"probabilities are stored as float16 or float32, got {dtype}")
        self.requested_dtype = dtype
        if dtype == "float16" and not float16_supported():
            dtype = "float32"
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.class_names = None if id2label is None else class_names(id2label, self.num_classes)
        super().__init__(
            path,
            like,
            count=self.num_classes,
            dtype=dtype,
            nodata=float("nan"),
            overwrite=overwrite,
            cog=cog,
            blocksize=blocksize,
            predictor=3,
        )

    def _set_up(self) -> None:
        names = self.class_names or class_names(None, self.num_classes)
        for band, name in enumerate(names, start=1):
            self._ds.set_band_description(band, name)  # type: ignore[union-attr]
        tags = {"NUM_CLASSES": str(self.num_classes), "CONTENT": "class probabilities"}
        if self.class_names is not None:
            tags["class_names"] = class_names_tag(self.class_names)
        self._ds.update_tags(**tags)  # type: ignore[union-attr]

    def write(self, probabilities: Any, top: int = 0, left: int = 0, valid_mask: Any = None) -> None:
        """Write a (K, h, w) window at (top, left); pixels where `valid_mask` is False become NaN."""
        probs = as_numpy(probabilities)
        if probs.ndim != 3 or probs.shape[0] != self.num_classes:
            raise ValueError(f"probabilities must be ({self.num_classes}, h, w), got shape {probs.shape}")
        top, left, h, w = self._check_window(probs.shape, top, left)
        data = probs.astype(self.dtype, copy=True)
        if valid_mask is not None:
            data[:, ~window_valid_mask(valid_mask, data.shape[1:])] = np.nan
        self._write(data, top, left)


def write_probabilities(
    path: str | Path,
    probabilities: Any,
    like: Any,
    *,
    dtype: str = "float32",
    id2label: Mapping[Any, str] | Sequence[str] | None = None,
    valid_mask: Any = None,
    overwrite: bool = False,
    cog: bool = False,
    blocksize: int = 512,
) -> Path:
    """Write a whole (K, H, W) probability array at once (see ProbabilityWriter); returns the output path."""
    probs = as_numpy(probabilities)
    with ProbabilityWriter(
        path,
        like,
        probs.shape[0],
        dtype=dtype,
        id2label=id2label,
        overwrite=overwrite,
        cog=cog,
        blocksize=blocksize,
    ) as writer:
        writer.write(probs, 0, 0, valid_mask=valid_mask)
    return writer.path
