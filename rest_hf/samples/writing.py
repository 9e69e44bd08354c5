"""Write a sample dataset in the `folder` layout: `{split}/images/NAME.tif`, `{split}/labels/NAME.tif` and
`dataset_info.json` (classes, colours, ignore value, source, licence, citation) in the root.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Label value of pixels without a reference class (nodata in the sources, or sources that disagree).
IGNORE = 255


@dataclass
class Scene:
    """One georeferenced scene of a sample dataset.

    Args:
        split: ``train``, ``val`` or ``test``.
        name: File stem (unique in the dataset).
        image: (bands, H, W) array (uint8 or float32).
        labels: (H, W) uint8 class ids, `IGNORE` where there is no reference.
        crs: Coordinate reference system (anything rasterio accepts, e.g. ``"EPSG:4326"``).
        transform: The affine transform of the scene's top-left corner.
        nodata: The image's nodata value (None: every pixel is valid).
    """

    split: str
    name: str
    image: np.ndarray
    labels: np.ndarray
    crs: str
    transform: Any
    nodata: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def write_scene(root: Path, scene: Scene, palette: Sequence[Sequence[int]]) -> None:
    """Write the image and the label GeoTIFF (deflate, with a colour table) of one scene under `root`."""
    import rasterio

    bands, height, width = scene.image.shape
    if scene.labels.shape != (height, width):
        raise ValueError(
            f"scene {scene.name}: labels {scene.labels.shape} do not match image {(height, width)}"
        )
    common = dict(driver="GTiff", height=height, width=width, crs=scene.crs, transform=scene.transform)
    common.update(compress="deflate", tiled=False)
    for kind in ("images", "labels"):
        (root / scene.split / kind).mkdir(parents=True, exist_ok=True)
    image_path = root / scene.split / "images" / f"{scene.name}.tif"
    with rasterio.open(
        image_path, "w", count=bands, dtype=scene.image.dtype.name, nodata=scene.nodata, **common
    ) as target:
        target.write(scene.image)
        if bands == 3 and scene.image.dtype == np.uint8:
            target.colorinterp = [rasterio.enums.ColorInterp[c] for c in ("red", "green", "blue")]
    label_path = root / scene.split / "labels" / f"{scene.name}.tif"
    with rasterio.open(label_path, "w", count=1, dtype="uint8", nodata=IGNORE, **common) as target:
        target.write(scene.labels.astype(np.uint8), 1)
        colours = {i: (*map(int, c), 255) for i, c in enumerate(palette)}
        colours[IGNORE] = (0, 0, 0, 0)
        target.write_colormap(1, colours)


def class_pixel_counts(scenes: Sequence[Scene], num_labels: int) -> dict[str, list[int]]:
    """Reference pixels per class and split (ignored pixels not counted), for dataset_info.json."""
    counts: dict[str, np.ndarray] = {}
    for scene in scenes:
        valid = scene.labels[scene.labels != IGNORE]
        counts.setdefault(scene.split, np.zeros(num_labels, np.int64))
        counts[scene.split] += np.bincount(valid, minlength=num_labels)[:num_labels]
    return {split: [int(v) for v in value] for split, value in counts.items()}


def write_dataset(root: Path, scenes: Sequence[Scene], info: dict[str, Any], progress: bool = False) -> None:
    """Every scene plus `dataset_info.json` (`info`, completed with the scene list and class pixel counts)."""
    from tqdm.auto import tqdm

    root.mkdir(parents=True, exist_ok=True)
    for scene in tqdm(scenes, desc="writing scenes", disable=not progress, leave=False):
        write_scene(root, scene, info["palette"])
    info = dict(info)
    info["scenes"] = [
        {"split": s.split, "name": s.name, "height": int(s.labels.shape[0]), "width": int(s.labels.shape[1])}
        | s.meta
        for s in scenes
    ]
    info["class_pixels"] = class_pixel_counts(scenes, len(info["classes"]))
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")


__all__ = ["IGNORE", "Scene", "class_pixel_counts", "write_dataset", "write_scene"]
