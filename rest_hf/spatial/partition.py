"""Tiles of a scene: where the borders between the processes of a spatial group lie.

Pure arithmetic: nothing here communicates or imports the communication code (`TilePartition.gather` asks the
partition's `SpatialContext` to do it). A scene of `height x width` pixels is split
into a `rows x cols` grid of tiles; spatial rank `row * cols + col` holds tile `(row, col)`. Interior borders
sit on multiples of the model's alignment (the total stride at which windows or strides must line up), so
every layer sees tile borders on its own grid; the last row and column of tiles absorb the remainder, so tiles
may be uneven.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .context import SpatialContext

_AXIS_WORDS = {"tall": ("row", "rows", "{k}xC"), "wide": ("column", "columns", "Rx{k}")}


def parse_grid(text: str) -> tuple[int, int]:
    """Parse a grid such as ``"2x3"`` (rows x columns) into ``(2, 3)``.

    Raises:
        ValueError: if the text is not two positive integers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"grid {text!r} is not ROWSxCOLS with positive integers, e.g. '2x2' or '1x3'")
    return int(match[1]), int(match[2])


def most_square_grid(n: int) -> tuple[int, int]:
    """The `rows x cols` grid of `n` tiles closest to square, with rows <= cols (6 -> (2, 3), 3 -> (1, 3))."""
    if n < 1:
        raise ValueError(f"a grid needs at least one tile, got {n}")
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    return rows, n // rows


