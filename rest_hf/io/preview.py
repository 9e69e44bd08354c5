"""Colour PNG previews of label maps (written with GDAL's PNG driver: no Pillow pixel limit)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .colors import palette_to_colormap, resolve_palette
from .errors import RasterWriteError, gdal_detail, quiet_georeferencing
from .writer.atomic import as_numpy, check_output_path
from .writer.temporary import publish_together, temporary_path, unlink_quietly

__all__ = ["render_preview_png", "write_preview_png"]


def write_preview_png(
    labels: Any,
    palette: Sequence[Sequence[int]] | None,
    path: str | Path,
    nodata_value: int | None = 255,
    *,
    overwrite: bool = False,
    max_side: int | None = None,
) -> Path:
    """Write an (H, W) label map as a colour PNG, atomically (temporary file + rename); returns the path.

    Up to 255 classes the PNG is paletted (1 byte per pixel, nodata fully transparent); beyond, it is RGBA.
    The PNG carries no georeferencing (it is a picture; the GeoTIFF is the product).

    Args:
        labels: (H, W) integer class ids (numpy or torch).
        palette: one RGB triple per class, or None for `default_palette` (sized by the largest label).
        path: output .png file.
        nodata_value: label value drawn transparent (e.g. 255 or 65535); None: every value is a class.
        overwrite: replace an existing file (otherwise FileExistsError before any work).
        max_side: if given, subsample (nearest) so that neither side exceeds it.
    """
    path = check_output_path(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        render_preview_png(labels, palette, tmp, nodata_value, max_side=max_side)
        publish_together([(tmp, path)], overwrite)
    except BaseException as error:
        unlink_quietly(tmp)
        if isinstance(error, (FileExistsError, ValueError)) or not isinstance(error, Exception):
            raise
        raise RasterWriteError(f"failed to write preview {path}: {gdal_detail(error)}") from error
    return path


def render_preview_png(
    labels: Any,
    palette: Sequence[Sequence[int]] | None,
    path: Path,
    nodata_value: int | None = 255,
    *,
    max_side: int | None = None,
) -> Path:
    """Write the preview PNG of `write_preview_png` straight to `path` (a temporary: no checks, no rename)."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    labels = as_numpy(labels)
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (H, W) array, got shape {labels.shape}")
    if np.issubdtype(labels.dtype, np.floating):
        raise ValueError("labels must be integer class ids, got a float array")
    if max_side is not None and max(labels.shape) > max_side:
        step = -(-max(labels.shape) // int(max_side))
        labels = labels[::step, ::step]
    valid = labels != nodata_value if nodata_value is not None else np.ones(labels.shape, bool)
    if labels.size and valid.any() and int(labels[valid].min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels[valid].min())}")
    top = int(labels[valid].max()) + 1 if valid.any() else 0
    num_classes = len(palette) if palette is not None else top
    if top > num_classes:
        raise ValueError(f"label {top - 1} has no colour: the palette has {num_classes} colours")
    colours = resolve_palette(palette, num_classes)
    height, width = labels.shape
    with quiet_georeferencing(), MemoryFile() as memfile:
        if num_classes <= 255 and (nodata_value is None or 0 <= nodata_value <= 255):
            data = np.where(valid, labels, 0 if nodata_value is None else nodata_value).astype(np.uint8)
            # TIFF colour maps carry no alpha: the nodata value makes the PNG driver write it transparent
            with memfile.open(
                driver="GTiff", height=height, width=width, count=1, dtype="uint8", nodata=nodata_value
            ) as mem:
                mem.write(data[None])
                mem.write_colormap(1, palette_to_colormap(colours, nodata_value))
        else:
            lut = np.zeros((num_classes + 1, 4), dtype=np.uint8)
            lut[:num_classes, :3] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
            lut[:num_classes, 3] = 255
            index = np.where(valid, labels, num_classes).astype(np.int64)
            rgba = np.moveaxis(lut[index], -1, 0)
            with memfile.open(driver="GTiff", height=height, width=width, count=4, dtype="uint8") as mem:
                mem.write(rgba)
        with memfile.open() as src:
            rasterio.shutil.copy(src, path, driver="PNG")
    path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)
    return path
