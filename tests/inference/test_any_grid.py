"""P processes give the labels of one for EVERY scene, including scenes too small to split (issue 12, item 1).

A scene smaller than the grid's smallest split used to be padded to a grid-dependent size; the padded pixels
took part in global attention, pyramid pooling and resizing, so the labels changed with the grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from rest_hf.inference import SceneError, ScenePredictor
from rest_hf.spatial import SpatialContext
from tests.conftest import write_geotiff
from tests.multiprocess import run_in_processes

from .helpers import build_model, processor_for, synthetic_scene

# tiny-swin tiles need 64 px: the first two split over neither 1x2 nor 2x1, the third over 1x2 only
SIZES = [(100, 100), (7, 5), (40, 150)]


def _predictor(model, ctx, mode="holistic", **kwargs):
    predictor = ScenePredictor(model, processor_for(3), ctx, mode=mode, **kwargs)
    # the predictor parallelizes its own copy of the modules: the caller's model stays plain (and reusable)
    assert getattr(model, "spatial_context", None) is None
    return predictor


def _small_scenes_on_two_processes(rank, world, paths):
    model = build_model(3, seed=1)
    alone = _predictor(model, SpatialContext.trivial())
    # no context means one process, even inside a process group: the predictor creates no group itself
    assert ScenePredictor(model, processor_for(3)).ctx.size == 1
    expected = [alone.predict(p, probabilities=True) if rank == 0 else None for p in paths]
    for grid in [(1, 2), (2, 1)]:
        ctx = SpatialContext.init(grid)
        for mode in ("holistic", "windowed"):
            predictor = _predictor(model, ctx, mode)
            for path, one in zip(paths, expected, strict=True):
                split = predictor.predict(path, probabilities=True)
                if rank == 0:
                    np.testing.assert_array_equal(split.labels, one.labels, err_msg=f"{path} {grid} {mode}")
                    assert np.nanmax(np.abs(split.probabilities - one.probabilities)) <= 1e-4
                    small = path != paths[2] or grid == (2, 1)
                    assert small == any("predicted by one process" in note for note in split.notes)
        # windows smaller than the grid can split are refused (growing them would change the labels)
        with pytest.raises(SceneError, match=r"too small to split over the .* use --window 128 or more"):
            _predictor(model, ctx, "windowed", window=64).predict(paths[2])


def test_scenes_too_small_to_split_give_the_labels_of_one_process(tmp_path):
    paths = []
    for i, (height, width) in enumerate(SIZES):
        paths.append(str(write_geotiff(tmp_path / f"small{i}.tif", synthetic_scene(height, width, seed=i))))
    run_in_processes(_small_scenes_on_two_processes, 2, paths)
