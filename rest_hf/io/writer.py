"""Georeferenced outputs written window by window, made visible atomically.

Every writer creates a hidden temporary file next to the output (`.NAME.<random>.tmp`), accepts windows in any
order, and on `commit()` (or `close()`, or leaving a `with` block normally) renames it onto the final path with
`os.replace`. On `abort()` (or an exception inside the `with` block) the temporary file is deleted: the final
path never holds a half-written raster. With `overwrite=False` an existing output is refused before any work.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .colors import palette_to_colormap, resolve_palette
from .errors import RasterWriteError, gdal_detail, quiet_georeferencing
from .reader import GeoReference

__all__ = [
    "LabelWriter",
    "ProbabilityWriter",
    "check_output_path",
    "float16_supported",
    "label_dtype",
    "write_labels",
    "write_probabilities",
]


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output that exists (unless `overwrite`) or cannot be created; call it before any work.

    Raises:
        FileExistsError: "output X exists; pass --overwrite to replace it".
        IsADirectoryError / PermissionError: the path is a folder, or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the folders will be created: the nearest existing one must be writable
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write output {path}: folder {parent} is not writable")
    return path


def label_dtype(num_classes: int) -> tuple[str, int]:
    """(dtype, nodata) of a label raster: uint8/255 up to 255 classes, else uint16/65535."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if num_classes <= 255:
        return "uint8", 255
    if num_classes <= 65535:
        return "uint16", 65535
    raise ValueError(f"at most 65535 classes fit a label raster, got {num_classes}")


def float16_supported() -> bool:
    """Whether this rasterio/GDAL can write Float16 GeoTIFFs (GDAL >= 3.11 with a rasterio that knows it)."""
    try:
        from rasterio.dtypes import check_dtype

        return bool(check_dtype("float16"))
    except Exception:  # pragma: no cover - very old rasterio
        return False


def _class_names(id2label: Mapping[Any, str] | Sequence[str] | None, num_classes: int) -> list[str] | None:
    if id2label is None:
        return None
    names = [f"class_{i}" for i in range(num_classes)]
    if isinstance(id2label, Mapping):
        for key, value in id2label.items():
            if 0 <= int(key) < num_classes:
                names[int(key)] = str(value)
    else:
        for i, value in enumerate(list(id2label)[:num_classes]):
            names[i] = str(value)
    return names


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


class _AtomicGeoTIFFWriter:
    """Shared machinery: temp file, windowed writes, commit (optional COG translation) and abort."""

    _kind = "output"
    _overview_resampling = "nearest"

    def __init__(
        self,
        path: str | Path,
        like: Any,
        *,
        count: int,
        dtype: str,
        nodata: float | None,
        overwrite: bool,
        cog: bool,
        blocksize: int,
        predictor: int,
    ) -> None:
        import rasterio

        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        self.cog = cog
        if blocksize <= 0 or blocksize % 16:
            raise ValueError(
                f"blocksize must be a positive multiple of 16 (e.g. 256 or 512), got {blocksize}"
            )
        self.blocksize = blocksize
        geo = GeoReference.of(like)
        self.height, self.width = geo.height, geo.width
        self.crs, self.transform = geo.crs, geo.transform
        if self.crs is None and self.transform is not None and self.transform.is_identity:
            self.transform = None  # an ungeoreferenced input (PNG/JPEG): write no georeferencing either
        self.count, self.dtype, self.nodata = count, np.dtype(dtype), nodata
        self._tmp_paths: list[Path] = []
        self._ds = None
        self._state = "open"  # -> "committed" | "aborted"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._new_tmp()
        profile = {
            "driver": "GTiff",
            "height": self.height,
            "width": self.width,
            "count": count,
            "dtype": self.dtype.name,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": blocksize,
            "blockysize": blocksize,
            "compress": "deflate",
            "predictor": predictor,
            "bigtiff": "IF_SAFER",
        }
        if self.crs is not None:
            profile["crs"] = self.crs
        if self.transform is not None:
            profile["transform"] = self.transform
        try:
            with quiet_georeferencing():
                self._ds = rasterio.open(tmp, "w", **profile)
        except Exception as error:
            self.abort()
            raise RasterWriteError(f"cannot create {self._kind} {self.path}: {gdal_detail(error)}") from error

    # ------------------------------------------------------------ internals
    def _new_tmp(self) -> Path:
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:10]}.tmp"
        self._tmp_paths.append(tmp)
        return tmp

    def _check_window(self, shape: tuple[int, ...], top: int, left: int) -> tuple[int, int, int, int]:
        if self._state != "open" or self._ds is None:
            raise RuntimeError(f"the writer of {self.path} is already {self._state}")
        h, w = int(shape[-2]), int(shape[-1])
        top, left = int(top), int(left)
        if top < 0 or left < 0 or top + h > self.height or left + w > self.width:
            raise ValueError(
                f"window (top={top}, left={left}, height={h}, width={w}) is outside the "
                f"{self.height} x {self.width} {self._kind} {self.path}"
            )
        return top, left, h, w

    def _write(self, data: np.ndarray, top: int, left: int) -> None:
        from rasterio.windows import Window

        h, w = data.shape[-2:]
        try:
            with quiet_georeferencing():
                self._ds.write(data, window=Window(left, top, w, h))  # type: ignore[union-attr]
        except Exception as error:
            raise RasterWriteError(
                f"failed to write window (top={top}, left={left}, height={h}, width={w}) of {self._kind} "
                f"{self.path}: {gdal_detail(error)}"
            ) from error

    def _finalise_metadata(self) -> None:
        """Hook for subclasses: last metadata before the file is closed."""

    # --------------------------------------------------------------- public
    def commit(self) -> Path:
        """Flush, translate to COG if requested, and move the file onto the final path; returns that path.

        Calling it again is a no-op. On failure the temporary files are removed and the error is raised.
        """
        if self._state == "committed":
            return self.path
        if self._state == "aborted":
            raise RuntimeError(f"the writer of {self.path} was aborted; nothing to commit")
        import rasterio.shutil

        try:
            self._finalise_metadata()
            with quiet_georeferencing():
                self._ds.close()  # type: ignore[union-attr]
            final_tmp = self._tmp_paths[-1]
            if self.cog:
                cog_tmp = self._new_tmp()
                with quiet_georeferencing():
                    rasterio.shutil.copy(
                        final_tmp,
                        cog_tmp,
                        driver="COG",
                        compress="DEFLATE",
                        blocksize=self.blocksize,
                        overview_resampling=self._overview_resampling,
                        bigtiff="IF_SAFER",
                    )
                final_tmp.unlink()
                final_tmp = cog_tmp
            if self.path.exists() and not self.overwrite:
                raise FileExistsError(f"output {self.path} exists; pass --overwrite to replace it")
            os.replace(final_tmp, self.path)
        except BaseException as error:
            self.abort()
            if isinstance(error, (FileExistsError, RasterWriteError)) or not isinstance(error, Exception):
                raise
            raise RasterWriteError(
                f"failed to finish {self._kind} {self.path}: {gdal_detail(error)}"
            ) from error
        self._state = "committed"
        self._cleanup_tmp()
        return self.path

    def close(self) -> Path:
        """Same as `commit()`."""
        return self.commit()

    def abort(self) -> None:
        """Discard everything written: remove the temporary files; the final path is left untouched."""
        if self._ds is not None and not self._ds.closed:
            try:
                with quiet_georeferencing():
                    self._ds.close()
            except Exception:
                pass
        if self._state == "open":
            self._state = "aborted"
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        for tmp in self._tmp_paths:
            for candidate in (tmp, tmp.with_name(tmp.name + ".aux.xml")):
                try:
                    candidate.unlink()
                except FileNotFoundError:
                    pass
                except OSError:  # pragma: no cover - best effort
                    pass

    @property
    def state(self) -> str:
        """ "open", "committed" or "aborted"."""
        return self._state

    def __enter__(self):
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            if self._state == "open":
                self.abort()
        except Exception:
            pass


