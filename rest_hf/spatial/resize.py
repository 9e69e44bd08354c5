"""Spatial twins of bilinear resizing: a split map to a split map, and a replicated (pooled) map to a split map.

Both compute, on each tile, the tile's part of the whole scene's `F.interpolate(..., mode="bilinear",
align_corners=False)`, in global coordinates, so tile borders leave no seam.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.modeling_rest import RestBilinearResize
from .comm import halo_exchange
from .comm_halo import HaloFrame, start_halos
from .geometry import gather_layouts
from .layers import SpatialMixin
from .partition import TilePartition


def _source_positions(
    out_start: int, out_stop: int, in_size: int, out_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower source index and weight of the upper one for output rows [out_start, out_stop) (align_corners=False)."""
    scale = in_size / out_size
    position = ((torch.arange(out_start, out_stop, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    lower = position.floor().long().clamp(max=in_size - 1)
    return lower, position - lower


# Channels interpolated at a time: the temporaries are then an eighth of the output, not twice it.
_CHANNEL_CHUNKS = 8


def _interpolate_axis(
    source: torch.Tensor, dim: int, lower: torch.Tensor, weight: torch.Tensor, last: int
) -> torch.Tensor:
    """Linear interpolation along `dim` of (B, C, h, w) `source` at local indices `lower` (+1, clamped to `last`).

    The final 4x upsampling of the logits is the largest tensor of the model, so the interpolation writes
    into the output chunk by chunk of channels, in place (`lower + w * (upper - lower)`): the peak is the
    output plus two chunks, close to `F.interpolate`'s.
    """
    shape = [1] * source.ndim
    shape[dim] = -1
    weight = weight.to(source.dtype).view(shape)
    upper = (lower + 1).clamp(max=last)
    out_shape = list(source.shape)
    out_shape[dim] = lower.numel()
    output = source.new_empty(out_shape)
    step = -(-source.shape[1] // _CHANNEL_CHUNKS)
    for start in range(0, source.shape[1], step):
        chunk = source[:, start : start + step]
        below = chunk.index_select(dim, lower)
        output[:, start : start + step] = chunk.index_select(dim, upper).sub_(below).mul_(weight).add_(below)
    return output


def _upsample(hidden_state: torch.Tensor, k_rows: int, k_cols: int) -> torch.Tensor:
    return F.interpolate(hidden_state, scale_factor=(k_rows, k_cols), mode="bilinear", align_corners=False)


def _span(frame: HaloFrame, axis: int, extent: int, halo: int, k: int) -> tuple[tuple[int, int], int]:
    """Padded range along `axis` of a strip across the tile (the tile plus the halo bands a neighbour sent), and
    where the tile's first output lies in the strip's output. Past the scene's edge the strip stops at the
    tile, so `F.interpolate` clamps there as it does on the whole scene."""
    before = frame.has((-1, 0) if axis == 0 else (0, -1))
    after = frame.has((1, 0) if axis == 0 else (0, 1))
    start = 0 if before else halo
    return (start, halo + extent + (halo if after else 0)), k * (halo - start)


class SpatialBilinearResize(SpatialMixin, RestBilinearResize):
    """Bilinear resizing (align_corners=False) of a split map to a split map, in global coordinates.

    Source and target tiles come from the model's layout book. When every output tile is a whole multiple k of
    its source tile (the decoder's 2x-8x upsamplings and the final 4x of aligned scenes), `F.interpolate` of the
    tile alone (`scale_factor=k`) already gives the whole scene's pixels except the k // 2 output rows or
    columns next to an edge shared with a neighbour, which read one source pixel beyond the tile: the halo of
    one pixel travels meanwhile (`start_halos`) and those few pixels are recomputed in place from halo-padded
    strips. Other ratios exchange the halo first and interpolate at explicit global source indices and weights.
    """

    def forward(self, hidden_state: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.resize_together([hidden_state], size)[0]

    def resize_together(self, maps: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """Each (B, C_i, h_i, w_i) tile resized to this rank's tile of a scene of `size`, with the halos of all
        whole-multiple resizes in one exchange (one synchronisation for all, instead of one each)."""
        plans = []
        for hidden_state in maps:
            source, target = self._layouts(hidden_state, size)
            plans.append((source, target, self._whole_scales(source, target)))
        moving = [
            i for i, plan in enumerate(plans) if plan[2] is not None and any(self._halo_widths(*plan[2]))
        ]
        pendings = (
            start_halos(
                [maps[i] for i in moving], self.ctx, [self._halo_widths(*plans[i][2]) for i in moving]
            )
            if moving
            else []
        )
        outputs = [
            _upsample(hidden_state, *scales)
            if scales is not None
            else self._resize_at(hidden_state, source, target)
            for hidden_state, (source, target, scales) in zip(maps, plans, strict=True)
        ]
        for i, pending in zip(moving, pendings, strict=True):
            self._patch_edges(maps[i], outputs[i], *plans[i][2], pending.wait())
        return outputs

    def _layouts(
        self, hidden_state: torch.Tensor, size: tuple[int, int]
    ) -> tuple[TilePartition, TilePartition]:
        if self.layouts.input is None:
            source, target = gather_layouts(
                self.ctx, [tuple(hidden_state.shape[2:]), tuple(size)], ["resize input", "resize output"]
            )
            return source, target
        source = self.layouts.layout(*hidden_state.shape[2:], what="resize input")
        return source, self.layouts.layout(*size, what="resize output")

    def _resize_at(
        self, hidden_state: torch.Tensor, source: TilePartition, target: TilePartition
    ) -> torch.Tensor:
        """Any ratio: the halo first, then interpolation at explicit global source indices and weights."""
        plans = [self._axis_plan(source, target, axis) for axis in (0, 1)]
        (top, bottom), (left, right) = (plan[0] for plan in plans)
        padded = halo_exchange(hidden_state, self.ctx, top, bottom, left, right, check=False)
        for axis, (_, lower, weight, last) in enumerate(plans):
            padded = _interpolate_axis(padded, 2 + axis, lower, weight, last)
        return padded

    @staticmethod
    def _whole_scales(source: TilePartition, target: TilePartition) -> tuple[int, int] | None:
        """(k_rows, k_cols) when every target tile edge is k times its source edge (k >= 1), else None."""
        scales = []
        for edges_in, edges_out in (
            (source.row_edges, target.row_edges),
            (source.col_edges, target.col_edges),
        ):
            k = edges_out[-1] // edges_in[-1]
            if k < 1 or any(e_out != k * e_in for e_in, e_out in zip(edges_in, edges_out, strict=True)):
                return None
            scales.append(k)
        return scales[0], scales[1]

    def _halo_widths(self, k_rows: int, k_cols: int) -> tuple[int, int, int, int]:
        """One source pixel beyond each edge along split axes that are upsampled (none where k = 1)."""
        halo_h = 1 if self.ctx.grid[0] > 1 and k_rows > 1 else 0
        halo_w = 1 if self.ctx.grid[1] > 1 and k_cols > 1 else 0
        return halo_h, halo_h, halo_w, halo_w

    def _patch_edges(
        self, hidden_state: torch.Tensor, output: torch.Tensor, k_rows: int, k_cols: int, frame: HaloFrame
    ) -> None:
        """Recompute in place the k // 2 outputs next to each edge shared with a neighbour of the tile's
        `F.interpolate(scale_factor=(k_rows, k_cols))`, from strips of the halo pixel and the edge pixel."""
        halo_h, _, halo_w, _ = self._halo_widths(k_rows, k_cols)
        height, width = hidden_state.shape[-2:]
        rows, row_offset = _span(frame, 0, height, halo_h, k_rows)
        cols, col_offset = _span(frame, 1, width, halo_w, k_cols)
        out_rows = slice(row_offset, row_offset + k_rows * height)
        out_cols = slice(col_offset, col_offset + k_cols * width)
        # A strip of the halo pixel and the tile's edge pixel; its output k + j is the tile's first output j,
        # and its outputs k - k // 2 .. k - 1 are the last outputs before the tile's far edge.
        fix_h, fix_w = k_rows // 2, k_cols // 2
        if frame.has((-1, 0)):
            strip = _upsample(frame.window((0, 2), cols), k_rows, k_cols)
            output[..., :fix_h, :] = strip[..., k_rows : k_rows + fix_h, out_cols]
        if frame.has((1, 0)):
            strip = _upsample(frame.window((height - 1 + halo_h, height + 1 + halo_h), cols), k_rows, k_cols)
            output[..., k_rows * height - fix_h :, :] = strip[..., k_rows - fix_h : k_rows, out_cols]
        if frame.has((0, -1)):
            strip = _upsample(frame.window(rows, (0, 2)), k_rows, k_cols)
            output[..., :fix_w] = strip[..., out_rows, k_cols : k_cols + fix_w]
        if frame.has((0, 1)):
            strip = _upsample(frame.window(rows, (width - 1 + halo_w, width + 1 + halo_w)), k_rows, k_cols)
            output[..., k_cols * width - fix_w :] = strip[..., out_rows, k_cols - fix_w : k_cols]

    def _axis_plan(
        self, source: TilePartition, target: TilePartition, axis: int
    ) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor, int]:
        """Halo (before, after) every rank uses on this axis, and this rank's local indices and weights."""
        edges_in = source.row_edges if axis == 0 else source.col_edges
        edges_out = target.row_edges if axis == 0 else target.col_edges
        in_size, out_size = edges_in[-1], edges_out[-1]
        before = after = 0
        for tile in range(len(edges_in) - 1):
            lower, _ = _source_positions(edges_out[tile], edges_out[tile + 1], in_size, out_size)
            before = max(before, edges_in[tile] - int(lower.min()))
            after = max(after, min(int(lower.max()) + 1, in_size - 1) - (edges_in[tile + 1] - 1))
        mine = self.ctx.coord[axis]
        lower, weight = _source_positions(edges_out[mine], edges_out[mine + 1], in_size, out_size)
        offset = edges_in[mine] - before
        last = min(in_size - 1, edges_in[mine + 1] - 1 + after) - offset
        return (before, after), lower - offset, weight, last


class ReplicatedSourceResize(SpatialMixin, RestBilinearResize):
    """Bilinear resizing of a map every rank holds whole (a pooled map) to this rank's tile of the target.

    No communication: each rank interpolates its own output rows from the full source. The source's gradient
    is this rank's partial sum, which the pooling's all-reduce adds up in backward.
    """

    def forward(self, hidden_state: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        target = self.layouts.layout(*size, what="resize output")
        box = target.box()
        in_h, in_w = hidden_state.shape[2:]
        rows, row_weight = _source_positions(box.top, box.bottom, in_h, target.height)
        cols, col_weight = _source_positions(box.left, box.right, in_w, target.width)
        resized = _interpolate_axis(hidden_state, 2, rows, row_weight, in_h - 1)
        return _interpolate_axis(resized, 3, cols, col_weight, in_w - 1)


__all__ = ["ReplicatedSourceResize", "SpatialBilinearResize"]
