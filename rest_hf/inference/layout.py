"""Where windows and crops lie in a scene and how overlaps are blended.

Pure arithmetic on sizes (no I/O, no communication), shared by the three engines. How much a scene is padded
for the model and the grid is the model's `TileRule.padded_size` (one tiling rule for the whole library).
"""

from __future__ import annotations

import math

import torch

from ..spatial.partition import TileBox

__all__ = [
    "feather_weights",
    "stride_for",
    "window_grid",
    "window_starts",
]


def stride_for(size: int, overlap: float) -> int:
    """Step between window starts for windows of `size` px overlapping by the fraction `overlap` (0 <= f < 1)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap}")
    return max(1, round(size * (1.0 - overlap)))


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of `size` px every `stride` px covering `[0, length)`; the last one shifted inward.

    Like mmseg's slide inference: the windows keep their size, and the last one ends exactly at `length`
    (so it may overlap its neighbour more than the others). A scene shorter than a window gets one window
    starting at 0 (the caller clips its size to the scene).
    """
    if length < 1 or size < 1 or stride < 1:
        raise ValueError(
            f"window_starts needs positive length, size and stride, got {length}, {size}, {stride}"
        )
    if size >= length:
        return [0]
    starts = list(range(0, length - size, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def window_grid(
    height: int, width: int, size: tuple[int, int], stride: tuple[int, int]
) -> tuple[list[int], list[int], list[TileBox]]:
    """Row starts, column starts and the windows (row-major `TileBox`es: position in the window grid, top-left
    corner, size) of `size` = (h, w) px, clipped to the scene."""
    rows = window_starts(height, size[0], stride[0])
    cols = window_starts(width, size[1], stride[1])
    win_h, win_w = min(size[0], height), min(size[1], width)
    windows = [
        TileBox(row=r, col=c, top=top, left=left, height=win_h, width=win_w)
        for r, top in enumerate(rows)
        for c, left in enumerate(cols)
    ]
    return rows, cols, windows


def _ramp(length: int, rising: bool) -> torch.Tensor:
    """A smooth ramp over `length` px: sin^2 rising from ~0 to ~1 (or cos^2 falling); the two sum to 1."""
    t = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    values = torch.sin(t * (math.pi / 2)) ** 2 if rising else torch.cos(t * (math.pi / 2)) ** 2
    return values.to(torch.float32)


def _feather_1d(starts: list[int], index: int, size: int) -> torch.Tensor:
    weight = torch.ones(size)
    if index > 0:
        overlap = starts[index - 1] + size - starts[index]
        if overlap > 0:
            weight[:overlap] = torch.minimum(weight[:overlap], _ramp(overlap, rising=True))
    if index < len(starts) - 1:
        overlap = starts[index] + size - starts[index + 1]
        if overlap > 0:
            weight[size - overlap :] = torch.minimum(weight[size - overlap :], _ramp(overlap, rising=False))
    return weight


def feather_weights(
    row_starts: list[int], col_starts: list[int], row: int, col: int, size: tuple[int, int]
) -> torch.Tensor:
    """(h, w) blending weight of window `(row, col)` of a window grid.

    Separable: along each axis the weight is exactly 1 except where the window overlaps its neighbour, where
    it rises (or falls) smoothly (sin^2 / cos^2) across the overlap, so the two neighbours' weights sum to 1
    there and the seam fades out. Weights are > 0 everywhere. A pixel covered by one window only gets weight
    exactly 1.0, so a single window covering the scene reproduces the unblended logits bit for bit.
    """
    wy = _feather_1d(row_starts, row, size[0])
    wx = _feather_1d(col_starts, col, size[1])
    return wy[:, None] * wx[None, :]
