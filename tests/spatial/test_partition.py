"""Tile partitioning: pure arithmetic (the multi-process gather round trip is in test_comm.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rest_hf.spatial.context import SpatialContext
from rest_hf.spatial.partition import (
    TileBox,
    TilePartition,
    TileRule,
    most_square_grid,
    parse_grid,
    partition,
    split_edges,
)


@pytest.mark.parametrize(
    ("text", "grid"), [("2x3", (2, 3)), ("1x1", (1, 1)), (" 4X1 ", (4, 1)), ("10x2", (10, 2))]
)
def test_parse_grid(text, grid):
    assert parse_grid(text) == grid


@pytest.mark.parametrize("text", ["2", "2x", "x3", "0x2", "2x-1", "2*3", "axb", ""])
def test_parse_grid_rejects(text):
    with pytest.raises(ValueError, match="is not ROWSxCOLS"):
        parse_grid(text)


@pytest.mark.parametrize(
    ("n", "grid"),
    [
        (1, (1, 1)),
        (2, (1, 2)),
        (3, (1, 3)),
        (4, (2, 2)),
        (6, (2, 3)),
        (8, (2, 4)),
        (9, (3, 3)),
        (12, (3, 4)),
        (7, (1, 7)),
    ],
)
def test_most_square_grid(n, grid):
    assert most_square_grid(n) == grid


def test_split_edges_even_uneven_and_remainder():
    assert split_edges(448, 2, 224) == [0, 224, 448]
    assert split_edges(1000, 3, 32) == [0, 352, 672, 1000]  # 31 units: 11, 10, 10 (+ 8 px remainder)
    assert split_edges(500, 2, 224) == [0, 224, 500]  # the last tile absorbs the 52 px remainder
    assert split_edges(13, 2, 2) == [0, 6, 13]
    assert split_edges(11, 4, 2) == [0, 4, 6, 8, 11]  # 5 units: 2, 1, 1, 1
    for length, parts, alignment in [(1000, 3, 32), (977, 5, 7), (64, 8, 8), (10001, 7, 224)]:
        edges = split_edges(length, parts, alignment)
        assert edges[0] == 0 and edges[-1] == length and len(edges) == parts + 1
        assert all(e % alignment == 0 for e in edges[1:-1])
        assert all(b - a >= alignment for a, b in zip(edges, edges[1:], strict=False))


def test_split_edges_one_part_always_works():
    assert split_edges(300, 1, 224) == [0, 300]
    assert split_edges(5, 1, 224, min_tile=1000) == [0, 5]


def test_split_edges_errors_name_the_fix():
    message = (
        "scene 300 px tall cannot be split into 2 rows of tiles aligned to 224 px (each needs at least 224 px); "
        "use 1 row (--grid 1xC) or pad the scene to at least 448 px"
    )
    with pytest.raises(ValueError) as error:
        split_edges(300, 2, 224)
    assert str(error.value) == message
    with pytest.raises(
        ValueError,
        match=r"300 px wide .* 5 columns .* at least 64 px\); use 4 columns \(--grid Rx4\) or pad the scene to at least 320 px",
    ):
        split_edges(300, 5, 32, min_tile=64, axis_name="wide")
    with pytest.raises(ValueError, match="each needs at least 96 px"):  # min_tile rounds up to whole units
        split_edges(1000, 20, 32, min_tile=70)
    edges = split_edges(1000, 10, 32, min_tile=70)  # 31 units: 4, 3, ..., 3 (+ 8 px)
    assert edges[:3] == [0, 128, 224] and min(b - a for a, b in zip(edges, edges[1:], strict=False)) == 96


def test_tile_box():
    box = TileBox(row=1, col=2, top=10, left=20, height=5, width=7)
    assert (box.bottom, box.right) == (15, 27)
    assert box.slices == (slice(10, 15), slice(20, 27))


def test_partition_boxes_local_and_scale():
    part = partition(100, 70, (2, 3), (1, 2), 8)
    assert part.row_edges == (0, 48, 100) and part.col_edges == (0, 24, 48, 70)
    assert part.box() == TileBox(row=1, col=2, top=48, left=48, height=52, width=22)
    assert part.shape == (52, 22)
    boxes = part.boxes()
    assert [(b.row, b.col) for b in boxes] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert sum(b.height * b.width for b in boxes) == 100 * 70

    whole = torch.arange(2 * 3 * 100 * 70).reshape(2, 3, 100, 70)
    for x in (whole, whole[0], whole[0, 0], whole.numpy()):
        assert tuple(part.local(x).shape) == (*x.shape[:-2], 52, 22)
    assert np.array_equal(part.local(whole.numpy()), whole[..., 48:, 48:].numpy())
    with pytest.raises(ValueError, match=r"expected a \(\.\.\., 100, 70\) map"):
        part.local(whole[..., :99, :])
    # reassembling every rank's local view gives back the whole
    rebuilt = torch.zeros_like(whole)
    for b in boxes:
        other = partition(100, 70, (2, 3), (b.row, b.col), 8)
        rebuilt[..., b.slices[0], b.slices[1]] = other.local(whole)
    assert torch.equal(rebuilt, whole)

    quarter = part.scale(4)
    assert (quarter.height, quarter.width, quarter.row_edges, quarter.col_edges) == (
        25,
        18,
        (0, 12, 25),
        (0, 6, 12, 18),
    )
    eighth = part.scale(8, rounding="floor")
    assert (eighth.height, eighth.width, eighth.row_edges, eighth.col_edges) == (
        12,
        8,
        (0, 6, 12),
        (0, 3, 6, 8),
    )
    assert part.scale(8).width == 9 and quarter.coord == (1, 2)
    with pytest.raises(ValueError, match="not all multiples of stride 16"):
        part.scale(16)


def test_partition_per_axis_alignment_and_validation():
    part = partition(64, 64, (2, 2), (0, 0), alignment=(8, 16))
    assert part.row_edges == (0, 32, 64) and part.col_edges == (0, 32, 64)
    assert partition(84, 64, (2, 2), alignment=(8, 16), min_tile=(40, 1)).row_edges == (0, 40, 84)
    with pytest.raises(ValueError, match="outside grid"):
        TilePartition(height=4, width=4, grid=(1, 1), row_edges=(0, 4), col_edges=(0, 4), coord=(0, 1))
    with pytest.raises(ValueError, match="leave an empty tile"):
        TilePartition(height=4, width=4, grid=(2, 1), row_edges=(0, 4, 4), col_edges=(0, 4))
    with pytest.raises(ValueError, match="do not split 4 into 2 tiles"):
        TilePartition(height=4, width=4, grid=(2, 1), row_edges=(0, 4), col_edges=(0, 4))


def test_gather_single_process_is_identity():
    part = SpatialContext.trivial().partition(9, 7, TileRule())
    x = torch.randn(2, 9, 7)
    assert torch.equal(part.gather(part.local(x)), x)
    with pytest.raises(ValueError, match="tile"):
        part.gather(x[..., :8, :])
    assert part == partition(9, 7, (1, 1))  # the context is not compared


def test_gather_needs_the_matching_context():
    split = partition(8, 8, (1, 2), (0, 1))
    with pytest.raises(ValueError, match="needs the partition's SpatialContext"):
        split.gather(torch.zeros(8, 4))
    mismatched = partition(8, 8, (1, 2), (0, 1), ctx=SpatialContext.trivial())
    with pytest.raises(
        ValueError, match=r"grid \(1, 2\) at \(0, 1\) cannot gather over a context of grid \(1, 1\)"
    ):
        mismatched.gather(torch.zeros(8, 4))