class LabelWriter(_AtomicGeoTIFFWriter):
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
        self.class_names = _class_names(id2label, self.num_classes)
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
        try:
            ds = self._ds
            ds.write_colormap(1, palette_to_colormap(self.palette, nodata))  # type: ignore[union-attr]
            ds.set_band_description(1, "class")  # type: ignore[union-attr]
            tags: dict[str, str] = {"NUM_CLASSES": str(self.num_classes)}
            if self.class_names is not None:
                tags.update({f"CLASS_{i}": name for i, name in enumerate(self.class_names)})
                tags["class_names"] = json.dumps({str(i): n for i, n in enumerate(self.class_names)})
            ds.update_tags(**tags)  # type: ignore[union-attr]
        except Exception as error:
            self.abort()
            raise RasterWriteError(f"cannot set up label raster {self.path}: {gdal_detail(error)}") from error

    def write(self, labels: Any, top: int = 0, left: int = 0, valid_mask: Any = None) -> None:
        """Write an (h, w) window of class ids at (top, left); pixels where `valid_mask` is False become nodata.

        Raises:
            ValueError: the window leaves the raster, or a label is outside 0..K-1 (and is not the nodata value).
        """
        labels = _to_numpy(labels)
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
            mask = _to_numpy(valid_mask).astype(bool)
            if mask.shape != data.shape:
                raise ValueError(f"valid_mask has shape {mask.shape}, expected {data.shape}")
            data[~mask] = self.nodata
        self._write(data[None], top, left)


class ProbabilityWriter(_AtomicGeoTIFFWriter):
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
        self.class_names = _class_names(id2label, self.num_classes)
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
        try:
            names = self.class_names or [f"class_{i}" for i in range(self.num_classes)]
            for band, name in enumerate(names, start=1):
                self._ds.set_band_description(band, name)  # type: ignore[union-attr]
            tags = {"NUM_CLASSES": str(self.num_classes), "CONTENT": "class probabilities"}
            if self.class_names is not None:
                tags["class_names"] = json.dumps({str(i): n for i, n in enumerate(self.class_names)})
            self._ds.update_tags(**tags)  # type: ignore[union-attr]
        except Exception as error:
            self.abort()
            raise RasterWriteError(
                f"cannot set up probability raster {self.path}: {gdal_detail(error)}"
            ) from error

    def write(self, probabilities: Any, top: int = 0, left: int = 0, valid_mask: Any = None) -> None:
        """Write a (K, h, w) window at (top, left); pixels where `valid_mask` is False become NaN."""
        probs = _to_numpy(probabilities)
        if probs.ndim != 3 or probs.shape[0] != self.num_classes:
            raise ValueError(f"probabilities must be ({self.num_classes}, h, w), got shape {probs.shape}")
        top, left, h, w = self._check_window(probs.shape, top, left)
        data = probs.astype(self.dtype, copy=True)
        if valid_mask is not None:
            mask = _to_numpy(valid_mask).astype(bool)
            if mask.shape != data.shape[1:]:
                raise ValueError(f"valid_mask has shape {mask.shape}, expected {data.shape[1:]}")
            data[:, ~mask] = np.nan
        self._write(data, top, left)


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
    probs = _to_numpy(probabilities)
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
