"""Window placement, blending weights and padding sizes of the prediction engines."""

from __future__ import annotations

import pytest
import torch

from rest_hf.inference import feather_weights, stride_for, window_grid, window_starts
from rest_hf.spatial import TileRule


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (1000, 512, 384, [0, 384, 488]),  # the last window shifted inward, like mmseg
        (1024, 512, 512, [0, 512]),
        (300, 512, 384, [0]),  # shorter than a window: one window (clipped by the caller)
        (512, 512, 100, [0]),
        (10, 4, 3, [0, 3, 6]),
    ],
)
def test_window_starts_cover_the_scene_with_windows_of_one_size(length, size, stride, expected):
    starts = window_starts(length, size, stride)
    assert starts == expected
    assert starts[-1] + min(size, length) == length


def test_stride_follows_the_overlap_and_refuses_fractions_outside_0_1():
    assert stride_for(512, 0.25) == 384
    assert stride_for(512, 0.0) == 512
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stride_for(512, 1.0)


@pytest.mark.parametrize(("size", "overlap"), [(64, 0.25), (64, 0.5), (50, 0.3), (64, 0.0)])
def test_feathered_weights_cross_fade_and_are_exactly_one_away_from_overlaps(size, overlap):
    height, width = 150, 170
    stride = stride_for(size, overlap)
    rows, cols, windows = window_grid(height, width, (size, size), (stride, stride))
    total = torch.zeros(height, width, dtype=torch.float64)
    coverage = torch.zeros(height, width, dtype=torch.int64)
    for window in windows:
        weight = feather_weights(rows, cols, window.row, window.col, (window.height, window.width))
        assert (weight > 0).all() and (weight <= 1).all()
        total[window.top : window.bottom, window.left : window.right] += weight.double()
        coverage[window.top : window.bottom, window.left : window.right] += 1
    assert (total[coverage == 1] == 1.0).all()  # bit-exact where one window covers a pixel
    # Two neighbours cross-fade (sin^2 + cos^2 = 1). Where the last, inward-shifted window makes three
    # windows meet along an axis the sum differs from 1: the engines divide by the summed weights anyway.
    per_row = torch.zeros(height, dtype=torch.int64)
    per_col = torch.zeros(width, dtype=torch.int64)
    for top in rows:
        per_row[top : top + size] += 1
    for left in cols:
        per_col[left : left + size] += 1
    pairs = (per_row[:, None] <= 2) & (per_col[None, :] <= 2)
    assert pairs.float().mean() > 0.8
    torch.testing.assert_close(total[pairs], torch.ones_like(total[pairs]), atol=1e-6, rtol=0)


def test_one_window_covering_the_scene_has_weight_exactly_one():
    rows, cols, windows = window_grid(90, 70, (128, 128), (96, 96))
    assert len(windows) == 1 and (windows[0].height, windows[0].width) == (90, 70)
    assert (feather_weights(rows, cols, 0, 0, (90, 70)) == 1.0).all()


@pytest.mark.parametrize(
    ("size", "grid", "alignment", "min_tile", "min_input", "expected"),
    [
        ((718, 791), (1, 2), 32, 32, 1, (718, 791)),  # large enough: untouched
        ((3, 2), (1, 1), 32, 32, 1, (3, 2)),  # Swin pads internally: one process needs nothing
        ((3, 2), (1, 1), 32, 96, 32, (32, 32)),  # ConvNeXt's minimum input
        ((40, 50), (2, 2), 32, 32, 1, (64, 64)),  # two aligned tiles per axis
        ((300, 70), (1, 3), 32, 96, 32, (300, 288)),  # three tiles of >= 96 px
    ],
)
def test_padded_size_is_the_smallest_size_the_model_and_grid_accept(
    size, grid, alignment, min_tile, min_input, expected
):
    rule = TileRule(alignment=alignment, min_tile=min_tile, min_input=min_input)
    assert rule.padded_size(*size, grid) == expected
