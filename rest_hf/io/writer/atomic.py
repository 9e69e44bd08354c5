"""Atomic GeoTIFF writing shared by the label and probability writers, and the output-path check.

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

from ..errors import RasterWriteError, gdal_detail, quiet_georeferencing
from ..reader import GeoReference


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


def _class_names(id2label: Mapping[Any, str] | Sequence[str] | None, num_classes: int) -> list[str] | None:
    """Names of classes 0..K-1 from `id2label` (`class_<i>` where it has none); None without `id2label`."""
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


def _class_names_tag(names: list[str]) -> str:
    """The JSON `class_names` tag: `{"0": "background", ...}`."""
    return json.dumps({str(i): name for i, name in enumerate(names)})


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _valid_mask(valid_mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`valid_mask` as a boolean (h, w) array of the window's `shape`; ValueError if its shape differs."""
    mask = _to_numpy(valid_mask).astype(bool)
    if mask.shape != shape:
        raise ValueError(f"valid_mask has shape {mask.shape}, expected {shape}")
    return mask


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
        try:
            self._set_up()
        except Exception as error:
            self.abort()
            raise RasterWriteError(f"cannot set up {self._kind} {self.path}: {gdal_detail(error)}") from error

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

    def _set_up(self) -> None:
        """Hook for subclasses: band descriptions, colour table and tags of the newly created file."""

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
