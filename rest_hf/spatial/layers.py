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

from .comm import all_reduce_sum
from .comm_halo import HaloFrame, start_halos
from .context import SpatialContext
from .geometry import LayoutBook
from .partition import TileRule


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
    The halo travels while the convolution runs on the zero-padded tile (`start_halos`), whose output is already
    exact except in the `halo` rows or columns next to an edge shared with a neighbour; those are recomputed
    in place from the halo-padded strips. The halo's fit in the neighbouring tiles is checked once per forward
    by `parallelize_spatial`'s input check (tiles of at least `spatial_min_tile` px), not again at every call.
    """

    def halo_widths(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): the padding along split axes; along an axis the grid does not split, the
        convolution's own zero padding is the scene's edge."""
        pad_h, pad_w = self.padding
        halo_h = pad_h if self.ctx.grid[0] > 1 else 0
        halo_w = pad_w if self.ctx.grid[1] > 1 else 0
        return halo_h, halo_h, halo_w, halo_w

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return convolve_together([self], [hidden_state])[0]

    def _patch_edges(self, hidden_state: torch.Tensor, output: torch.Tensor, frame: HaloFrame) -> None:
        """Recompute in place the outputs next to edges shared with a neighbour, from the halo-padded strips."""
        pad_h, pad_w = self.padding
        halo_h, _, halo_w, _ = self.halo_widths()
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

    def _strip(self, window: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        """The convolution of a halo-padded strip; `padding` is the zero padding of the axes not split."""
        return F.conv2d(window, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def convolve_together(convs: list[HaloConv2d], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each convolution applied to its input, with the halos of all of them in one exchange.

    The halos travel while every convolution runs on its zero-padded tile; then each output's edges next to a
    neighbour are recomputed (`HaloConv2d._patch_edges`). One synchronisation for all, instead of one each.

    Args:
        convs: `HaloConv2d` twins of one spatial context.
        inputs: Their (B, C_i, h_i, w_i) tiles.

    Returns:
        The (B, C_out_i, h_i, w_i) outputs, the whole scene's convolutions restricted to this tile.
    """
    moving = [i for i, conv in enumerate(convs) if any(conv.halo_widths())]
    pendings = (
        start_halos([inputs[i] for i in moving], convs[0].ctx, [convs[i].halo_widths() for i in moving])
        if moving
        else []
    )
    outputs = [nn.Conv2d.forward(conv, x) for conv, x in zip(convs, inputs, strict=True)]
    for i, pending in zip(moving, pendings, strict=True):
        convs[i]._patch_edges(inputs[i], outputs[i], pending.wait())
    return outputs


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
    "SpatialGRN",
]
