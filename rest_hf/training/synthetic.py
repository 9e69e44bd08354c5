"""Small synthetic segmentation datasets in the `folder` layout, for CPU demos, tests and benchmarks.

Two tasks, both written as georeferenced GeoTIFFs under ``ROOT/{train,val}/{images,labels}/`` with a
`dataset_info.json` (classes, palette):

- `shapes`: rectangles on a noisy background; a rectangle's class is its colour (reddish or bluish). Every
  pixel's class is visible within a few pixels, so a tiny model learns it from small crops in minutes.
- `context`: one large textured region, identical for both region classes, and a marker (a stripe along a
  random edge of the scene) whose colour (red or green) decides the region's class. Inside the region nothing
  local tells the classes apart: only a model that sees the marker, i.e. the whole scene, can be right. Crops
  that miss the marker leave a crop-trained model guessing (`scripts/bench_context.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ("shapes", "context")
CLASSES = {
    "shapes": (["background", "red shape", "blue shape"], [[40, 40, 40], [220, 60, 60], [60, 90, 220]]),
    "context": (["background", "region red", "region green"], [[40, 40, 40], [220, 60, 60], [60, 200, 80]]),
}


def _write_tif(path: Path, array: np.ndarray) -> None:
    import rasterio
    from affine import Affine

    array = array if array.ndim == 3 else array[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        height=array.shape[1],
        width=array.shape[2],
        count=array.shape[0],
        dtype="uint8",
        crs="EPSG:32618",
        transform=Affine(1.0, 0.0, 300000.0, 0.0, -1.0, 4400000.0),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(60, 140)
    return np.clip(base + rng.normal(0, 18, (3, size, size)), 0, 255)


def shapes_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image (3, size, size) uint8, labels (size, size) uint8) of the `shapes` task."""
    image, labels = _background(rng, size), np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(3, 7)):
        h, w = rng.integers(size // 8, size // 3, 2)
        top, left = rng.integers(0, size - h), rng.integers(0, size - w)
        cls = int(rng.integers(1, 3))
        colour = np.array([200, 70, 70] if cls == 1 else [70, 90, 200], np.float64)
        patch = colour[:, None, None] + rng.normal(0, 20, (3, h, w))
        image[:, top : top + h, left : left + w] = patch
        labels[top : top + h, left : left + w] = cls
    return np.clip(image, 0, 255).astype(np.uint8), labels


def context_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of the `context` task: a coloured stripe along one edge of the scene (the marker) sets the
    class of a large textured region in the middle, which looks the same for both classes."""
    image, labels = _background(rng, size), np.zeros((size, size), np.uint8)
    marker = max(4, size // 10)
    margin = marker + size // 8
    h, w = rng.integers(size // 3, size // 2, 2)
    top = rng.integers(margin, size - margin - h + 1)
    left = rng.integers(margin, size - margin - w + 1)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 150 + 50 * np.sin((yy + xx) / 3.0)  # the same texture for both classes
    image[:, top : top + h, left : left + w] = stripes[None] + rng.normal(0, 10, (3, h, w))
    cls = int(rng.integers(1, 3))
    labels[top : top + h, left : left + w] = cls
    colour = np.array([230, 40, 40] if cls == 1 else [40, 220, 60], np.float64)[:, None, None]
    edge = int(rng.integers(0, 4))  # top, bottom, left, right
    rows = slice(0, marker) if edge == 0 else slice(size - marker, size) if edge == 1 else slice(None)
    cols = slice(0, marker) if edge == 2 else slice(size - marker, size) if edge == 3 else slice(None)
    image[:, rows, cols] = colour
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_synthetic_dataset(
    root: str | Path,
    task: str = "shapes",
    num_train: int = 16,
    num_val: int = 4,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a `folder`-layout dataset of `num_train` + `num_val` scenes of `size` x `size` px; returns `root`."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    root = Path(root)
    make = shapes_scene if task == "shapes" else context_scene
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        for index in range(count):
            image, labels = make(rng, size)
            _write_tif(root / split / "images" / f"{split}_{index:04d}.tif", image)
            _write_tif(root / split / "labels" / f"{split}_{index:04d}.tif", labels)
    names, palette = CLASSES[task]
    info = {"name": f"synthetic-{task}", "classes": names, "palette": palette, "ignore_index": 255}
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return root


__all__ = ["TASKS", "context_scene", "shapes_scene", "write_synthetic_dataset"]
