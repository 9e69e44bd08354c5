"""Work that cannot finish is refused before it starts, with the option that fixes it (issue 12, item 7)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rest_hf.cli import main
from rest_hf.inference import SceneError, ScenePredictor
from tests.conftest import write_geotiff

from .helpers import build_model, processor_for, save_model, synthetic_scene

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_geotiff(tmp_path_factory.mktemp("budget") / "scene.tif", synthetic_scene(256, 256))


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        (
            "sliding",
            {"window": 1},
            r"every pixel about 4,096 times \(65,536 windows of 1 px.*--window 64 or more",
        ),
        ("windowed", {"window": 1, "overlap": 0.9}, r"every pixel about 68 times \(1,089 windows of 64 px"),
    ],
    ids=["sliding-window-1", "windowed-overlap-0.9"],
)
def test_windows_that_compute_the_scene_many_times_over_are_refused_at_once(scene, mode, kwargs, message):
    predictor = ScenePredictor(build_model(3), processor_for(3), mode=mode, **kwargs)
    started = time.perf_counter()
    with pytest.raises(SceneError, match=message):
        predictor.predict(scene)
    assert time.perf_counter() - started < 5  # refused before the first window, not after thousands


def test_sensible_windows_are_not_refused(scene):
    predictor = ScenePredictor(build_model(3), processor_for(3), mode="sliding", window=64, overlap=0.5)
    assert predictor.predict(scene).windows == 49


def test_a_holistic_tile_that_cannot_fit_in_memory_is_refused_before_it_is_read(scene, monkeypatch):
    import rest_hf.inference.budget as budget

    monkeypatch.setattr(budget, "available_memory_bytes", lambda device: 1_000_000)
    predictor = ScenePredictor(build_model(3), processor_for(3))
    with pytest.raises(
        SceneError, match=r"needs at least .* GiB per process for its 256 x 256 px tile.* --mode windowed"
    ):
        predictor.predict(scene)
    windowed = ScenePredictor(build_model(3), processor_for(3), mode="windowed", window=64)
    assert windowed.predict(scene).labels.shape == (256, 256)  # the fix the message names works


def test_a_scene_of_100000_px_a_side_is_refused_in_one_line_without_reading_it(tmp_path, capsys):
    path = tmp_path / "huge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100_000, height=100_000, count=3, dtype="uint8",
                       tiled=True, SPARSE_OK=True, BIGTIFF="YES", crs="EPSG:32618",
                       transform=rasterio.transform.from_origin(300000, 4400000, 10, 10)):  # fmt: skip
        pass  # no block written: a few kB on disk
    model = save_model(tmp_path / "model", 3, synthetic_scene(64, 64).astype(np.uint8))
    capsys.readouterr()
    code = main(["predict", str(path), "-o", str(tmp_path / "labels.tif"), "--model", str(model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "needs at least" in err[0] and "--mode windowed" in err[0], err
    assert not (tmp_path / "labels.tif").exists()
