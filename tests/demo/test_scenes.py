"""The demo's scene checks, band choices, legend and model catalog (no Gradio needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.demo.legend import format_area, legend_html
from rest_hf.demo.models import ModelCatalog, default_model_names
from rest_hf.demo.run import legend_rows, pixel_area_m2, predict_scene
from rest_hf.demo.scenes import UploadLimits, chosen_bands, inspect_scene, render_scene, write_sample_scene
from rest_hf.pretrained import list_shipped_models


def test_pixel_area_needs_a_projected_crs_in_a_length_unit():
    transform = Affine(10.0, 0.0, 300000.0, 0.0, -12.5, 4400000.0)
    assert pixel_area_m2(CRS.from_epsg(32618), transform) == 125.0
    feet = CRS.from_epsg(2263)  # NY Long Island, US survey feet
    assert pixel_area_m2(feet, Affine(1, 0, 0, 0, -1, 0)) == pytest.approx(0.3048006096**2)
    assert pixel_area_m2(CRS.from_epsg(4326), Affine(0.001, 0, 0, 0, -0.001, 0)) is None
    assert pixel_area_m2(None, Affine.identity()) is None


def test_legend_rows_are_the_histogram_with_shares_and_areas():
    rows = legend_rows(
        [30, 0, 10], {0: "water", 1: "road", 2: "<b>x</b>"}, [(0, 0, 255), (9, 9, 9), (1, 2, 3)], 125.0
    )
    assert [(r.name, r.pixels, r.share, r.area_m2) for r in rows] == [
        ("water", 30, 75.0, 3750.0),
        ("road", 0, 0.0, 0.0),
        ("<b>x</b>", 10, 25.0, 1250.0),
    ]
    assert format_area(3750.0, 5000.0) == "0.38 ha" and format_area(2.5e6, 3e6) == "2.500 km²"
    unplaced = legend_rows([1, 1], {0: "a", 1: "b"}, [(0, 0, 0), (1, 1, 1)], None)
    assert all(r.area_m2 is None for r in unplaced)


def test_inspect_scene_states_what_is_wrong_in_one_line(tmp_path, make_geotiff):
    scene = make_geotiff(tmp_path / "scene.tif", np.zeros((3, 40, 50), np.uint8))
    info = inspect_scene(scene, UploadLimits())
    assert (info.height, info.width, info.count, info.crs) == (40, 50, 3, "EPSG:32618")
    with pytest.raises(ValueError, match=r"^scene.tif is 0.0 MB, more than the 0 MB this demo accepts$"):
        inspect_scene(scene, UploadLimits(max_bytes=100))
    with pytest.raises(ValueError, match=r"has 0.0 megapixels, more than the 0.0 this demo predicts"):
        inspect_scene(scene, UploadLimits(max_pixels=1000))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a GeoTIFF, PNG or JPEG"):
        inspect_scene(text, UploadLimits())
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="^cannot open upload.tif as a raster") as error:
        inspect_scene(fake, UploadLimits(), name="upload.tif")
    assert str(tmp_path) not in str(error.value)


def test_band_choices_follow_the_model(tmp_path, make_geotiff):
    scene = make_geotiff(tmp_path / "four.tif", np.zeros((4, 20, 20), np.uint16))
    info = inspect_scene(scene, UploadLimits())
    assert info.band_choices() == ["1", "2", "3", "4"]
    assert chosen_bands(info, [], 3) == [1, 2, 3]
    assert chosen_bands(info, ["4", "3", "2"], 3) == [4, 3, 2]
    with pytest.raises(ValueError, match="the model needs 3 bands, 2 are selected; select exactly 3"):
        chosen_bands(info, ["1", "2"], 3)
    with pytest.raises(ValueError, match="four.tif has 4 bands but the model needs 5"):
        chosen_bands(info, [], 5)


def test_sample_scene_is_georeferenced_and_renders(tmp_path):
    path = write_sample_scene(tmp_path / "sample.tif", size=64)
    info = inspect_scene(path, UploadLimits())
    assert (info.height, info.width, info.count, info.crs) == (64, 64, 3, "EPSG:32618")
    picture = render_scene(path, [1, 2, 3])
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8 and picture.max() > 0


def test_catalog_offers_the_defaults_and_never_reads_a_typed_path(tmp_path, monkeypatch):
    names = default_model_names()
    assert names[: len(list_shipped_models())] == list_shipped_models()  # trained models first
    assert "tiny-swin" in names and names[0] != "tiny-swin"
    typed = tmp_path / "org" / "model"
    RestForSemanticSegmentation(RestConfig.from_preset("tiny-swin")).save_pretrained(typed)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    catalog = ModelCatalog(allow_hub_ids=True)
    with pytest.raises(ValueError, match="not in the local Hub cache"):
        catalog.get("org/model")  # the folder org/model in the working directory is not read
    with pytest.raises(ValueError, match="is not a Hub model id"):
        catalog.get("../org/model")
    with pytest.raises(ValueError, match="is not offered here"):
        ModelCatalog(allow_hub_ids=False).get("org/model")
    assert ModelCatalog([str(typed)]).get(str(typed)).random_weights is False  # the operator's folder loads


def test_catalog_refuses_weights_that_would_be_unpickled(tmp_path):
    folder = tmp_path / "pickled"
    RestForSemanticSegmentation(RestConfig.from_preset("tiny-swin")).save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="has no safetensors weights"):
        ModelCatalog([str(folder)]).get(str(folder))


def test_predict_scene_writes_the_georeferenced_outputs_and_counts_the_valid_pixels(
    tmp_path, make_geotiff, rng
):
    import rasterio

    pixels = rng.integers(1, 255, (4, 40, 56), dtype=np.uint8)
    pixels[:, :5, :7] = 0  # nodata corner
    scene = make_geotiff(tmp_path / "scene.tif", pixels, nodata=0)
    loaded = ModelCatalog().get("tiny-swin")
    steps = []
    prediction = predict_scene(
        loaded, scene, [3, 2, 1], tmp_path / "out", probabilities=True, step=lambda f, what: steps.append(f)
    )
    assert steps == sorted(steps) and steps[0] > 0
    with rasterio.open(scene) as src, rasterio.open(prediction.labels_path) as labels:
        assert (labels.crs, labels.transform, labels.shape) == (src.crs, src.transform, src.shape)
        values = labels.read(1)
        valid = values != labels.nodata
    assert prediction.valid_pixels == int(valid.sum()) == 40 * 56 - 35
    counts = np.bincount(values[valid], minlength=loaded.config.num_labels)
    assert [r.pixels for r in prediction.legend] == counts.tolist()
    assert [r.area_m2 for r in prediction.legend] == [c * 125.0 for c in counts.tolist()]
    with rasterio.open(prediction.probabilities_path) as probs:
        assert probs.count == loaded.config.num_labels and probs.crs == labels.crs
    assert prediction.seconds > 0 and prediction.peak_memory_bytes > 0
    assert "<table" in legend_html(prediction) and "ha</td>" in legend_html(prediction)
