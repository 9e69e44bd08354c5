"""Class-label GeoTIFFs written window by window (`LabelWriter`) or at once (`write_labels`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import class_names, class_names_tag
from ..colors import palette_to_colormap, resolve_palette
from .atomic import AtomicGeoTIFFWriter, as_numpy, window_valid_mask


def label_dtype(num_classes: int) -> tuple[str, int]:
    """(dtype, nodata) of a label raster: uint8/255 up to 255 classes, else uint16/65535."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if num_classes <= 255:
        return "uint8", 255
    if num_classes <= 65535:
        return "uint16", 65535
    raise ValueError(f"at most 65535 classes fit a label raster, got {num_classes}")


class LabelWriter(AtomicGeoTIFFWriter):
    """A class-label GeoTIFF written window by window.

    Output: one band, tiled (`blocksize`), deflate-compressed, with the georeferencing and size of `like`;
    uint8 with nodata 255 for up to 255 classes, else uint16 with nodata 65535; a colour table (from `palette`,
    else `default_palette`; nodata transparent); class names as band description "class", tags
    `CLASS_<id>=<name>` and a JSON tag `class_names` (`{"0": "background", ...}`) when `id2label` is given;
    tag `NUM_CLASSES`. Pixels never written read back as nodata. `cog=True` produces a Cloud-Optimized GeoTIFF
    (tiled, with nearest-neighbour overviews) on commit.

    Args:
        path: the output file.
        like: RasterSource / GeoReference / rasterio dataset giving height, width, crs and transform.
        num_classes: K; labels are 0..K-1.
        palette: one RGB triple per class (e.g. `config.palette`), or None.
        id2label: class names (e.g. `config.id2label`), or None.
        overwrite: replace an existing output; otherwise it is refused (FileExistsError) at construction.
        cog: write a COG.
        blocksize: tile size (multiple of 16; 256 or 512 recommended).

    Example:
        >>> with LabelWriter("labels.tif", source, num_classes=6, id2label=config.id2label) as writer:
        ...     for top, left, labels, valid in tiles:
        ...         writer.write(labels, top, left, valid_mask=valid)
    """

    _kind = "label raster"
    _overview_resampling = "nearest"

    def __init__(
        self,
        path: str | Path,
        like: Any,
        num_classes: int,
        *,
        palette: Sequence[Sequence[int]] | None = None,
        id2label: Mapping[Any, str] | Sequence[str] | None = None,
        overwrite: bool = False,
        cog: bool = False,
        blocksize: int = 512,
    ) -> None:
        dtype, nodata = label_dtype(int(num_classes))
        self.num_classes = int(num_classes)
        self.palette = resolve_palette(palette, self.num_classes)
        self.class_names = None if id2label is None else class_names(id2label, self.num_classes)
        super().__init__(
            path,
            like,
            count=1,
            dtype=dtype,
            nodata=nodata,
            overwrite=overwrite,
            cog=cog,
            blocksize=blocksize,
            predictor=2,
        )

    def _set_up(self) -> None:
        ds = self._ds
        ds.write_colormap(1, palette_to_colormap(self.palette, self.nodata))  # type: ignore[union-attr]
        ds.set_band_description(1, "class")  # type: ignore[union-attr]
        tags: dict[str, str] = {"NUM_CLASSES": str(self.num_classes)}
        if self.class_names is not None:
            tags.update({f"CLASS_{i}": name for i, name in enumerate(self.class_names)})
            tags["class_names"] = class_names_tag(self.class_names)
        ds.update_tags(**tags)  # type: ignore[union-attr]

    def write(self, labels: Any, top: int = 0, left: int = 0, valid_mask: Any = None) -> None:
        """Write an (h, w) window of class ids at (top, left); pixels where `valid_mask` is False become nodata.

        Raises:
            ValueError: the window leaves the raster, or a label is outside 0..K-1 (and is not the nodata value).
        """
        labels = as_numpy(labels)
        if labels.ndim == 3 and labels.shape[0] == 1:
            labels = labels[0]
        if labels.ndim != 2:
            raise ValueError(f"labels must be an (h, w) array, got shape {labels.shape}")
        top, left, h, w = self._check_window(labels.shape, top, left)
        if labels.size:
            if np.issubdtype(labels.dtype, np.floating):
                raise ValueError(
                    "labels must be integer class ids, got a float array (take the argmax first)"
                )
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                bad = labels[(labels < 0) | ((labels >= self.num_classes) & (labels != self.nodata))]
                if bad.size:
                    raise ValueError(
                        f"label {int(bad.flat[0])} is outside 0..{self.num_classes - 1} "
                        f"(nodata is {self.nodata}) in window (top={top}, left={left})"
                    )
        data = labels.astype(self.dtype, copy=True)
        if valid_mask is not None:
            data[~window_valid_mask(valid_mask, data.shape)] = self.nodata
        self._write(data[None], top, left)


def write_labels(
    path: str | Path,
    labels: Any,
    like: Any,
    num_classes: int,
    *,
    palette: Sequence[Sequence[int]] | None = None,
    id2label: Mapping[Any, str] | Sequence[str] | None = None,
    valid_mask: Any = None,
    overwrite: bool = False,
    cog: bool = False,
    blocksize: int = 512,
) -> Path:
    """Write a whole (H, W) label map at once (see LabelWriter); returns the output path."""
    with LabelWriter(
        path,
        like,
        num_classes,
        palette=palette,
        id2label=id2label,
        overwrite=overwrite,
        cog=cog,
        blocksize=blocksize,
    ) as writer:
        writer.write(labels, 0, 0, valid_mask=valid_mask)
    return writer.path
