"""Spatial twins of the convolutional, normalisation, pooling and resizing layers.

Each class subclasses the layer it replaces and is installed by `parallelize_spatial`, which switches an
existing module's class in place (`adopt`), so parameters, buffers, hooks and state-dict keys are untouched and
`isinstance` checks still hold. On one process every layer computes exactly what its parent computes.

Gradient rule (shared by every layer here): each rank back-propagates the loss share of its own tile; the
communication primitives carry the cross-tile terms, so after the spatial group's parameter gradients are
summed they equal the single-process gradients (`reduce_spatial_gradients` does that sum).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2GRN

from ..models.modeling_rest import RestBilinearResize
from .comm import all_reduce_sum, halo_exchange
from .comm_halo import HaloFrame, start_halo
from .context import SpatialContext
from .geometry import LayoutBook, gather_layouts
from .partition import TilePartition, TileRule


class SpatialMixin:
    """Adds the spatial context (and the model's `LayoutBook`) to a module whose class is switched in place."""

    ctx: SpatialContext
    layouts: LayoutBook

    @classmethod
    def parent(cls) -> type:
        """The torch / transformers / rest_hf class this twin replaces."""
        return next(base for base in cls.__bases__ if not issubclass(base, SpatialMixin))

    @classmethod
    def adopt(cls, module: nn.Module, ctx: SpatialContext, layouts: LayoutBook | None = None) -> nn.Module:
        """Turn `module` (an instance of exactly the parent class) into this spatial twin, keeping its parameters,
        buffers and hooks.

        Args:
            module: The module to switch; a subclass of the parent is refused, since it may compute otherwise.
            ctx: The spatial context.
            layouts: The model's layout book (None: layers learn layouts with one all-gather per call).

        Raises:
            TypeError: if `module` is not an instance of exactly `parent()`.
        """
        if type(module) is not cls.parent():
            raise TypeError(
                f"{cls.__name__} replaces {cls.parent().__name__} modules, not {type(module).__name__}"
            )
        module.__class__ = cls
        module.ctx = ctx
        module.layouts = layouts if layouts is not None else LayoutBook(ctx, TileRule())
        return module

    def extra_repr(self) -> str:
        parent = super().extra_repr()
        return f"{parent}, grid={self.ctx.grid}" if parent else f"grid={self.ctx.grid}"


class HaloConv2d(SpatialMixin, nn.Conv2d):
    """Stride-1 convolution whose zero padding is replaced by the neighbours' border pixels.

    The halo is `dilation * (kernel - 1) / 2` pixels per side (with corners), so a tile's output equals the
    same rows and columns of the convolution of the whole scene; zero padding remains at the scene's edges.
    The halo travels while the convolution runs on the zero-padded tile (`start_halo`), whose output is already
    exact except in the `halo` rows or columns next to an edge shared with a neighbour; those are recomputed
    in place from the halo-padded strips. The halo's fit in the neighbouring tiles is checked once per forward
    by `parallelize_spatial`'s input check (tiles of at least `spatial_min_tile` px), not again at every call.
    """

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        # Only split axes get a halo; along an axis the grid does not split, the convolution's own zero padding
        # is the scene's edge.
        pad_h, pad_w = self.padding
        halo_h = pad_h if self.ctx.grid[0] > 1 else 0
        halo_w = pad_w if self.ctx.grid[1] > 1 else 0
        if not (halo_h or halo_w):
            return super().forward(hidden_state)
        pending = start_halo(hidden_state, self.ctx, halo_h, halo_h, halo_w, halo_w)
        output = super().forward(hidden_state)
        frame = pending.wait()
        height, width = hidden_state.shape[-2:]
        all_rows, all_cols = (0, height + 2 * halo_h), (0, width + 2 * halo_w)
        # Output pixel i reads padded pixels [i, i + 2 * halo]: the first `halo` outputs read padded [0, 3 halo).
        if frame.has((-1, 0)):
            output[..., :halo_h, :] = self._strip(
                frame.window((0, 3 * halo_h), all_cols), (0, pad_w - halo_w)
            )
        if frame.has((1, 0)):
            rows = (height - halo_h, height + 2 * halo_h)
            output[..., height - halo_h :, :] = self._strip(frame.window(rows, all_cols), (0, pad_w - halo_w))
        if frame.has((0, -1)):
            output[..., :halo_w] = self._strip(frame.window(all_rows, (0, 3 * halo_w)), (pad_h - halo_h, 0))
        if frame.has((0, 1)):
            cols = (width - halo_w, width + 2 * halo_w)
            output[..., width - halo_w :] = self._strip(frame.window(all_rows, cols), (pad_h - halo_h, 0))
        return output

    def _strip(self, window: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        """The convolution of a halo-padded strip; `padding` is the zero padding of the axes not split."""
        return F.conv2d(window, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class SpatialBatchNorm2d(SpatialMixin, nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole scene (all tiles of the spatial group).

    Two all-reduces (sum and count, then the centred sum of squares) rather than one of the raw moments keep
    the variance as accurate as torch's own two-pass computation. `nn.SyncBatchNorm` does not run on CPU.
    In evaluation the running statistics are used, exactly as in `nn.BatchNorm2d`. The pixel count follows from
    the layout book; `pooled_per_tile` marks a BatchNorm on maps pooled per tile (regional pyramid pooling),
    where every tile holds a map of the same shape.
    """

    pooled_per_tile: bool = False

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        if not (self.training or self.running_mean is None):
            return super().forward(hidden_state)
        dims = (0, 2, 3)
        if self.pooled_per_tile:  # every tile's map has this very shape (regional pyramid pooling)
            pixels = hidden_state.shape[2] * hidden_state.shape[3] * self.ctx.size
        else:
            layout = self.layouts.layout(*hidden_state.shape[2:], what="BatchNorm input")
            pixels = layout.height * layout.width
        count = hidden_state.new_tensor([float(hidden_state.shape[0] * pixels)])
        mean = all_reduce_sum(hidden_state.sum(dims), self.ctx) / count
        centred = hidden_state - mean[None, :, None, None]
        var = all_reduce_sum(centred.square().sum(dims), self.ctx) / count
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.item())
        normalised = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            normalised = normalised * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return normalised

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


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
    one pixel travels meanwhile (`start_halo`) and those few pixels are recomputed in place from halo-padded
    strips. Other ratios exchange the halo first and interpolate at explicit global source indices and weights.
    """

    def forward(self, hidden_state: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.layouts.input is None:
            source, target = gather_layouts(
                self.ctx, [tuple(hidden_state.shape[2:]), tuple(size)], ["resize input", "resize output"]
            )
        else:
            source = self.layouts.layout(*hidden_state.shape[2:], what="resize input")
            target = self.layouts.layout(*size, what="resize output")
        scales = self._whole_scales(source, target)
        if scales is not None:
            return self._upsample_tile(hidden_state, *scales)
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

    def _upsample_tile(self, hidden_state: torch.Tensor, k_rows: int, k_cols: int) -> torch.Tensor:
        """The tile's part of the whole scene's `F.interpolate(scale_factor=(k_rows, k_cols))`."""
        halo_h = 1 if self.ctx.grid[0] > 1 and k_rows > 1 else 0
        halo_w = 1 if self.ctx.grid[1] > 1 and k_cols > 1 else 0
        pending = (
            start_halo(hidden_state, self.ctx, halo_h, halo_h, halo_w, halo_w) if halo_h or halo_w else None
        )
        output = _upsample(hidden_state, k_rows, k_cols)
        if pending is None:
            return output
        frame = pending.wait()
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
        return output

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


class SpatialGRN(SpatialMixin, ConvNextV2GRN):
    """ConvNeXt-V2 global response normalisation with the L2 norm over the whole scene's H and W.

    Installed on `ConvNextV2GRN` modules (channels-last input (B, H, W, C)); the squared sums of all tiles are
    all-reduced before the square root.
    """

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        squared = all_reduce_sum(hidden_state.square().sum(dim=(1, 2), keepdim=True), self.ctx)
        # transformers' `vector_norm` has gradient 0 where a channel is zero over the whole scene; `sqrt` has an
        # infinite one there (and 0 * inf = NaN in backward): a constant nodata crop would poison the weights.
        nonzero = squared > 0
        global_features = torch.where(nonzero, squared, torch.ones_like(squared)).sqrt() * nonzero
        norm_features = global_features / (global_features.mean(dim=-1, keepdim=True) + 1e-6)
        return self.weight * (hidden_state * norm_features) + self.bias + hidden_state


__all__ = [
    "HaloConv2d",
    "SpatialBatchNorm2d",
    "SpatialBilinearResize",
    "ReplicatedSourceResize",
    "SpatialGRN",
]
