"""Atomic GeoTIFF writing shared by the label and probability writers, and the output-path check.

Every writer creates a hidden temporary file next to the output (`.rest-hf-<host>-<pid>-<random>.tmp`, see
`temporary`), accepts windows in any order, and on `commit()` (or `close()`, or leaving a `with` block normally)
renames it onto the final path with `os.replace`; `finish()` stops before the rename, so that several outputs
can be published together (`publish_together`). On `abort()` (or an exception inside the `with` block) the temporary file is deleted: the final
path never holds a half-written raster. With `overwrite=False` an existing output is refused before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RasterWriteError, gdal_detail, quiet_georeferencing
from ..reader import GeoReference
from .temporary import publish_together, temporary_path, unlink_quietly


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse an output that exists (unless `overwrite`) or cannot be created; call it before any work.

    Only a regular file (or a new path) is ever replaced: a device node, a FIFO or a socket is refused even
    with `overwrite` (as root, `-o /dev/null --overwrite` would otherwise replace /dev/null).

    Raises:
        FileExistsError: "output X exists; pass --overwrite to replace it".
        IsADirectoryError / PermissionError / ValueError: the path is empty, a folder, not a regular file, too
            long a name, under a file, or its folder is not writable.
    """
    import stat

    if str(path) == "":
        raise ValueError("the output path is empty; give a file name")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give a file name")
    if len(os.fsencode(path.name)) > 255:
        raise ValueError(
            f"output name {path.name[:40]}... is {len(os.fsencode(path.name))} bytes; the limit is 255"
        )
    if path.exists() or path.is_symlink():
        if not path.exists() or not stat.S_ISREG(path.stat().st_mode):  # a dangling link, a device, a FIFO
            raise ValueError(f"output {path} exists and is not a regular file; choose another path")
        if not overwrite:
            raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the folders will be created: the nearest existing one must be writable
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write output {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write output {path}: folder {parent} is not writable")
    return path


def as_numpy(array: Any) -> np.ndarray:
    """A numpy array of `array` (a torch tensor is moved to the CPU first)."""
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def window_valid_mask(valid_mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`valid_mask` as a boolean (h, w) array of the window's `shape`; ValueError if its shape differs."""
    mask = as_numpy(valid_mask).astype(bool)
    if mask.shape != shape:
        raise ValueError(f"valid_mask has shape {mask.shape}, expected {shape}")
    return mask


class AtomicGeoTIFFWriter:
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
        self.gcps = geo.gcps if geo.crs is None else None  # a scene georeferenced by GCPs only keeps them
        self.rpcs = geo.rpcs
        if self.crs is None and self.transform is not None and self.transform.is_identity:
            self.transform = None  # an ungeoreferenced input (PNG/JPEG): write no georeferencing either
        self.count, self.dtype, self.nodata = count, np.dtype(dtype), nodata
        self._tmp_paths: list[Path] = []
        self._ds = None
        self._state = "open"  # -> "finished" -> "committed"; or "aborted"
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
            if self.gcps is not None:
                self._ds.gcps = self.gcps
            if self.rpcs is not None:
                self._ds.rpcs = self.rpcs
            self._set_up()
        except Exception as error:
            self.abort()
            raise RasterWriteError(f"cannot set up {self._kind} {self.path}: {gdal_detail(error)}") from error

    # ------------------------------------------------------------ internals
    def _new_tmp(self) -> Path:
        tmp = temporary_path(self.path)
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
    def finish(self) -> Path:
        """Flush and close the file (translated to COG if requested) under its temporary name; returns it.

        The final path is not touched: `commit()` (or `rest_hf.io.writer.publish_together` for several
        outputs at once) moves it there. On failure the temporary files are removed and the error is raised.
        """
        if self._state == "finished":
            return self._tmp_paths[-1]
        if self._state != "open":
            raise RuntimeError(f"the writer of {self.path} is already {self._state}")
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
                unlink_quietly(final_tmp)
        except BaseException as error:
            self.abort()
            if isinstance(error, RasterWriteError) or not isinstance(error, Exception):
                raise
            raise RasterWriteError(
                f"failed to finish {self._kind} {self.path}: {gdal_detail(error)}"
            ) from error
        self._state = "finished"
        return self._tmp_paths[-1]

    def commit(self) -> Path:
        """`finish()` and move the file onto the final path; returns that path.

        Calling it again is a no-op. On failure the temporary files are removed, any existing output is left
        as it was, and the error is raised.
        """
        if self._state == "committed":
            return self.path
        if self._state == "aborted":
            raise RuntimeError(f"the writer of {self.path} was aborted; nothing to commit")
        finished = self.finish()
        try:
            publish_together([(finished, self.path)], self.overwrite)
        except BaseException as error:
            self.abort()
            if isinstance(error, FileExistsError) or not isinstance(error, Exception):
                raise
            raise RasterWriteError(
                f"failed to replace {self._kind} {self.path}: {gdal_detail(error)}"
            ) from error
        self.mark_committed()
        return self.path

    def mark_committed(self) -> None:
        """Record that the finished file was moved into place (by `commit` or `publish_together`)."""
        self._state = "committed"
        self._cleanup_tmp()

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
        if self._state in ("open", "finished"):
            self._state = "aborted"
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        for tmp in self._tmp_paths:
            unlink_quietly(tmp)

    @property
    def state(self) -> str:
        """ "open", "finished", "committed" or "aborted"."""
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
            if self._state in ("open", "finished"):
                self.abort()
        except Exception:
            pass
