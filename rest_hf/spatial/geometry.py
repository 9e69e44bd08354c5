"""The layouts of the split feature maps of one forward pass, from one exchange.

Layers that need global sizes (bilinear resizing, pyramid pooling, BatchNorm counts, the token counts of the
interaction attention) need every tile's extent. The model's forward pre-hook gathers the layout of the
input once (`LayoutBook.begin`: one all-gather of two integers per rank); every later map is the input at
some stride of the backbone, and its layout follows by arithmetic (`TileRule.at_stride`): each layer finds
it from its own local shape (`LayoutBook.layout`), with no communication. A twin used on its own, outside a
parallelized model's forward, learns each layout with one small all-gather instead (`gather_layouts`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .comm_alltoall import gather_ints
from .partition import TilePartition, TileRule

if TYPE_CHECKING:
    from .context import SpatialContext


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


class LayoutBook:
    """Every split map's layout in one forward pass, derived from the input's (shared by all twins of a model).

    Args:
        ctx: The spatial context.
        rule: The model's tile rule (its rounding and strides give the layouts of the feature maps).
    """

    def __init__(self, ctx: SpatialContext, rule: TileRule) -> None:
        self.ctx = ctx
        self.rule = rule
        self.input: TilePartition | None = None
        self._by_stride: dict[int, TilePartition] = {}

    def begin(self, height: int, width: int) -> TilePartition:
        """Collective: learn the input layout from this rank's (height, width) tile (one small all-gather).

        Later lookups derive from it until the next `begin`, also during a recomputation in backward
        (activation checkpointing).
        """
        self.input = gather_layout(self.ctx, height, width, what="pixel_values")
        self._by_stride = {}
        for stride in self.rule.strides():
            try:
                self._by_stride[stride] = self.rule.at_stride(self.input, stride)
            except ValueError:  # a tile vanishes at this stride: no map of the model lives there
                continue
        return self.input

    def _candidates(self, matches) -> list[TilePartition]:
        found: list[TilePartition] = []
        for layout in self._by_stride.values():
            if matches(layout) and all(
                (f.row_edges, f.col_edges) != (layout.row_edges, layout.col_edges) for f in found
            ):
                found.append(layout)
        return found

    def layout(self, height: int, width: int, what: str = "feature map") -> TilePartition:
        """The layout of a map whose tile on this rank is `height x width` (no communication once begun).

        Raises:
            ValueError: if the map is at none of the backbone's strides (or at several with different layouts).
        """
        if self.input is None or self.ctx.size == 1:
            return gather_layout(self.ctx, height, width, what)
        found = self._candidates(lambda layout: layout.shape == (height, width))
        if len(found) != 1:
            raise ValueError(
                f"{what}: a {height}x{width} tile is {'at no' if not found else 'ambiguous between'} stride(s) "
                f"{self.rule.strides()} of the input tile {self.input.shape}; spatial layers expect every split "
                f"map to be the input at a stride of the backbone"
            )
        return found[0]

    def token_counts(self, count: int) -> list[int]:
        """Tokens of every rank's tile for a map whose tile on this rank has `count` tokens (h * w)."""
        if self.input is None or self.ctx.size == 1:
            return [i[0] for i in gather_ints([count], self.ctx)]
        found = {
            tuple(b.height * b.width for b in layout.boxes())
            for layout in self._candidates(lambda layout: layout.shape[0] * layout.shape[1] == count)
        }
        if len(found) != 1:
            raise ValueError(
                f"interaction attention: a tile of {count} tokens matches {len(found)} strides of the input tile "
                f"{self.input.shape}; expected exactly one"
            )
        return list(found.pop())


__all__ = ["LayoutBook", "gather_layout", "gather_layouts"]
