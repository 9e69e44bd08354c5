"""RasterSource: windowed reads, band selection, validity masks, real files, bad input."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from rest_hf.io import RasterReadError, RasterSource, valid_mask_from_array  # noqa: E402

WINDOWS = [(0, 0, 5, 7), (3, 4, 10, 9), (11, 6, 6, 11), (0, 0, 17, 17), (16, 16, 1, 1)]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("bands", [1, 3, 4, 32])
@pytest.mark.parametrize("tiled", [False, True])
def test_window_reads_equal_numpy_slices(make_geotiff, tmp_path, rng, dtype, bands, tiled):
    array = (rng.random((bands, 17, 17)) * 200).astype(dtype)
    path = make_geotiff(tmp_path / "scene.tif", array, tiled=tiled)
    with RasterSource(path) as src:
        assert (src.count, src.height, src.width) == (bands, 17, 17)
        assert src.shape == (bands, 17, 17)
        assert src.dtype == np.dtype(dtype)
        assert src.crs.to_epsg() == 32618
        assert src.transform.a == 10.0 and src.transform.e == -12.5
        assert src.nodata is None
        assert src.profile["count"] == bands
        for top, left, h, w in WINDOWS:
            np.testing.assert_array_equal(src.read(top, left, h, w), array[:, top : top + h, left : left + w])
    assert src.closed


def test_reads_only_the_window(make_geotiff, tmp_path, rng, monkeypatch):
    array = rng.integers(0, 255, (3, 40, 50), dtype=np.uint8)
    path = make_geotiff(tmp_path / "scene.tif", array)
    seen = []
    with RasterSource(path) as src:
        original = src._ds.read

        def spy(*args, **kwargs):
            seen.append(kwargs.get("window"))
            return original(*args, **kwargs)

        monkeypatch.setattr(src._ds, "read", spy)
        src.read(10, 20, 5, 6)
    assert len(seen) == 1
    window = seen[0]
    assert (window.row_off, window.col_off, window.height, window.width) == (10, 20, 5, 6)


def test_boundless_reads(make_geotiff, tmp_path, rng):
    array = rng.integers(1, 255, (2, 10, 12), dtype=np.uint8)
    path = make_geotiff(tmp_path / "scene.tif", array)
    with RasterSource(path) as src:
        out = src.read(-2, 8, 6, 7, boundless_fill=9)
        assert out.shape == (2, 6, 7)
        expected = np.full((2, 6, 7), 9, np.uint8)
        expected[:, 2:6, 0:4] = array[:, 0:4, 8:12]
        np.testing.assert_array_equal(out, expected)
        mask = src.valid_mask(-2, 8, 6, 7)
        assert mask.sum() == 16 and mask[2:6, 0:4].all()
        assert (src.read(100, 100, 3, 3) == 0).all()
        assert not src.valid_mask(100, 100, 3, 3).any()
        with pytest.raises(ValueError, match="boundless_fill"):
            src.read(-1, 0, 2, 2, boundless_fill=-1)
        with pytest.raises(ValueError, match=">= 0"):
            src.read(0, 0, -1, 2)


def test_band_selection(make_geotiff, tmp_path, rng):
    array = rng.integers(0, 1000, (4, 8, 9), dtype=np.uint16)
    path = make_geotiff(tmp_path / "scene.tif", array)
    with RasterSource(path, bands=[4, 2]) as src:
        assert src.count == 2 and src.bands == (4, 2)
        np.testing.assert_array_equal(src.read(1, 2, 5, 5), array[[3, 1], 1:6, 2:7])
        assert src.profile["count"] == 2
    with RasterSource(path, bands=3) as src:
        np.testing.assert_array_equal(src.read(0, 0, 8, 9), array[2:3])


@pytest.mark.parametrize("bands", [[5], [0], [1, 7], []])
def test_bad_band_index(make_geotiff, tmp_path, bands):
    path = make_geotiff(tmp_path / "four.tif", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError) as info:
        RasterSource(path, bands=bands)
    message = str(info.value)
    assert "four.tif" in message
    if bands:
        bad = next(b for b in bands if not 1 <= b <= 4)
        assert f"band {bad}" in message and "4 bands" in message


def test_valid_mask_nodata_and_nan(make_geotiff, tmp_path):
    array = np.ones((3, 4, 5), np.float32)
    array[0, 0, 0] = -9999
    array[2, 1, 1] = -9999
    array[1, 2, 2] = np.nan
    path = make_geotiff(tmp_path / "f.tif", array, nodata=-9999)
    with RasterSource(path) as src:
        mask = src.valid_mask(0, 0, 4, 5)
        expected = np.ones((4, 5), bool)
        expected[0, 0] = expected[1, 1] = expected[2, 2] = False
        np.testing.assert_array_equal(mask, expected)
        data, mask2 = src.read_masked(0, 0, 4, 5)
        np.testing.assert_array_equal(mask2, expected)
        np.testing.assert_array_equal(data, array)
    # only the selected bands count
    with RasterSource(path, bands=[2]) as src:
        mask = src.valid_mask(0, 0, 4, 5)
        assert mask.sum() == 19 and not mask[2, 2]
    # no nodata: only NaN counts
    path = make_geotiff(tmp_path / "g.tif", array, nodata=None)
    with RasterSource(path) as src:
        assert src.valid_mask(0, 0, 4, 5).sum() == 19


def test_read_overview_is_a_nearest_decimation_under_the_same_mask_rules(make_geotiff, tmp_path, rng):
    """The decimated view the preview and the demo read (one way to open a raster for both)."""
    array = rng.uniform(0, 100, size=(3, 12, 10)).astype(np.float32)
    array[1, 4, 3] = -9999  # sampled (rows 1, 4, 7, 10; cols 1, 3, 5, 7, 9): its pixel is invalid
    array[0, 0, 0] = np.nan  # not sampled
    path = make_geotiff(tmp_path / "f.tif", array, nodata=-9999)
    with RasterSource(path) as src:
        data, valid = src.read_overview(4, 5)
    np.testing.assert_array_equal(data, array[:, 1::3, 1::2])
    expected = np.ones((4, 5), bool)
    expected[1, 1] = False
    np.testing.assert_array_equal(valid, expected)


def test_valid_mask_integer_nodata(make_geotiff, tmp_path):
    array = np.full((2, 3, 3), 7, np.uint8)
    array[1, 0, 2] = 0
    path = make_geotiff(tmp_path / "u.tif", array, nodata=0)
    with RasterSource(path) as src:
        assert src.nodata == 0
        mask = src.valid_mask(0, 0, 3, 3)
        assert mask.sum() == 8 and not mask[0, 2]
    path = make_geotiff(tmp_path / "v.tif", array)
    with RasterSource(path) as src:
        assert src.valid_mask(0, 0, 3, 3).all()


def test_valid_mask_from_array_per_band_nodata():
    a = np.array([[[1, 2]], [[3, 4]]], np.int16)
    np.testing.assert_array_equal(valid_mask_from_array(a, [2, None]), [[True, False]])
    np.testing.assert_array_equal(valid_mask_from_array(a, 3), [[False, True]])
    with pytest.raises(ValueError, match="nodata values"):
        valid_mask_from_array(a, [1, 2, 3])


def test_pickle_reopens(make_geotiff, tmp_path, rng):
    array = rng.integers(0, 255, (3, 6, 6), dtype=np.uint8)
    path = make_geotiff(tmp_path / "p.tif", array)
    with RasterSource(path, bands=[2]) as src:
        clone = pickle.loads(pickle.dumps(src))
    with clone:
        np.testing.assert_array_equal(clone.read(0, 0, 6, 6), array[1:2])


# ----------------------------------------------------------------------------------------- real files
def test_rgb_byte(sample_raster):
    path = sample_raster("RGB.byte.tif")
    with RasterSource(path) as src:
        assert (src.count, src.height, src.width) == (3, 718, 791)
        assert src.dtype == np.uint8 and src.nodata == 0
        assert src.crs.to_epsg() == 32618
        with rasterio.open(path) as ds:
            full = ds.read()
            transform = ds.transform
        assert src.transform == transform
        window = src.read(300, 200, 64, 96)
        np.testing.assert_array_equal(window, full[:, 300:364, 200:296])
        # the black collar is nodata: the top-left corner is invalid, the centre valid
        assert not src.valid_mask(0, 0, 8, 8).any()
        assert src.valid_mask(350, 390, 8, 8).all()
        expected = (full != 0).all(axis=0)
        np.testing.assert_array_equal(src.valid_mask(0, 0, 718, 791), expected)


def test_rgba_uint16_alpha(sample_raster):
    path = sample_raster("RGBA.uint16.tif")
    with RasterSource(path) as src:
        assert (src.count, src.height, src.width) == (4, 411, 634) and src.dtype == np.uint16
        assert src.nodata is None and src.alpha_band == 4
        data, mask = src.read_masked(0, 0, 411, 634)
        assert data.max() == 10000
        np.testing.assert_array_equal(mask, data[3] != 0)
    with RasterSource(path, bands=[1, 2, 3]) as src:  # alpha still masks when not selected
        np.testing.assert_array_equal(src.valid_mask(0, 0, 411, 634), mask)
    with RasterSource(path, mask_alpha=False) as src:
        assert src.alpha_band is None and src.valid_mask(0, 0, 411, 634).all()


def test_single_band_web_mercator(sample_raster):
    with RasterSource(sample_raster("rgb1_fake_nir_epsg3857.tif")) as src:
        assert (src.count, src.height, src.width) == (1, 681, 676)
        assert src.crs.to_epsg() == 3857 and src.nodata == 0
        data, mask = src.read_masked(100, 100, 50, 60)
        np.testing.assert_array_equal(mask, data[0] != 0)


def test_all_nodata(sample_raster):
    with RasterSource(sample_raster("all-nodata.tif")) as src:
        assert (src.count, src.height, src.width) == (4, 2475, 71)
        assert not src.valid_mask(0, 0, src.height, src.width).any()
        assert not src.valid_mask(1000, 10, 300, 40).any()


def test_float_nan_no_crs(sample_raster):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NotGeoreferencedWarning spam
        with RasterSource(sample_raster("float_nan.tif")) as src:
            assert (src.count, src.height, src.width) == (1, 2, 3)
            assert src.crs is None and not src.is_georeferenced
            data, mask = src.read_masked(0, 0, 2, 3)
            # (the shared README says "all NaN"; the file holds one NaN among finite values)
            assert np.isnan(data).any()
            np.testing.assert_array_equal(mask, ~np.isnan(data[0]))
            # a window far larger than the scene: NaN stays invalid, the outside is invalid too
            big, big_mask = src.read_masked(-3, -3, 8, 9, boundless_fill=float("nan"))
            assert big_mask.sum() == (~np.isnan(data)).sum()


def test_corrupt_file(sample_raster):
    path = sample_raster("corrupt.tif")
    with RasterSource(path) as src:  # the header opens
        assert (src.count, src.height, src.width) == (3, 1024, 1024)
        with pytest.raises(RasterReadError) as info:
            src.read(0, 0, 1024, 1024)
        message = str(info.value)
        assert "corrupt.tif" in message and "top=0, left=0, height=1024, width=1024" in message
        assert "\n" not in message
        assert isinstance(info.value, ValueError)
        with pytest.raises(RasterReadError, match="corrupt.tif"):
            src.valid_mask(512, 512, 100, 100)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif") as info:
        RasterSource(tmp_path / "nope.tif")
    assert "\n" not in str(info.value)
    bad = tmp_path / "text.tif"
    bad.write_text("this is not a raster")
    with pytest.raises(RasterReadError, match="text.tif"):
        RasterSource(bad)
    with pytest.raises(RasterReadError, match="folder"):
        RasterSource(tmp_path)


# ---------------------------------------------------------------------------------- PNG and JPEG input
@pytest.mark.parametrize("driver,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_png_jpeg_input(tmp_path, rng, driver, ext):
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    array = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    path = tmp_path / f"photo.{ext}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", height=20, width=30, count=3, dtype="uint8") as ds:
                ds.write(array)
            with mem.open() as ds:
                rio_copy(ds, path, driver=driver)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NotGeoreferencedWarning is expected and suppressed
        with RasterSource(path) as src:
            assert (src.count, src.height, src.width) == (3, 20, 30)
            assert src.crs is None and not src.is_georeferenced
            data = src.read(2, 3, 10, 12)
            assert data.shape == (3, 10, 12) and data.dtype == np.uint8
            if driver == "PNG":  # lossless
                np.testing.assert_array_equal(data, array[:, 2:12, 3:15])
            assert src.valid_mask(0, 0, 20, 30).all()
