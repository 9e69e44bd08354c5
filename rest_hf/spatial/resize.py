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
from .windows import Region, Window, interpolation_matrix, resize_at, resize_source, widest_reach


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
        """Any ratio: the halo that the farthest-reaching tile needs on each side first, then interpolation at
        explicit global source indices and weights (`windows.resize_at`)."""
        sizes = (source.height, source.width), (target.height, target.width)
        reads = [resize_source(Region.of(out_box), *sizes) for out_box in target.boxes()]
        top, bottom, left, right = widest_reach(reads, source.boxes())
        padded = halo_exchange(hidden_state, self.ctx, top, bottom, left, right, check=False)
        box = source.box()
        window = Window(
            padded,
            Region((box.top - top, box.bottom + bottom), (box.left - left, box.right + right)),
            sizes[0],
        )
        return resize_at(window, sizes[1], Region.of(target.box())).tensor

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


class ReplicatedSourceResize(SpatialMixin, RestBilinearResize):
    """Bilinear resizing of a map every rank holds whole (a pooled map) to this rank's tile of the target.

    No communication: each rank interpolates its own output rows from the full source. The source's gradient
    is this rank's partial sum, which the pooling's all-reduce adds up in backward.
    """

    def forward(self, hidden_state: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        target = self.layouts.layout(*size, what="resize output")
        return self.at(hidden_state, (target.height, target.width), Region.of(target.box()))

    @staticmethod
    def at(hidden_state: torch.Tensor, size: tuple[int, int], region: Region) -> torch.Tensor:
        """The whole (B, C, s_h, s_w) map resized to a scene of `size`, on `region` of it only.

        The source is a few pooled bins: two small matrix products (rows, then columns) cost less than
        interpolating index by index."""
        in_h, in_w = hidden_state.shape[2:]
        kwargs = {"dtype": hidden_state.dtype, "device": hidden_state.device}
        rows = interpolation_matrix(region.rows, in_h, size[0], **kwargs)
        cols = interpolation_matrix(region.cols, in_w, size[1], **kwargs)
        return rows @ hidden_state @ cols.T


__all__ = ["ReplicatedSourceResize", "SpatialBilinearResize"]
