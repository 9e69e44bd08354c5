"""Inputs that used to be predicted silently wrong (issue 12, item 2): +-inf, untagged -3.4e38 fills, values
near the float limit, GDAL masks, fully masked scenes, GCP-only georeferencing, complex pixels.

Each invalid pixel must be handled exactly like a pixel tagged nodata: the labels of the scene with the odd
values equal those of the same scene with those pixels set to a declared nodata value.
"""

from __future__ import annotations

import numpy as np
import pytest

from rest_hf.cli import main
from rest_hf.inference import SceneError, ScenePredictor
from rest_hf.io import RasterReadError, RasterSource
from tests.conftest import write_geotiff
from tests.inference.helpers import build_model, processor_for, save_model, synthetic_scene

rasterio = pytest.importorskip("rasterio")

NODATA = -9999.0


@pytest.fixture(scope="module")
def predictor():
    return ScenePredictor(build_model(3), processor_for(3))


@pytest.fixture(scope="module")
def scene():
    pixels = synthetic_scene(64, 80, seed=2).astype(np.float32)
    hole = np.zeros((64, 80), bool)
    hole[10:30, 20:50] = True
    return pixels, hole


def tagged_reference(tmp_path, pixels, hole, predictor):
    reference = pixels.copy()
    reference[:, hole] = NODATA
    return predictor.predict(write_geotiff(tmp_path / "reference.tif", reference, nodata=NODATA))


@pytest.mark.parametrize(
    "fill",
    [np.inf, -np.inf, np.float32(-3.4028235e38), np.float32(3e38)],
    ids=["inf", "-inf", "-flt-max", "3e38"],
)
def test_odd_values_are_nodata_like_tagged_nodata(fill, scene, predictor, tmp_path):
    pixels, hole = scene
    odd = pixels.copy()
    odd[0, hole] = fill  # one band is enough to make a pixel invalid
    result = predictor.predict(write_geotiff(tmp_path / "odd.tif", odd))  # no nodata tag
    expected = tagged_reference(tmp_path, pixels, hole, predictor)
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert (result.labels[hole] == 255).all() and result.valid_pixels == (~hole).sum()
    assert any(f"{hole.sum():,} pixels hold infinite values" in note for note in result.notes), result.notes


def test_a_gdal_internal_mask_masks_pixels_like_nodata(scene, predictor, tmp_path):
    pixels, hole = scene
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        write_geotiff(path, pixels)
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(np.where(hole, 0, 255).astype(np.uint8))
    with RasterSource(path) as source:
        np.testing.assert_array_equal(source.valid_mask(0, 0, 64, 80), ~hole)
        np.testing.assert_array_equal(source.valid_mask(-5, 70, 20, 20)[5:, :10], ~hole[:15, 70:])
    result = predictor.predict(path)
    np.testing.assert_array_equal(result.labels, tagged_reference(tmp_path, pixels, hole, predictor).labels)


def test_a_fully_masked_scene_is_refused(scene, predictor, tmp_path):
    path = write_geotiff(tmp_path / "all-masked.tif", scene[0])
    with rasterio.open(path, "r+") as ds:  # a .msk side file (per-dataset mask)
        ds.write_mask(np.zeros((64, 80), np.uint8))
    with pytest.raises(SceneError, match="has no valid pixels"):
        predictor.predict(path)


def test_values_that_overflow_the_network_are_refused_not_labelled(scene, predictor, tmp_path):
    pixels, hole = scene
    huge = pixels.copy()
    huge[:, hole] = 1e25  # finite, plausible for float32, but 1e23 standard deviations from the mean
    with pytest.raises(SceneError, match=r"the model's output is not finite .* check its nodata value"):
        predictor.predict(write_geotiff(tmp_path / "huge.tif", huge))
    large = pixels.copy()
    large[:, hole] = 1e8
    result = predictor.predict(write_geotiff(tmp_path / "large.tif", large))
    assert any("normalised input values reach" in note for note in result.notes), result.notes


def test_complex_pixels_are_refused_in_one_line(tmp_path):
    path = tmp_path / "complex.tif"
    with rasterio.open(path, "w", driver="GTiff", height=8, width=8, count=1, dtype="complex_int16",
                       crs="EPSG:32618", transform=rasterio.transform.from_origin(0, 0, 1, 1)):  # fmt: skip
        pass
    with pytest.raises(
        RasterReadError, match=r"has complex pixels \(complex_int16, band 1\); the model needs real"
    ):
        RasterSource(path)


def test_gcp_georeferencing_is_kept_in_every_output(tmp_path):
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    pixels = synthetic_scene(48, 64)
    path = tmp_path / "gcps.tif"
    gcps = [GroundControlPoint(0, 0, 10.0, 50.0), GroundControlPoint(48, 64, 10.5, 49.6),
            GroundControlPoint(0, 64, 10.5, 50.0)]  # fmt: skip
    with rasterio.open(path, "w", driver="GTiff", height=48, width=64, count=3, dtype="uint8") as ds:
        ds.write(pixels)
        ds.gcps = (gcps, CRS.from_epsg(4326))
    model = save_model(tmp_path / "model", 3, pixels)
    out = tmp_path / "labels.tif"
    assert (
        main(["predict", str(path), "-o", str(out), "--model", str(model), "--probabilities", "--cog"]) == 0
    )
    for written in (out, tmp_path / "labels_probs.tif"):
        with rasterio.open(written) as ds:
            points, crs = ds.gcps
            assert crs == CRS.from_epsg(4326) and [(p.row, p.col, p.x, p.y) for p in points] == [
                (p.row, p.col, p.x, p.y) for p in gcps
            ]
