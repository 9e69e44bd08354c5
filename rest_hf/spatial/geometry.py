"""The layout of a split feature map, learnt from the tiles themselves.

Spatial layers see only their local tile. Layers that need global sizes (bilinear resizing, pyramid pooling)
or the input check need every tile's extent: one all-gather of two integers per call gives it, so the layers
need no knowledge of strides, padding or rounding rules of the backbone.
"""

from __future__ import annotations

from .comm_alltoall import gather_ints
from .context import SpatialContext
from .partition import TilePartition


def gather_layouts(
    ctx: SpatialContext, shapes: list[tuple[int, int]], whats: list[str]
) -> list[TilePartition]:
    """Partitions of several split maps from every rank's local (height, width) of each, in one all-gather.

    Args:
        ctx: The spatial context.
        shapes: This rank's (height, width) tile of each map.
        whats: Name of each map, used in error messages.

    Returns:
        One `TilePartition` per map (global size, edges, this rank's coordinate).

    Raises:
        ValueError: (on every rank alike) if the tiles of a grid row differ in height or the tiles of a grid
            column differ in width: they do not form one scene.
    """
    if ctx.size == 1:
        return [
            TilePartition(height=h, width=w, grid=(1, 1), row_edges=(0, h), col_edges=(0, w), ctx=ctx)
            for h, w in shapes
        ]
    everyone = gather_ints([v for shape in shapes for v in shape], ctx)
    return [
        _layout_from_sizes(ctx, [(sizes[2 * i], sizes[2 * i + 1]) for sizes in everyone], what)
        for i, what in enumerate(whats)
    ]


def gather_layout(ctx: SpatialContext, height: int, width: int, what: str = "feature map") -> TilePartition:
    """Partition of one (…, H, W) map split over `ctx.grid` (see `gather_layouts`)."""
    return gather_layouts(ctx, [(height, width)], [what])[0]


def _layout_from_sizes(ctx: SpatialContext, sizes: list[tuple[int, int]], what: str) -> TilePartition:
    """The partition whose tile of spatial rank r has size `sizes[r]`, checked to form one scene."""
    rows, cols = ctx.grid
    heights = [[sizes[r * cols + c][0] for c in range(cols)] for r in range(rows)]
    widths = [[sizes[r * cols + c][1] for r in range(rows)] for c in range(cols)]
    for r, row in enumerate(heights):
        if len(set(row)) != 1:
            raise ValueError(
                f"{what}: tiles of grid row {r} have different heights {row}; every tile of a row must be as tall"
            )
    for c, col in enumerate(widths):
        if len(set(col)) != 1:
            raise ValueError(
                f"{what}: tiles of grid column {c} have different widths {col}; every tile of a column must be as wide"
            )
    row_edges, col_edges = [0], [0]
    for row in heights:
        row_edges.append(row_edges[-1] + row[0])
    for col in widths:
        col_edges.append(col_edges[-1] + col[0])
    return TilePartition(
        height=row_edges[-1],
        width=col_edges[-1],
        grid=(rows, cols),
        row_edges=tuple(row_edges),
        col_edges=tuple(col_edges),
        coord=ctx.coord,
        ctx=ctx,
    )
