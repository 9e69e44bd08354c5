"""Tiny synthetic datasets in the folder layouts of GLH-Water, FBP, WHU-OHS, UAVid and the generic layout.

Each builder writes a few small scenes from a seeded generator and returns the root folder; the raw arrays it
wrote are kept in `.truth[name] = (image (C, H, W), raw label)` so tests can compare what is read back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rest_hf.data.layouts import UAVID_PALETTE


def write_png(path: Path, array: np.ndarray) -> Path:
    """(C, H, W) or (H, W) uint8 -> PNG (RGB for 3 bands, grey for 1)."""
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
        if array.shape[-1] == 1:
            array = array[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


class Builder:
    def __init__(self, tmp_path: Path, make_geotiff) -> None:
        self.tmp = tmp_path
        self.make_geotiff = make_geotiff
        self.rng = np.random.default_rng(0)
        self.truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def rgb(self, height: int, width: int) -> np.ndarray:
        return self.rng.integers(0, 256, (3, height, width)).astype(np.uint8)

    def glh_water(self, splits=("train", "val"), count=2, size=(40, 48), image_folder="image") -> Path:
        root = self.tmp / "glh"
        for split in splits:
            for i in range(count):
                name = f"{split}_{i}"
                image = self.rgb(*size)
                label = np.where(self.rng.random(size) < 0.3, 255, 0).astype(np.uint8)
                write_png(root / split / image_folder / f"{name}.png", image)
                write_png(root / split / "label" / f"{name}.png", label)
                self.truth[name] = (image, label)
        return root

    def fbp_official(self, count=2, size=(36, 44), split=None) -> Path:
        root = self.tmp / "fbp"
        for i in range(count):
            name = f"GF2_PMS1__L1A00{i}-MSS1"
            nirrgb = self.rng.integers(0, 256, (4, *size)).astype(np.uint8)
            label = self.rng.integers(0, 25, size).astype(np.uint8)
            sub = "" if split is None else f"/{split}"
            self.make_geotiff(root / f"Image__8bit_NirRGB{sub}" / f"{name}.tiff", nirrgb, crs=None)
            write_png(root / f"Annotation__index{sub}" / f"{name}_24label.png", label)
            self.truth[name] = (nirrgb, label)
        return root

    def fbp_rest(self, splits=("train", "val"), count=2, size=(36, 44)) -> Path:
        root = self.tmp / "fbp_new"
        for split in splits:
            for i in range(count):
                name = f"{split}_{i}"
                image = self.rgb(*size)
                label = self.rng.integers(0, 24, size).astype(np.uint8)
                label[:3] = 255
                write_png(root / split / "img" / f"{name}.png", image)
                write_png(root / split / "annotation" / f"{name}.png", label)
                self.truth[name] = (image, label)
        return root

    def whu_ohs(self, splits=("tr", "val", "ts"), count=2, size=(32, 32)) -> Path:
        root = self.tmp / "whu_ohs"
        for split in splits:
            for i in range(count):
                name = f"S1_{split}{i}"
                image = self.rng.integers(0, 10000, (32, *size)).astype(np.int16)
                label = self.rng.integers(0, 25, size).astype(np.uint8)
                self.make_geotiff(root / split / "image" / f"{name}.tif", image)
                self.make_geotiff(root / split / "label" / f"{name}.tif", label)
                self.truth[name] = (image, label)
        return root

    def uavid(self, splits=("train", "val"), count=2, size=(27, 48), prefix="uavid_") -> Path:
        root = self.tmp / "uavid"
        palette = np.array(UAVID_PALETTE, np.uint8)
        for split in splits:
            for seq in (1, 2):
                for i in range(count):
                    image = self.rgb(*size)
                    ids = self.rng.integers(0, 8, size)
                    colours = np.moveaxis(palette[ids], -1, 0)
                    folder = root / f"{prefix}{split}" / f"seq{seq}"
                    write_png(folder / "Images" / f"{i:06d}.png", image)
                    if split != "test":
                        write_png(folder / "Labels" / f"{i:06d}.png", colours)
                    self.truth[f"seq{seq}_{i:06d}_{split}"] = (image, ids)
        return root

    def folder(self, count=3, size=(30, 34), bands=4, splits=None, classes=("a", "b", "c")) -> Path:
        root = self.tmp / "generic"
        for split in splits or (None,):
            for i in range(count):
                name = f"{split or 'scene'}_{i}"
                image = self.rng.integers(0, 4000, (bands, *size)).astype(np.uint16)
                label = self.rng.integers(0, len(classes), size).astype(np.uint8)
                sub = "" if split is None else f"{split}/"
                self.make_geotiff(root / f"{sub}images" / f"{name}.tif", image)
                self.make_geotiff(root / f"{sub}labels" / f"{name}.tif", label)
                self.truth[name] = (image, label)
        (root / "dataset_info.json").write_text(json.dumps({"classes": list(classes), "value_range": 4000}))
        return root


@pytest.fixture
def build(tmp_path, make_geotiff) -> Builder:
    """`build.glh_water()`, `build.fbp_official()`, ... write a synthetic dataset under tmp_path."""
    return Builder(tmp_path, make_geotiff)
