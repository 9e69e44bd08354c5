"""LabelWriter / ProbabilityWriter / write_preview_png: georeferencing, windows, atomicity, COG, colours."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rest_hf.io import (  # noqa: E402
    GeoReference,
    LabelWriter,
    ProbabilityWriter,
    RasterSource,
    check_output_path,
    default_palette,
    float16_supported,
    write_labels,
    write_preview_png,
    write_probabilities,
)

ID2LABEL = {0: "background", 1: "water", 2: "building", 3: "road"}


@pytest.fixture
def scene(make_geotiff, tmp_path, rng):
    array = rng.integers(1, 255, (3, 70, 90), dtype=np.uint8)
    return make_geotiff(tmp_path / "in" / "scene.tif", array, nodata=0)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".xml"))


def test_label_round_trip(scene, tmp_path, rng):
    labels = rng.integers(0, 4, (70, 90)).astype(np.int64)
    valid = np.ones((70, 90), bool)
    valid[:5, :7] = False
    out = tmp_path / "out" / "labels.tif"
    with RasterSource(scene) as src:
        result = write_labels(out, labels, src, 4, id2label=ID2LABEL, valid_mask=valid)
        crs, transform = src.crs, src.transform
    assert result == out
    with rasterio.open(out) as ds:
        assert ds.crs == crs and ds.transform == transform
        assert (ds.height, ds.width, ds.count) == (70, 90, 1)
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
        assert ds.profile["compress"] == "deflate"
        data = ds.read(1)
        expected = labels.astype(np.uint8)
        expected[~valid] = 255
        np.testing.assert_array_equal(data, expected)
        cmap = ds.colormap(1)
        for i, colour in enumerate(default_palette(4)):
            assert cmap[i] == (*colour, 255)
        assert cmap[255] == (0, 0, 0, 0)
        tags = ds.tags()
        assert tags["CLASS_1"] == "water" and tags["NUM_CLASSES"] == "4"
        assert json.loads(tags["class_names"]) == {str(k): v for k, v in ID2LABEL.items()}
        assert ds.descriptions == ("class",)
    assert leftovers(out.parent) == []


def test_windowed_writes_assemble_the_raster(scene, tmp_path, rng):
    labels = rng.integers(0, 6, (70, 90)).astype(np.uint8)
    palette = [[10 * i, 20 * i, 30 * i] for i in range(6)]
    out = tmp_path / "labels.tif"
    with RasterSource(scene) as src, LabelWriter(out, src, 6, palette=palette, blocksize=256) as writer:
        windows = [(top, left) for top in range(0, 70, 32) for left in range(0, 90, 40)]
        for top, left in reversed(windows):  # any order
            writer.write(labels[top : top + 32, left : left + 40], top, left)
        assert not out.exists()  # only visible after commit
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), labels)
        assert ds.block_shapes[0] == (256, 256)
        assert ds.colormap(1)[5] == (50, 100, 150, 255)
        assert "CLASS_0" not in ds.tags()  # no names given


def test_unwritten_pixels_are_nodata(scene, tmp_path):
    out = tmp_path / "partial.tif"
    with LabelWriter(out, GeoReference.of(RasterSource(scene)), 3, blocksize=16) as writer:
        writer.write(np.ones((10, 10), np.uint8), 20, 30)
    with rasterio.open(out) as ds:
        data = ds.read(1)
    assert (data[20:30, 30:40] == 1).all()
    data[20:30, 30:40] = 255
    assert (data == 255).all()


def test_torch_input_and_label_checks(scene, tmp_path):
    torch = pytest.importorskip("torch")
    out = tmp_path / "labels.tif"
    with RasterSource(scene) as src, LabelWriter(out, src, 3) as writer:
        writer.write(torch.full((4, 4), 2), 0, 0)
        with pytest.raises(ValueError, match="label 3 is outside 0..2"):
            writer.write(np.full((2, 2), 3), 0, 0)
        with pytest.raises(ValueError, match="label 254"):
            writer.write(np.array([[254, 255]], np.uint8), 0, 0)
        writer.write(np.array([[255, 1]], np.uint8), 0, 0)  # nodata itself is fine
        with pytest.raises(ValueError, match="outside the 70 x 90"):
            writer.write(np.zeros((4, 4), np.uint8), 68, 0)
        with pytest.raises(ValueError, match="float"):
            writer.write(np.zeros((4, 4), np.float32), 0, 0)
    assert out.exists()


def test_exception_leaves_nothing(scene, tmp_path):
    out = tmp_path / "labels.tif"
    with pytest.raises(RuntimeError, match="boom"), LabelWriter(out, RasterSource(scene), 3) as writer:
        writer.write(np.zeros((8, 8), np.uint8), 0, 0)
        raise RuntimeError("boom")
    assert writer.state == "aborted"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in"]
    # an explicit abort, and an existing output survives a failed overwrite
    out.write_bytes(b"old")
    writer = LabelWriter(out, RasterSource(scene), 3, overwrite=True)
    writer.write(np.zeros((8, 8), np.uint8), 0, 0)
    writer.abort()
    assert out.read_bytes() == b"old"
    assert leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match="aborted"):
        writer.commit()


def test_overwrite_refused_before_any_work(scene, tmp_path):
    out = tmp_path / "labels.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError) as info:
        LabelWriter(out, RasterSource(scene), 3)
    assert str(info.value) == f"output {out} exists; pass --overwrite to replace it"
    with pytest.raises(FileExistsError, match="--overwrite"):
        ProbabilityWriter(out, RasterSource(scene), 3)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_preview_png(np.zeros((2, 2), np.uint8), None, out)
    with pytest.raises(FileExistsError):
        check_output_path(out)
    assert out.read_bytes() == b"keep me" and leftovers(tmp_path) == []
    assert check_output_path(out, overwrite=True) == out
    write_labels(out, np.zeros((70, 90), np.uint8), RasterSource(scene), 3, overwrite=True)
    with rasterio.open(out) as ds:
        assert ds.read(1).shape == (70, 90)
    with pytest.raises(IsADirectoryError):
        check_output_path(tmp_path)


def test_many_classes_use_uint16(scene, tmp_path, rng):
    labels = rng.integers(0, 300, (70, 90)).astype(np.int32)
    out = write_labels(tmp_path / "big.tif", labels, RasterSource(scene), 300)
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint16" and ds.nodata == 65535
        np.testing.assert_array_equal(ds.read(1), labels)
        cmap = ds.colormap(1)
        assert cmap[299] == (*default_palette(300)[299], 255)


def test_cog_output(make_geotiff, tmp_path, rng):
    scene = make_geotiff(tmp_path / "scene.tif", rng.integers(0, 255, (1, 600, 700), dtype=np.uint8))
    labels = rng.integers(0, 5, (600, 700)).astype(np.uint8)
    out = tmp_path / "labels_cog.tif"
    with (
        RasterSource(scene) as src,
        LabelWriter(out, src, 5, cog=True, blocksize=256, id2label=list("abcde")) as w,
    ):
        for top in range(0, 600, 200):
            w.write(labels[top : top + 200], top, 0)
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.overviews(1)  # e.g. [2, 4]
        np.testing.assert_array_equal(ds.read(1), labels)
        assert ds.colormap(1)[4] == (*default_palette(5)[4], 255)
        assert ds.nodata == 255 and ds.crs.to_epsg() == 32618
    assert leftovers(tmp_path) == []


def test_probabilities(scene, tmp_path, rng):
    probs = rng.random((4, 70, 90)).astype(np.float32)
    probs /= probs.sum(0, keepdims=True)
    valid = np.ones((70, 90), bool)
    valid[-3:] = False
    out = tmp_path / "probs.tif"
    with RasterSource(scene) as src, ProbabilityWriter(out, src, 4, id2label=ID2LABEL, blocksize=32) as w:
        for top in range(0, 70, 35):
            for left in range(0, 90, 45):
                w.write(
                    probs[:, top : top + 35, left : left + 45],
                    top,
                    left,
                    valid[top : top + 35, left : left + 45],
                )
        crs, transform = src.crs, src.transform
    with rasterio.open(out) as ds:
        assert ds.count == 4 and ds.dtypes[0] == "float32"
        assert ds.crs == crs and ds.transform == transform
        assert np.isnan(ds.nodata)
        assert ds.descriptions == tuple(ID2LABEL.values())
        data = ds.read()
    np.testing.assert_array_equal(data[:, :-3], probs[:, :-3])
    assert np.isnan(data[:, -3:]).all()
    with pytest.raises(ValueError, match=r"\(4, h, w\)"):
        ProbabilityWriter(tmp_path / "x.tif", RasterSource(scene), 4).write(probs[:3], 0, 0)


def test_probabilities_float16_request(scene, tmp_path, rng):
    probs = rng.random((2, 70, 90)).astype(np.float32)
    out = write_probabilities(tmp_path / "p16.tif", probs, RasterSource(scene), dtype="float16", cog=True)
    with rasterio.open(out) as ds:
        stored = ds.dtypes[0]
        data = ds.read()
    assert stored == ("float16" if float16_supported() else "float32")
    np.testing.assert_allclose(data, probs, atol=1e-3)
    with pytest.raises(ValueError, match="float16 or float32"):
        ProbabilityWriter(tmp_path / "p8.tif", RasterSource(scene), 2, dtype="uint8")


def test_not_georeferenced_input_gives_not_georeferenced_output(tmp_path, rng):
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    png = tmp_path / "photo.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", height=12, width=16, count=3, dtype="uint8") as ds:
                ds.write(rng.integers(0, 255, (3, 12, 16), dtype=np.uint8))
            with mem.open() as ds:
                rio_copy(ds, png, driver="PNG")
    labels = rng.integers(0, 3, (12, 16)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NotGeoreferencedWarning
        with RasterSource(png) as src:
            out = write_labels(tmp_path / "labels.tif", labels, src, 3)
            write_probabilities(tmp_path / "probs.tif", np.ones((3, 12, 16)) / 3, src)
        with RasterSource(out) as back:
            assert back.crs is None
            np.testing.assert_array_equal(back.read(0, 0, 12, 16)[0], labels)
    assert leftovers(tmp_path) == []


def test_preview_png(tmp_path, rng):
    labels = rng.integers(0, 4, (30, 40)).astype(np.uint8)
    labels[0, :5] = 255
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]]
    out = write_preview_png(labels, palette, tmp_path / "prev" / "preview.png", 255)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as ds:
            assert ds.count == 1 and ds.dtypes[0] == "uint8"
            data = ds.read(1)
            cmap = ds.colormap(1)
    np.testing.assert_array_equal(data, labels)
    assert cmap[1] == (0, 255, 0, 255) and cmap[255][3] == 0
    assert sorted(os.listdir(out.parent)) == ["preview.png"]


def test_preview_png_rgba_for_many_classes_and_subsampling(tmp_path, rng):
    labels = rng.integers(0, 300, (50, 80)).astype(np.uint16)
    labels[0, 0] = 65535
    out = write_preview_png(labels, None, tmp_path / "many.png", 65535, max_side=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as ds:
            assert ds.count == 4 and (ds.height, ds.width) == (25, 40)
            rgba = ds.read()
    palette = np.array(default_palette(300), np.uint8)
    sub = labels[::2, ::2]
    assert rgba[3, 0, 0] == 0
    np.testing.assert_array_equal(rgba[:3, 1, 1], palette[sub[1, 1]])
    with pytest.raises(ValueError, match="palette has 2 colours"):
        write_preview_png(np.array([[0, 5]]), [[0, 0, 0], [1, 1, 1]], tmp_path / "bad.png")


def test_default_palette():
    p = default_palette(600)
    assert len(set(p)) == 600
    assert default_palette(10) == p[:10] == default_palette(10)
    assert (0, 0, 0) not in p and (255, 255, 255) not in p
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in p)
