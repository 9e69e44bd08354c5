"""Windowed raster reading: every process reads only its own window of the scene, never the whole file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RasterReadError, gdal_detail, quiet_georeferencing

__all__ = ["IMPLAUSIBLE", "GeoReference", "RasterSource", "gdal_path", "is_remote", "valid_mask_from_array"]


@dataclass(frozen=True)
class GeoReference:
    """Size and georeferencing of a raster grid: what an output needs to line up with its input.

    `crs` is None (and `transform` the identity) for images without georeferencing (PNG, JPEG). A scene
    georeferenced only by ground control points has `gcps` = (points, their CRS) instead, and `rpcs` holds
    rational polynomial coefficients where the scene has them; outputs copy both.
    """

    height: int
    width: int
    crs: Any = None
    transform: Any = None
    gcps: Any = None
    rpcs: Any = None

    @classmethod
    def of(cls, obj: Any) -> GeoReference:
        """From a RasterSource, an open rasterio dataset or anything with height/width/crs/transform."""
        if isinstance(obj, GeoReference):
            return obj
        try:
            return cls(
                int(obj.height),
                int(obj.width),
                getattr(obj, "crs", None),
                getattr(obj, "transform", None),
                getattr(obj, "gcps", None),
                getattr(obj, "rpcs", None),
            )
        except AttributeError as error:
            raise TypeError(
                f"expected a RasterSource, GeoReference or rasterio dataset, got {type(obj).__name__}"
            ) from error

    @property
    def is_georeferenced(self) -> bool:
        return self.crs is not None or self.gcps is not None


# Where GDAL reads each kind of URL from: by HTTP range requests (/vsicurl/) or the object stores' APIs.
REMOTE_PREFIXES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}
# Opening a remote raster must not list its "folder" (one more request per scene, and a slow one on buckets).
REMOTE_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def is_remote(path: str | Path) -> bool:
    """True for URLs (http(s)://, s3://, gs://, az://) and GDAL virtual paths (/vsicurl/..., /vsis3/...)."""
    text = str(path)
    return text.startswith("/vsi") or "://" in text


def gdal_path(path: str | Path) -> str:
    """The name GDAL opens: `https://h/x.tif` -> `/vsicurl/https://h/x.tif`, `s3://b/k` -> `/vsis3/b/k`.

    GDAL virtual paths and local paths are returned as they are. An unknown scheme is refused (ValueError).
    """
    text = str(path)
    if "://" not in text or text.startswith("/vsi"):
        return text
    scheme, rest = text.split("://", 1)
    prefix = REMOTE_PREFIXES.get(scheme.lower())
    if prefix is None:
        raise ValueError(
            f"cannot read {text}: unknown scheme {scheme}://; use http(s)://, s3://, gs://, az:// or a /vsi path"
        )
    return f"{prefix}{text}" if prefix == "/vsicurl/" else f"{prefix}{rest}"


def _remote_env(remote: bool) -> Any:
    import contextlib

    import rasterio

    return rasterio.Env(**REMOTE_OPTIONS) if remote else contextlib.nullcontext()


IMPLAUSIBLE = 1e30
"""Float pixel values beyond +-1e30 are invalid: no sensor measures them, and they are how untagged fill values
look (-3.4e38, the float32 limit, is the usual one); normalised, they would overflow the network to NaN."""


def valid_mask_from_array(
    array: np.ndarray, nodata: float | Sequence[float | None] | None = None
) -> np.ndarray:
    """(h, w) bool: False where ANY band is NaN, +-inf, beyond +-`IMPLAUSIBLE`, or equals its nodata value.

    Args:
        array: (C, h, w) or (h, w) pixel values.
        nodata: one value for all bands, one per band (None entries: no nodata for that band), or None.
    """
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a (C, H, W) or (H, W) array, got shape {array.shape}")
    count = array.shape[0]
    if nodata is None or np.isscalar(nodata):
        values: list[Any] = [nodata] * count
    else:
        values = list(nodata)
        if len(values) != count:
            raise ValueError(f"got {len(values)} nodata values for {count} bands")
    valid = np.ones(array.shape[1:], dtype=bool)
    is_float = np.issubdtype(array.dtype, np.floating)
    for band, value in zip(array, values, strict=True):
        if is_float:
            with np.errstate(invalid="ignore"):
                valid &= np.abs(band) <= IMPLAUSIBLE  # False for NaN and +-inf too
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            valid &= band != value
    return valid


class RasterSource:
    """A GeoTIFF (or PNG, JPEG, anything GDAL reads) opened for windowed reads of selected bands.

    Args:
        path: the raster file, or a URL read by range requests (`https://...`, `s3://...`, `gs://...`,
            `/vsicurl/...`; see `gdal_path`): only the blocks of the windows read are fetched.
        bands: 1-based band indices to read, in this order (like rasterio); None reads all bands.
        mask_alpha: when the file has an alpha band (e.g. an RGBA GeoTIFF) or a GDAL mask (internal or
            `.msk`), pixels whose alpha or mask is 0 are also invalid in `valid_mask` (whether or not the alpha
            band is among `bands`).

    Attributes:
        path, height, width, count (number of selected bands), bands (tuple of 1-based indices), dtype
        (numpy dtype of the selected bands), nodata (nodata value of the first selected band, or None),
        nodatavals (one per selected band), crs (None when not georeferenced), transform (affine),
        profile (rasterio profile describing the selected bands), georef (GeoReference).

    Raises:
        FileNotFoundError: the file does not exist.
        RasterReadError: the file is not a raster GDAL can open.
        ValueError: a band index is out of range.

    Use as a context manager or call `close()`. Reads never load more than the requested window.
    """

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None, *, mask_alpha: bool = True):
        import rasterio

        text = str(path)
        self.remote = is_remote(text)
        self.path: Path | str = text if self.remote else Path(path)
        if isinstance(self.path, Path):
            if not self.path.exists():
                raise FileNotFoundError(f"input raster {self.path} does not exist")
            if self.path.is_dir():
                raise RasterReadError(f"input raster {self.path} is a folder, not a raster file")
        try:
            with quiet_georeferencing(), _remote_env(self.remote):
                self._ds = rasterio.open(gdal_path(text) if self.remote else self.path)
        except (
            Exception
        ) as error:  # rasterio raises RasterioIOError for unknown formats and unreadable headers
            raise RasterReadError(f"cannot open {self.path} as a raster: {gdal_detail(error)}") from error
        try:
            self._init_bands(bands, mask_alpha)
        except Exception:
            self._ds.close()
            raise

    def _init_bands(self, bands: Sequence[int] | None, mask_alpha: bool) -> None:
        from rasterio.enums import ColorInterp

        ds = self._ds
        if bands is None:
            selected = tuple(range(1, ds.count + 1))
        else:
            if isinstance(bands, (int, np.integer)):
                bands = [int(bands)]
            selected = tuple(bands)
            if not selected:
                raise ValueError(f"no bands selected from {self.path}; give at least one 1-based band index")
            for band in selected:
                if isinstance(band, bool) or not isinstance(band, (int, np.integer)):
                    raise ValueError(f"band indices must be integers (1-based), got {band!r} for {self.path}")
                if not 1 <= band <= ds.count:
                    raise ValueError(
                        f"band {band} does not exist in {self.path}, which has {ds.count} band"
                        f"{'s' if ds.count != 1 else ''} (valid indices: 1..{ds.count}; indices are 1-based)"
                    )
            selected = tuple(int(b) for b in selected)
        self.bands: tuple[int, ...] = selected
        complex_bands = [b for b in selected if str(ds.dtypes[b - 1]).startswith("complex")]
        if complex_bands:
            raise RasterReadError(
                f"{self.path} has complex pixels ({ds.dtypes[complex_bands[0] - 1]}, band {complex_bands[0]}); "
                "the model needs real values: convert the scene first (e.g. its amplitude with gdal_calc.py "
                "or gdal_translate -ot Float32 of a real band)"
            )
        dtypes = [np.dtype(ds.dtypes[b - 1]) for b in selected]
        self.dtype: np.dtype = np.result_type(*dtypes)
        self.nodatavals: tuple[float | None, ...] = tuple(ds.nodatavals[b - 1] for b in selected)
        self.nodata: float | None = self.nodatavals[0]
        self._alpha_band: int | None = None
        if mask_alpha:
            for index, interp in enumerate(ds.colorinterp, start=1):
                if interp == ColorInterp.alpha:
                    self._alpha_band = index
                    break
        self._mask_bands = self._gdal_mask_bands() if mask_alpha else ()

    def _gdal_mask_bands(self) -> tuple[int, ...]:
        """Selected bands whose validity GDAL holds in a mask (an internal or `.msk` mask), beyond the nodata
        values and the alpha band read here; one band stands for all when the mask is per dataset."""
        from rasterio.enums import MaskFlags

        bands = []
        for band in self.bands:
            flags = set(self._ds.mask_flag_enums[band - 1])
            if flags & {MaskFlags.all_valid, MaskFlags.nodata, MaskFlags.alpha}:
                continue  # nothing beyond nodata and alpha, which `valid_mask_from_array` and alpha handle
            if MaskFlags.per_dataset in flags:
                return (band,)
            bands.append(band)
        return tuple(bands)

    # ------------------------------------------------------------ properties
    @property
    def height(self) -> int:
        return self._ds.height

    @property
    def width(self) -> int:
        return self._ds.width

    @property
    def shape(self) -> tuple[int, int, int]:
        """(count, height, width) of the selected bands."""
        return (self.count, self.height, self.width)

    @property
    def count(self) -> int:
        """Number of selected bands."""
        return len(self.bands)

    @property
    def crs(self) -> Any:
        """The CRS (rasterio CRS), or None for images without georeferencing."""
        crs = self._ds.crs
        return crs if crs else None

    @property
    def transform(self) -> Any:
        """Pixel -> CRS affine transform (the identity for images without georeferencing)."""
        return self._ds.transform

    @property
    def gcps(self) -> Any:
        """(ground control points, their CRS) of a scene georeferenced by GCPs, else None."""
        points, crs = self._ds.gcps
        return (points, crs) if points else None

    @property
    def rpcs(self) -> Any:
        """Rational polynomial coefficients of the scene, or None."""
        return self._ds.rpcs

    @property
    def alpha_band(self) -> int | None:
        """1-based index of the file's alpha band used for masking, or None."""
        return self._alpha_band

    @property
    def georef(self) -> GeoReference:
        return GeoReference(self.height, self.width, self.crs, self.transform, self.gcps, self.rpcs)

    @property
    def is_georeferenced(self) -> bool:
        return self.crs is not None or self.gcps is not None

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of the file's internal blocks for the first selected band (reads aligned to it are cheapest)."""
        return tuple(self._ds.block_shapes[self.bands[0] - 1])  # type: ignore[return-value]

    @property
    def tags(self) -> dict[str, str]:
        """The dataset's metadata tags (e.g. `class_names` of a label raster written by `rest-hf predict`)."""
        return dict(self._ds.tags())

    @property
    def descriptions(self) -> tuple[str | None, ...]:
        """Band descriptions of the selected bands (None where the file has none)."""
        return tuple(self._ds.descriptions[b - 1] for b in self.bands)

    @property
    def profile(self) -> dict[str, Any]:
        """The rasterio profile of the file, adjusted to the selected bands (count, dtype, nodata)."""
        profile = dict(self._ds.profile)
        profile.update(count=self.count, dtype=self.dtype.name, nodata=self.nodata)
        return profile

    @property
    def closed(self) -> bool:
        return self._ds.closed

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RasterSource({str(self.path)!r}, bands={list(self.bands)}, {self.height}x{self.width}, "
            f"{self.dtype.name}, nodata={self.nodata}, crs={self.crs.to_string() if self.crs else None})"
        )

    # Picklable (e.g. for DataLoader workers): the file is reopened on the other side.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "bands": self.bands, "mask_alpha": self._alpha_band is not None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], list(state["bands"]), mask_alpha=state["mask_alpha"])  # type: ignore[misc]

    # ----------------------------------------------------------------- reads
    def _check_window(self, top: int, left: int, height: int, width: int) -> tuple[int, int, int, int]:
        if self._ds.closed:
            raise ValueError(f"RasterSource for {self.path} is closed")
        values = []
        for name, value in (("top", top), ("left", left), ("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"window {name} must be an integer, got {value!r}")
            values.append(int(value))
        if values[2] < 0 or values[3] < 0:
            raise ValueError(f"window height and width must be >= 0, got {values[2]} x {values[3]}")
        return values[0], values[1], values[2], values[3]

    def _describe(self, top: int, left: int, height: int, width: int) -> str:
        return f"window (top={top}, left={left}, height={height}, width={width})"

    def _read_bands(
        self, indexes: Sequence[int], top: int, left: int, height: int, width: int, fill: Any, dtype: np.dtype
    ) -> np.ndarray:
        """Read `indexes` over the window; pixels outside the scene get `fill`."""
        from rasterio.windows import Window

        r0, r1 = max(top, 0), min(top + height, self.height)
        c0, c1 = max(left, 0), min(left + width, self.width)
        inside = r1 > r0 and c1 > c0
        if inside and (r0, r1, c0, c1) == (top, top + height, left, left + width):
            out = None
        else:
            out = np.empty((len(indexes), height, width), dtype=dtype)
            try:
                fill_value = np.asarray(fill).astype(dtype)
            except (ValueError, OverflowError, TypeError) as error:
                raise ValueError(
                    f"boundless_fill={fill!r} does not fit the {dtype.name} pixels of {self.path}"
                ) from error
            if fill_value != fill and not (isinstance(fill, float) and math.isnan(fill)):
                raise ValueError(
                    f"boundless_fill={fill!r} does not fit the {dtype.name} pixels of {self.path}"
                )
            out[...] = fill_value
        if not inside:
            return out  # type: ignore[return-value]
        try:
            with quiet_georeferencing(), _remote_env(self.remote):
                data = self._ds.read(
                    indexes=list(indexes), window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype=dtype
                )
        except Exception as error:
            raise RasterReadError(
                f"failed to read {self._describe(top, left, height, width)} of bands {list(indexes)} from "
                f"{self.path}: {gdal_detail(error)}"
            ) from error
        if out is None:
            return data
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = data
        return out

    def read(self, top: int, left: int, height: int, width: int, *, boundless_fill: float = 0) -> np.ndarray:
        """(count, height, width) pixels of the selected bands in the window; only that window is read.

        The window may extend past the scene's edges: those pixels get `boundless_fill` (and are invalid in
        `valid_mask`). The dtype is the file's (`self.dtype`).

        Raises:
            RasterReadError: GDAL failed to decode the pixels (corrupt or truncated file); the message names the
                file and the window.
        """
        top, left, height, width = self._check_window(top, left, height, width)
        return self._read_bands(self.bands, top, left, height, width, boundless_fill, self.dtype)

    def _mask_from(self, data: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
        valid = valid_mask_from_array(data, self.nodatavals)
        r0, r1 = max(top, 0), min(top + height, self.height)
        c0, c1 = max(left, 0), min(left + width, self.width)
        if not (r1 > r0 and c1 > c0):
            valid[...] = False
            return valid
        if (r0, r1, c0, c1) != (top, top + height, left, left + width):
            outside = np.ones_like(valid)
            outside[r0 - top : r1 - top, c0 - left : c1 - left] = False
            valid &= ~outside
        if self._alpha_band is not None:
            if self._alpha_band in self.bands:
                alpha = data[self.bands.index(self._alpha_band)]
            else:
                alpha_dtype = np.dtype(self._ds.dtypes[self._alpha_band - 1])
                alpha = self._read_bands([self._alpha_band], top, left, height, width, 0, alpha_dtype)[0]
            valid &= alpha != 0
        if self._mask_bands:
            valid &= self._read_masks(top, left, height, width)
        return valid

    def _read_masks(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """(height, width) bool from GDAL's masks of `_mask_bands` over the window (outside: False)."""
        from rasterio.windows import Window

        valid = np.zeros((height, width), dtype=bool)
        r0, r1 = max(top, 0), min(top + height, self.height)
        c0, c1 = max(left, 0), min(left + width, self.width)
        if r1 <= r0 or c1 <= c0:
            return valid
        try:
            with quiet_georeferencing(), _remote_env(self.remote):
                masks = self._ds.read_masks(list(self._mask_bands), window=Window(c0, r0, c1 - c0, r1 - r0))
        except Exception as error:
            raise RasterReadError(
                f"failed to read the mask of {self._describe(top, left, height, width)} from {self.path}: "
                f"{gdal_detail(error)}"
            ) from error
        valid[r0 - top : r1 - top, c0 - left : c1 - left] = (masks != 0).all(axis=0)
        return valid

    def read_masked(
        self, top: int, left: int, height: int, width: int, *, boundless_fill: float = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(read(...), valid_mask(...))` of one window from a single read of the pixels."""
        top, left, height, width = self._check_window(top, left, height, width)
        data = self._read_bands(self.bands, top, left, height, width, boundless_fill, self.dtype)
        return data, self._mask_from(data, top, left, height, width)

    def read_overview(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole scene decimated to (height, width) px by nearest neighbour (GDAL uses the file's overviews
        where it has them, so a large scene is not read at full size): the (count, height, width) pixels of
        the selected bands and their (height, width) valid mask, by the rules of `valid_mask`.

        Raises:
            RasterReadError: GDAL failed to decode the pixels; the message names the file.
        """
        from rasterio.enums import Resampling

        if self._ds.closed:
            raise ValueError(f"RasterSource for {self.path} is closed")
        shape = (max(1, int(height)), max(1, int(width)))
        nearest = Resampling.nearest
        try:
            with quiet_georeferencing(), _remote_env(self.remote):
                data = self._ds.read(list(self.bands), out_shape=(self.count, *shape), resampling=nearest)
                valid = valid_mask_from_array(data, self.nodatavals)
                if self._alpha_band is not None:
                    valid &= self._ds.read(self._alpha_band, out_shape=shape, resampling=nearest) != 0
                if self._mask_bands:
                    masks = self._ds.read_masks(
                        list(self._mask_bands), out_shape=(len(self._mask_bands), *shape), resampling=nearest
                    )
                    valid &= (masks != 0).all(axis=0)
        except Exception as error:
            raise RasterReadError(f"cannot read the pixels of {self.path}: {gdal_detail(error)}") from error
        return data, valid

    def valid_mask(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """(height, width) bool: True where every selected band holds data.

        GDAL's mask rules: False where ANY selected band equals its nodata value, is NaN, +-inf or beyond
        +-`IMPLAUSIBLE` (float bands), where the alpha band is 0 or GDAL's mask (internal, `.msk`) is 0 (if
        `mask_alpha`), and outside the scene. A file without nodata: only NaN (and
        alpha) count. Use `read_masked` to get the pixels and the mask from one read.
        """
        return self.read_masked(top, left, height, width)[1]