def split_edges(
    length: int, parts: int, alignment: int, min_tile: int | None = None, axis_name: str = "tall"
) -> list[int]:
    """Edges ``[0 = e0 < e1 < ... < e_parts = length]`` of `parts` tiles along one axis.

    Interior edges are multiples of `alignment`. The ``length // alignment`` whole units are shared out as
    evenly as possible (the first ``units % parts`` tiles get one unit more) and the last tile also takes the
    sub-alignment remainder. `parts == 1` always gives ``[0, length]``.

    Args:
        length: Scene extent in pixels.
        parts: Number of tiles along this axis.
        alignment: Interior edges are multiples of this.
        min_tile: Every tile needs at least ``max(1, ceil(min_tile / alignment))`` whole units.
        axis_name: ``"tall"`` (splitting rows) or ``"wide"`` (splitting columns), for error messages.

    Raises:
        ValueError: if some tile would get fewer units than it needs; the message says which grid or scene
            size would work.
    """
    if length < 1 or parts < 1 or alignment < 1:
        raise ValueError(
            f"split_edges needs length, parts and alignment >= 1, got {length}, {parts}, {alignment}"
        )
    if parts == 1:
        return [0, length]
    units = length // alignment
    need = max(1, math.ceil((min_tile or 0) / alignment))
    base, extra = divmod(units, parts)
    if base < need:
        one, many, flag = _AXIS_WORDS.get(axis_name, ("part", "parts", "{k}"))
        fits = max(1, units // need)
        raise ValueError(
            f"scene {length} px {axis_name} cannot be split into {parts} {many} of tiles aligned to {alignment} px "
            f"(each needs at least {need * alignment} px); use {fits} {one if fits == 1 else many} "
            f"(--grid {flag.format(k=fits)}) or pad the scene to at least {parts * need * alignment} px"
        )
    edges = [0]
    for i in range(parts - 1):
        edges.append(edges[-1] + (base + (i < extra)) * alignment)
    edges.append(length)
    return edges


@dataclass(frozen=True)
class TileBox:
    """One tile in scene pixels: grid position `(row, col)`, top-left corner and size."""

    row: int
    col: int
    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices selecting this tile from a (..., H, W) array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class TilePartition:
    """A (..., height, width) map split over a `grid` of tiles; `coord` is this rank's tile.

    `row_edges` and `col_edges` hold ``rows + 1`` and ``cols + 1`` edges from 0 to height / width.
    `ctx` (optional, not compared) is the `SpatialContext` used by `gather`.
    """

    height: int
    width: int
    grid: tuple[int, int]
    row_edges: tuple[int, ...]
    col_edges: tuple[int, ...]
    coord: tuple[int, int] = (0, 0)
    ctx: SpatialContext | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        rows, cols = self.grid
        for name, edges, parts, length in (
            ("row_edges", self.row_edges, rows, self.height),
            ("col_edges", self.col_edges, cols, self.width),
        ):
            if len(edges) != parts + 1 or edges[0] != 0 or edges[-1] != length:
                raise ValueError(f"{name} {edges} do not split {length} into {parts} tiles")
            if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"{name} {edges} leave an empty tile")
        if not (0 <= self.coord[0] < rows and 0 <= self.coord[1] < cols):
            raise ValueError(f"coord {self.coord} is outside grid {rows}x{cols}")

    @property
    def rows(self) -> int:
        return self.grid[0]

    @property
    def cols(self) -> int:
        return self.grid[1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of this rank's tile."""
        box = self.box()
        return box.height, box.width

    def box(self, row: int | None = None, col: int | None = None) -> TileBox:
        """The tile at `(row, col)`; by default this rank's tile."""
        row = self.coord[0] if row is None else row
        col = self.coord[1] if col is None else col
        top, bottom = self.row_edges[row], self.row_edges[row + 1]
        left, right = self.col_edges[col], self.col_edges[col + 1]
        return TileBox(row=row, col=col, top=top, left=left, height=bottom - top, width=right - left)

    def boxes(self) -> list[TileBox]:
        """Every tile in spatial-rank order (rank = row * cols + col)."""
        return [self.box(r, c) for r in range(self.rows) for c in range(self.cols)]

    def local(self, x: Any) -> Any:
        """This rank's tile of a whole (..., height, width) tensor or array (a view)."""
        if tuple(x.shape[-2:]) != (self.height, self.width):
            raise ValueError(f"expected a (..., {self.height}, {self.width}) map, got shape {tuple(x.shape)}")
        rows, cols = self.box().slices
        return x[..., rows, cols]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The whole (..., height, width) tensor from every rank's tile, returned on every rank.

        Differentiable: the gradient of each rank's tile is the sum over ranks of the gradient of its region.
        The identity for a single tile.
        """
        box = self.box()
        if tuple(local.shape[-2:]) != (box.height, box.width):
            raise ValueError(
                f"expected this rank's (..., {box.height}, {box.width}) tile, got shape {tuple(local.shape)}"
            )
        if self.rows * self.cols == 1:
            return local
        if self.ctx is None:
            raise ValueError(
                "TilePartition.gather needs the partition's SpatialContext (use ctx.partition(...))"
            )
        if (self.ctx.grid, self.ctx.coord) != (self.grid, self.coord):
            raise ValueError(
                f"partition of grid {self.grid} at {self.coord} cannot gather over a context of grid "
                f"{self.ctx.grid} at {self.ctx.coord}"
            )
        return self.ctx.gather_tiles(local, self)

    def scale(self, stride: int, rounding: str = "ceil") -> TilePartition:
        """The partition of a feature map at total stride `stride`.

        Interior edges must divide by `stride`; the scene extent becomes ``ceil`` (or ``floor``) of
        ``length / stride``.
        """
        if rounding not in ("ceil", "floor"):
            raise ValueError(f"rounding must be 'ceil' or 'floor', got {rounding!r}")
        round_ = math.ceil if rounding == "ceil" else math.floor

        def edges(old: tuple[int, ...], length: int) -> tuple[int, ...]:
            inner = old[1:-1]
            if any(e % stride for e in inner):
                raise ValueError(f"tile edges {list(old)} are not all multiples of stride {stride}")
            return (0, *(e // stride for e in inner), round_(length / stride))

        return replace(
            self,
            height=round_(self.height / stride),
            width=round_(self.width / stride),
            row_edges=edges(self.row_edges, self.height),
            col_edges=edges(self.col_edges, self.width),
        )


def partition(
    height: int,
    width: int,
    grid: tuple[int, int],
    coord: tuple[int, int] = (0, 0),
    alignment: int | tuple[int, int] = 1,
    min_tile: int | tuple[int, int] | None = None,
    ctx: SpatialContext | None = None,
) -> TilePartition:
    """Split a `height x width` scene over `grid`; `alignment` and `min_tile` may differ per axis (tuples).

    Raises:
        ValueError: if the grid cannot give every tile an aligned, large enough share (see `split_edges`).
    """
    align_h, align_w = (alignment, alignment) if isinstance(alignment, int) else alignment
    min_h, min_w = (min_tile, min_tile) if min_tile is None or isinstance(min_tile, int) else min_tile
    return TilePartition(
        height=height,
        width=width,
        grid=tuple(grid),
        row_edges=tuple(split_edges(height, grid[0], align_h, min_h, "tall")),
        col_edges=tuple(split_edges(width, grid[1], align_w, min_w, "wide")),
        coord=tuple(coord),
        ctx=ctx,
    )


# ConvNeXt's 7x7 depthwise convolutions need 3 pixels of every neighbour at the deepest stage.
CONVNEXT_DEEPEST_HALO = 3


@dataclass(frozen=True)
class TileRule:
    """The tiles a model accepts: one object per model, used by partitioning, inference, training data and the
    model's own check, so they cannot disagree.

    Attributes:
        alignment: Interior tile borders are multiples of this (px): the total stride at which windows or
            strides line up (`RestConfig.spatial_alignment`).
        min_tile: Smallest side (px) of a tile of a split axis, so every halo fits inside the neighbouring tile.
        min_input: Smallest side (px) of the whole scene the model accepts (`RestConfig.min_input_size`).
        rounding: How a tile's extent rounds at stride s in the backbone's feature maps: ``"floor"``
            (ConvNeXt: unpadded strided convolutions) or ``"ceil"`` (Swin: padded patch embedding and merging).
        max_stride: The backbone's total stride: feature maps exist at strides 1, 2, 4, ..., max_stride.
    """

    alignment: int = 1
    min_tile: int = 1
    min_input: int = 1
    rounding: str = "floor"
    max_stride: int = 1

    def __post_init__(self):
        if min(self.alignment, self.min_tile, self.min_input, self.max_stride) < 1:
            raise ValueError(f"every size of a TileRule must be >= 1, got {self}")
        if self.rounding not in ("floor", "ceil"):
            raise ValueError(f"rounding must be 'floor' or 'ceil', got {self.rounding!r}")

    @classmethod
    def from_config(cls, config: Any) -> TileRule:
        """The rule of a `RestConfig` (read from its fields; this module imports no model code)."""
        swin = config.backbone_config.model_type == "swin"
        alignment, stride = int(config.spatial_alignment), int(config.total_stride)
        return cls(
            alignment=alignment,
            min_tile=alignment if swin else max(alignment, CONVNEXT_DEEPEST_HALO * stride),
            min_input=int(config.min_input_size),
            rounding="ceil" if swin else "floor",
            max_stride=stride,
        )

    @classmethod
    def of(cls, source: Any) -> TileRule:
        """A rule from a `TileRule`, a model config, or a model (its `config`)."""
        if isinstance(source, TileRule):
            return source
        config = getattr(source, "config", source)
        if hasattr(config, "spatial_alignment") and hasattr(config, "backbone_config"):
            return cls.from_config(config)
        raise TypeError(
            f"expected a TileRule, a RestConfig or a model, got {type(source).__name__}; pass model.config"
        )

    @property
    def units(self) -> int:
        """Whole alignment units every tile of a split axis needs."""
        return max(1, math.ceil(self.min_tile / self.alignment))

    def smallest_split(self, parts: int) -> int:
        """Smallest side (px) that splits into `parts` tiles this rule accepts."""
        if parts <= 1:
            return self.min_input
        return max(self.min_input, parts * self.units * self.alignment)

    def padded_size(self, height: int, width: int, grid: tuple[int, int] = (1, 1)) -> tuple[int, int]:
        """The smallest `(height, width)` at least the scene's that the rule accepts on `grid` (scenes large
        enough keep their size)."""
        return max(height, self.smallest_split(grid[0])), max(width, self.smallest_split(grid[1]))

    def partition(
        self,
        height: int,
        width: int,
        grid: tuple[int, int],
        coord: tuple[int, int] = (0, 0),
        ctx: SpatialContext | None = None,
    ) -> TilePartition:
        """Split a scene into tiles this rule accepts.

        Raises:
            ValueError: if the scene is smaller than the model accepts or cannot be split over `grid`; the
                message names the sizes and grids that would work.
        """
        for length, axis in ((height, "tall"), (width, "wide")):
            if length < self.min_input:
                raise ValueError(
                    f"scene {length} px {axis} is smaller than the model accepts ({self.min_input} px); pad it "
                    f"to {self.padded_size(height, width, grid)[0 if axis == 'tall' else 1]} px"
                )
        return partition(height, width, grid, coord, self.alignment, self.units * self.alignment, ctx)

    def check(self, layout: TilePartition, what: str = "scene") -> None:
        """Refuse a layout whose tiles this rule does not accept, naming a partition that works."""
        for axis, (edges, size, name) in enumerate(
            ((layout.row_edges, layout.height, "tall"), (layout.col_edges, layout.width, "wide"))
        ):
            parts = len(edges) - 1
            if parts == 1:
                continue
            extents = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
            misaligned = [e for e in edges[1:-1] if e % self.alignment]
            if misaligned or min(extents) < self.min_tile:
                fits = max(1, size // (self.units * self.alignment))
                hint = f"{fits}x{layout.grid[1]}" if axis == 0 else f"{layout.grid[0]}x{fits}"
                raise ValueError(
                    f"{what} {size} px {name} split into tiles of {extents} px: tile borders must be multiples of "
                    f"{self.alignment} px and tiles at least {self.min_tile} px; split it with "
                    f"ctx.partition(height, width, model.config), use a grid of at most {hint}, or pad the "
                    f"scene to {self.smallest_split(parts)} px"
                )

    def strides(self) -> list[int]:
        """The strides of the backbone's feature maps: 1, 2, 4, ..., max_stride."""
        out, stride = [], 1
        while stride <= self.max_stride:
            out.append(stride)
            stride *= 2
        return out

    def at_stride(self, layout: TilePartition, stride: int) -> TilePartition:
        """The layout of a feature map at `stride`: every tile's extent divided by `stride`, rounded by the
        rule (interior tiles are multiples of the alignment, so only the last tiles round)."""
        round_ = math.ceil if self.rounding == "ceil" else math.floor

        def edges(old: tuple[int, ...]) -> tuple[int, ...]:
            out = [0]
            for a, b in zip(old[:-1], old[1:], strict=True):
                out.append(out[-1] + round_((b - a) / stride))
            return tuple(out)

        rows, cols = edges(layout.row_edges), edges(layout.col_edges)
        return replace(layout, height=rows[-1], width=cols[-1], row_edges=rows, col_edges=cols)
