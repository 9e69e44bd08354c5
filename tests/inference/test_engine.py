"""The prediction engines in-process: exactness between modes and process counts, nodata, padding, bad scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rest_hf.inference import SceneError, ScenePredictor
from rest_hf.io import RasterSource
from rest_hf.spatial import SpatialContext
from tests.multiprocess import run_in_processes

from .helpers import build_model, corrupt_blocks_from_row, processor_for, synthetic_scene

HEIGHT, WIDTH = 96, 136
NODATA = 0


@pytest.fixture
def scene_path(tmp_path, make_geotiff):
    """A 3-band uint8 scene with a nodata corner (value 0 in every band)."""
    pixels = synthetic_scene(HEIGHT, WIDTH)
    pixels[:, :20, :30] = NODATA
    return make_geotiff(tmp_path / "scene.tif", pixels, nodata=NODATA)


def model_for(path, preset="tiny-swin"):
    processor = processor_for(3)
    with RasterSource(path) as source:
        big_enough = min(source.height, source.width) >= 64
        calibration = (
            processor.normalize_array(source.read(0, 0, source.height, source.width)) if big_enough else None
        )
    return build_model(3, calibration, preset=preset), processor


def predict(path, mode="holistic", ctx=None, model=None, **kwargs):
    model, processor = model if model is not None else model_for(path)
    predictor = ScenePredictor(
        model, processor, ctx, mode=mode, **{k: v for k, v in kwargs.items() if k != "sink"}
    )
    return predictor.predict(path, kwargs.get("sink"), probabilities=True)


def test_nodata_pixels_get_the_nodata_label_nan_probabilities_and_are_not_counted(scene_path):
    result = predict(scene_path)
    assert result.labels.shape == (HEIGHT, WIDTH) and result.labels.dtype == np.uint8
    nodata = np.zeros((HEIGHT, WIDTH), bool)
    nodata[:20, :30] = True
    assert (result.labels[nodata] == 255).all()
    assert (result.labels[~nodata] < 4).all()
    assert np.isnan(result.probabilities[:, nodata]).all()
    np.testing.assert_allclose(result.probabilities[:, ~nodata].sum(axis=0), 1.0, atol=1e-5)
    assert result.valid_pixels == (~nodata).sum() == result.histogram.sum()
    assert (result.histogram > 0).sum() >= 2  # the calibrated model predicts several classes


@pytest.mark.parametrize(("mode", "window"), [("windowed", 4096), ("sliding", 4096)])
def test_one_window_covering_the_scene_equals_holistic_exactly(scene_path, mode, window):
    model = model_for(scene_path)
    holistic = predict(scene_path, model=model)
    windowed = predict(scene_path, mode, model=model, window=window)
    assert windowed.windows == 1
    np.testing.assert_array_equal(windowed.labels, holistic.labels)
    np.testing.assert_array_equal(windowed.probabilities, holistic.probabilities)


class RecordingSink:
    def __init__(self):
        self.blocks = []

    def write(self, top, left, labels, valid, probabilities):
        self.blocks.append((top, left, *labels.shape))
        assert probabilities is not None and probabilities.shape[1:] == labels.shape
        assert (labels[~valid] == 255).all() and (labels[valid] < 4).all()


def test_windowed_blends_overlaps_and_writes_rows_as_soon_as_no_later_window_touches_them(scene_path):
    sink = RecordingSink()
    result = predict(scene_path, "windowed", window=64, overlap=0.25, sink=sink)
    assert result.windows == 2 * 3
    # One block per row of windows, top to bottom, each as wide as the scene: rank 0 holds one band.
    assert [b[0] for b in sink.blocks] == [0, 32] and all(b[1:] == (0, b[2], WIDTH) for b in sink.blocks)
    assert sum(b[2] for b in sink.blocks) == HEIGHT
    assert result.valid_pixels == HEIGHT * WIDTH - 20 * 30


def test_sliding_averages_overlapping_crops_and_agrees_with_itself(scene_path):
    model = model_for(scene_path)
    first = predict(scene_path, "sliding", model=model, window=48, overlap=0.5)
    assert first.windows == 3 * 5  # rows 0, 24, 48; columns 0, 24, 48, 72, 88 (shifted inward)
    again = predict(scene_path, "sliding", model=model, window=48, overlap=0.5)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert (first.labels[:20, :30] == 255).all()


def test_scene_smaller_than_the_model_minimum_is_padded_predicted_and_cropped(tmp_path, make_geotiff):
    path = make_geotiff(tmp_path / "small.tif", synthetic_scene(20, 13), nodata=NODATA)
    model = model_for(path, preset="tiny-convnext")  # ConvNeXt needs 32 px per side
    result = predict(path, model=model)
    assert result.labels.shape == (20, 13) and (result.labels < 4).all()
    assert result.predicted_size == (32, 32)
    assert "padded to 32 x 32 px" in result.notes[0]


@pytest.mark.parametrize("mode", ["holistic", "windowed", "sliding"])
def test_a_scene_without_valid_pixels_is_refused(tmp_path, make_geotiff, scene_path, mode):
    path = make_geotiff(tmp_path / "empty.tif", np.zeros((3, 40, 50), np.uint8), nodata=0)
    with pytest.raises(SceneError, match=r"empty.tif has no valid pixels"):
        predict(path, mode, model=model_for(scene_path), **({} if mode == "holistic" else {"window": 32}))


def test_band_count_mismatch_names_the_file_both_counts_and_the_fix(tmp_path, make_geotiff, scene_path):
    path = make_geotiff(tmp_path / "four.tif", np.ones((4, 40, 50), np.uint8))
    with pytest.raises(
        SceneError, match=r"four.tif has 4 bands but the model expects 3; choose 3 with --bands"
    ):
        predict(path, model=model_for(scene_path))


# ------------------------------------------------------------------------------------- two processes
def _two_process_checks(rank, world, scene, broken):
    torch.manual_seed(0)
    ctx = SpatialContext.init()  # 1x2: each process holds a column of tiles
    trivial = SpatialContext.trivial()
    model = model_for(scene)
    runs = [
        ("holistic", {}),
        (
            "windowed",
            {"window": 128, "overlap": 0.25},
        ),  # 2 windows (96 x 128), each split over both processes
        ("sliding", {"window": 48, "overlap": 0.5}),  # 15 crops shared round robin
    ]
    for mode, kwargs in runs:
        alone = predict(scene, mode, trivial, (build_like(model), model[1]), **kwargs) if rank == 0 else None
        split = predict(scene, mode, ctx, (build_like(model), model[1]), **kwargs)
        if rank == 0:
            np.testing.assert_array_equal(split.labels, alone.labels, err_msg=mode)
            diff = np.nanmax(np.abs(split.probabilities - alone.probabilities))
            assert diff <= 1e-4, f"{mode}: probabilities differ by {diff}"
            assert np.array_equal(np.isnan(split.probabilities), np.isnan(alone.probabilities))
            np.testing.assert_array_equal(split.histogram, alone.histogram)
        else:
            assert split.labels is None and split.histogram is None  # only rank 0 receives results
    # The lower half of `broken` is unreadable: only the rank holding the lower tiles fails to read, and
    # both raise the same error (no rank is left waiting in a collective).
    grid = SpatialContext.init((2, 1))
    with pytest.raises(SceneError) as error:
        predict(broken, "holistic", grid, (build_like(model), model[1]))
    message = str(error.value)
    assert "broken.tif" in message and "top=64" in message, message


def build_like(model_and_processor):
    model = model_and_processor[0]
    copy = type(model)(model.config).eval()
    copy.load_state_dict(model.state_dict())
    return copy


def test_two_processes_give_the_labels_of_one_in_every_mode(scene_path, tmp_path, make_geotiff):
    broken = make_geotiff(tmp_path / "broken.tif", synthetic_scene(128, 96), tiled=True, compress="deflate")
    corrupt_blocks_from_row(broken, 64)
    run_in_processes(_two_process_checks, 2, str(scene_path), str(broken))
